"""Writes a checkpoint of TinyLlama-1.1B's shape for the scale benchmark: a random-init Hugging Face
LlamaForCausalLM (hidden 2048, 22 layers, FFN 5632, 32 heads / 4 KV heads, vocab 32000), BF16, saved by
transformers in shards, with a byte-level BPE tokenizer of 32000 ids trained by HF `tokenizers` on the bundled
corpus. Nothing is downloaded. Usage: python make_checkpoint.py OUT_DIR [--layers N] [--shard-size 1GB]
[--no-tokenizer] [--device cpu|cuda]. --no-tokenizer leaves the tokenizer out (the GPU speed benchmarks feed token ids);
--device cuda draws the weights on the GPU (seconds instead of a minute on the CPU) before transformers saves them."""
import argparse
import glob
import os

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM

p = argparse.ArgumentParser()
p.add_argument("out")
p.add_argument("--layers", type=int, default=22)
p.add_argument("--hidden", type=int, default=2048)
p.add_argument("--ffn", type=int, default=5632)
p.add_argument("--heads", type=int, default=32)
p.add_argument("--kv-heads", type=int, default=4)
p.add_argument("--vocab", type=int, default=32000)
p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
p.add_argument("--shard-size", default="1GB")
p.add_argument("--no-tokenizer", action="store_true", help="write no tokenizer.json")
p.add_argument("--device", default="cpu", help="where the weights are drawn: cpu or cuda")
a = p.parse_args()
os.makedirs(a.out, exist_ok=True)
torch.manual_seed(0)
root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")

# the tokenizer: byte-level BPE on the bundled corpus, padded with unused added tokens up to the vocab size
if not a.no_tokenizer:
    texts = []
    for f in sorted(glob.glob(os.path.join(root, "src/main/resources/dive/corpus/*/*"))):
        if os.path.isfile(f):
            with open(f, "rb") as fh:
                texts.append(fh.read().decode("utf-8", "replace"))
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=a.vocab, special_tokens=["<s>", "</s>"],
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                       show_progress=False))
    missing = a.vocab - tok.get_vocab_size()
    if missing > 0:
        tok.add_special_tokens([f"<unused_{i}>" for i in range(missing)])
    assert tok.get_vocab_size() == a.vocab, tok.get_vocab_size()
    tok.save(os.path.join(a.out, "tokenizer.json"))

cfg = LlamaConfig(hidden_size=a.hidden, intermediate_size=a.ffn, num_hidden_layers=a.layers,
                  num_attention_heads=a.heads, num_key_value_heads=a.kv_heads, vocab_size=a.vocab,
                  max_position_embeddings=2048, rms_norm_eps=1e-5, tie_word_embeddings=False,
                  bos_token_id=0, eos_token_id=1)
dtype = getattr(torch, a.dtype)
torch.set_default_dtype(dtype)  # initialise in the target dtype: half the memory, no F32 copy
with torch.device(a.device):
    model = LlamaForCausalLM(cfg).eval()
model.save_pretrained(a.out, safe_serialization=True, max_shard_size=a.shard_size)
print(a.out, sum(p.numel() for p in model.parameters()), "parameters,", a.dtype)

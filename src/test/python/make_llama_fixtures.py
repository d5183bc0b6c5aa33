#!/usr/bin/env python3
"""Reference fixtures for dive.model: small random Llama models made and run by Hugging Face transformers.

Run (from the repository root; needs torch, transformers 5, safetensors, tokenizers, numpy):
    OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1 .venv-ref/bin/python src/test/python/make_llama_fixtures.py [NAME ...]
With NAMEs only those fixtures are (re)written; without, all of them.

Writes src/test/resources/llama/<name>/ for each fixture:
    config.json, model.safetensors   transformers' save_pretrained(safe_serialization=True)
    logits.npy      float32 (T, vocab)     logits of expected.json "input_ids", computed in F32
    batch_logits.npy float32 (2, Tb, vocab) logits of the two equal-length rows of "batch_input_ids"
    expected.json   input ids, batch ids, greedy generation (generate(do_sample=False)), perplexity

BF16 fixture: the weights are saved in bfloat16; the reference runs those same bf16 weights upcast to F32
and computes in F32 (the engine reads bf16 weights and accumulates in F32 the same way).

Perplexity: the id sequence is cut into non-overlapping windows of `window` tokens (the last may be shorter);
each window is scored independently with labels = input_ids (HF shifts them, so the first token of each window
is not predicted); ppl = exp(sum of NLL over all predicted tokens / number of predicted tokens).

The fixture "mlp_bias" has transformers' mlp_bias=True: gate_proj, up_proj and down_proj each carry a bias, drawn
random (init gives zeros) so that a missing or misplaced bias changes the logits.

The fixture "tiny_bpe" also holds a byte-level BPE tokenizer.json (tokenizers library, trained on the text
below) and eval.txt with HF's perplexity of that text (ids = tokenizer.encode(text).ids, no special tokens added).
"""
import json
import math
import os
import shutil

import numpy as np
import torch
from transformers import LlamaConfig, LlamaForCausalLM

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "resources", "llama")

TRAIN_TEXT = """\
The river runs past the old mill and under the stone bridge, where the children stand in the morning
to watch the water carry leaves toward the sea. In spring the water is high and brown; in summer it is
slow and clear, and the fish rest in the shade of the willows. The miller kept a small book in which he
wrote the height of the river every day for forty years, and the book is still kept in the village hall.
People say that the river remembers every storm. When the rain falls for three days in the hills, the
river rises in the night, and by the morning the meadows are a lake. Then the farmers bring the cattle to
the high field and wait. The water always goes back, and the grass that grows after the flood is greener
than before. The baker says that bread made in a wet week tastes different, and nobody argues with him.
A road follows the river for a while and then turns north into the forest. The forest is dark and quiet,
and the path is soft with needles. Walkers who keep to the path reach the lake before noon; walkers who
leave it often find mushrooms, sometimes find deer, and now and then find themselves lost until evening.
The lake is cold even in August. Its water is so clear that you can count the stones on the bottom from the
boat, and the old men who fish there say that the biggest fish live in the deep middle where no stone can
be seen. They tell the same stories every year, and every year the stories get a little longer.
In the winter the village is small and close. Smoke rises straight from the chimneys on still days, and the
snow keeps the sound of the road away. The school has one stove, and the teacher lights it before the
children arrive. They learn to read from a book about ships, although none of them has ever seen the sea.
When the days grow longer again, the river breaks its ice with a noise like thunder, and the whole village
comes out to watch the first open water. Then the year begins again, the miller's book gets a new page, and
the children stand on the bridge and watch the water carry the winter away toward the sea.
Numbers appear in the book as well: 1921, 1947, 1963 and 1988 were the years of the great floods, and
the marks on the mill wall show how high the water came: 2.1 metres, 2.8 metres, 1.9 metres and 3.4 metres.
"""

EVAL_TEXT = """\
The miller wrote the height of the river in his book every day. In the spring the water rose, and the
children on the bridge watched the leaves go toward the sea. The lake in the forest was cold and clear.
"""


def make_model(seed, init_std=0.25, mlp_bias=False, **config_kwargs):
    torch.manual_seed(seed)
    config = LlamaConfig(initializer_range=init_std, attention_bias=False, mlp_bias=mlp_bias, hidden_act="silu",
                         rms_norm_eps=1e-5, max_position_embeddings=256, **config_kwargs)
    model = LlamaForCausalLM(config)
    # random RMSNorm weights (init gives ones) so a missing or misplaced norm weight changes the logits
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            elif name.endswith(".bias"):  # random MLP biases (init gives zeros)
                p.copy_(0.3 * torch.randn_like(p))
    return model.eval()


def perplexity(model, ids, window):
    nll_sum, predicted = 0.0, 0
    for start in range(0, len(ids), window):
        chunk = torch.tensor([ids[start:start + window]])
        n = chunk.shape[1] - 1
        if n <= 0:
            continue
        with torch.no_grad():
            loss = model(chunk, labels=chunk).loss.item()  # mean NLL over the n predicted tokens
        nll_sum += loss * n
        predicted += n
    return math.exp(nll_sum / predicted), predicted


def write_fixture(name, model, input_ids, batch_ids, prompt, ppl_ids, ppl_window, reload_as_f32=False, extra=None):
    """reload_as_f32: compute the expectations with the saved checkpoint loaded back upcast to F32
    (from_pretrained(dtype=float32): the saved bf16 weights widened exactly, RoPE frequencies recomputed in F32)."""
    out = os.path.join(ROOT, name)
    shutil.rmtree(out, ignore_errors=True)
    model.save_pretrained(out, safe_serialization=True)
    if reload_as_f32:
        ref = LlamaForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
        assert ref.model.embed_tokens.weight.dtype == torch.float32
    else:
        ref = model.float().eval()
    vocab = ref.config.vocab_size
    with torch.no_grad():
        logits = ref(torch.tensor([input_ids])).logits[0].float().numpy()  # (T, vocab)
        batch_logits = ref(torch.tensor(batch_ids)).logits.float().numpy()  # (2, Tb, vocab)
        gen = ref.generate(torch.tensor([prompt]), do_sample=False, max_new_tokens=20,
                           attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                           pad_token_id=ref.config.eos_token_id)
        new_ids = gen[0, len(prompt):].tolist()
        # smallest top-1 minus top-2 logit margin along the greedy path: large enough that rounding cannot flip it
        full = ref(gen).logits[0, len(prompt) - 1:-1]
        top2 = torch.topk(full, 2, dim=-1).values
        margin = float((top2[:, 0] - top2[:, 1]).min())
    ppl, predicted = perplexity(ref, ppl_ids, ppl_window)
    np.save(os.path.join(out, "logits.npy"), logits.astype(np.float32))
    np.save(os.path.join(out, "batch_logits.npy"), batch_logits.astype(np.float32))
    expected = {
        "vocab_size": vocab,
        "input_ids": input_ids,
        "batch_input_ids": batch_ids,
        "prompt_ids": prompt,
        "greedy_new_ids": new_ids,
        "greedy_max_new_tokens": 20,
        "greedy_min_top2_margin": margin,
        "eos_token_id": ref.config.eos_token_id,
        "perplexity_ids": ppl_ids,
        "perplexity_window": ppl_window,
        "perplexity": ppl,
        "perplexity_predicted_tokens": predicted,
        "rope_inv_freq": ref.model.rotary_emb.inv_freq.float().tolist(),  # transformers' RoPE frequencies
    }
    if extra:
        expected.update(extra)
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
    # drop generation_config.json: not part of what the engine reads
    gc = os.path.join(out, "generation_config.json")
    if os.path.exists(gc):
        os.remove(gc)
    size = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))
    print(f"{name}: {size / 1024:.0f} KB, logits |max| {np.abs(logits).max():.3f}, greedy {new_ids}, "
          f"margin {margin:.4f}, ppl {ppl:.4f} over {predicted}")
    return out


def ids_for(seed, vocab, n):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (n,), generator=g).tolist()


def standard_inputs(seed, vocab):
    return dict(input_ids=ids_for(seed, vocab, 9),
                batch_ids=[ids_for(seed + 1, vocab, 7), ids_for(seed + 2, vocab, 7)],
                prompt=ids_for(seed + 3, vocab, 5),
                ppl_ids=ids_for(seed + 4, vocab, 45), ppl_window=16)


def to_transformers4_config(folder):
    """Rewrites config.json in the transformers-4 form (rope_theta, rope_scaling, torch_dtype) most Hub
    checkpoints use; transformers 5 reads it back as the same model (checked by the caller)."""
    path = os.path.join(folder, "config.json")
    with open(path) as f:
        c = json.load(f)
    rp = c.pop("rope_parameters")
    c["rope_theta"] = rp.pop("rope_theta")
    rope_type = rp.pop("rope_type")
    c["rope_scaling"] = None if rope_type == "default" else {"type": rope_type, **rp}
    c["torch_dtype"] = c.pop("dtype")
    c.pop("head_dim")  # older configs leave it out: the default hidden_size / num_attention_heads applies
    c["transformers_version"] = "4.44.0"
    with open(path, "w") as f:
        json.dump(c, f, indent=2)


def main(only):
    os.makedirs(ROOT, exist_ok=True)

    def wanted(name):
        return not only or name in only

    # (a) grouped-query attention: 4 query heads share 2 KV heads; untied lm_head
    vocab = 300
    if wanted("gqa"):
        make_gqa(vocab)
    if wanted("tiny_bpe"):
        make_tiny_bpe()
    if wanted("rope_llama3"):
        make_rope_llama3(vocab)
    if wanted("rope_linear_v4"):
        make_rope_linear_v4(vocab)
    if wanted("bf16"):
        make_bf16(vocab)
    if wanted("head_dim16"):
        make_head_dim16(vocab)
    if wanted("mlp_bias"):
        make_mlp_bias(vocab)


def make_mlp_bias(vocab):
    # (f) mlp_bias: biases on gate_proj, up_proj and down_proj (transformers' LlamaMLP with bias=True); untied lm_head
    m = make_model(7, mlp_bias=True, vocab_size=vocab, hidden_size=48, intermediate_size=80, num_hidden_layers=2,
                   num_attention_heads=4, num_key_value_heads=2, rope_theta=10000.0, bos_token_id=1, eos_token_id=2,
                   tie_word_embeddings=False)
    assert m.model.layers[0].mlp.down_proj.bias is not None
    write_fixture("mlp_bias", m, **standard_inputs(700, vocab))


def make_gqa(vocab):
    m = make_model(1, vocab_size=vocab, hidden_size=48, intermediate_size=80, num_hidden_layers=2,
                   num_attention_heads=4, num_key_value_heads=2, rope_theta=10000.0, bos_token_id=1, eos_token_id=2,
                   tie_word_embeddings=False)
    write_fixture("gqa", m, **standard_inputs(100, vocab))


def make_tiny_bpe():
    # (b) tied embeddings (no lm_head.weight in the file) with a byte-level BPE tokenizer trained here
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=["<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([TRAIN_TEXT], trainer=trainer)
    vocab = tok.get_vocab_size()
    bos, eos = tok.token_to_id("<s>"), tok.token_to_id("</s>")
    m = make_model(2, vocab_size=vocab, hidden_size=64, intermediate_size=48, num_hidden_layers=2,
                   num_attention_heads=4, num_key_value_heads=2, rope_theta=500000.0, bos_token_id=bos,
                   eos_token_id=eos, tie_word_embeddings=True)
    eval_ids = tok.encode(EVAL_TEXT).ids
    prompt = tok.encode("The river").ids
    inputs = standard_inputs(200, vocab)
    inputs["prompt"] = prompt
    ppl_text, predicted_text = perplexity(m, eval_ids, 32)
    out = write_fixture("tiny_bpe", m, **inputs, extra={
        "eval_text_file": "eval.txt", "eval_text_ids": eval_ids, "eval_text_window": 32,
        "eval_text_perplexity": ppl_text, "eval_text_predicted_tokens": predicted_text,
        "prompt_text": "The river", "bos_token_id": bos})
    tok.save(os.path.join(out, "tokenizer.json"))
    with open(os.path.join(out, "eval.txt"), "w") as f:
        f.write(EVAL_TEXT)
    # the tokenizer as saved decodes its own ids back to the text (a check on the saved file)
    assert Tokenizer.from_file(os.path.join(out, "tokenizer.json")).decode(eval_ids) == EVAL_TEXT
    print(f"tiny_bpe: vocab {vocab}, eval.txt {len(eval_ids)} tokens, ppl {ppl_text:.4f} over {predicted_text}")


def make_rope_llama3(vocab):
    # (c) llama3 rope scaling; original context 32 so some wavelengths are below, between and above the bands
    vocab = 300
    llama3 = {"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0, "low_freq_factor": 1.0,
              "high_freq_factor": 4.0, "original_max_position_embeddings": 32}
    m = make_model(3, vocab_size=vocab, hidden_size=48, intermediate_size=64, num_hidden_layers=2,
                   num_attention_heads=4, num_key_value_heads=2, rope_parameters=llama3, bos_token_id=1,
                   eos_token_id=2, tie_word_embeddings=False)
    inputs = standard_inputs(300, vocab)
    inputs["input_ids"] = ids_for(301, vocab, 24)  # long enough for positions past the smoothing band
    write_fixture("rope_llama3", m, **inputs)


def make_rope_linear_v4(vocab):
    # (c') linear rope scaling, config.json rewritten in the transformers-4 form
    linear = {"rope_type": "linear", "rope_theta": 10000.0, "factor": 4.0}
    m = make_model(4, vocab_size=vocab, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                   num_attention_heads=4, num_key_value_heads=4, rope_parameters=linear, bos_token_id=1,
                   eos_token_id=2, tie_word_embeddings=True)
    out = write_fixture("rope_linear_v4", m, **standard_inputs(400, vocab))
    to_transformers4_config(out)
    reloaded = LlamaForCausalLM.from_pretrained(out).float().eval()
    with torch.no_grad():
        again = reloaded(torch.tensor([standard_inputs(400, vocab)["input_ids"]])).logits[0].numpy()
    assert np.array_equal(again, np.load(os.path.join(out, "logits.npy"))), "transformers-4 config reads differently"


def make_bf16(vocab):
    # (d) BF16 weights; reference = those bf16 weights upcast to F32, computed in F32
    m = make_model(5, vocab_size=vocab, hidden_size=64, intermediate_size=64, num_hidden_layers=2,
                   num_attention_heads=4, num_key_value_heads=2, rope_theta=10000.0, bos_token_id=1, eos_token_id=2,
                   tie_word_embeddings=False)
    m_bf16 = m.to(torch.bfloat16)
    m_bf16.config.dtype = torch.bfloat16
    write_fixture("bf16", m_bf16, **standard_inputs(500, vocab), reload_as_f32=True)


def make_head_dim16(vocab):
    # (e) head_dim (16) != hidden / heads (48 / 4 = 12)
    m = make_model(6, vocab_size=vocab, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                   num_attention_heads=4, num_key_value_heads=2, head_dim=16, rope_theta=10000.0, bos_token_id=1,
                   eos_token_id=2, tie_word_embeddings=True)
    write_fixture("head_dim16", m, **standard_inputs(600, vocab))


if __name__ == "__main__":
    import sys
    main(set(sys.argv[1:]))

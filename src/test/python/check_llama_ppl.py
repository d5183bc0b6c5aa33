"""Perplexity of a text file under transformers, as the engine defines it: the text is tokenized by the HF
`tokenizers` library from the model folder's tokenizer.json (special tokens per its post-processor), cut into
non-overlapping windows of WINDOW tokens, each scored on its own with labels = its ids (window of 1 token: skipped),
ppl = exp(total NLL / predicted tokens). Prints one JSON line: {"ppl", "tokens", "ids_sha256"}.
Usage: check_llama_ppl.py MODEL_DIR TEXT_FILE WINDOW"""
import hashlib, json, os, sys
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
import numpy as np
import torch
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM

model_dir, text_file, window = sys.argv[1], sys.argv[2], int(sys.argv[3])
torch.set_num_threads(2)
tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
ids = tok.encode(open(text_file, encoding="utf-8").read()).ids
model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
nll, predicted = 0.0, 0
with torch.inference_mode():
    for start in range(0, len(ids), window):
        chunk = ids[start:start + window]
        if len(chunk) < 2:
            continue
        x = torch.tensor([chunk])
        out = model(x, labels=x)
        nll += out.loss.item() * (len(chunk) - 1)
        predicted += len(chunk) - 1
digest = hashlib.sha256(np.asarray(ids, dtype="<i4").tobytes()).hexdigest()
print(json.dumps({"ppl": float(np.exp(nll / predicted)), "tokens": predicted, "ids_sha256": digest}))

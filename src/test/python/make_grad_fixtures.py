#!/usr/bin/env python3
"""Reference gradients for dive.train.TrainableLlama: PyTorch autograd through Hugging Face LlamaForCausalLM.

Run (from the repository root; needs torch, transformers 5, safetensors, numpy):
    OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1 .venv-ref/bin/python src/test/python/make_grad_fixtures.py

For each model fixture of make_llama_fixtures.py named below (gqa: 4 query / 2 KV heads, untied;
tiny_bpe: 4 / 2 heads, tied embeddings), loads src/test/resources/llama/<name>/ in F32, takes a seeded
batch of 2 × 12 token ids, computes loss = model(ids, labels=ids).loss (transformers shifts the labels:
positions 0..10 predict tokens 1..11, mean over the 2 × 11 predictions; dive's batch (B, T + 1) = the
same 2 × 12 ids) and backpropagates it in F32. Writes src/test/resources/llama_grad/<name>/:
    grads.safetensors   ∂loss/∂p for every named parameter (transformers names; tied: embed_tokens only)
    expected.json       the batch ids and the loss
"""
import json
import os
import shutil

import torch
from safetensors.torch import save_file
from transformers import LlamaForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = os.path.join(HERE, "..", "resources", "llama")
OUT = os.path.join(HERE, "..", "resources", "llama_grad")


def make(name, seed):
    model = LlamaForCausalLM.from_pretrained(os.path.join(MODELS, name), dtype=torch.float32)
    model.train()  # attention_dropout is 0: train and eval compute the same
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, model.config.vocab_size, (2, 12), generator=generator)
    loss = model(ids, labels=ids).loss
    loss.backward()
    grads = {n: p.grad.detach().contiguous().clone() for n, p in model.named_parameters()}
    out = os.path.join(OUT, name)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    save_file(grads, os.path.join(out, "grads.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump({"model": "llama/" + name, "batch": ids.tolist(), "loss": loss.item(),
                   "tie_word_embeddings": model.config.tie_word_embeddings,
                   "parameters": list(grads.keys())}, f, indent=1)
    print(name, "loss", loss.item(), "parameters", len(grads))


if __name__ == "__main__":
    torch.manual_seed(0)
    make("gqa", 11)
    make("tiny_bpe", 12)

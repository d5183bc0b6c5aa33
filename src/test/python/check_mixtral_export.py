#!/usr/bin/env python3
"""Interop check: a Mixtral checkpoint exported by dive (dive.model.MixtralExport) loads in Hugging Face transformers
as MixtralForCausalLM and gives the logits the dive engine computed for it. A Llama folder (config.json model_type
"llama", e.g. a FLAP / LLM-Pruner baseline with mlp_bias) is loaded as LlamaForCausalLM, a Qwen2-MoE folder (model_type
"qwen2_moe", dive.model.Qwen2MoeExport) as Qwen2MoeForCausalLM, and checked the same way.

Usage:
    OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1 python check_mixtral_export.py MODEL_DIR LOGITS.npy IDS [TOL]
MODEL_DIR  the exported folder; LOGITS.npy  float32 (T, vocab) written by the engine (`./dive logits MODEL_DIR --ids
IDS --out LOGITS.npy`, or NpyWriter in the JUnit test); IDS  comma-separated token ids; TOL  default 1e-4.
Loads with from_pretrained(MODEL_DIR, dtype=float32, experts_implementation="eager"), runs the ids, and exits 0 when
max|dive - transformers| / max|transformers| <= TOL, 1 otherwise (2 on a loading problem). It also fails when
transformers reports missing or unexpected weights (a name dive got wrong would load as random init).

Recorded run (2026-11-28, transformers 5.17.0, torch 2.13 CPU, via MixtralExportPythonTest with
DIVE_PYTHON=.venv-ref/bin/python): the k2_i40 fixture (top-2 of 4 experts, intermediate_size 40) loaded by dive,
exported by MixtralExport, reloaded by dive (scalar backend) for the logits:
    ok: relative error 1.2e-06 (max abs diff 7.9e-06), 9 tokens x 128 vocab, no missing/unexpected weights
and through the CLI (vector backend) on the transformers-saved fixture itself:
    ./dive logits src/test/resources/mixtral/k2_i40 --ids <input_ids> --out /tmp/moe_l.npy
    ok: relative error 1e-06 (max abs diff 6.9e-06), 9 tokens x 128 vocab, no missing/unexpected weights
"""
import json
import sys

import numpy as np
import torch
from transformers import LlamaForCausalLM, MixtralForCausalLM, Qwen2MoeForCausalLM


def main():
    if len(sys.argv) not in (4, 5):
        print(__doc__, file=sys.stderr)
        return 2
    model_dir, logits_file, ids = sys.argv[1], sys.argv[2], [int(i) for i in sys.argv[3].split(",")]
    tol = float(sys.argv[4]) if len(sys.argv) == 5 else 1e-4
    try:
        with open(f"{model_dir}/config.json") as f:
            model_type = json.load(f)["model_type"]
        if model_type == "llama":
            model, info = LlamaForCausalLM.from_pretrained(model_dir, dtype=torch.float32, output_loading_info=True)
        else:
            cls = Qwen2MoeForCausalLM if model_type == "qwen2_moe" else MixtralForCausalLM
            model, info = cls.from_pretrained(model_dir, dtype=torch.float32, experts_implementation="eager",
                                                             output_loading_info=True)
    except Exception as e:  # noqa: BLE001 - report any loading failure as such
        print(f"error: transformers cannot load {model_dir}: {e}", file=sys.stderr)
        return 2
    problems = {k: v for k, v in info.items() if v and k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    if problems:
        print(f"error: {model_dir}: {problems}", file=sys.stderr)
        return 1
    model.eval()
    with torch.no_grad():
        ref = model(torch.tensor([ids])).logits[0].float().numpy()
    ours = np.load(logits_file)
    if ours.shape != ref.shape:
        print(f"error: {logits_file} has shape {ours.shape}, transformers gives {ref.shape}", file=sys.stderr)
        return 1
    diff = float(np.abs(ours - ref).max())
    rel = diff / float(np.abs(ref).max())
    status = "ok" if rel <= tol else "MISMATCH"
    print(f"{status}: relative error {rel:.2g} (max abs diff {diff:.2g}), {ref.shape[0]} tokens x {ref.shape[1]} vocab, "
          f"no missing/unexpected weights ({type(model).__name__})")
    return 0 if rel <= tol else 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Reference fixture for dive.convert's CMoE carving (CmoeActivations, CmoeCarving), an independent re-implementation
written from the method's description (not from the Java code), with transformers + NumPy.

Run (from the repository root; needs torch, transformers 5, numpy):
    OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1 .venv-ref/bin/python src/test/python/make_cmoe_fixture.py

Model: the existing fixture src/test/resources/llama/gqa (hidden 48, FFN 80, 2 layers, vocab 300), in F32.
Calibration: WINDOWS windows of LEN random ids (numpy seed 4321), run as one batch; a forward pre-hook on every
mlp.down_proj records its input h = silu(gate_proj(x)) * up_proj(x).
Per layer, setting S2A2E8 (slices of 80 / 8 = 10: shared 20 channels, 6 routed experts of 10), K_a = 10:
    B[n, j] = 1 for the K_a channels of largest |h[n, j]| (stable sort: ties to the lower index)
    count_j = sum_n B[n, j]
    shared  = the 20 channels of highest count (ties to the lower index)
    seeds   = the 6 remaining channels of highest count, in that order
    cost[j, e] = sum_n |B[n, j] - B[n, seed_e]|  (L1 between activation columns)
    balanced assignment: the square assignment problem over the 60 routed channels x 60 slots, slot s belonging to
        expert s // 10 (each expert's cost column repeated 10 times), solved by the Hungarian method below
    representative_e = the member j minimising sum_n |B[n, j] - mean_{u in e} B[n, u]| (first minimum)
    router_gate[e] / router_up[e] = W_gate / W_up row of representative_e divided by its L2 norm
Writes src/test/resources/cmoe/gqa/expected.json.
"""
import json
import os

import numpy as np
import torch
from transformers import LlamaForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
MODEL = os.path.join(HERE, "..", "resources", "llama", "gqa")
OUT = os.path.join(HERE, "..", "resources", "cmoe", "gqa")
WINDOWS, LEN, SHARED_SLICES, SLICES, K_ACT = 4, 24, 2, 8, 10


def hungarian(cost):
    """minimum-cost perfect matching of a square matrix (rows -> columns); O(n^3) with potentials"""
    n = cost.shape[0]
    inf = float("inf")
    u, v = [0.0] * (n + 1), [0.0] * (n + 1)
    match = [0] * (n + 1)  # match[col] = row (1-based), 0 = free
    way = [0] * (n + 1)
    for i in range(1, n + 1):
        match[0] = i
        j0 = 0
        minv = [inf] * (n + 1)
        used = [False] * (n + 1)
        while True:
            used[j0] = True
            i0, delta, j1 = match[j0], inf, 0
            for j in range(1, n + 1):
                if not used[j]:
                    cur = cost[i0 - 1][j - 1] - u[i0] - v[j]
                    if cur < minv[j]:
                        minv[j], way[j] = cur, j0
                    if minv[j] < delta:
                        delta, j1 = minv[j], j
            for j in range(n + 1):
                if used[j]:
                    u[match[j]] += delta
                    v[j] -= delta
                else:
                    minv[j] -= delta
            j0 = j1
            if match[j0] == 0:
                break
        while True:
            j1 = way[j0]
            match[j0] = match[j1]
            j0 = j1
            if j0 == 0:
                break
    col_of_row = [0] * n
    for j in range(1, n + 1):
        col_of_row[match[j] - 1] = j - 1
    return col_of_row


def carve(h, gate, up):
    n_tok, width = h.shape
    m = width // SLICES
    experts = SLICES - SHARED_SLICES
    order = np.argsort(-np.abs(h), axis=1, kind="stable")[:, :K_ACT]
    b = np.zeros((n_tok, width), dtype=np.int64)
    for n in range(n_tok):
        b[n, order[n]] = 1
    count = b.sum(axis=0)
    by_count = sorted(range(width), key=lambda j: (-count[j], j))
    shared = sorted(by_count[: width - experts * m])
    routed = sorted(by_count[width - experts * m:])
    seeds = by_count[width - experts * m: width - experts * m + experts]
    cost = np.array([[np.abs(b[:, j] - b[:, s]).sum() for s in seeds] for j in routed], dtype=np.float64)
    square = np.repeat(cost, m, axis=1)  # (R, R): slot s belongs to expert s // m
    slot = hungarian(square)
    cluster = [s // m for s in slot]
    members = [sorted(routed[r] for r in range(len(routed)) if cluster[r] == e) for e in range(experts)]
    optimal = int(sum(cost[r, cluster[r]] for r in range(len(routed))))
    reps = []
    for e in range(experts):
        mean = b[:, members[e]].mean(axis=1)
        dist = [np.abs(b[:, j] - mean).sum() for j in members[e]]
        reps.append(members[e][int(np.argmin(dist))])
    unit = lambda w: (w / np.linalg.norm(w)).tolist()
    return {
        "counts": count.tolist(), "shared": shared, "seeds": seeds, "optimal_cost": optimal, "experts": members,
        "representatives": reps, "router_gate": [unit(gate[r].astype(np.float64)) for r in reps],
        "router_up": [unit(up[r].astype(np.float64)) for r in reps],
    }


def main():
    torch.manual_seed(0)
    model = LlamaForCausalLM.from_pretrained(MODEL, dtype=torch.float32)
    model.eval()
    cfg = model.config
    ids = np.random.default_rng(4321).integers(0, cfg.vocab_size, size=(WINDOWS, LEN))
    captured = {}

    def hook(layer):
        def f(module, args):
            captured[layer] = args[0].detach().reshape(-1, args[0].shape[-1]).double().numpy()
        return f

    for l, layer in enumerate(model.model.layers):
        layer.mlp.down_proj.register_forward_pre_hook(hook(l))
    with torch.no_grad():
        model(torch.tensor(ids))
    layers = []
    for l, layer in enumerate(model.model.layers):
        layers.append(carve(captured[l], layer.mlp.gate_proj.weight.detach().numpy(), layer.mlp.up_proj.weight.detach().numpy()))
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump({"setting": f"S{SHARED_SLICES}A2E{SLICES}", "k_act": K_ACT, "windows": ids.tolist(), "layers": layers}, f)
    print("wrote", os.path.join(OUT, "expected.json"))


if __name__ == "__main__":
    main()

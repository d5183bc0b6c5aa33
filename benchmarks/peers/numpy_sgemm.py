#!/usr/bin/env python3
"""Peer for GemmBenchmark: NumPy float32 matmul (OpenBLAS sgemm) on 2 threads, at the same shapes.

out (M, N) = x (M, K) @ w (N, K).T, i.e. the same "NT" layout as dive's matmul. Prints one JSON
object: {"threads": 2, "numpy": ..., "blas": ..., "results": {"MxNxK": {"gflops": median, ...}}}.
Usage: numpy_sgemm.py [--repeats 20] [SHAPE ...]   (SHAPE = MxNxK; default: GemmBenchmark's shapes)
       numpy_sgemm.py --serve: reads lines "MxNxK COUNT" from stdin, answers each with one line, a JSON list of the
       COUNT call times in seconds (dive.bench.GemmVsPeer alternates these rounds with its own calls).
OPENBLAS_CORETYPE (e.g. SKYLAKEX) picks OpenBLAS's kernel instead of its CPU detection: OpenBLAS 0.3.31 takes AMD
Zen 4/5 for Haswell (AVX2) although its AVX-512 kernel runs there and is faster.
"""
import os

THREADS = os.environ.get("PEER_THREADS", "2")
# must be set before numpy loads OpenBLAS
os.environ["OPENBLAS_NUM_THREADS"] = THREADS
os.environ["OMP_NUM_THREADS"] = THREADS

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

DEFAULT_SHAPES = ["512x512x512", "1024x1024x1024", "2048x2048x2048", "512x1024x256", "512x256x1024", "512x2048x256"]


def time_shape(m, n, k, repeats):
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, (m, k)).astype(np.float32)
    w = rng.uniform(-1, 1, (n, k)).astype(np.float32)
    out = np.empty((m, n), dtype=np.float32)
    flops = 2.0 * m * n * k
    # warm up for about a second
    t_end = time.perf_counter() + 1.0
    while time.perf_counter() < t_end:
        np.matmul(x, w.T, out=out)
    seconds = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.matmul(x, w.T, out=out)
        seconds.append(time.perf_counter() - t0)
    med = statistics.median(seconds)
    return {"gflops": flops / med / 1e9, "median_ms": med * 1e3, "best_gflops": flops / min(seconds) / 1e9, "repeats": repeats}


def serve():
    arrays = {}
    for line in sys.stdin:
        shape, count = line.split()
        if shape not in arrays:
            m, n, k = (int(v) for v in shape.split("x"))
            rng = np.random.default_rng(1)
            arrays[shape] = (rng.uniform(-1, 1, (m, k)).astype(np.float32), rng.uniform(-1, 1, (n, k)).astype(np.float32),
                             np.empty((m, n), dtype=np.float32))
        x, w, out = arrays[shape]
        seconds = []
        for _ in range(int(count)):
            t0 = time.perf_counter()
            np.matmul(x, w.T, out=out)
            seconds.append(time.perf_counter() - t0)
        print(json.dumps(seconds), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--serve", action="store_true")
    ap.add_argument("shapes", nargs="*", default=DEFAULT_SHAPES)
    args = ap.parse_args()
    if args.serve:
        serve()
        return
    results = {}
    for s in args.shapes:
        try:
            m, n, k = (int(v) for v in s.split("x"))
        except ValueError:
            raise SystemExit(f"numpy_sgemm.py: shape '{s}': expected MxNxK, e.g. 512x1024x256")
        results[s] = time_shape(m, n, k, args.repeats)
    blas = "unknown"
    try:
        cfg = np.show_config(mode="dicts")
        blas = cfg["Build Dependencies"]["blas"].get("name", "unknown") + " " + cfg["Build Dependencies"]["blas"].get("version", "")
    except Exception:  # older numpy: no dict mode
        pass
    core = os.environ.get("OPENBLAS_CORETYPE", "auto-detected")
    print(json.dumps({"threads": int(THREADS), "numpy": np.__version__, "blas": blas.strip(), "coretype": core,
                      "results": results}, indent=1))


if __name__ == "__main__":
    main()

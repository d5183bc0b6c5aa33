#!/usr/bin/env python3
"""Peer for GemmBenchmark: NumPy float32 matmul (OpenBLAS sgemm) on 2 threads, at the same shapes.

out (M, N) = x (M, K) @ w (N, K).T, i.e. the same "NT" layout as dive's matmul. Prints one JSON
object: {"threads": 2, "numpy": ..., "blas": ..., "results": {"MxNxK": {"gflops": median, ...}}}.
Usage: numpy_sgemm.py [--repeats 20] [SHAPE ...]   (SHAPE = MxNxK; default: GemmBenchmark's shapes)
"""
import os

THREADS = os.environ.get("PEER_THREADS", "2")
# must be set before numpy loads OpenBLAS
os.environ["OPENBLAS_NUM_THREADS"] = THREADS
os.environ["OMP_NUM_THREADS"] = THREADS

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
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


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("shapes", nargs="*", default=DEFAULT_SHAPES)
    args = ap.parse_args()
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
    print(json.dumps({"threads": int(THREADS), "numpy": np.__version__, "blas": blas.strip(), "results": results}, indent=1))


if __name__ == "__main__":
    main()

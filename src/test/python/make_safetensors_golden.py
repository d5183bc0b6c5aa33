"""Golden files for dive.io's safetensors reader and writer (run once; outputs are committed).

Writes, with the reference implementation (python `safetensors.torch.save_file`, safetensors 0.8.0,
torch 2.13 CPU):
  src/test/resources/safetensors/golden.safetensors           F32, BF16, F16, I32, I64 tensors, a 0-d
                                                              scalar, an empty [0, 3] tensor;
                                                              metadata {"format": "pt"} only, so the
                                                              header bytes are deterministic
  src/test/resources/safetensors/golden_metadata.safetensors  one tensor, several metadata entries
  src/test/resources/safetensors/golden.json                  what the Java test must read back:
      header length, metadata, and per tensor (in data-offset order) name, dtype, shape,
      data_offsets, the raw element bits ("raw_bits", as the file stores them) and the float32 bits
      of each element widened by torch (`t.float()`), or the integer values for I32/I64.

The Java tests (dive.io.SafetensorsGoldenTest) read these files: every element is compared bit for
bit, and SafetensorsWriter, given the same tensors in the same order, must reproduce
golden.safetensors byte for byte.

Usage:  OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1 .venv-ref/bin/python src/test/python/make_safetensors_golden.py
        ... make_safetensors_golden.py --check-java DIR
            loads every *.safetensors file in DIR (and DIR/model.safetensors.index.json if present)
            with python safetensors and prints what it found, to check files written by dive's Java
            writer.

One-off check done during development (2026-11-28): a single file (F32, BF16, F16, I64, I32, a 0-d
scalar, an empty [0, 3] tensor, metadata {"source": "dive"}) and the same tensors as a sharded
checkpoint (SafetensorsWriter.writeSharded with maxShardBytes 24: 4 shards + index) were loaded with
this script's --check-java: safetensors.torch.load_file read every tensor with the expected dtype,
shape and values, metadata came back with "format": "pt" added, and the index's total_size (62)
matched the tensors' bytes. NpyWriter's output loaded with numpy.load as float32 with shapes (2, 3),
(5,), () and (0, 4) and the values written.
"""
import json
import os
import struct
import sys

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "resources", "safetensors")


def golden_tensors():
    nan = float("nan")
    inf = float("inf")
    return {
        # F32: ordinary values, -0.0, a subnormal, the largest float, inf and NaN
        "model.layers.0.f32_matrix": torch.tensor([[1.0, -2.5, 1.0 / 3.0], [-0.0, 1e-40, 3.4028234663852886e38]],
                                                  dtype=torch.float32),
        "model.f32_specials": torch.tensor([inf, -inf, nan], dtype=torch.float32),
        # BF16: values that round when converted, inf, NaN, a subnormal
        "model.bf16_vector": torch.tensor([1.0, -2.5, 3.14159265, 1e-3, inf, nan, 1e-39], dtype=torch.bfloat16),
        # F16: the largest half, a subnormal, the smallest subnormal, a rounded value
        "model.f16_matrix": torch.tensor([[65504.0, 6.1e-5], [5.96e-8, 0.1]], dtype=torch.float16),
        "model.i32_vector": torch.tensor([-2147483648, 2147483647, 0, -7], dtype=torch.int32),
        "model.i64_vector": torch.tensor([-9223372036854775808, 9223372036854775807, 123456789012345], dtype=torch.int64),
        "scalar": torch.tensor(2.5, dtype=torch.float32),  # 0-d
        "empty": torch.zeros((0, 3), dtype=torch.float32),
    }


def describe(name, t, info):
    d = {"name": name, "dtype": info["dtype"], "shape": list(t.shape), "data_offsets": info["data_offsets"]}
    flat = t.reshape(-1)
    if t.dtype in (torch.int32, torch.int64):
        d["ints"] = [int(v) for v in flat.tolist()]
    else:
        if t.dtype == torch.float32:
            raw = flat.view(torch.int32)
        else:
            raw = flat.view(torch.int16).to(torch.int32) & 0xFFFF
        d["raw_bits"] = [int(v) for v in raw.tolist()]
        d["f32_bits"] = [int(v) & 0xFFFFFFFF for v in flat.float().view(torch.int32).tolist()]
    return d


def raw_header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return n, json.loads(f.read(n))


def make():
    os.makedirs(OUT, exist_ok=True)
    tensors = golden_tensors()
    path = os.path.join(OUT, "golden.safetensors")
    save_file(tensors, path, metadata={"format": "pt"})
    n, header = raw_header(path)
    entries = sorted(((k, v) for k, v in header.items() if k != "__metadata__"), key=lambda kv: kv[1]["data_offsets"])
    loaded = load_file(path)
    golden = {
        "file": "golden.safetensors",
        "header_length": n,
        "metadata": header.get("__metadata__", {}),
        "tensors": [describe(k, loaded[k], info) for k, info in entries],
    }
    meta_path = os.path.join(OUT, "golden_metadata.safetensors")
    metadata = {"format": "pt", "source": "dive golden test", "unicode": "h\u00e9llo \u2713", "empty": ""}
    save_file({"w": torch.arange(6, dtype=torch.float32).reshape(2, 3)}, meta_path, metadata=metadata)
    golden["metadata_file"] = {"file": "golden_metadata.safetensors", "metadata": metadata}
    with open(os.path.join(OUT, "golden.json"), "w") as f:
        json.dump(golden, f, indent=1)
        f.write("\n")
    print("wrote", path, os.path.getsize(path), "bytes; header", n, "bytes;", [e[0] for e in entries])


def check_java(d):
    for name in sorted(os.listdir(d)):
        if not name.endswith(".safetensors"):
            continue
        p = os.path.join(d, name)
        with safe_open(p, framework="pt") as f:
            meta = f.metadata()
        tensors = load_file(p)
        print(name, "metadata", meta)
        for k, t in tensors.items():
            print("  ", k, t.dtype, tuple(t.shape), t.reshape(-1)[:6].tolist())
    index = os.path.join(d, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            idx = json.load(f)
        total = 0
        for k, shard in idx["weight_map"].items():
            t = load_file(os.path.join(d, shard))[k]
            total += t.numel() * t.element_size()
        assert total == idx["metadata"]["total_size"], (total, idx["metadata"])
        print("index ok:", len(idx["weight_map"]), "tensors, total_size", total)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--check-java":
        check_java(sys.argv[2])
    else:
        make()

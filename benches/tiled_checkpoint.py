"""Large checkpoints made from real weights: a trajectory's epochs tiled to SIZE bytes.

    python benches/tiled_checkpoint.py CORPUS_DIR OUT_DIR [--size 2G] [--epochs 0,1]

Random floats are not representative of a checkpoint (their exponents are spread, their deltas
are not small), so each output epoch is the corpus epoch's float32 weights, all tensors joined in
name order, repeated until SIZE bytes, in 128 MiB tensors. Copy ``c`` of the weights is multiplied
by ``1 + 1e-4 * n_c`` with ``n_c`` a fixed normal draw per copy (the same in every epoch), so no
two copies are equal bytes (no free deduplication) while the change from one output epoch to
the next is the corpus's real change between those epochs, scaled by ~1. Files are written
streaming: OUT_DIR/epoch_K.safetensors, one tensor in memory at a time.
"""

import argparse
import json
import struct
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

TENSOR = 128 << 20


def parse_size(s):
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(float(s[:-1]) * units[s[-1]]) if s[-1] in units else int(s)


def weights(path):
    tensors = load_file(str(path))
    return np.concatenate(
        [tensors[k].ravel() for k in sorted(tensors) if tensors[k].dtype == np.float32]
    )


def tiled(base, n, first):
    """Elements [first, first + n) of the endless perturbed tiling of `base`."""
    out = np.empty(n, dtype=np.float32)
    m = base.size
    at = 0
    while at < n:
        copy, offset = divmod(first + at, m)
        take = min(m - offset, n - at)
        noise = np.random.default_rng(copy).standard_normal(m, dtype=np.float32)
        seg = slice(offset, offset + take)
        out[at : at + take] = base[seg] * (np.float32(1) + np.float32(1e-4) * noise[seg])
        at += take
    return out


def write(path, base, size):
    per = TENSOR // 4
    count = -(-size // TENSOR)
    lengths = [min(per, size // 4 - i * per) for i in range(count)]
    header, offset = {}, 0
    for i, n in enumerate(lengths):
        header[f"tile.{i:03d}.weight"] = {
            "dtype": "F32",
            "shape": [n],
            "data_offsets": [offset, offset + 4 * n],
        }
        offset += 4 * n
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        first = 0
        for n in lengths:
            f.write(tiled(base, n, first).tobytes())
            first += n


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("corpus", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--size", default="2G")
    ap.add_argument("--epochs", default="0,1")
    args = ap.parse_args()
    size = parse_size(args.size) // 4 * 4
    args.out.mkdir(parents=True, exist_ok=True)
    for e in args.epochs.split(","):
        src = args.corpus / f"epoch_{int(e):03d}.safetensors"
        dst = args.out / f"epoch_{int(e):03d}.safetensors"
        write(dst, weights(src), size)
        print(dst)


if __name__ == "__main__":
    main()

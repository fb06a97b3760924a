"""ZipNN's lossless speed per CPU second, to set beside `stage_profile`'s "coding MB/s per CPU s".

    python benches/zipnn_per_core.py [--piece SIZE] DIR [DIR...]

For each DIR (a trajectory of `epoch_*.safetensors`), every epoch's tensor bytes (in file
order, as one buffer, dtype taken from the largest tensor) are compressed and decompressed by
`zipnn.ZipNN(threads=1)`, the same call as `../shared/bench/peers.py`. Prints MB (1e6 bytes) per
second of wall time and per second of this process's CPU time (`time.process_time`, all
threads), so a loaded machine slows the first and hardly the second; and the ratio.

`--piece 16M` hands ZipNN each epoch in pieces of that many bytes instead of one buffer: its
speed per byte falls with the size of one call (on a 1 GiB tiled checkpoint, 381 MB/s per CPU
second on 8 MiB calls, 155 on 128 MiB, 67 on the whole GiB), so large checkpoints are compared
with ZipNN at its best piece size too.
"""

import argparse
import json
import struct
import sys
import time
from pathlib import Path

import zipnn

DTYPES = {"F32": "float32", "BF16": "bfloat16", "F16": "float16"}


def tensor_bytes(path):
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    header.pop("__metadata__", None)
    body = raw[8 + n :]
    big = max(header.values(), key=lambda t: t["data_offsets"][1] - t["data_offsets"][0])
    return body, DTYPES[big["dtype"]]


def parse_size(s):
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(float(s[:-1]) * units[s[-1]]) if s[-1] in units else int(s)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dirs", nargs="+", type=Path)
    ap.add_argument("--piece", type=parse_size, default=None, help="bytes per ZipNN call")
    args = ap.parse_args()
    print("| corpus | MB | ratio | compress MB/s wall | compress MB/s per CPU s | decompress MB/s wall | decompress MB/s per CPU s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for d in args.dirs:
        files = sorted(d.glob("epoch_*.safetensors"))
        raws = [tensor_bytes(f) for f in files]
        z = zipnn.ZipNN(input_format="byte", bytearray_dtype=raws[0][1], threads=1)
        c_wall = c_cpu = d_wall = d_cpu = 0.0
        total = stored = 0
        for raw, _ in raws:
            step = args.piece or len(raw)
            for start in range(0, len(raw), step):
                piece = raw[start : start + step]
                buf = bytearray(piece)  # zipnn reorders its input in place
                w0, p0 = time.perf_counter(), time.process_time()
                blob = bytes(z.compress(buf))
                w1, p1 = time.perf_counter(), time.process_time()
                out = bytes(z.decompress(blob))
                w2, p2 = time.perf_counter(), time.process_time()
                assert out == piece, f"{d}: zipnn round trip differs"
                c_wall += w1 - w0
                c_cpu += p1 - p0
                d_wall += w2 - w1
                d_cpu += p2 - p1
                total += len(piece)
                stored += len(blob)
        mb = total / 1e6
        name = d.name if d.name != "bf16" else d.parent.name + "/bf16"
        if args.piece:
            name += f" ({args.piece >> 20} MiB calls)"
        print(
            f"| {name} | {mb:.1f} | {total / stored:.3f}x "
            f"| {mb / c_wall:.1f} | {mb / c_cpu:.1f} | {mb / d_wall:.1f} | {mb / d_cpu:.1f} |"
        )


if __name__ == "__main__":
    main()

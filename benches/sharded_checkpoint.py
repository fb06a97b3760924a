#!/usr/bin/env python3
"""A sharded checkpoint (save_pretrained layout) committed as one snapshot vs shard by shard.

    python benches/sharded_checkpoint.py [--bin BIN] [--corpus DIR] [--shards K]
                                         [--bound rel:0.01|lossless] [--work DIR]

Each `epoch_*.safetensors` of the corpus (natural order) is split into K shards the way
`save_pretrained` does: tensors in the file's order, a new shard started when the next tensor
would push the current one past total/K bytes, files `model-0000k-of-0000K.safetensors` with
`__metadata__` {"format": "pt"}, plus `model.safetensors.index.json` and a tiny `config.json`.
The trajectory is then committed three ways, each into a fresh repository:

  (a) whole      the original epoch file, one snapshot per epoch (the reference);
  (b) directory  `snapstore commit DIR`: the shard directory as one snapshot per epoch, tensors
                 matched by name to the previous epoch whichever shard they sit in;
  (c) per shard  each shard file committed on its own, in order (the only way before (b)): a
                 shard's parent is the previous shard's snapshot, which holds none of its
                 tensors, so every tensor is stored as a keyframe.

Every (b) snapshot is checked out and verified: lossless, every file byte-identical to what was
committed; lossy, the JSON files byte-identical, each shard holding the tensors it was given,
all shards together the names/dtypes/shapes of the original epoch, and each tensor's bytes equal
to the whole-file repository's checkout of the same epoch (the coding is per tensor, so they
must be identical). Any mismatch exits non-zero.

Prints a Markdown table per way (logical bytes, stored bytes as commit reports them, ratio,
deltas, keyframes, the repository's bytes on disk, wall seconds of the commits) and the
stored-bytes ratios (b)/(a) and (b)/(c), headed by the command line, corpus, date, host and
binary version, ready to paste into BENCHMARKS.md. `stored_bytes` counts tensor chunks only, so
(b) and (a) can be equal there while (b) holds more on disk (the JSON files, longer manifests).
Needs safetensors and torch (to write the shards with the same serializer as save_pretrained).
"""

import argparse
import datetime
import json
import re
import shlex
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parent.parent
WAYS = [("a", "whole file"), ("b", "directory"), ("c", "per shard")]


def natural_key(path):
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", path.name)]


def read_tensors(path):
    """{name: (dtype, shape, raw bytes)} in the file's data order, straight from the header.

    Raw bytes, not decoded arrays, so any dtype (BF16 included) compares exactly."""
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    header.pop("__metadata__", None)
    body = raw[8 + n :]
    out = {}
    for name, t in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        start, end = t["data_offsets"]
        out[name] = (t["dtype"], t["shape"], body[start:end])
    return out


def shard_plan(sizes, k):
    """Names grouped into at most k consecutive shards of about total/k bytes each.

    As save_pretrained: a tensor opens a new shard when it would push the current one past the
    limit; the k-th shard takes whatever is left, so there are never more than k files."""
    limit = sum(sizes.values()) / k
    shards, used = [[]], 0
    for name, size in sizes.items():
        if shards[-1] and used + size > limit and len(shards) < k:
            shards.append([])
            used = 0
        shards[-1].append(name)
        used += size
    return shards


def epoch_plan(epoch, k):
    """The shards of `epoch`: ({name: bytes}, [[name, ...] per shard])."""
    sizes = {name: len(t[2]) for name, t in read_tensors(epoch).items()}
    return sizes, shard_plan(sizes, k)


def write_sharded(epoch, out, k):
    """Write `epoch` into directory `out` as save_pretrained would; returns the shard paths."""
    sizes, plan = epoch_plan(epoch, k)
    tensors = load_file(str(epoch))
    out.mkdir(parents=True)
    weight_map, paths = {}, []
    for i, names in enumerate(plan, 1):
        # The real count, should a few huge tensors leave fewer than k shards.
        path = out / f"model-{i:05d}-of-{len(plan):05d}.safetensors"
        save_file({n: tensors[n] for n in names}, str(path), metadata={"format": "pt"})
        weight_map.update({n: path.name for n in names})
        paths.append(path)
    index = {"metadata": {"total_size": sum(sizes.values())}, "weight_map": weight_map}
    # json.dumps as transformers writes them (indent 2, sorted keys, trailing newline).
    (out / "model.safetensors.index.json").write_text(
        json.dumps(index, indent=2, sort_keys=True) + "\n"
    )
    config = {"architectures": ["BenchModel"], "model_type": "bench", "torch_dtype": "float32"}
    (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return paths


def snapstore(bin_, repo, *args):
    cmd = [str(bin_), "--repo", str(repo), *map(str, args)]
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"FAILED ({run.returncode}): {shlex.join(cmd)}\n{run.stdout}{run.stderr}")
    return run.stdout


class Way:
    """One repository and the totals of its commits."""

    def __init__(self, bin_, repo, bound):
        self.bin, self.repo, self.bound = bin_, repo, bound
        self.logical = self.stored = self.deltas = self.keyframes = self.snapshots = 0
        self.seconds = 0.0
        snapstore(bin_, repo, "init")

    def commit(self, path):
        start = time.perf_counter()
        report = json.loads(snapstore(self.bin, self.repo, "commit", path, "--bound", self.bound, "--json"))
        self.seconds += time.perf_counter() - start
        self.logical += report["logical_bytes"]
        self.stored += report["stored_bytes"]
        self.deltas += report["deltas"]
        self.keyframes += report["keyframes"]
        self.snapshots += 1
        return report["snapshot"]

    def checkout(self, snapshot, out):
        snapstore(self.bin, self.repo, "checkout", snapshot, "-o", out)


def fail(msg):
    sys.exit(f"MISMATCH: {msg}")


def verify_lossless(committed, out):
    """Every file checked out is byte for byte the one committed, and nothing else is there."""
    want = sorted(p.name for p in committed.iterdir())
    got = sorted(p.name for p in out.iterdir())
    if want != got:
        fail(f"{out}: files {got}, committed {want}")
    for name in want:
        if (committed / name).read_bytes() != (out / name).read_bytes():
            fail(f"{out / name} differs from the committed file")


def verify_lossy(committed, out, epoch, whole_checkout):
    """Shards hold the tensors they were given; together they equal the whole file's checkout."""
    want = sorted(p.name for p in committed.iterdir())
    got = sorted(p.name for p in out.iterdir())
    if want != got:
        fail(f"{out}: files {got}, committed {want}")
    together = {}
    for name in want:
        if name.endswith(".json"):
            # JSON files are kept as text whatever the bound.
            if (committed / name).read_bytes() != (out / name).read_bytes():
                fail(f"{out / name} differs from the committed file")
            continue
        shard = read_tensors(out / name)
        if sorted(shard) != sorted(read_tensors(committed / name)):
            fail(f"{out / name}: tensors {sorted(shard)} are not the ones committed in it")
        together.update(shard)
    original = read_tensors(epoch)
    if sorted(together) != sorted(original):
        fail(f"{out}: tensors {sorted(together)}, {epoch.name} has {sorted(original)}")
    whole = read_tensors(whole_checkout)
    for name, (dtype, shape, data) in together.items():
        if (dtype, shape) != original[name][:2]:
            fail(f"{out}: {name} is {dtype} {shape}, {epoch.name} has {original[name][:2]}")
        if data != whole[name][2]:
            fail(f"{out}: {name} differs from the whole-file checkout of {epoch.name}")


def disk_bytes(repo):
    """Everything the repository holds on disk: unlike stored_bytes (the snapshots' tensor
    chunks), this counts manifests, the JSON files of a directory snapshot, index and log."""
    return sum(p.stat().st_size for p in repo.rglob("*") if p.is_file())


def ratio(logical, stored):
    return f"{logical / stored:.2f}x" if stored else "-"


def print_header(args, epochs):
    version = subprocess.run([str(args.bin), "--version"], capture_output=True, text=True).stdout
    # "-dirty": the binary may have been built from uncommitted changes.
    rev = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
                         capture_output=True, text=True).stdout
    host = subprocess.run(["uname", "-n"], capture_output=True, text=True).stdout
    print(f"command: {shlex.join([Path(sys.executable).name, *sys.argv])}")
    print(f"corpus:  {args.corpus.resolve()} ({len(epochs)} epochs)")
    print(f"date:    {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}")
    print(f"host:    {host.strip()}")
    print(f"binary:  {version.strip()} (source tree {rev.strip() or '?'})")
    sizes, plan = epoch_plan(epochs[0], args.shards)
    shards = ", ".join(f"{len(names)} tensors {sum(sizes[n] for n in names):,} B" for names in plan)
    print(f"bound:   {args.bound}; {len(plan)} shards per epoch ({shards})")


def print_table(ways):
    print()
    print("| way | snapshots | logical bytes | stored bytes | ratio | deltas | keyframes "
          "| repo on disk | commit s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for key, label in WAYS:
        w = ways[key]
        print(f"| ({key}) {label} | {w.snapshots} | {w.logical:,} | {w.stored:,} | "
              f"{ratio(w.logical, w.stored)} | {w.deltas} | {w.keyframes} | {disk_bytes(w.repo):,} | "
              f"{w.seconds:.2f} |")
    a, b, c = ways["a"].stored, ways["b"].stored, ways["c"].stored
    print()
    print(f"stored bytes (b)/(a): {b / a:.4f} ({b - a:+,} bytes)")
    print(f"stored bytes (b)/(c): {b / c:.4f} ({b - c:+,} bytes)")
    da, db = disk_bytes(ways["a"].repo), disk_bytes(ways["b"].repo)
    print(f"on disk (b)/(a): {db / da:.4f} ({db - da:+,} bytes)")


def run(args, work):
    epochs = sorted(args.corpus.glob("epoch_*.safetensors"), key=natural_key)
    if not epochs:
        sys.exit(f"no epoch_*.safetensors in {args.corpus}")
    print_header(args, epochs)
    ways = {key: Way(args.bin, work / f"repo-{key}", args.bound) for key, _ in WAYS}
    lossless = args.bound == "lossless"
    for epoch in epochs:
        shard_dir = work / "shards" / epoch.stem
        shards = write_sharded(epoch, shard_dir, args.shards)
        whole_id = ways["a"].commit(epoch)
        dir_id = ways["b"].commit(shard_dir)
        for shard in shards:
            ways["c"].commit(shard)

        # Verify (b) as we go, so a failure names its epoch.
        out = work / "checkout" / epoch.stem
        ways["b"].checkout(dir_id, out)
        if lossless:
            verify_lossless(shard_dir, out)
        else:
            whole_out = work / "checkout" / f"{epoch.stem}-whole.safetensors"
            ways["a"].checkout(whole_id, whole_out)
            verify_lossy(shard_dir, out, epoch, whole_out)
    print(f"verified: {len(epochs)} directory snapshots checked out, "
          + ("every file byte-identical" if lossless
             else "JSON identical, tensors equal to the whole-file checkout"))
    print_table(ways)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", type=Path, default=ROOT / "target/release/snapstore")
    ap.add_argument("--corpus", type=Path, default=ROOT.parent / "shared/bench/cnn-digits")
    ap.add_argument("--shards", type=int, default=3)
    ap.add_argument("--bound", default="rel:0.01")
    ap.add_argument("--work", type=Path, help="kept afterwards (default: a temporary directory, removed)")
    args = ap.parse_args()
    if args.shards < 1:
        ap.error("--shards must be at least 1")
    args.bin = args.bin.resolve()

    if args.work:
        # Fresh repositories only: init refuses an existing one, and stale shards would mislead.
        if args.work.exists() and any(args.work.iterdir()):
            sys.exit(f"--work {args.work} is not empty")
        args.work.mkdir(parents=True, exist_ok=True)
        run(args, args.work)
    else:
        work = Path(tempfile.mkdtemp(prefix="sharded_checkpoint-"))
        try:
            run(args, work)
        finally:
            shutil.rmtree(work)


if __name__ == "__main__":
    main()

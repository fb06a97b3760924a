#!/usr/bin/env bash
# How the cost of opening the index grows with a repository's history: COMMITS lossless commits
# of a file of TENSORS small random F32 tensors (every tensor new each time, so every commit adds
# a tensor record and an object record per tensor), and at some points along the way the wall
# time of `snapstore log -n 1` (best of 3: one read-only index open, one ref, one manifest) and
# of one more commit, with the index's size; "commits" counts every commit made before the row's
# timings (those extra ones included). Process start is in both times. Prints a table.
#
#   benches/index_growth.sh [SNAPSTORE_BIN] [COMMITS] [TENSORS]
#   (default target/release/snapstore, 200 commits, 500 tensors of 64 elements)
set -euo pipefail
bin=$(realpath "${1:-target/release/snapstore}")
commits=${2:-200}
tensors=${3:-500}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
repo="$work/repo"
file="$work/ckpt.safetensors"
# A safetensors file of TENSORS random F32 tensors of 64 elements (standard library only).
make_file() {
  python3 - "$file" "$tensors" <<'PY'
import json, os, struct, sys
path, count = sys.argv[1], int(sys.argv[2])
header, blobs, offset = {}, [], 0
for t in range(count):
    blob = os.urandom(64 * 4)
    header[f"t{t}"] = {"dtype": "F32", "shape": [64], "data_offsets": [offset, offset + len(blob)]}
    blobs.append(blob)
    offset += len(blob)
raw = json.dumps(header).encode()
with open(path, "wb") as f:
    f.write(struct.pack("<Q", len(raw)) + raw + b"".join(blobs))
PY
}
ms() { python3 -c "import sys; print(f'{(float(sys.argv[2]) - float(sys.argv[1])) * 1e3:.1f}')" "$@"; }
now() { date +%s.%N; }
"$bin" --repo "$repo" init >/dev/null
made=0
echo "| commits | index MB | log -n 1 ms (best of 3) | next commit ms |"
echo "|---:|---:|---:|---:|"
for i in $(seq 1 "$commits"); do
  make_file
  "$bin" --repo "$repo" commit "$file" --bound lossless -m "$i" >/dev/null
  made=$((made + 1))
  case $i in
    1 | 10 | 50 | 100 | 200 | 400 | 800 | 1600)
      best=""
      for _ in 1 2 3; do
        t0=$(now); "$bin" --repo "$repo" log -n 1 >/dev/null; t1=$(now)
        t=$(ms "$t0" "$t1")
        best=$(python3 -c "import sys; print(min(float(x) for x in sys.argv[1:] if x))" "$t" $best)
      done
      make_file
      t0=$(now); "$bin" --repo "$repo" commit "$file" --bound lossless -m extra >/dev/null; t1=$(now)
      mb=$(du -sm "$repo/index" | cut -f1)
      echo "| $made | $mb | $best | $(ms "$t0" "$t1") |"
      made=$((made + 1))
      ;;
  esac
done

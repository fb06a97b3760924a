#!/usr/bin/env bash
# A lossless frame sequence committed again as it grows: frames-video tiled 4x4 to 1280x720 RGB,
# groups of 10; the first 30 frames, then all 60 on the same branch (its first 30 unchanged,
# taken from the parent uncoded), beside the 60 committed into a fresh repository (every group
# coded). Prints the commits' own seconds and stored bytes, best of RUNS (default 3).
#
#   benches/frames_grow.sh [SNAPSTORE_BIN] [BENCH_DIR]
#   (default target/release/snapstore and ../shared/bench; PYTHON: a python3 with numpy)
set -euo pipefail
bin=$(realpath "${1:-target/release/snapstore}")
bench=$(realpath "${2:-../shared/bench}")
python=${PYTHON:-python3}
runs=${RUNS:-3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$bin" --repo "$work/src" init >/dev/null
"$bin" --repo "$work/src" commit "$bench/frames-video" --bound lossless -q >/dev/null
"$bin" --repo "$work/src" checkout HEAD -o "$work/video.npy" -q >/dev/null
"$python" - "$work" <<'PY'
import sys
import numpy as np
work = sys.argv[1]
x = np.tile(np.load(f"{work}/video.npy"), (1, 4, 4, 1))
np.save(f"{work}/f60.npy", x)
np.save(f"{work}/f30.npy", x[:30])
PY
commit() { # repo file -> "seconds stored_bytes"
  "$bin" --repo "$1" commit "$2" --bound lossless --group 10 -q --json \
    | "$python" -c 'import json,sys; r=json.load(sys.stdin); print("{:.2f} | {:,}".format(r["seconds"], r["stored_bytes"]))'
}
best() { sort -n | head -1; }
for _ in $(seq "$runs"); do
  rm -rf "$work/grow" "$work/fresh"
  "$bin" --repo "$work/grow" init >/dev/null
  "$bin" --repo "$work/fresh" init >/dev/null
  commit "$work/grow" "$work/f30.npy" >>"$work/first"
  commit "$work/grow" "$work/f60.npy" >>"$work/grown"
  commit "$work/fresh" "$work/f60.npy" >>"$work/whole"
done
echo "| commit (lossless, groups of 10, 1280x720 RGB) | seconds (best of $runs) | stored bytes |"
echo "|---|---|---|"
echo "| frames 0..30 | $(best <"$work/first") |"
echo "| frames 0..60 after 0..30 (30 taken uncoded) | $(best <"$work/grown") |"
echo "| frames 0..60 into a fresh repository | $(best <"$work/whole") |"

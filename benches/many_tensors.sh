#!/usr/bin/env bash
# What each command costs on a repository of many small tensors and a long history: a trajectory
# of COMMITS snapshots of TENSORS F32 tensors of 64 elements (each snapshot the last one drifted
# by ~0.1% per element, committed under rel:0.01 as a training run would be), then the wall time
# and peak memory of the read commands, of one more commit and of a checkout. Prints a table.
#
#   benches/many_tensors.sh [SNAPSTORE_BIN] [TENSORS] [COMMITS] [WORKDIR]
#   (default target/release/snapstore, 10000 tensors, 100 commits, a temporary directory)
#
# With WORKDIR, the repository is kept there and reused by the next run that names it (only the
# timings run again), so two binaries can be timed on the same history:
#   benches/many_tensors.sh OLD 10000 100 /tmp/mt; benches/many_tensors.sh NEW 10000 100 /tmp/mt
# Each run commits snapshot COMMITS+1 on a fresh branch `timed` at main's tip (gc would remove
# the earlier runs' ones). Needs python3 (standard
# library only) and GNU time (/usr/bin/time).
set -euo pipefail
bin=$(realpath "${1:-target/release/snapstore}")
tensors=${2:-10000}
commits=${3:-100}
if [ -n "${4:-}" ]; then
  work=$4
  mkdir -p "$work"
else
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
fi
repo="$work/repo"
file="$work/ckpt.safetensors"

# Writes snapshot STEP of the trajectory to FILE (deterministic: the same STEP gives the same bytes).
make_file() {
  python3 - "$file" "$tensors" "$1" <<'PY'
import array, json, random, struct, sys
path, count, step = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(step)
base = random.Random(0)
values = array.array("f", (base.gauss(0.0, 0.05) for _ in range(count * 64)))
# Step k: every element scaled by a drift that grows with k (the same for every run of k).
drift = array.array("f", (1.0 + 0.001 * step * rng.uniform(-1.0, 1.0) for _ in range(64)))
for i in range(len(values)):
    values[i] *= drift[i & 63]
raw = values.tobytes()
header = {f"layer{t}.weight": {"dtype": "F32", "shape": [64], "data_offsets": [t * 256, t * 256 + 256]}
          for t in range(count)}
head = json.dumps(header).encode()
with open(path, "wb") as f:
    f.write(struct.pack("<Q", len(head)) + head + raw)
PY
}

if [ -d "$repo" ]; then
  "$bin" --repo "$repo" switch main >/dev/null 2>&1 || true
else
  "$bin" --repo "$repo" init >/dev/null
  for i in $(seq 1 "$commits"); do
    make_file "$i"
    "$bin" --repo "$repo" commit "$file" --bound rel:0.01 -m "$i" -q >/dev/null
  done
fi
made=$("$bin" --repo "$repo" log --json | python3 -c "import json,sys; print(len(json.load(sys.stdin)))")
make_file "$commits"
out="$work/out"
# "wall s | peak MiB" of one run of the command.
timed() {
  /usr/bin/time -f "%e %M" -o "$work/time" "$@" >/dev/null 2>"$work/err" || {
    echo "failed: $*" >&2
    cat "$work/err" >&2
    exit 1
  }
  read -r wall kb <"$work/time"
  printf '%s | %d' "$wall" $((kb / 1024))
}
echo "$(basename "$bin") on $tensors tensors x $made snapshots ($(du -sm "$repo/index" | cut -f1) MB index, $(du -sm "$repo/packs" | cut -f1) MB packs)"
echo
echo "| command | wall s | peak MiB |"
echo "|---|---:|---:|"
row() {
  local name=$1
  shift
  echo "| $name | $(timed "$@") |"
}
row "log -n 1" "$bin" --repo "$repo" log -n 1
row "log" "$bin" --repo "$repo" log
row "log --json" "$bin" --repo "$repo" log --json
row "show HEAD" "$bin" --repo "$repo" show HEAD
row "stats" "$bin" --repo "$repo" stats
row "status FILE" "$bin" --repo "$repo" status "$file"
row "diff HEAD~1 HEAD" "$bin" --repo "$repo" diff HEAD~1 HEAD
row "diff HEAD FILE" "$bin" --repo "$repo" diff HEAD "$file"
row "checkout HEAD" "$bin" --repo "$repo" checkout HEAD -o "$out.safetensors" -q
row "checkout HEAD, one tensor" "$bin" --repo "$repo" checkout HEAD --tensor layer7.weight -o "$out.1.safetensors" -q
row "gc --dry-run" "$bin" --repo "$repo" gc --dry-run
# A fresh branch at main's tip each run, so every binary commits the same next snapshot on the
# same parent.
"$bin" --repo "$repo" branch -d timed >/dev/null 2>&1 || true
"$bin" --repo "$repo" branch timed main >/dev/null
make_file $((commits + 1))
"$bin" --repo "$repo" switch timed >/dev/null
row "commit (one more, on branch timed)" "$bin" --repo "$repo" commit "$file" --bound rel:0.01 -q
"$bin" --repo "$repo" switch main >/dev/null

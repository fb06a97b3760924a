#!/usr/bin/env bash
# Peak memory of a checkout from a directory remote against a local one, for a tensor at the end
# of a delta chain: a 128 MiB F32 tensor (8192 x 4096, seeded normal) drifting by 1% over six
# snapshots, lossless, pushed to a directory remote; the last snapshot checked out locally and
# with `remote checkout` (which downloads the whole chain's chunks). Prints peak RSS (GNU time's
# %M) and seconds of each, and checks both outputs are identical.
#
#   benches/remote_checkout_rss.sh [SNAPSTORE_BIN]
#   (default target/release/snapstore; PYTHON: a python3 with numpy and safetensors;
#   /usr/bin/time must be GNU time)
set -euo pipefail
bin=$(realpath "${1:-target/release/snapstore}")
python=${PYTHON:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$bin" --repo "$work/repo" init >/dev/null
"$python" - "$work" <<'PY'
import sys
import numpy as np
from safetensors.numpy import save_file
work = sys.argv[1]
rng = np.random.default_rng(0)
w = rng.standard_normal((8192, 4096), dtype=np.float32)
for e in range(6):
    w += rng.standard_normal(w.shape, dtype=np.float32) * 0.01
    save_file({"w": w}, f"{work}/e{e}.safetensors")
PY
for e in 0 1 2 3 4 5; do
  "$bin" --repo "$work/repo" commit "$work/e$e.safetensors" -m "e$e" -q >/dev/null
  rm "$work/e$e.safetensors"
done
"$bin" --repo "$work/repo" push "$work/remote" main -q >/dev/null
measure() { # label, then the command
  local label=$1
  shift
  /usr/bin/time -f "%M %e" -o "$work/time" "$@" -q >/dev/null
  read -r kb secs <"$work/time"
  printf '| %s | %s | %s |\n' "$label" "$kb" "$secs"
}
echo "| checkout of the 6th snapshot (128 MiB) | peak RSS (KiB) | seconds |"
echo "|---|---|---|"
measure local "$bin" --repo "$work/repo" checkout main -o "$work/local.safetensors"
measure remote "$bin" --repo "$work/repo" remote checkout "$work/remote" main \
  -o "$work/remote.safetensors"
cmp "$work/local.safetensors" "$work/remote.safetensors"
echo "(outputs identical)"

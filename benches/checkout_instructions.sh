#!/usr/bin/env bash
# Instructions (valgrind callgrind, one thread) to check out every snapshot of a repository, one
# CLI process per snapshot: a count that does not depend on what else the machine is doing.
#
#   benches/checkout_instructions.sh BIN REPO [N]    # checks out HEAD~0 .. HEAD~(N-1), N = 21
#
# Build a repository to measure with, e.g. (cnn-digits at rel 0.1, default chains):
#   export SNAPSTORE_REPO=/tmp/r && target/release/snapstore init
#   for f in ../shared/bench/cnn-digits/epoch_*.safetensors; do
#       target/release/snapstore commit "$f" --bound rel:0.1 -m x; done
set -euo pipefail
bin=$1 repo=$2 n=${3:-21}
command -v valgrind >/dev/null || { echo "valgrind is not installed" >&2; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
total=0
for i in $(seq 0 $((n - 1))); do
    count=$(SNAPSTORE_REPO=$repo RAYON_NUM_THREADS=1 valgrind --tool=callgrind \
        --callgrind-out-file=/dev/null "$bin" checkout "HEAD~$i" -o "$out/co.safetensors" 2>&1 |
        sed -n 's/.*Collected : \([0-9]*\).*/\1/p')
    total=$((total + count))
done
echo "$bin $repo: $total instructions for $n checkouts"

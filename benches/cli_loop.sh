#!/usr/bin/env bash
# The CLI as a user runs it: one `snapstore commit` process per checkpoint of a trajectory, then
# one `snapstore checkout HEAD~k -o FILE` per snapshot. Prints one table row per corpus and bound:
# file MB / wall seconds of the whole loop (process start, index opens and fsyncs included).
#
#   benches/cli_loop.sh [SNAPSTORE_BIN] [BENCH_DIR]
#   (default target/release/snapstore and ../shared/bench; corpora digits-mlp, cnn-digits,
#   cnn-digits/bf16; bounds lossless and rel:1e-2)
set -euo pipefail
bin=$(realpath "${1:-target/release/snapstore}")
bench=$(realpath "${2:-../shared/bench}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
now() { date +%s.%N; }
echo "| corpus | bound | commit MB/s | checkout MB/s | ratio (tensor bytes) |"
echo "|---|---|---|---|---|"
for corpus in digits-mlp cnn-digits cnn-digits/bf16; do
  files=("$bench/$corpus"/epoch_*.safetensors)
  bytes=$(cat "${files[@]}" | wc -c)
  for bound in lossless rel:1e-2; do
    repo="$work/repo"
    rm -rf "$repo"
    "$bin" --repo "$repo" init >/dev/null
    t0=$(now)
    for f in "${files[@]}"; do
      "$bin" --repo "$repo" commit "$f" --bound "$bound" >/dev/null
    done
    t1=$(now)
    for k in $(seq 0 $((${#files[@]} - 1))); do
      "$bin" --repo "$repo" checkout "HEAD~$k" -o "$work/out.safetensors" >/dev/null
    done
    t2=$(now)
    ratio=$("$bin" --repo "$repo" stats --json | python3 -c 'import json,sys; print("%.2fx" % json.load(sys.stdin)["ratio"])')
    python3 -c "b=$bytes; print(f'| $corpus | $bound | {b/1e6/($t1-$t0):.1f} | {b/1e6/($t2-$t1):.1f} | $ratio |')"
  done
done

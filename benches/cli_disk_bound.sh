#!/usr/bin/env bash
# The CLI on a large checkpoint against what this machine's disk allows, measured in one run.
#
#   benches/cli_disk_bound.sh [SIZE] [DIR] [SNAPSTORE_BIN] [BENCH_DIR]
#   (defaults: 2G, the system temp dir, target/release/snapstore, ../shared/bench; needs a Python
#   with numpy and safetensors in $PYTHON, default python3)
#
# Two epochs of cnn-digits tiled to SIZE (benches/tiled_checkpoint.py: real weights, real
# epoch-to-epoch change). Then, each after `sync`:
#   dd write   `dd if=/dev/zero bs=1M conv=fsync` of SIZE: the durable write rate W (through
#              the page cache, the issue's yardstick), and with `oflag=direct`: Wd (around it,
#              as packs are written), the stricter bound
#   dd read    `dd iflag=direct` of epoch 0: the disk's read rate R (no page cache)
#   commit     `snapstore commit` of epoch 0 (keyframe), then epoch 1 (delta), lossless
#   checkout   `snapstore checkout HEAD -o FILE` (written, fsynced, renamed), with the packs
#              first dropped from the page cache (posix_fadvise DONTNEED after sync), as on a
#              machine that did not just write them; then `cat` of the file it wrote (what a
#              deploy does next), timed apart
# The commit's bound is min(W x ratio, R) (and min(Wd x ratio, R)): writing the stored bytes durably and reading the input
# once from disk (the input is in the page cache here, so the bound is generous to the disk);
# the checkout's is W. Prints MB/s (1 MB = 1e6 bytes) and the ratios to the bounds.
set -euo pipefail
size=${1:-2G}
dir=$(mktemp -d "${2:-${TMPDIR:-/tmp}}/cli-disk.XXXXXX")
bin=$(realpath "${3:-target/release/snapstore}")
bench=$(realpath "${4:-../shared/bench}")
python=${PYTHON:-python3}
trap 'rm -rf "$dir"' EXIT
here=$(dirname "$0")
now() { date +%s.%N; }
secs() { python3 -c "print($2 - $1)"; }

"$python" "$here/tiled_checkpoint.py" "$bench/cnn-digits" "$dir/in" --size "$size" --epochs 0,1 >/dev/null
e0="$dir/in/epoch_000.safetensors"
e1="$dir/in/epoch_001.safetensors"
bytes=$(stat -c %s "$e0")
mib=$((bytes >> 20))
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"

sync; t0=$(now)
dd if=/dev/zero of="$dir/dd" bs=1M count="$mib" conv=fsync status=none
t1=$(now); rm -f "$dir/dd"
write_s=$(secs "$t0" "$t1")
sync; t0=$(now)
dd if=/dev/zero of="$dir/dd" bs=1M count="$mib" oflag=direct conv=fsync status=none
t1=$(now); rm -f "$dir/dd"
direct_s=$(secs "$t0" "$t1")
sync; t0=$(now)
dd if="$e0" of=/dev/null bs=1M iflag=direct status=none
t1=$(now)
read_s=$(secs "$t0" "$t1")
cat "$e0" "$e1" >/dev/null # both inputs in the page cache, as after a trainer wrote them

repo="$dir/repo"
"$bin" --repo "$repo" init >/dev/null
sync; t0=$(now)
"$bin" --repo "$repo" commit "$e0" >/dev/null
t1=$(now)
key_s=$(secs "$t0" "$t1")
stored0=$("$bin" --repo "$repo" stats --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["stored_bytes"])')
sync; t0=$(now)
"$bin" --repo "$repo" commit "$e1" >/dev/null
t1=$(now)
delta_s=$(secs "$t0" "$t1")
stored1=$("$bin" --repo "$repo" stats --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["stored_bytes"])')
sync
python3 -c 'import os, sys
for p in sys.argv[1:]:
    fd = os.open(p, os.O_RDONLY); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED); os.close(fd)' "$repo"/packs/*.pack
t0=$(now)
"$bin" --repo "$repo" checkout HEAD -o "$dir/out.safetensors" >/dev/null
t1=$(now)
out_s=$(secs "$t0" "$t1")
t0=$(now)
cat "$dir/out.safetensors" >/dev/null # what a deploy does next: read the file
t1=$(now)
back_s=$(secs "$t0" "$t1")
cmp "$e1" "$dir/out.safetensors"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"

python3 - "$bytes" "$write_s" "$direct_s" "$read_s" "$key_s" "$delta_s" "$out_s" "$back_s" "$stored0" "$stored1" <<'EOF'
import sys
b, w, wd, r, key, delta, out, back = (float(x) for x in sys.argv[1:9])
s0, s1 = int(sys.argv[9]), int(sys.argv[10]) - int(sys.argv[9])
mb = b / 1e6
W, Wd, R = mb / w, mb / wd, mb / r
print(f"input {mb:.1f} MB per epoch; dd write, conv=fsync: {W:.1f} MB/s (W), with oflag=direct: "
      f"{Wd:.1f} MB/s (Wd); dd read, iflag=direct: {R:.1f} MB/s (R)")
print("| step | ratio | MB/s | bound (W) MB/s | share | bound (Wd) MB/s | share |")
print("|---|---:|---:|---:|---:|---:|---:|")
for name, secs, stored in (("commit, keyframe", key, s0), ("commit, delta", delta, s1)):
    ratio = b / stored
    bw, bd = min(W * ratio, R), min(Wd * ratio, R)
    v = mb / secs
    print(f"| {name} | {ratio:.3f}x | {v:.1f} | {bw:.1f} | {v / bw:.2f} | {bd:.1f} | {v / bd:.2f} |")
v = mb / out
print(f"| checkout | | {v:.1f} | {W:.1f} | {v / W:.2f} | {Wd:.1f} | {v / Wd:.2f} |")
print(f"read back of the checked-out file (cat): {mb / back:.1f} MB/s; checkout and read back: "
      f"{mb / (out + back):.1f} MB/s")
EOF

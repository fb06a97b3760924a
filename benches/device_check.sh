#!/usr/bin/env bash
# The GPU check of issue #17 in one short window: built here, run on the device machine.
#
#   benches/device_check.sh prepare      # here: build, strip the binaries into .devbin/
#   benches/device_check.sh run [OUT]    # on the device (carry .devbin): every step's output
#                                        # into OUT (default $OUT, else ./device-out), in at most
#                                        # DEVICE_CHECK_SECONDS (default 540) in all
#
# `run` sizes gpu_bench for an H200 (`64 1024 1024 4`: 64 Mi-element kernels, 1 GiB host calls,
# a 4 x 1 GiB trajectory); DEVICE_CHECK_BENCH="4 64 64 2" gives a small run for the CPU side.
#
# The device machines have the driver and NVRTC but no Rust toolchain and no network, so
# `prepare` builds everything the check runs (the CLI, the test binaries, gpu_bench). `run`
# takes each step in turn under its own time limit, writes its output to OUT/NN-step.txt and
# goes on after a failure, then writes OUT/SUMMARY.txt: each step's exit status and seconds,
# and whether any parity test skipped (a skipped parity test is not a passed one). Without a
# GPU the steps still run (the parity tests log why they skip), which is how this script is
# checked on the CPU side.
set -uo pipefail
cd "$(dirname "$0")/.."
bin=.devbin

prepare() {
    set -e
    cargo build --release --bins --examples
    local listing
    listing=$(cargo test --release --no-run 2>&1)
    exe() { sed -n "s/.*Executable $1 (\(.*\))/\1/p" <<<"$listing"; }
    rm -rf "$bin" && mkdir -p "$bin"
    cp target/release/snapstore target/release/examples/gpu_bench "$bin"/
    cp "$(exe 'tests\/tests.rs')" "$bin"/tests
    cp "$(exe 'unittests src\/lib.rs')" "$bin"/libtests
    strip "$bin"/*
    du -sh "$bin"
}

# One step: `step NAME SECONDS COMMAND...`, its output and status kept. A step gets at most
# what is left of the whole run's time (the device tool stops a command at 600 s, and what it
# cut off would come back with no summary); one that would get under 10 s is not started.
step() {
    local name=$1 limit=$2
    shift 2
    n=$((n + 1))
    local left=$((deadline - SECONDS))
    if [ "$left" -lt 10 ]; then
        printf '%-12s not run: the run'"'"'s %ss were spent\n' "$name" "$total" >>"$out/SUMMARY.txt"
        return
    fi
    [ "$limit" -le "$left" ] || limit=$left
    local file
    file=$(printf '%s/%02d-%s.txt' "$out" "$n" "$name")
    local start=$SECONDS
    echo "== $name: $*" | tee "$file"
    timeout "$limit" "$@" >>"$file" 2>&1
    local rc=$?
    local took=$((SECONDS - start))
    tail -n 3 "$file"
    printf '%-12s rc=%-3s %4ss  %s\n' "$name" "$rc" "$took" "$*" >>"$out/SUMMARY.txt"
}

run() {
    out=${1:-${OUT:-device-out}}
    mkdir -p "$out"
    : >"$out/SUMMARY.txt"
    n=0
    total=${DEVICE_CHECK_SECONDS:-540}
    deadline=$((SECONDS + total))
    [ -x "$bin/snapstore" ] || { echo "no $bin/snapstore: run '$0 prepare' first" >&2; exit 2; }
    # NVRTC is not on the loader's path there.
    local nvrtc
    nvrtc=$(ls -d /usr/local/cuda*/targets/x86_64-linux/lib 2>/dev/null | head -n 1)
    export LD_LIBRARY_PATH="${nvrtc}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export SNAPSTORE_TEST_BIN="$PWD/$bin/snapstore"
    # A fresh kernel cache, so the second doctor shows the cubin read back.
    export SNAPSTORE_KERNEL_CACHE="$out/kernel-cache"
    local threads
    threads=$(nproc)

    # The most telling first: the device, the kernels compiled and cached, parity, the figures.
    step device 20 nvidia-smi
    step doctor 60 "$bin/snapstore" doctor
    step doctor-cached 30 "$bin/snapstore" doctor
    step parity 120 "$bin/tests" gpu:: --nocapture
    # shellcheck disable=SC2086 # the sizes are separate arguments
    step gpu-bench 240 "$bin/gpu_bench" ${DEVICE_CHECK_BENCH:-64 1024 1024 4}
    step lib-tests 120 "$bin/libtests" --test-threads "$threads"
    step integration 180 "$bin/tests" --test-threads "$threads"

    local skipped
    skipped=$(grep -h '^skipping' "$out"/*-parity.txt 2>/dev/null | sort -u)
    {
        echo
        if [ -n "$skipped" ]; then
            echo "parity: SKIPPED, not checked:"
            echo "$skipped"
        else
            echo "parity: every test ran on the device"
        fi
    } >>"$out/SUMMARY.txt"
    cat "$out/SUMMARY.txt"
}

case ${1:-} in
    prepare) prepare ;;
    run) shift; run "$@" ;;
    *) echo "usage: $0 prepare | run [OUT]" >&2; exit 2 ;;
esac

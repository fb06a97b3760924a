#!/bin/sh
# A stand-in evaluator for the bound-search tests: `sh tests/search_eval.sh MODE FILE`.
#   ok      prints "accuracy X", X derived from the file (0.9 + its size mod 1000 / 1e6)
#   fail    prints to stderr and exits 3
#   silent  prints nothing and exits 0
#   nan     prints "accuracy nan"
#   sleep   sleeps 30 s, then prints 0.9 (for the timeout)
#   keep    copies the candidate (a file or a directory, its links followed) to
#           $SNAPSTORE_TEST_KEEP/call-N, N counting from 0, and prints 0.9
mode=$1
file=$2
case "$mode" in
  ok)
    [ -f "$file" ] || { echo "no candidate file $file" >&2; exit 2; }
    n=$(wc -c < "$file")
    awk -v n="$n" 'BEGIN { printf "evaluated %d bytes\naccuracy %.6f\n", n, 0.9 + (n % 1000) / 1e6 }'
    ;;
  fail) echo "evaluator exploded" >&2; exit 3 ;;
  silent) exit 0 ;;
  nan) echo "accuracy nan" ;;
  sleep) sleep 30; echo 0.9 ;;
  keep)
    n=$(ls "$SNAPSTORE_TEST_KEEP" | wc -l)
    cp -RL "$file" "$SNAPSTORE_TEST_KEEP/call-$n" || exit 2
    echo 0.9
    ;;
  *) echo "unknown mode $mode" >&2; exit 64 ;;
esac

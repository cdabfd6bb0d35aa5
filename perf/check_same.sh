#!/bin/sh
# check_same.sh REFERENCE PROGRAM [ARGS...]
#
# Runs REFERENCE ARGS and PROGRAM ARGS (two builds of one benchmark source, e.g.
# binarytrees-malloc and binarytrees-cgc) and fails unless both exit 0 and print the same
# stdout.  The GC benchmarks print only results that do not depend on the heap (node
# counts and checksums of what they built), so a collector that frees or overwrites a
# reachable object shows up as a different line, a crash or a non-zero exit.
# On failure it shows both outputs and the program's stderr (its gcstats line included).
set -u
if [ $# -lt 2 ]; then
    echo "usage: check_same.sh REFERENCE PROGRAM [ARGS...]" >&2
    exit 2
fi
ref=$1
prog=$2
shift 2

tmp=$(mktemp -d) || exit 2
trap 'rm -rf "$tmp"' EXIT

"$ref" "$@" >"$tmp/ref" 2>"$tmp/ref.err" ||
    { echo "FAIL: reference exited $?: $ref $*" >&2; cat "$tmp/ref.err" >&2; exit 1; }
"$prog" "$@" >"$tmp/out" 2>"$tmp/err"
rc=$?
if [ $rc -ne 0 ]; then
    echo "FAIL: exit status $rc: $prog $*" >&2
    echo "--- stdout:" >&2; cat "$tmp/out" >&2
    echo "--- stderr:" >&2; tail -n 20 "$tmp/err" >&2
    exit 1
fi
if ! cmp -s "$tmp/ref" "$tmp/out"; then
    echo "FAIL: output differs from $ref: $prog $*" >&2
    diff "$tmp/ref" "$tmp/out" >&2
    echo "--- stderr:" >&2; tail -n 20 "$tmp/err" >&2
    exit 1
fi
echo "ok: $(tail -n 1 "$tmp/out")"
echo "    $(tail -n 1 "$tmp/err")"

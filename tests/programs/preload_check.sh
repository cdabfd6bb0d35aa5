#!/bin/sh
# preload_check.sh [--preload-only] NAME CMD [ARGS...]
#
# Runs CMD once normally and once with LD_PRELOAD=$PRELOAD_CHECK_LIB (libcgc.so) and
# CGC_STATS=1. Fails unless both exit 0, stdout is identical, and the preloaded
# stderr has a "cgc: stats:" line with "mallocs N", N > 0 (proof that cgc, not
# libc, served the allocations) and none with "errors N", N > 0. --preload-only
# skips the reference run.
set -u
mode=compare
if [ "${1:-}" = --preload-only ]; then mode=preload; shift; fi
[ $# -ge 2 ] || { echo "usage: $0 [--preload-only] NAME CMD [ARGS...]" >&2; exit 2; }
name=$1; shift
lib=${PRELOAD_CHECK_LIB:-}  # not CGC_*: cgc warns about unknown CGC_ variables
limit=${PRELOAD_CHECK_TIMEOUT:-120}

fail() { echo "FAIL [$name]: $*" >&2; exit 1; }

[ -n "$lib" ] || fail "PRELOAD_CHECK_LIB is not set (path to libcgc.so)"
[ -f "$lib" ] || fail "PRELOAD_CHECK_LIB=$lib does not exist"
# Missing tools are installed by the Makefile; their absence is an error, not a skip.
command -v "$1" >/dev/null 2>&1 || fail "required program '$1' is missing (run the Makefile's install step)"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/cgc-preload.XXXXXX") || fail "mktemp"
trap 'rm -rf "$tmp"' EXIT

show() { # label file: dump a captured stream (tail only; these can be long)
    echo "---- $1 (last 60 lines) ----" >&2; tail -n 60 "$2" >&2
}

# timeout(1) turns a hang into status 124 instead of a silent meson timeout.
if [ $mode = compare ]; then
    env -u LD_PRELOAD -u CGC_STATS timeout -k 5 "$limit" "$@" >"$tmp/ref.out" 2>"$tmp/ref.err"
    ref_rc=$?
    if [ $ref_rc -ne 0 ]; then
        show "reference stderr" "$tmp/ref.err"
        fail "reference run (without cgc) exited with status $ref_rc: the test itself is broken"
    fi
fi

LD_PRELOAD=$lib CGC_STATS=1 timeout -k 5 "$limit" "$@" >"$tmp/cgc.out" 2>"$tmp/cgc.err"
rc=$?
if [ $rc -ne 0 ]; then
    show "preloaded stdout" "$tmp/cgc.out"; show "preloaded stderr" "$tmp/cgc.err"
    [ $rc -eq 124 ] && fail "preloaded run timed out after ${limit}s (hang?)"
    [ $rc -gt 128 ] && fail "preloaded run killed by signal $((rc - 128))"
    fail "preloaded run exited with status $rc (reference: 0)"
fi

if [ $mode = compare ] && ! cmp -s "$tmp/ref.out" "$tmp/cgc.out"; then
    echo "---- diff reference preloaded (first 80 lines) ----" >&2
    diff -u "$tmp/ref.out" "$tmp/cgc.out" | head -n 80 >&2
    show "preloaded stderr" "$tmp/cgc.err"
    fail "stdout differs between the reference and the preloaded run"
fi

# Every preloaded process prints its own stats; one with mallocs > 0 is enough.
n=$(grep '^cgc: stats:' "$tmp/cgc.err" | grep -oE 'mallocs[ =:]+[0-9]+' | grep -oE '[0-9]+$' | sort -n | tail -n 1)
if [ -z "$n" ] || [ "$n" -eq 0 ]; then
    show "preloaded stderr" "$tmp/cgc.err"
    fail "no 'cgc: stats: ... mallocs N' line with N > 0: was libcgc.so really interposed?"
fi
# cgc counts double/invalid frees it detected; real programs must have none.
if grep '^cgc: stats:' "$tmp/cgc.err" | grep -qE 'errors[ =:]+[1-9]'; then
    show "preloaded stderr" "$tmp/cgc.err"
    fail "cgc reported errors (double/invalid free) in a preloaded process"
fi
[ $mode = compare ] && what="$(wc -l <"$tmp/cgc.out") stdout lines identical" || what="exit status 0"
echo "ok [$name]: $what, max mallocs $n"

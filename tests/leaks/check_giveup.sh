#!/bin/sh
# check_giveup.sh LIB PROGRAM — the exit leak check gives up cleanly (tests/leaks/leak_giveup.c).
set -u
out=$(CGC_LEAKS=report CGC_STATS=1 LD_PRELOAD="$1" timeout 30 "$2" 2>&1)
rc=$?
fail() { echo "FAIL: $*"; echo "$out"; exit 1; }
[ $rc -eq 0 ] || fail "exit status $rc"
echo "$out" | grep -q '^done$' || fail "program output missing"
echo "$out" | grep -q 'no leak check (exit): a thread blocks the stop signal; nothing reported' || fail "no give-up message"
echo "$out" | grep -q 'cgc: leak 1' && fail "a leak was reported by a check that could not stop every thread"
echo "$out" | grep -q 'leaks: 0 checks (1 given up)' || fail "statistics do not count the abandoned check"
echo "ok: the check gave up cleanly"

#!/bin/sh
# check_stress.sh LIB STRESS MODE — the allocator stress driver (8 threads handing blocks to
# each other, thread churn, pattern-checked blocks) under LD_PRELOAD=LIB with CGC_LEAKS=MODE
# and a leak check after every 16 MiB of allocation. It loses nothing, so: no block may be
# reported lost, and under collect none may be freed (the driver's pattern checks would
# catch a block freed under it); the checks must have run, none given up.
set -u
out=$(CGC_LEAKS=$3 CGC_LEAKS_INTERVAL=cycle CGC_STATS=1 LD_PRELOAD="$1" timeout 120 "$2" -t 8 -r 4 -o 50000 -c 2>&1)
rc=$?
mode=$3
fail() { echo "FAIL ($mode): $*"; echo "$out" | tail -40; exit 1; }
[ $rc -eq 0 ] || fail "exit status $rc"
echo "$out" | grep -q '^alloc_stress: ok' || fail "the driver did not finish ok"
echo "$out" | grep -q '^cgc: leak 1 ' && fail "a block was reported lost"
line=$(echo "$out" | grep 'cgc: stats: leaks:') || fail "no leak statistics"
checks=$(echo "$line" | sed -n 's/.*leaks: \([0-9]*\) checks (\([0-9]*\) given up).*/\1/p')
gaveup=$(echo "$line" | sed -n 's/.*leaks: \([0-9]*\) checks (\([0-9]*\) given up).*/\2/p')
freed=$(echo "$line" | sed -n 's/.*MiB lost, \([0-9]*\) blocks.*freed since start.*/\1/p')
[ "${checks:-0}" -ge 5 ] || fail "only ${checks:-0} checks ran"
[ "${gaveup:-1}" -eq 0 ] || fail "$gaveup checks gave up"
[ "${freed:-1}" -eq 0 ] || fail "$freed blocks freed"
echo "ok ($3): $checks checks during the stress, none gave up, nothing reported or freed"

#!/bin/sh
# run_fuzz.sh TARGET MODE CORPUS REGRESS [RUNS [JOBS [SECONDS]]]
#   MODE regress: run every input of CORPUS and REGRESS once (the committed seed corpus and
#                 the crashers found so far: each must pass now). Then RUNS (default 0) new
#                 executions, mutating a scratch copy of the corpus (never the committed one).
#   MODE long:    RUNS executions (mutating a scratch copy of the corpus).
#   JOBS (default 1): that many fuzzer processes share the RUNS and the scratch corpus (each
#                 picks up what the others add): a 2-core machine does twice the executions.
#   SECONDS (default 0: none): each process stops after this long even if its share of RUNS
#                 is not done, so a slow machine ends with a count (printed, and summed by
#                 make stress) instead of being killed by the test's timeout with none.
# Prints "fuzz: TARGET: N executions, C crashes" (make stress's summary reads it) and exits
# non-zero on a crash; the crashing input is left in $FUZZ_ARTIFACTS (default: the scratch
# directory, whose path is printed) — commit it to REGRESS.
set -u
target=$1 mode=$2 corpus=$3 regress=$4 runs=${5:-0} jobs=${6:-1} secs=${7:-0}
name=$(basename "$target")
scratch=$(mktemp -d "${TMPDIR:-/tmp}/cgc-fuzz-$name.XXXXXX")
art=${FUZZ_ARTIFACTS:-$scratch/}
execs=0
if [ "$mode" = regress ]; then
  # One process runs every file given (libFuzzer's "Running N inputs 1 time(s) each").
  n=$(ls "$corpus" "$regress" | grep -vc ':$\|^$')
  if ! "$target" "$corpus"/* "$regress"/* >"$scratch/regress.log" 2>&1; then
    grep -E "Running:|FAIL|ERROR|SUMMARY" "$scratch/regress.log" | tail -n 8
    echo "fuzz: $name: a corpus or regression input FAILS (log $scratch/regress.log)"
    echo "fuzz: $name: $n executions, 1 crashes"
    exit 1
  fi
  echo "fuzz: $name: $n corpus and regression inputs pass"
  execs=$n
  [ "$runs" -gt 0 ] || { echo "fuzz: $name: $execs executions, 0 crashes"; rm -rf "$scratch"; exit 0; }
fi
mkdir -p "$scratch/corpus"
cp "$corpus"/* "$scratch/corpus/" 2>/dev/null
t0=$(date +%s)
# Separate processes, not libFuzzer's -jobs: each log is ours to read, and each process's
# own seed is taken from the clock and its pid.
pids=""
j=1
while [ $j -le "$jobs" ]; do
  share=$((runs / jobs + (j <= runs % jobs ? 1 : 0)))
  "$target" -runs="$share" -max_total_time="$secs" -max_len=256 -entropic=0 \
    -print_final_stats=1 -artifact_prefix="$art" "$scratch/corpus" >"$scratch/run.$j.log" 2>&1 &
  pids="$pids $!"
  j=$((j + 1))
done
crashes=0 j=1
for pid in $pids; do
  wait "$pid" || { crashes=$((crashes + 1)); bad=$j; }
  done_runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$scratch/run.$j.log" | tail -n 1)
  execs=$((execs + ${done_runs:-0}))
  j=$((j + 1))
done
secs_taken=$(($(date +%s) - t0))
for j in $(seq 1 "$jobs"); do tail -n 3 "$scratch/run.$j.log"; done
if [ $crashes -ne 0 ]; then
  grep -E "FAIL|ERROR|SUMMARY" "$scratch/run.$bad.log" | head -n 5
  echo "fuzz: $name: $execs executions, $crashes crashes (artifacts in $art, logs $scratch/run.*.log)"
  exit 1
fi
[ "$execs" -ge "$runs" ] || echo "fuzz: $name: stopped by the time limit (${secs} s) before $runs executions"
echo "fuzz: $name: $jobs processes, $secs_taken s, $((execs / (secs_taken > 0 ? secs_taken : 1))) executions/s"
echo "fuzz: $name: $execs executions, 0 crashes"
rm -rf "$scratch"

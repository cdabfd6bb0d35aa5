#!/bin/sh
# run_fuzz.sh TARGET MODE CORPUS REGRESS [RUNS]
#   MODE regress: run every input of CORPUS and REGRESS once (the committed seed corpus and
#                 the crashers found so far: each must pass now). Then RUNS (default 0) new
#                 executions, mutating a scratch copy of the corpus (never the committed one).
#   MODE long:    RUNS executions (mutating a scratch copy of the corpus).
# Prints "fuzz: TARGET: N executions, C crashes" (make stress's summary reads it) and exits
# non-zero on a crash; the crashing input is left in $FUZZ_ARTIFACTS (default: the scratch
# directory, whose path is printed) — commit it to REGRESS.
set -u
target=$1 mode=$2 corpus=$3 regress=$4 runs=${5:-0}
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
"$target" -runs="$runs" -max_len=256 -entropic=0 -print_final_stats=1 -artifact_prefix="$art" \
  "$scratch/corpus" >"$scratch/run.log" 2>&1
rc=$?
tail -n 12 "$scratch/run.log"
done_runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$scratch/run.log" | tail -n 1)
execs=$((execs + ${done_runs:-0}))
if [ $rc -ne 0 ]; then
  grep -E "FAIL|ERROR|SUMMARY" "$scratch/run.log" | head -n 5
  echo "fuzz: $name: $execs executions, 1 crashes (artifacts in $art, log $scratch/run.log)"
  exit 1
fi
echo "fuzz: $name: $execs executions, 0 crashes"
rm -rf "$scratch"

#!/usr/bin/env bash
# `make run`: what cgc does today, shown on real programs.
#  1. An unchanged program (Python 3) runs with cgc as its malloc, via LD_PRELOAD; CGC_STATS=1
#     prints cgc's statistics at exit, which proves every allocation went through cgc.
#  2. The same for sqlite3 on a generated workload.
#  3. the collected heap: a GC benchmark with the per-cycle trace line, and the embedding example;
#  4. perf/compare: cgc beside glibc, mimalloc, jemalloc and tcmalloc in one run;
#  5. reading traces: a GC-heavy program run through cgc-run with a trace file, summarised by
#     cgc-trace and drawn as an SVG, both left in out/.
set -euo pipefail
tmp_trace=$(mktemp)
trap 'rm -f "$tmp_trace"' EXIT
build=${1:-build}
lib=$(cd "$build" && pwd)/libcgc.so
[ -f "$lib" ] || { echo "showcase: $lib not built (run: make build)" >&2; exit 1; }
py=/usr/bin/python3
[ -x "$py" ] || py=python3

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "Python 3 with cgc as its malloc:  CGC_STATS=1 LD_PRELOAD=$lib $py ..."
CGC_STATS=1 LD_PRELOAD="$lib" "$py" - <<'PY'
import json, random
random.seed(1)
d = {f"k{i}": [random.random() for _ in range(20)] for i in range(50000)}
s = json.dumps(d)
back = json.loads(s)
print(f"python: {len(back)} keys, {len(s)/1e6:.1f} MB of JSON round-tripped")
PY

say "sqlite3 with cgc:  CGC_STATS=1 LD_PRELOAD=$lib sqlite3 :memory:"
{
  echo "create table t(id integer primary key, name text, v real);"
  echo "begin;"
  for i in $(seq 1 20000); do echo "insert into t(name, v) values ('name$i', $i.5);"; done
  echo "commit;"
  echo "create index tv on t(v);"
  echo "select 'sqlite: ' || count(*) || ' rows, sum ' || sum(v) from t;"
} | CGC_STATS=1 LD_PRELOAD="$lib" sqlite3 :memory:

if [ -x "$build/perf/binarytrees-cgc" ]; then
  say "The collected heap: binary-trees (depth 16, 2 threads) on cgc_alloc, CGC_TRACE=1 (first lines)"
  # The whole stream goes to a file first: `head` closing the pipe early would kill the
  # program with SIGPIPE (and pipefail would stop the showcase).
  CGC_TRACE=1 "$build/perf/binarytrees-cgc" 16 2 2>"$tmp_trace" >/dev/null
  head -6 "$tmp_trace"
  echo "(each line: cycle, time, GC CPU share, stop 1 + concurrent mark + stop 2, cpu split, heap at start->at mark end->live, goal, threads; see README 'The trace line')"
fi
if [ -x "$build/examples/embed" ]; then
  say "An embedding example (examples/embed.c): roots, threads, finalizers, weak handles"
  "$build/examples/embed" > "$tmp_trace"
  head -12 "$tmp_trace"
fi

say "perf/compare --rounds 3 --scale 0.5: cgc beside the allocators people already preload (one run, ratios)"
perf/compare --rounds 3 --scale 0.5 --build "$build"
echo
echo "Full comparison (5 interleaved rounds): make bench. Results: perf/README.md."

if [ -x "$build/examples/trace_demo" ] && [ -x "$build/tools/cgc-trace" ]; then
  mkdir -p out
  say "Reading traces: cgc-run --trace out/trace.json -- trace_demo (4 threads building trees on the collected heap for 1.5 s)"
  CGC_TRACE=1 "$build/tools/cgc-run" --trace out/trace.json -- \
    "$build/examples/trace_demo" --threads 4 --ms 1500 >/dev/null 2>out/trace.lines
  echo "CGC_TRACE=1 lines (first 4 of $(grep -c '^cgc ' out/trace.lines); all in out/trace.lines):"
  awk '/^cgc / { print; if (++n == 4) exit }' out/trace.lines
  echo
  echo "cgc-trace out/trace.json --svg out/trace.svg:"
  "$build/tools/cgc-trace" out/trace.json --svg out/trace.svg
  if "$build/tools/cgc-trace" out/trace.lines >out/trace.lines.summary 2>/dev/null; then
    echo
    echo "cgc-trace reads the saved lines too (cgc-trace out/trace.lines; stops only, no heap samples):"
    sed -n '2,6p' out/trace.lines.summary
  fi
  echo
  echo "Open out/trace.svg in a browser (heap over time with every stop, pause histogram, MMU curve),"
  echo "and out/trace.json in https://ui.perfetto.dev (Open trace file) or chrome://tracing."
  echo "What the numbers mean: README, 'Reading traces'."
fi

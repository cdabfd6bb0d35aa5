#!/usr/bin/env python3
"""stress_summary.py BUILD — the table `make stress` ends with.

Reads BUILD/meson-logs/testlog.json (one JSON object per test of the last `meson test`
run) and prints one row per test: result, time, and the figure its output reports (the
drivers' one-line summaries: operations and corruptions, forks and hangs, fuzz executions
and crashes, collector cycles). Then the totals that README's "Reliability" section quotes.
Exit status: non-zero if any test failed.
"""
import json
import re
import sys

# The lines each driver prints on success, and the number(s) to quote from them.
FIGURES = [
    (re.compile(r"alloc_stress: ok: (\d+) operations, (\d+) corruptions"), "ops"),
    (re.compile(r"fuzz: \S+: (\d+) executions, (\d+) crashes"), "fuzz"),
    (re.compile(r"hostile_fork: threads: (\d+) forks .*, (\d+) hangs, (\d+) failures"), "forks"),
    (re.compile(r"hostile_fork: signal: (\d+) forks from a signal handler, (\d+) hangs"), "sigforks"),
    (re.compile(r"fork_stress: (\d+) forks"), "forks_preload"),
    (re.compile(r"gc_stress: OK \([^)]*\): (\d+) cycles"), "cycles"),
]


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else "build"
    rows, totals, failed = [], {}, 0
    with open(f"{build}/meson-logs/testlog.json") as f:
        for line in f:
            t = json.loads(line)
            out = (t.get("stdout") or "") + (t.get("stderr") or "")
            figure = ""
            for rx, key in FIGURES:
                m = None
                for m in rx.finditer(out):
                    pass
                if not m:
                    continue
                nums = [int(g) for g in m.groups() if g is not None]
                if key == "ops":
                    totals["stress operations"] = totals.get("stress operations", 0) + nums[0]
                    totals["corruptions"] = totals.get("corruptions", 0) + nums[1]
                    figure = f"{nums[0]:,} ops, {nums[1]} corruptions"
                elif key == "fuzz":
                    totals["fuzz executions"] = totals.get("fuzz executions", 0) + nums[0]
                    totals["fuzz crashes"] = totals.get("fuzz crashes", 0) + nums[1]
                    figure = f"{nums[0]:,} executions, {nums[1]} crashes"
                elif key in ("forks", "sigforks"):
                    totals["forks"] = totals.get("forks", 0) + nums[0]
                    totals["fork hangs"] = totals.get("fork hangs", 0) + nums[1]
                    figure = f"{nums[0]:,} forks, {nums[1]} hangs"
                elif key == "forks_preload":
                    figure = f"{nums[0]} forks (preloaded)"
                elif key == "cycles" and not figure:
                    figure = f"{nums[0]:,} collector cycles"
                break
            ok = t["result"] in ("OK", "EXPECTEDFAIL")
            failed += not ok
            rows.append((t["name"], t["result"], t.get("duration", 0.0), figure))
    w = max(len(r[0]) for r in rows) if rows else 10
    print()
    print(f"{'test':<{w}}  {'result':<7} {'time':>8}  figure")
    print(f"{'-' * w}  {'-' * 7} {'-' * 8}  {'-' * 40}")
    for name, res, dur, fig in rows:
        print(f"{name:<{w}}  {res:<7} {dur:>7.1f}s  {fig}")
    print()
    print(f"{len(rows)} tests, {len(rows) - failed} passed, {failed} failed")
    for k, v in totals.items():
        print(f"  {k}: {v:,}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

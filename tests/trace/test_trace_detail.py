#!/usr/bin/env python3
"""CGC_TRACE=2's detail line on a real run (examples/trace_demo, 4 registered threads),
concurrent and with CGC_STOPTHEWORLD=1: one detail line per trace line, each in the shape
perf/pause-compare and perf/bdw-compare parse, and its CPU figures sane —
  - `collector on CPU X, switched out I+V`: X >= 0 and no more than the stop it covers
    (plus a little: it is read just outside the stop), I and V >= 0;
  - `thread holds (max M ms, H held, C of it on CPU)`: 0 <= C <= H (plus the same margin);
  - over the run, some stop had CPU time (the clock is read at all).

usage: test_trace_detail.py TRACE_DEMO
"""
import os
import re
import subprocess
import sys

demo = sys.argv[1]
TRACE = re.compile(r"^cgc (\d+) @[\d.]+s \d+%: ")
DETAIL = re.compile(
    r"^cgc (\d+) detail: (?:no stop1: barrier handshake [\d.]+ ms \+ stack scans [\d.]+"
    r"|stop1 ([\d.]+) ms to stop \+ ([\d.]+) stopped), "
    r"stop2 ([\d.]+) to stop \+ ([\d.]+) stopped \(rescan [\d.]+, mark [\d.]+, "
    r"finalizers [\d.]+, sweep setup [\d.]+\), "
    r"collector on CPU ([\d.]+), switched out (\d+)\+(\d+), "
    r"(\d+) thread holds \(max ([\d.]+) ms, ([\d.]+) held, ([\d.]+) of it on CPU\), ")
SLACK = 0.5  # ms: the CPU clock is read just before the request and just after the restart
failures = []


def check(what, ok):
    if not ok:
        failures.append(what)


for mode in ("concurrent", "stop-the-world"):
    env = dict(os.environ, CGC_TRACE="2")
    env.pop("CGC_STOPTHEWORLD", None)
    if mode == "stop-the-world":
        env["CGC_STOPTHEWORLD"] = "1"
    p = subprocess.run([demo, "--threads", "4", "--ms", "300"], env=env,
                       capture_output=True, text=True, timeout=60)
    check(f"{mode}: trace_demo exit {p.returncode}: {p.stderr[-500:]}", p.returncode == 0)
    lines = p.stderr.splitlines()
    traces = [ln for ln in lines if TRACE.match(ln)]
    details = [ln for ln in lines if " detail: " in ln]
    check(f"{mode}: no cycle traced", len(traces) > 0)
    check(f"{mode}: {len(traces)} trace lines but {len(details)} detail lines",
          len(traces) == len(details))
    any_cpu = False
    for ln in details:
        m = DETAIL.match(ln)
        if not m:
            check(f"{mode}: detail line not in the parsed shape: {ln}", False)
            continue
        s1a, s1b, s2a, s2b = (float(x) if x else 0.0 for x in m.group(2, 3, 4, 5))
        cpu, inv, vol = float(m.group(6)), int(m.group(7)), int(m.group(8))
        holds, held, held_cpu = int(m.group(9)), float(m.group(11)), float(m.group(12))
        stop = s1a + s1b if mode == "stop-the-world" else s2a + s2b
        check(f"{mode}: collector on CPU {cpu} ms in a stop of {stop} ms: {ln}",
              0 <= cpu <= stop + SLACK)
        check(f"{mode}: negative switch counts: {ln}", inv >= 0 and vol >= 0)
        check(f"{mode}: held thread on CPU {held_cpu} ms of {held} held: {ln}",
              0 <= held_cpu <= held + SLACK)
        if mode == "concurrent":
            check(f"{mode}: a concurrent cycle with no thread held: {ln}", holds > 0)
        any_cpu = any_cpu or cpu > 0
    check(f"{mode}: no stop had any CPU time (is the thread CPU clock read?)", any_cpu)

if failures:
    print("FAIL:\n  " + "\n  ".join(failures[:20]))
    sys.exit(1)
print("OK: detail lines parsed and sane in both modes")

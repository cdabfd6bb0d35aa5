#!/usr/bin/env python3
"""CGC_TRACE_FILE on a real multi-threaded run: examples/trace_demo (4 registered threads
allocating on the collected heap, paced cycles plus cgc_collect every 50 ms, and a fork
halfway whose child collects on its own). Checks the file the parent leaves:
  - it is valid JSON (the process exited cleanly, so no repair is needed), with a process
    name, a name for every thread that recorded, a start and an exit marker;
  - every cycle 1..N that the statistics count has its cycle event and at least one stop,
    and no event names a cycle outside 1..N;
  - per thread, events are written in the order they end (end timestamps never go back) and
    complete events nest (what Perfetto needs to draw them);
  - the stops add up, to the nanosecond, to cgc_stats.gc_pause_total_ns read at exit, and
    the longest equals gc_pause_max_ns;
  - only the parent's pid appears in it; the child's events are in path.<child pid>, itself
    valid JSON with its own cycles; cgc-trace reads both.
And a run killed with SIGKILL leaves a file that cgc-trace reads and repairs.

usage: test_trace_file.py TRACE_DEMO CGC_TRACE WORKDIR
"""
import collections
import decimal
import glob
import json
import os
import subprocess
import sys
import time

demo, cgc_trace, work = sys.argv[1], sys.argv[2], sys.argv[3]
os.makedirs(work, exist_ok=True)
path = os.path.join(work, "demo.json")
stats_path = os.path.join(work, "demo.stats")
for old in glob.glob(path + "*"):
    os.remove(old)
failures = []


def check(what, ok):
    if not ok:
        failures.append(what)


env = dict(os.environ, CGC_TRACE_FILE=path)
p = subprocess.run([demo, "--threads", "4", "--ms", "400", "--fork", "--stats", stats_path],
                   env=env, capture_output=True, text=True, timeout=120)
if p.returncode != 0:
    print(f"trace_demo failed ({p.returncode}): {p.stderr}")
    sys.exit(1)
stats = dict(zip(*[iter(open(stats_path).read().split())] * 2))
ncycles, pause_total, pause_max = (int(stats[k]) for k in ("cycles", "pause_total_ns", "pause_max_ns"))
check(f"the run collected ({ncycles} cycles)", ncycles >= 3)


def ns(v):  # "12.345" microseconds, read exactly
    return int(decimal.Decimal(v) * 1000)


def load(f):
    text = open(f).read()
    check(f"{f}: ends with the closing bracket", text.endswith("\n]\n"))
    try:
        return json.loads(text, parse_float=decimal.Decimal)
    except ValueError as e:
        failures.append(f"{f}: not valid JSON: {e}")
        return []


def check_file(f, pid, cycles_expected=None):
    events = load(f)
    if not events:
        return []
    check(f"{f}: pids other than {pid}: {set(e.get('pid') for e in events) - {pid}}",
          all(e.get("pid") == pid for e in events))
    meta = [e for e in events if e.get("ph") == "M"]
    check(f"{f}: process name", any(e["name"] == "process_name" for e in meta))
    named = {e["tid"] for e in meta if e["name"] == "thread_name"}
    used = {e["tid"] for e in events if e.get("ph") != "M"}
    check(f"{f}: threads without a name: {used - named}", used <= named)
    check(f"{f}: starts with the trace start marker",
          [e["name"] for e in events if e.get("ph") == "i"][:1] == ["cgc: trace start"])
    check(f"{f}: ends with the exit marker", events[-1]["name"] == "cgc: exit")
    # per thread: end times in file order never decrease; X events nest or are disjoint
    last_end, spans = {}, collections.defaultdict(list)
    for e in events:
        if e.get("ph") == "M":
            continue
        t0 = ns(e["ts"])
        t1 = t0 + (ns(e["dur"]) if "dur" in e else 0)
        if t1 < last_end.get(e["tid"], -1):
            failures.append(f"{f}: tid {e['tid']}: {e['name']} ends at {t1} before the previous "
                            f"event's end {last_end[e['tid']]}")
        last_end[e["tid"]] = t1
        if e["ph"] == "X":
            spans[e["tid"]].append((t0, -t1, e["name"]))
    for tid, ss in spans.items():
        stack = []
        for t0, neg_t1, name in sorted(ss):
            while stack and stack[-1] <= t0:
                stack.pop()
            if stack and -neg_t1 > stack[-1]:
                failures.append(f"{f}: tid {tid}: {name} at {t0} overlaps its parent event")
            stack.append(-neg_t1)
    stops = [e for e in events if e.get("cat") == "stop"]
    cycles = sorted(e["args"]["cycle"] for e in events if e.get("cat") == "cycle")
    if cycles_expected is not None:
        want = list(range(1, cycles_expected + 1))
        check(f"{f}: cycle events {cycles[:5]}..{cycles[-5:]} (n={len(cycles)}), want 1..{cycles_expected}",
              cycles == want)
        check(f"{f}: cycles without a stop: {set(want) - {e['args']['cycle'] for e in stops}}",
              {e["args"]["cycle"] for e in stops} == set(want))
    check(f"{f}: stops of no cycle", all(e["args"]["cycle"] in set(cycles) for e in stops))
    return stops


parent_pid = None
for e in load(path)[:1]:
    parent_pid = e.get("pid")
stops = check_file(path, parent_pid, ncycles)
lengths = [ns(e["args"]["time_to_stop_us"]) + ns(e["dur"]) for e in stops]
check(f"stops add up to {sum(lengths)} ns, cgc_stats says {pause_total} ns", sum(lengths) == pause_total)
check(f"longest stop {max(lengths, default=0)} ns, cgc_stats says {pause_max} ns",
      max(lengths, default=0) == pause_max)
waits = [e for e in load(path) if e.get("cat") == "stop-wait"]
check(f"one time-to-stop event per stop ({len(waits)} vs {len(stops)})", len(waits) == len(stops))

children = [f for f in glob.glob(path + ".*")]
check(f"one child trace file ({children})", len(children) == 1)
for f in children:
    cpid = int(f.rsplit(".", 1)[1])
    check(f"{f}: the child's own pid", cpid != parent_pid)
    cstops = check_file(f, cpid)
    check(f"{f}: the child's 3 collections are there ({len(cstops)} stops)", len(cstops) >= 3)
    names = [e["args"]["name"] for e in load(f) if e.get("name") == "process_name"]
    check(f"{f}: process name says whose child: {names}", f"forked from {parent_pid}" in names[0])

for f in [path] + children:
    r = subprocess.run([cgc_trace, "--json", f], capture_output=True, text=True)
    check(f"cgc-trace {f}: exit {r.returncode} {r.stderr}", r.returncode == 0)
    if r.returncode == 0 and f == path:
        s = json.loads(r.stdout)
        check(f"cgc-trace total {s['total_stopped_ns']} == stats {pause_total}",
              s["total_stopped_ns"] == pause_total)
        check(f"cgc-trace cycles {s['cycles']} == stats {ncycles}", s["cycles"] == ncycles)

# A process killed mid-run (SIGKILL: no exit handler) leaves the events of the cycles it had
# flushed: cgc-trace reads them, says the file ends early, and --repair makes it valid JSON.
killed = os.path.join(work, "killed.json")
for old in glob.glob(killed + "*"):
    os.remove(old)
k = subprocess.Popen([demo, "--threads", "2", "--ms", "5000"],
                     env=dict(os.environ, CGC_TRACE_FILE=killed),
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
for _ in range(100):  # until a few cycles were flushed (at most 10 s)
    time.sleep(0.1)
    if os.path.exists(killed) and open(killed).read().count('"cat":"cycle"') >= 3:
        break
k.kill()
k.wait()
r = subprocess.run([cgc_trace, "--json", "--repair", killed + ".repaired", killed],
                   capture_output=True, text=True)
check(f"cgc-trace on a killed run's file: exit {r.returncode} {r.stderr}", r.returncode == 0)
if r.returncode == 0:
    s = json.loads(r.stdout)
    check(f"killed run: truncated flag {s['truncated']}", s["truncated"] is True)
    check(f"killed run: {s['cycles']} cycles read", s["cycles"] >= 3)
    check("killed run: note on stderr", "ends early" in r.stderr)
    try:
        fixed = json.load(open(killed + ".repaired"))
        check("repaired killed run has its cycle events",
              sum(1 for e in fixed if e.get("cat") == "cycle") == s["cycles"])
    except ValueError as e:
        failures.append(f"repaired killed run is not valid JSON: {e}")

if failures:
    print("\n".join(failures))
    sys.exit(1)
print(f"trace file: {ncycles} cycles, {len(stops)} stops, {pause_total} ns stopped, all accounted for")

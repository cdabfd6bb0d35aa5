#!/usr/bin/env python3
"""cgc-trace on synthetic traces whose every number was worked out by hand (below, in the
comments), in both input formats: a trace file (JSON, complete and cut short) and saved
CGC_TRACE=1 lines. Every line of the text summary and every field of --json is checked.

usage: test_cgc_trace.py CGC_TRACE WORKDIR
"""
import json
import os
import subprocess
import sys

cgc_trace, work = sys.argv[1], sys.argv[2]
os.makedirs(work, exist_ok=True)
failures = []


def check(what, got, want):
    if got != want:
        failures.append(f"{what}: got {got!r}, want {want!r}")


def us(ns):
    """ns as the trace file writes it: microseconds with exactly three decimals."""
    return f"{ns // 1000}.{ns % 1000:03d}"


MS = 1_000_000  # ns

# ---- the trace file ---------------------------------------------------------------------
# Span: start marker at 0, exit marker at 1000 ms. ncpu 2. Five cycles, two stops each
# (request, release in ms; the first 0.05 ms of each is time-to-stop):
#   cycle 1: [100, 100.2]  [110, 110.4]
#   cycle 2: [200, 200.1]  [205, 208]
#   cycle 3: [300, 300.3]  [310, 310.5]
#   cycle 4: [400, 408]    [409, 409.6]
#   cycle 5: [700, 700.7]  [705, 706.2]
# Lengths sorted: 0.1 0.2 0.3 0.4 0.5 0.6 0.7 1.2 3.0 8.0 (n = 10), nearest rank:
#   p50 = rank 5 = 0.5; p90 = rank 9 = 3.0; p99 = rank ceil(9.9) = 10 = 8.0; max 8.0 (cycle 4,
#   at 400 ms). Total 15.0 ms = 1.5% of 1000 ms.
# MMU(1 ms) = 0: a 1 ms window fits inside the 8 ms stop.
# MMU(10 ms): the most stopped time in 10 ms is [399.6, 409.6] (or [400, 410]): 8 + 0.6 = 8.6,
#   so MMU = 1.4 / 10 = 14.0%.
# MMU(100 ms): a window holding all of cycle 4 (8.6) starts in [309.6, 400]; starting in
#   [309.6, 310] it also holds [310, 310.5]: 9.1 (cycle 3's first stop ends at 300.3, too
#   early). Nothing else is within 100 ms. MMU = 90.9 / 100 = 90.9%.
# GC CPU share = (ncpu 2 x 15 ms stopped + 20 ms assist + 10 ms worker + 10 ms sweep)
#   / (2 x 1000 ms) = 70 / 2000 = 3.5%. The 50 ms "mark" phase and the cycle spans are wall
#   time, not CPU: they must not count.
stops = {1: [(100.0, 100.2), (110.0, 110.4)], 2: [(200.0, 200.1), (205.0, 208.0)],
         3: [(300.0, 300.3), (310.0, 310.5)], 4: [(400.0, 408.0), (409.0, 409.6)],
         5: [(700.0, 700.7), (705.0, 706.2)]}


def ns(ms):
    return round(ms * 1000) * 1000


lines = ['{"name":"process_name","ph":"M","pid":7,"tid":7,"args":{"name":"synthetic (pid 7)"}}',
         '{"name":"cgc: trace start","cat":"cgc","ph":"i","s":"p","ts":0.000,"pid":7,"tid":7,'
         '"args":{"ncpu":2}}',
         '{"name":"thread_name","ph":"M","pid":7,"tid":8,"args":{"name":"worker (tid 8)"}}']
for cyc, pair in stops.items():
    c0 = ns(pair[0][0])
    lines.append(f'{{"name":"heap in use","ph":"C","ts":{us(c0)},"pid":7,"tid":7,'
                 f'"args":{{"bytes":{(8 + cyc) << 20}}}}}')
    lines.append(f'{{"name":"heap goal","ph":"C","ts":{us(c0)},"pid":7,"tid":7,'
                 f'"args":{{"bytes":{16 << 20}}}}}')
    for a, b in pair:
        a, b = ns(a), ns(b)
        tts = 50_000
        lines.append(f'{{"name":"stop: time-to-stop","cat":"stop-wait","ph":"X","ts":{us(a)},'
                     f'"dur":{us(tts)},"pid":7,"tid":7,"args":{{"cycle":{cyc}}}}}')
        lines.append(f'{{"name":"stop","cat":"stop","ph":"X","ts":{us(a + tts)},'
                     f'"dur":{us(b - a - tts)},"pid":7,"tid":7,'
                     f'"args":{{"cycle":{cyc},"time_to_stop_us":{us(tts)}}}}}')
    lines.append(f'{{"name":"GC cycle","cat":"cycle","ph":"X","ts":{us(c0)},'
                 f'"dur":{us(ns(pair[1][1]) - c0)},"pid":7,"tid":7,"args":{{"cycle":{cyc}}}}}')
    lines.append(f'{{"name":"live heap","ph":"C","ts":{us(ns(pair[1][1]))},"pid":7,"tid":7,'
                 f'"args":{{"bytes":{4 << 20}}}}}')
# GC work outside the stops: 4 x 5 ms assists, 2 x 5 ms worker slices, a mark phase (wall).
for k in range(4):
    lines.append(f'{{"name":"assist","cat":"assist","ph":"X","ts":{us(ns(500 + 10 * k))},'
                 f'"dur":{us(5 * MS)},"pid":7,"tid":8,"args":{{"cycle":5}}}}')
for k in range(2):
    lines.append(f'{{"name":"worker","cat":"worker","ph":"X","ts":{us(ns(600 + 10 * k))},'
                 f'"dur":{us(5 * MS)},"pid":7,"tid":9,"args":{{"cycle":5}}}}')
lines.append(f'{{"name":"mark","cat":"mark","ph":"X","ts":{us(ns(550))},"dur":{us(50 * MS)},'
             f'"pid":7,"tid":9,"args":{{"cycle":5}}}}')
# the last event before the exit marker: a sweep span ending at 720 ms
lines.append(f'{{"name":"sweep","cat":"sweep","ph":"X","ts":{us(ns(710))},"dur":{us(10 * MS)},'
             f'"pid":7,"tid":7,"args":{{"cycle":5}}}}')
exit_line = '{"name":"cgc: exit","cat":"cgc","ph":"i","s":"p","ts":1000000.000,"pid":7,"tid":7}'

complete = os.path.join(work, "synthetic.json")
with open(complete, "w") as f:
    f.write("[\n" + ",\n".join(lines + [exit_line]) + "\n]\n")
json.load(open(complete))  # the synthetic file itself is valid


def run(*args, rc=0):
    p = subprocess.run([cgc_trace, *args], capture_output=True, text=True)
    if p.returncode != rc:
        failures.append(f"cgc-trace {' '.join(args)}: exit {p.returncode} (want {rc}): {p.stderr}")
    return p


text = run(complete).stdout.splitlines()
want = [
    f"trace:          {complete} (trace file), 5 cycles, span 1000.000 ms",
    "stops:          10",
    "stop p50:       0.500 ms",
    "stop p90:       3.000 ms",
    "stop p99:       8.000 ms",
    "stop max:       8.000 ms (cycle 4, at 400.000 ms)",
    "total stopped:  15.000 ms (1.5% of the span)",
    "GC CPU share:   3.5%",
    "MMU   1 ms:     0.0%",
    "MMU  10 ms:     14.0%",
    "MMU 100 ms:     90.9%",
]
check("json trace, text summary", text, want)

js = json.loads(run("--json", complete).stdout)
check("json trace, --json", js, {
    "file": complete, "format": "trace-file", "truncated": False, "cycles": 5,
    "span_ns": 1000 * MS, "stops": 10, "p50_ns": 500_000, "p90_ns": 3 * MS, "p99_ns": 8 * MS,
    "max_ns": 8 * MS, "max_cycle": 4, "max_at_ns": 400 * MS, "total_stopped_ns": 15 * MS,
    "gc_cpu_share": 0.035, "mmu": {"1ms": 0.0, "10ms": 0.14, "100ms": 0.909}})

# ---- the same file cut short by a crash ---------------------------------------------------
# No exit marker, no "]", and half a line at the end. The span now ends with the sweep span
# at 720 ms: stopped share 15 / 720 = 2.083% -> 2.1%; GC CPU share 70 / (2 x 720) = 4.861%
# -> 4.9% (0.048611); stops, percentiles and MMU are unchanged.
cut = os.path.join(work, "synthetic-cut.json")
with open(cut, "w") as f:
    f.write("[\n" + ",\n".join(lines) + ',\n{"name":"stop","cat":"st')
p = run(cut)
check("cut trace, note on stderr", "ends early" in p.stderr, True)
text = p.stdout.splitlines()
check("cut trace, text summary", text, [
    f"trace:          {cut} (trace file), 5 cycles, span 720.000 ms"] + want[1:6] + [
    "total stopped:  15.000 ms (2.1% of the span)",
    "GC CPU share:   4.9%"] + want[8:])
js = json.loads(run("--json", cut).stdout)
check("cut trace, --json truncated", js["truncated"], True)
check("cut trace, --json share", js["gc_cpu_share"], 0.048611)
check("cut trace, --json span", js["span_ns"], 720 * MS)
repaired = os.path.join(work, "synthetic-repaired.json")
run("--repair", repaired, cut)
try:
    events = json.load(open(repaired))
    check("repaired events", len(events), len(lines))
except ValueError as e:
    failures.append(f"--repair output is not valid JSON: {e}")
# also the usual crash shape: complete lines, each ending in ",", no "]"
with open(cut, "w") as f:
    f.write("[\n" + ",\n".join(lines) + ",\n")
check("cut at a line end, stops", json.loads(run("--json", cut).stdout)["stops"], 10)

# ---- saved CGC_TRACE=1 lines ------------------------------------------------------------
# stop1 = [@t, @t + s1], stop2 = [@t + s1 + mark, ... + s2] (ms):
#   cycle 1 @100: [100, 100.05] (0.05)   [102.05, 102.2] (0.15)
#   cycle 2 @300: [300, 300.1] (0.1)     [305.1, 306.1] (1.0)
#   cycle 3 @500: [500, 500.2] (0.2)     [501.2, 505.2] (4.0)
#   cycle 4 @900: [900, 900.075] (0.075) [903.075, 903.1] (0.025)
# Sorted: 0.025 0.05 0.075 0.1 0.15 0.2 1.0 4.0 (n = 8): p50 = rank 4 = 0.1; p90 = rank
# ceil(7.2) = 8 = 4.0; p99 = rank 8 = 4.0; max 4.0 (cycle 3, at 501.2 ms). Total 5.6 ms; span
# [0, 903.1 ms]: 0.62% -> 0.6%. GC CPU share: the last line's 3%.
# MMU(1 ms) = 0 (inside the 4 ms stop). MMU(10 ms): cycle 3's two stops fit in one window:
# 4.2 stopped, 58.0%. MMU(100 ms): no two cycles are within 100 ms: 4.2 again, 95.8%.
trace_lines = """\
program output that is not a trace line
cgc 1 @0.100s 1%: 0.050+2.0+0.150 ms clock, 0.05+1.0/0.5/0+0.15 ms cpu, 4->5->2 MB, 4 MB goal, 4 T
cgc 2 @0.300s 2%: 0.100+5.0+1.000 ms clock, 0.1+3.1/2.0/0.5+1.0 ms cpu, 5->6->3 MB, 5 MB goal, 4 T
cgc: stats: a CGC_STATS line, not a trace line
cgc 3 @0.500s 2%: 0.200+1.0+4.000 ms clock, 0.2+0.4/0.3/0+4.0 ms cpu, 6->7->3 MB, 6 MB goal, 4 T
cgc 99 @0.144s 31%: 0.021+7.900+0.010 ms clock, 7.931 ms stopped, 8.3->4.1 MB, 8.3 MB goal
cgc 4 @0.900s 3%: 0.075+3.0+0.025 ms clock, 0.08+1.5/1.0/0.2+0.03 ms cpu, 6->6->3 MB, 6 MB goal, 4 T
"""
tl = os.path.join(work, "synthetic.trace")
with open(tl, "w") as f:
    f.write(trace_lines)
p = run(tl)
check("trace lines, note about the line that does not parse", "1 lines" in p.stderr, True)
check("trace lines, text summary", p.stdout.splitlines(), [
    f"trace:          {tl} (trace lines), 4 cycles, span 903.100 ms",
    "stops:          8",
    "stop p50:       0.100 ms",
    "stop p90:       4.000 ms",
    "stop p99:       4.000 ms",
    "stop max:       4.000 ms (cycle 3, at 501.200 ms)",
    "total stopped:  5.600 ms (0.6% of the span)",
    "GC CPU share:   3.0%",
    "MMU   1 ms:     0.0%",
    "MMU  10 ms:     58.0%",
    "MMU 100 ms:     95.8%"])
check("trace lines, --json", json.loads(run("--json", tl).stdout), {
    "file": tl, "format": "trace-lines", "truncated": False, "cycles": 4, "span_ns": 903_100_000,
    "stops": 8, "p50_ns": 100_000, "p90_ns": 4 * MS, "p99_ns": 4 * MS, "max_ns": 4 * MS,
    "max_cycle": 3, "max_at_ns": 501_200_000, "total_stopped_ns": 5_600_000,
    "gc_cpu_share": 0.03, "mmu": {"1ms": 0.0, "10ms": 0.58, "100ms": 0.958}})

# ---- trace lines of concurrent cycles whose stop 1 is a handshake ("-": no stop 1) --------
# Only stop 2 is a stop: [@t + mark, @t + mark + s2] (ms):
#   cycle 1 @100: [102.0, 102.15] (0.15)   cycle 2 @300: [305.0, 306.0] (1.0)
# Sorted: 0.15 1.0: p50 = rank 1 = 0.15; p90 = p99 = max = 1.0 (cycle 2, at 305 ms). Total
# 1.15 ms; span [0, 306 ms]: 0.376% -> 0.4%. MMU(1 ms) = 0; MMU(10 ms) = 9/10 = 90.0%;
# MMU(100 ms) = 99/100 = 99.0%.
hs_lines = """\
cgc 1 @0.100s 1%: -+2.0+0.150 ms clock, -+1.0/0.5/0+0.15 ms cpu, 4->5->2 MB, 4 MB goal, 3 T
cgc 1 detail: no stop1: barrier handshake 0.040 ms + stack scans 0.100, not a trace line
cgc 2 @0.300s 2%: -+5.0+1.000 ms clock, -+3.1/2.0/0.5+1.0 ms cpu, 5->6->3 MB, 5 MB goal, 3 T
"""
hl = os.path.join(work, "handshake.trace")
with open(hl, "w") as f:
    f.write(hs_lines)
p = run(hl)
check("handshake lines, text summary", p.stdout.splitlines(), [
    f"trace:          {hl} (trace lines), 2 cycles, span 306.000 ms",
    "stops:          2",
    "stop p50:       0.150 ms",
    "stop p90:       1.000 ms",
    "stop p99:       1.000 ms",
    "stop max:       1.000 ms (cycle 2, at 305.000 ms)",
    "total stopped:  1.150 ms (0.4% of the span)",
    "GC CPU share:   2.0%",
    "MMU   1 ms:     0.0%",
    "MMU  10 ms:     90.0%",
    "MMU 100 ms:     99.0%"])

# ---- bad input gets a clear answer --------------------------------------------------------
empty = os.path.join(work, "empty.trace")
open(empty, "w").write("nothing here\n")
check("no events: message", "holds no trace events" in run(empty, rc=1).stderr, True)
check("missing file: message", "cannot open" in run(os.path.join(work, "nope"), rc=1).stderr, True)
check("bad option: message", "unknown" in run("--frobnicate", complete, rc=2).stderr, True)

if failures:
    print("\n".join(failures))
    sys.exit(1)
print("cgc-trace: every number as worked out by hand")

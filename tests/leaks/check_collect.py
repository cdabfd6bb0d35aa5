#!/usr/bin/env python3
"""check_collect.py LIB PROGRAM [ITERATIONS] — run the leaky loop (tests/leaks/leaky_loop.c,
1 MiB lost per iteration) under LD_PRELOAD=LIB with CGC_LEAKS=collect and check: the same
stdout as the loop that reuses one block, a peak RSS (VmHWM) under 64 MiB, and the
statistics counting the freed blocks."""
import os, re, subprocess, sys

lib, prog = sys.argv[1], sys.argv[2]
n = int(sys.argv[3]) if len(sys.argv) > 3 else 10000
limit_kib = 64 * 1024
failures = []

def run(args, **extra):
    env = dict(os.environ, LD_PRELOAD=lib, **extra)
    env.pop("CGC_LEAKS", None) if "CGC_LEAKS" not in extra else None
    return subprocess.run([prog] + args, env=env, capture_output=True, text=True, timeout=300)

ref = run([str(n), "reuse"])
got = run([str(n)], CGC_LEAKS="collect", CGC_STATS="1", CGC_TRACE="1")
if ref.returncode != 0 or got.returncode != 0:
    failures.append(f"exit status {ref.returncode}/{got.returncode}: {got.stderr[-2000:]}")
if got.stdout != ref.stdout:
    failures.append(f"stdout differs: {got.stdout!r} vs {ref.stdout!r}")
m = re.search(r"VmHWM (\d+) KiB", got.stderr)
hwm = int(m[1]) if m else None
if hwm is None or hwm >= limit_kib:
    failures.append(f"VmHWM {hwm} KiB, limit {limit_kib} KiB")
s = re.search(r"cgc: stats: leaks: (\d+) checks \((\d+) given up\).* (\d+) blocks [\d.]+ MiB freed since start", got.stderr)
if not s:
    failures.append("no leak statistics line")
else:
    checks, gave_up, freed = int(s[1]), int(s[2]), int(s[3])
    # Every lost block but the last few (still in registers, or lost after the last check)
    # is freed by some check.
    if freed < n - 64 or gave_up != 0:
        failures.append(f"{freed} blocks freed of {n} lost, {gave_up} checks given up")
traces = [l for l in got.stderr.splitlines() if l.startswith("cgc leaks ")]
if len(traces) < 2 or not any("lost and freed" in l for l in traces):
    failures.append(f"{len(traces)} trace lines")
if failures:
    print("FAIL:\n  " + "\n  ".join(failures))
    print(got.stderr[-3000:])
    sys.exit(1)
print(f"ok: {n} MiB lost, peak RSS {hwm / 1024:.1f} MiB, {freed} blocks freed by {checks} checks, output unchanged")

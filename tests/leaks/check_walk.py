#!/usr/bin/env python3
"""check_walk.py LIB PROG — run walk_frames under CGC_LEAKS=report with CGC_LEAKS_STACKS=verify:
every allocation's stack is taken by cgc's walker and by libunwind. Fails unless they never
differ, the walker took them all itself, and the one lost block's stack names its frames in
order: leaf_alloc, vla_frame, then fp_chain up to the 16 frames a site keeps."""
import json, os, subprocess, sys, tempfile

lib, prog = sys.argv[1], sys.argv[2]
failures = []
with tempfile.TemporaryDirectory() as d:
    json_path = os.path.join(d, "leaks.json")
    env = dict(os.environ, LD_PRELOAD=lib, CGC_LEAKS="report", CGC_LEAKS_STACKS="verify",
               CGC_LEAKS_FILE=os.path.join(d, "leaks.txt"), CGC_LEAKS_JSON=json_path)
    r = subprocess.run([prog], env=env, capture_output=True, text=True, timeout=60)
    if r.returncode != 0 or r.stdout != "done\n":
        failures.append(f"exit status {r.returncode}, output {r.stdout!r}: {r.stderr[-2000:]}")
    reports = [json.loads(l) for l in open(json_path) if l.strip()] if os.path.exists(json_path) else []
if len(reports) != 1:
    failures.append(f"{len(reports)} JSON reports")
else:
    rep = reports[0]
    sc = rep.get("stack_check", {})
    # 2 threads x 2000 rounds, one block each, plus the C library's own allocations.
    if sc.get("compared", 0) < 4000:
        failures.append(f"stack_check {sc}: fewer stacks compared than allocations made")
    if sc.get("differed", 1) != 0:
        failures.append(f"stack_check {sc}: the walker and libunwind disagree: {r.stderr[-2000:]}")
    if sc.get("libunwind", 1) != 0:
        failures.append(f"stack_check {sc}: stacks left to libunwind (the walker should take these)")
    if rep["lost_blocks"] != 1 or len(rep["sites"]) != 1:
        failures.append(f"{rep['lost_blocks']} blocks lost in {len(rep['sites'])} sites, expected 1")
    else:
        names = [f["symbol"].split("+")[0] for f in rep["sites"][0]["frames"]]
        want = ["leaf_alloc", "vla_frame"] + ["fp_chain"] * 14
        if names != want:
            failures.append(f"lost block's stack {names}, expected {want}")
if failures:
    print("FAIL:\n  " + "\n  ".join(failures))
    sys.exit(1)
print(f"ok: {sc['compared']} stacks walked as libunwind does, lost block's 16 frames named in order")

#!/usr/bin/env python3
"""check_program.py LIB NAME CMD [ARGS...] — run a real program once without cgc and once
under LD_PRELOAD=LIB with CGC_LEAKS=report (CGC_LEAKS_STACKS from the environment, default
all). Fails unless both exit 0 with the same stdout, every preloaded process completed its
exit leak check (a JSON record each, none given up), and prints the leak summary. With
CGC_LEAKS_STACKS=verify, every process's report must also say that its stack walks all
matched libunwind's (and, over all processes, that some were compared)."""
import glob, json, os, subprocess, sys, tempfile

lib, name, cmd = sys.argv[1], sys.argv[2], sys.argv[3:]
failures = []
with tempfile.TemporaryDirectory() as d:
    base = {k: v for k, v in os.environ.items() if not k.startswith("CGC_") and k != "LD_PRELOAD"}
    ref = subprocess.run(cmd, env=base, capture_output=True, text=True, timeout=300)
    env = dict(base, LD_PRELOAD=lib, CGC_LEAKS="report",
               CGC_LEAKS_STACKS=os.environ.get("CGC_LEAKS_STACKS", "all"),
               CGC_LEAKS_JSON=os.path.join(d, "leaks.%p.json"))
    got = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    if ref.returncode != 0:
        failures.append(f"reference run failed ({ref.returncode}): the test is broken")
    if got.returncode != 0:
        failures.append(f"preloaded run exited with {got.returncode}")
    if got.stdout != ref.stdout:
        failures.append("stdout differs from the reference run")
    if "no leak check" in got.stderr:
        failures.append("a leak check gave up")
    reports = []
    for f in glob.glob(os.path.join(d, "leaks.*.json")):
        reports += [json.loads(l) for l in open(f) if l.strip()]
    if not reports:
        failures.append("no process wrote a leak report")
    if any(r["reason"] != "exit" for r in reports):
        failures.append("a report other than at exit")
    verified = compared = 0
    if env["CGC_LEAKS_STACKS"] == "verify":
        checks = [r["stack_check"] for r in reports if "stack_check" in r]
        verified, compared = len(checks), sum(c["compared"] for c in checks)
        if len(checks) != len(reports):
            failures.append(f"{len(checks)} reports with a stack check, of {len(reports)}")
        if any(c["differed"] for c in checks):
            failures.append("stack walks differ from libunwind's: " + str(checks))
        if compared == 0:
            failures.append("no stack was compared")
if failures:
    print(f"FAIL [{name}]:\n  " + "\n  ".join(failures))
    print(got.stderr[-4000:])
    sys.exit(1)
lost = sum(r["lost_blocks"] for r in reports)
print(f"ok [{name}]: {len(reports)} processes checked at exit, {lost} blocks reported lost "
      f"in {sum(1 for r in reports if r['lost_blocks'])} of them, output unchanged"
      + (f"; {compared} stacks in {verified} processes walked as libunwind does" if verified else ""))

#!/usr/bin/env python3
"""check_known.py LIB PROGRAM — run PROGRAM (tests/leaks/leak_known.c) under
LD_PRELOAD=LIB with CGC_LEAKS=report and check both reports against what the program says
it lost and kept: exactly the lost blocks (site, size, one block each), nothing else."""
import json, os, re, subprocess, sys, tempfile

lib, prog = sys.argv[1], sys.argv[2]
stacks = sys.argv[3] if len(sys.argv) > 3 else "all"
failures = []

def check(cond, what):
    if not cond:
        failures.append(what)

with tempfile.TemporaryDirectory() as d:
    text_path, json_path = os.path.join(d, "leaks.txt"), os.path.join(d, "leaks.json")
    env = dict(os.environ, LD_PRELOAD=lib, CGC_LEAKS="report", CGC_LEAKS_STACKS=stacks,
               CGC_LEAKS_FILE=text_path, CGC_LEAKS_JSON=json_path)
    r = subprocess.run([prog], env=env, capture_output=True, text=True, timeout=60)
    check(r.returncode == 0, f"exit status {r.returncode}: {r.stderr}")
    lost, kept = {}, {}
    for line in r.stdout.splitlines():
        kind, site, size = line.split()
        (lost if kind == "lost" else kept)[site] = int(size)
    check(len(lost) == 3 and len(kept) == 6, f"program output: {r.stdout!r}")
    text = open(text_path).read()
    reports = [json.loads(l) for l in open(json_path) if l.strip()]

# JSON: one report (at exit), exactly the lost blocks.
check(len(reports) == 1, f"{len(reports)} JSON reports")
rep = reports[0]
check(rep["reason"] == "exit", "reason " + rep["reason"])
# verify: full stacks (reported as "all"), each also taken with libunwind and compared.
check(rep["stacks"] == ("all" if stacks == "verify" else stacks), "stacks " + rep["stacks"])
if stacks == "verify":
    sc = rep.get("stack_check")
    check(sc is not None, "no stack_check in the JSON report")
    if sc:
        compared, differed, fallback = sc["compared"], sc["differed"], sc["libunwind"]
        check(differed == 0, f"{differed} of {compared} stacks differ from libunwind's: {r.stderr[-1500:]}")
        # Every thread here is registered and no frame is unusual: the walker takes them all.
        check(compared > 0 and fallback == 0, f"{compared} stacks walked, {fallback} left to libunwind")
check(rep["lost_blocks"] == len(lost), f"lost_blocks {rep['lost_blocks']} != {len(lost)}")
check(rep["lost_bytes"] == sum(lost.values()), f"lost_bytes {rep['lost_bytes']}")
check(len(rep["sites"]) == len(lost), f"{len(rep['sites'])} sites")
found = {}
for s in rep["sites"]:
    syms = " ".join(f["symbol"] for f in s["frames"])
    names = [n for n in list(lost) + list(kept) if re.search(r"\b" + n + r"\+", syms)]
    check(len(names) == 1, f"site names {names}: {syms}")
    if not names:
        continue
    n = names[0]
    check(n in lost, f"reported a kept block: {n}")
    check(s["blocks"] == 1 and len(s["block_list"]) == 1, f"{n}: {s['blocks']} blocks")
    check(s["bytes"] == lost.get(n) and s["block_list"][0]["size"] == lost.get(n),
          f"{n}: {s['bytes']} bytes, expected {lost.get(n)}")
    found[n] = s["block_list"][0]["address"]
check(set(found) == set(lost), f"JSON found {sorted(found)}, expected {sorted(lost)}")
# Largest first.
check([s["bytes"] for s in rep["sites"]] == sorted((s["bytes"] for s in rep["sites"]), reverse=True),
      "sites not largest first")

# Human form: the same three entries, blocks and sizes.
m = re.search(r"cgc: leaks: pid \d+ \(.*?\), check 1 \(exit\): (\d+) bytes in (\d+) blocks lost, from (\d+) sites", text)
check(m is not None, "no summary line in the text report:\n" + text)
if m:
    check((int(m[1]), int(m[2]), int(m[3])) == (sum(lost.values()), len(lost), len(lost)),
          "summary " + m[0])
entries = re.split(r"\ncgc: leak \d+ of \d+: ", "\n" + text)[1:]
check(len(entries) == len(lost), f"{len(entries)} text entries")
for e in entries:
    names = [n for n in list(lost) + list(kept) if re.search(r"\b" + n + r"\+", e)]
    check(len(names) == 1 and names[0] in lost, f"text entry names {names}")
    if len(names) == 1 and names[0] in lost:
        n = names[0]
        check(e.startswith(f"{lost[n]} bytes in 1 block,"), f"text entry for {n}: {e[:60]}")
        check(f"{found.get(n)} ({lost[n]})" in e, f"text entry for {n} lacks its block")
if stacks in ("all", "verify"):
    check("caller only" not in text, "stacks=all but a site is caller-only")

if failures:
    print("FAIL:\n  " + "\n  ".join(failures))
    print("--- text report ---\n" + text)
    sys.exit(1)
print(f"ok: {len(lost)} lost blocks reported exactly (stacks {stacks}), {len(kept)} kept blocks not reported")

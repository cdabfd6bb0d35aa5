#!/usr/bin/env python3
"""cgc-trace --svg: the picture is well-formed XML (xml.etree, and xmllint when installed)
with its three panels, and each panel draws the trace it was given: one stop mark per stop
in the timeline, histogram bars that add up to the number of stops, an MMU curve with the
1/10/100 ms points marked, heap lines. Both input formats.

usage: test_svg.py CGC_TRACE WORKDIR
"""
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

cgc_trace, work = sys.argv[1], sys.argv[2]
os.makedirs(work, exist_ok=True)
NS = "{http://www.w3.org/2000/svg}"
failures = []


def check(what, ok):
    if not ok:
        failures.append(what)


# A trace file: 7 stops over 1 s, lengths 0.01..10 ms (so the histogram spans decades).
events = ['{"name":"cgc: trace start","cat":"cgc","ph":"i","s":"p","ts":0.000,"pid":1,"tid":1,'
          '"args":{"ncpu":2}}']
lengths_us = [10, 30, 100, 300, 1000, 3000, 10000]
for i, l in enumerate(lengths_us):
    t = 100_000 * (i + 1)
    events.append(f'{{"name":"stop","cat":"stop","ph":"X","ts":{t}.000,"dur":{l}.000,'
                  f'"pid":1,"tid":1,"args":{{"cycle":{i + 1},"time_to_stop_us":0.000}}}}')
    for k, (name, mb) in enumerate([("heap in use", 20 + i), ("heap goal", 24), ("live heap", 10)]):
        events.append(f'{{"name":"{name}","ph":"C","ts":{t}.000,"pid":1,"tid":1,'
                      f'"args":{{"bytes":{mb << 20}}}}}')
events.append('{"name":"cgc: exit","cat":"cgc","ph":"i","s":"p","ts":1000000.000,"pid":1,"tid":1}')
tf = os.path.join(work, "svg.json")
open(tf, "w").write("[\n" + ",\n".join(events) + "\n]\n")

tl = os.path.join(work, "svg.trace")
open(tl, "w").write(
    "cgc 1 @0.100s 1%: 0.050+2.0+0.150 ms clock, 0.05+1.0/0.5/0+0.15 ms cpu, 4->5->2 MB, 4 MB goal, 4 T\n"
    "cgc 2 @0.300s 2%: 0.100+5.0+1.000 ms clock, 0.1+3.1/2.0/0.5+1.0 ms cpu, 5->6->3 MB, 5 MB goal, 4 T\n")

for src, nstops in ((tf, len(lengths_us)), (tl, 4)):
    out = src + ".svg"
    p = subprocess.run([cgc_trace, "--svg", out, src], capture_output=True, text=True)
    check(f"{src}: cgc-trace --svg exit {p.returncode}: {p.stderr}", p.returncode == 0)
    try:
        root = ET.parse(out).getroot()
    except ET.ParseError as e:
        failures.append(f"{out}: not well-formed XML: {e}")
        continue
    if shutil.which("xmllint"):
        x = subprocess.run(["xmllint", "--noout", out], capture_output=True, text=True)
        check(f"{out}: xmllint: {x.stderr}", x.returncode == 0)
    check(f"{out}: root is <svg>", root.tag == NS + "svg")
    panels = {g.get("id"): g for g in root.iter(NS + "g") if g.get("id")}
    for pid in ("timeline", "histogram", "mmu"):
        check(f"{out}: panel {pid} missing", pid in panels)
    if len(panels) < 3:
        continue
    texts = lambda g: " ".join(t.text or "" for t in g.iter(NS + "text"))
    tlg = panels["timeline"]
    marks = [r for r in tlg.iter(NS + "rect") if r.get("height") == "10"]
    check(f"{out}: {len(marks)} stop marks, want {nstops}", len(marks) == nstops)
    lines = tlg.findall(NS + "polyline")
    check(f"{out}: timeline has heap in use, goal and live lines ({len(lines)})", len(lines) == 3)
    check(f"{out}: timeline legend", all(w in texts(tlg) for w in ("heap in use", "heap goal", "live heap")))
    hg = panels["histogram"]
    bars = [int(r.find(NS + "title").text) for r in hg.iter(NS + "rect") if r.find(NS + "title") is not None]
    check(f"{out}: histogram bars add up to {sum(bars)}, want {nstops}", sum(bars) == nstops)
    check(f"{out}: histogram title says log scale", "log scale" in texts(hg))
    mg = panels["mmu"]
    curve = mg.findall(NS + "polyline")
    check(f"{out}: one MMU curve", len(curve) == 1 and len(curve[0].get("points").split()) > 50)
    check(f"{out}: MMU points marked", len(mg.findall(NS + "circle")) >= 2)
    check(f"{out}: MMU labels", re.search(r"MMU at 1ms: [0-9.]+%, 10ms: [0-9.]+%, 100ms: [0-9.]+%", texts(mg)) is not None)

if failures:
    print("\n".join(failures))
    sys.exit(1)
print("svg: well-formed, three panels, each drawing its data")

#!/usr/bin/env python3
"""memcheck_compare.py LIB CMD [ARGS...] — runs CMD (and every process it starts) twice:
under LD_PRELOAD=LIB with CGC_LEAKS=report, and under valgrind memcheck
(--leak-check=full --show-leak-kinds=all --trace-children=yes, XML output). Then, for every
site cgc reported lost, it looks up memcheck's loss records of the same process (same
command line) with the same allocation stack and block size, and fails if memcheck classes
all of them as still reachable (cgc reported something that was not lost).

Stacks are compared by the frames in the main executable, as (module, offset), which is
the same in both runs whatever the load address (memcheck loads a PIE at 0x108000; its
"by" frames are return address - 1). Sites without such a frame, or with no record on
memcheck's side, are counted as unmatched and listed (memcheck's and cgc's runs are
separate executions: timing, addresses and hash seeds may differ).
Slow (memcheck): run by `make stress` (suite stress-long) or by hand."""
import glob, json, os, shutil, struct, subprocess, sys, tempfile
import xml.etree.ElementTree as ET

lib, cmd = sys.argv[1], sys.argv[2:]
VG_PIE_BASE = 0x108000

def real_exe(argv0):
    p = argv0 if "/" in argv0 else (shutil.which(argv0) or argv0)
    return os.path.realpath(p)

def elf_base(path):
    """(is_pie, lowest PT_LOAD vaddr)"""
    try:
        with open(path, "rb") as f:
            h = f.read(64)
            if h[:4] != b"\x7fELF":
                return True, 0
            e_type = struct.unpack_from("<H", h, 16)[0]
            phoff, = struct.unpack_from("<Q", h, 32)
            phentsize, phnum = struct.unpack_from("<HH", h, 54)
            f.seek(phoff)
            ph = f.read(phentsize * phnum)
            lo = min((struct.unpack_from("<Q", ph, i * phentsize + 16)[0]
                      for i in range(phnum) if struct.unpack_from("<I", ph, i * phentsize)[0] == 1),
                     default=0)
            return e_type == 3, lo
    except OSError:
        return True, 0

def proc_key(argv):
    return (os.path.basename(real_exe(argv[0])),) + tuple(argv[1:])

def exe_frames(frames, n=3):
    return tuple(frames[:n])

with tempfile.TemporaryDirectory() as d:
    env = dict(os.environ, LD_PRELOAD=lib, CGC_LEAKS="report", CGC_LEAKS_STACKS="all",
               CGC_LEAKS_JSON=os.path.join(d, "cgc.%p.json"))
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        sys.exit(f"FAIL: preloaded run exited with {r.returncode}\n{r.stderr[-2000:]}")
    venv = {k: v for k, v in os.environ.items() if not k.startswith("CGC_") and k != "LD_PRELOAD"}
    v = subprocess.run(["valgrind", "--trace-children=yes", "--leak-check=full",
                        "--show-leak-kinds=all", "--xml=yes",
                        "--xml-file=" + os.path.join(d, "vg.%p.xml"), "-q"] + cmd,
                       env=venv, capture_output=True, text=True, timeout=3600)
    if v.returncode != 0:
        sys.exit(f"FAIL: memcheck run exited with {v.returncode}\n{v.stderr[-2000:]}")

    # memcheck: process key -> list of (kind, bytes, blocks, exe-frame tuple)
    vg = {}
    for f in glob.glob(os.path.join(d, "vg.*.xml")):
        try:
            root = ET.parse(f).getroot()
        except ET.ParseError:
            continue
        argv_el = root.find("args/argv")
        if argv_el is None:
            continue
        argv = [argv_el.findtext("exe")] + [a.text or "" for a in argv_el.findall("arg")]
        exe = real_exe(argv[0])
        pie, lo = elf_base(exe)
        base = VG_PIE_BASE if pie else lo
        recs = []
        for e in root.findall("error"):
            kind = e.findtext("kind") or ""
            if not kind.startswith("Leak_"):
                continue
            frames = []
            for i, fr in enumerate(e.findall("stack/frame")):
                obj = fr.findtext("obj") or ""
                if os.path.realpath(obj) == exe:
                    ip = int(fr.findtext("ip"), 16)
                    frames.append(ip - base + (1 if i > 0 else 0))
            recs.append((kind, int(e.findtext("xwhat/leakedbytes") or 0),
                         int(e.findtext("xwhat/leakedblocks") or 0), exe_frames(frames)))
        vg.setdefault(proc_key(argv), []).extend(recs)

    bad, matched, unmatched, total = [], 0, [], 0
    for f in glob.glob(os.path.join(d, "cgc.*.json")):
        for line in open(f):
            rep = json.loads(line)
            argv = rep["argv"]
            exe = real_exe(argv[0])
            key = proc_key(argv)
            for s in rep["sites"]:
                total += 1
                frames = [int(fr["offset"], 16) for fr in s["frames"]
                          if "module" in fr and real_exe(fr["module"]) == exe]
                k = exe_frames(frames)
                sizes = sorted({b["size"] for b in s["block_list"]})
                cands = [rec for rec in vg.get(key, []) if k and rec[3] == k]
                desc = f"{rep['command'][:60]}: {s['bytes']} bytes in {s['blocks']} blocks, sizes {sizes[:5]}, exe frames {[hex(x) for x in k]}"
                if not cands:
                    unmatched.append(desc)
                    continue
                matched += 1
                if all(c[0] == "Leak_StillReachable" for c in cands):
                    bad.append(desc + " — memcheck: still reachable " + str([(c[1], c[2]) for c in cands]))

print(f"cgc reported {total} lost sites; {matched} matched memcheck records, {len(unmatched)} unmatched")
for u in unmatched[:20]:
    print("  unmatched:", u)
if bad:
    print("FAIL: cgc reported as lost what memcheck classes as still reachable:")
    for b in bad:
        print("  ", b)
    sys.exit(1)
print("ok: no reported site is one memcheck classes as still reachable")

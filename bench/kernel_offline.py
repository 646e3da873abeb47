#!/usr/bin/env python3
"""Offline kernel-detection yardstick: the scorer's corpus and metrics without a server.

For each corpus file (one host), its lines go through split_printk + classify, a minimal per-host grouping that
mirrors the correlator's contract (first trigger opens an incident, every later line attaches; a boot marker
closes it; a boot marker after earlier lines with no crash and no clean shutdown is an unclean reboot), then
analyze(). Scoring uses the real scorer's own functions (load_corpus, score, write_misses), imported from
--tools, so the figures match the end-to-end ones as closely as the grouping matches the correlator's.

  bench/kernel_offline.py [--corpus DIR] [--tools DIR] [--half all|public|hidden] [--misses FILE] [--show FILE]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sylog.kernel.detect import classify, is_boot_marker  # noqa: E402
from sylog.kernel.printk import split_printk  # noqa: E402
from sylog.kernel.report import analyze  # noqa: E402

SHARED = Path("/work/shared")
STRIPPED = False  # --stripped: analyze() gets printk-stripped bodies (as the correlator passes them)


def load_scorer(tools: Path):
    spec = importlib.util.spec_from_file_location("score_kernel", tools / "score_kernel.py")
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


def incidents_for(host: str, lines: list[str]) -> list[dict]:
    """The incidents one host's lines give (scorer-shaped dicts)."""
    out: list[dict] = []
    cur: dict | None = None
    seen_lines = 0
    for n, raw in enumerate(lines):
        if not raw.strip():
            continue
        p = split_printk(raw)
        body = p.body
        if is_boot_marker(body):
            if cur is not None:
                out.append(cur)
                cur = None
            elif seen_lines and not out:
                out.append({"kind": "unclean-reboot", "lines_raw": [raw], "first": n, "kinds": ["unclean-reboot"]})
            seen_lines = 0
            continue
        seen_lines += 1
        hit = classify(body)
        if cur is None:
            if hit is None:
                continue
            cur = {"kind": hit.kind, "kinds": [hit.kind], "fatal": hit.fatal, "lines_raw": [], "first": n}
        elif hit is not None and hit.kind not in cur["kinds"]:
            cur["kinds"].append(hit.kind)
        if hit is not None and hit.fatal:
            cur["fatal"] = True
        cur["lines_raw"].append(raw)
    if cur is not None:
        out.append(cur)
    res = []
    for i, inc in enumerate(out):
        if inc["kind"] == "unclean-reboot":
            title, func, sig = "unexpected kernel reboot", None, "unclean"
        else:
            r = analyze(inc["kind"], inc["lines_raw"] if not STRIPPED else [split_printk(x).body for x in inc["lines_raw"]])
            title, func, sig = r.title, r.function, r.signature
        res.append({"id": f"{host}-{i}", "host": host, "kind": inc["kind"], "kinds": inc["kinds"], "title": title,
                    "function": func, "signature": sig, "state": "closed", "lines": len(inc["lines_raw"]),
                    "path": "", "first_seen": float(inc["first"])})
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=SHARED / "corpus" / "kernel")
    ap.add_argument("--tools", type=Path, default=SHARED / "tools")
    ap.add_argument("--half", choices=("all", "public", "hidden"), default="all")
    ap.add_argument("--misses", type=Path, default=Path("/tmp/kernel_offline_misses.txt"))
    ap.add_argument("--show", help="print the incidents of one corpus file (e.g. 12.txt)")
    ap.add_argument("--stripped", action="store_true",
                    help="give analyze() printk-stripped bodies (no caller ids) instead of the raw lines")
    a = ap.parse_args()
    global STRIPPED
    STRIPPED = a.stripped
    sk = load_scorer(a.tools)
    cases = sk.load_corpus(a.corpus, a.half)
    incidents: list[dict] = []
    t0 = time.perf_counter()
    nlines = 0
    for e, log in cases:
        lines = [ln.decode("utf-8", "surrogateescape").encode("utf-8", "replace").decode("utf-8")
                 for ln in log if ln.strip()]
        nlines += len(lines)
        incs = incidents_for(sk.host_of(e["file"]), lines)
        if a.show and e["file"] == a.show:
            for inc in incs:
                print(inc)
            print("expected:", e["expected_kind"], e["expected_functions"], e["title"])
        incidents.extend(incs)
    dt = time.perf_counter() - t0
    m, tally, per_kind, rows, stray, missing, bad_kind = sk.score(cases, incidents)
    sk.write_misses(a.misses, rows)
    for k, (d, n, ok, judged) in sorted(per_kind.items(), key=lambda kv: -kv[1][1]):
        print(f"{k:<15} {d:>5}/{n:<4} {d / n:5.2f} {f'{ok}/{judged}' if judged else '-':>9}")
    print(f"{len(cases)} files, {nlines} lines in {dt:.2f}s; misses: {len(rows)} rows in {a.misses}")
    n = sum(1 for e, _ in cases if e["expected_kind"] != "not-kernel")
    print(f"detect={m['detect']:.3f} fp={m['fp']:.3f} kind={m['kind']:.3f} func={m['func']:.3f} "
          f"dup={m['dup']:.3f} kind_strict={m['kind_strict']:.3f} n={n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

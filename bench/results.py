"""bench/RESULTS.md: each benchmark owns a marked block that its last run replaces; hand-written text outside the
blocks (analysis, conclusions) is kept. Raw rows also go to ``bench/results/<name>.json`` for later comparison."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from bench import procstat

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
RAW = HERE / "results"

HEADER = """# sylog benchmark results

Produced by `python -m bench.run <benchmark>` (see `bench/run.py --help`). Each block below is rewritten by its
benchmark's last run; the command, the machine and the load average at the start of the run are in the block.
Figures are medians over the runs unless a column says otherwise.

"""


def code_version() -> str:
    """The sylog code measured: HEAD commit, and whether sylog/ had uncommitted changes (the tree is shared)."""
    import subprocess

    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE.parent, capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "sylog"], cwd=HERE.parent,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "sylog code: unknown"
    return f"sylog code: {head}{' + uncommitted changes in sylog/' if dirty else ''}"


def machine_line() -> str:
    m = procstat.machine()
    return (f"machine: {m['nproc']} CPUs ({m['cpu']}), {m['mem']} RAM, Python {m['python']}, kernel {m['kernel']}; "
            f"load average at start: {m['loadavg']}; {code_version()}")


def update(name: str, body: str) -> None:
    """Replace (or append) the block of benchmark ``name`` in RESULTS.md."""
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    text = RESULTS.read_text() if RESULTS.exists() else HEADER
    block = f"{begin}\n{body.rstrip()}\n{end}"
    if begin in text and end in text:
        a = text.index(begin)
        b = text.index(end) + len(end)
        text = text[:a] + block + text[b:]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    RESULTS.write_text(text)


def save_raw(name: str, data: Any) -> Path:
    RAW.mkdir(exist_ok=True)
    p = RAW / f"{name}.json"
    p.write_text(json.dumps({"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                             "machine": procstat.machine(), "data": data}, indent=1, default=str))
    return p


def table(headers: list[str], rows: list[list[Any]]) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            if v != v:
                return "-"
            if abs(v) >= 1000:
                return f"{v:,.0f}"
            if abs(v) >= 10:
                return f"{v:.1f}"
            return f"{v:.2f}"
        if isinstance(v, int) and abs(v) >= 10000:
            return f"{v:,}"
        return str(v)

    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
    return "\n".join(out)

"""Where the server's time goes under load: ``sylog serve`` under ``python -m cProfile -o``, TCP ingest, stages.

The main (event-loop) thread is profiled over the load window, the worker threads (timeline writer, incident
engine) over their life (see bench/profserve.py); /proc/PID/task/*/stat gives the same split without profiler. Each function's own time is assigned
to a stage by its module; the own time of a builtin/C function (``bytes.decode``, ``os.write``, uvloop internals
called from Python, ...) goes to the stage of its Python caller, split in proportion to the calls' times.
"""

from __future__ import annotations

import pstats
from pathlib import Path
from typing import Any

STAGES: list[tuple[str, tuple[str, ...]]] = [
    ("framing + socket shell", ("sylog/syslog/framing.py", "sylog/server/listeners.py", "sylog/server/udp.py")),
    ("parsing", ("sylog/syslog/rfc5424.py", "sylog/syslog/rfc3164.py", "sylog/syslog/parse.py",
                 "sylog/syslog/message.py", "msgspec")),
    ("host folding", ("sylog/syslog/hostnames.py",)),
    ("line formatting", ("sylog/timeline/format.py",)),
    ("timeline writing", ("sylog/timeline/writer.py",)),
    ("detection + incidents", ("sylog/incidents/", "sylog/kernel/")),
    ("other observers", ("sylog/vmcore/", "sylog/alerts/")),
    ("pipeline glue", ("sylog/server/pipeline.py", "sylog/server/counters.py")),
    ("event loop", ("uvloop", "asyncio/", "selectors.py", "concurrent/futures", "threading.py")),
]


def stage_of(func: tuple[str, int, str]) -> str | None:
    path = func[0]
    if path == "~" or path.startswith("<"):
        return None  # builtin: attributed to its caller
    for name, keys in STAGES:
        if any(k in path for k in keys):
            return name
    return "other"


def load(prof: Path, threads: bool = True) -> pstats.Stats:
    """The main-thread profile, plus the worker threads' (``prof.thread<N>``) when ``threads``."""
    st = pstats.Stats(str(prof))
    if threads:
        for p in sorted(prof.parent.glob(prof.name + ".thread*")):
            try:
                st.add(str(p))
            except Exception:
                continue
    return st


def summarise(prof: Path, top: int = 25, threads: bool = True) -> dict[str, Any]:
    st = load(prof, threads)
    stats = st.stats  # type: ignore[attr-defined]
    shares: dict[str, float] = {}
    total = 0.0
    for func, (_cc, _nc, tt, _ct, callers) in stats.items():
        total += tt
        s = stage_of(func)
        if s is not None:
            shares[s] = shares.get(s, 0.0) + tt
            continue
        edges = [(stage_of(c), e[2]) for c, e in callers.items()]
        edge_tt = sum(t for _, t in edges)
        if not edges or edge_tt <= 0:
            shares["other"] = shares.get("other", 0.0) + tt
            continue
        for s2, t in edges:
            key = s2 or "other"
            shares[key] = shares.get(key, 0.0) + tt * t / edge_tt
    rows = sorted(stats.items(), key=lambda kv: kv[1][2], reverse=True)[:top]
    top_funcs = [{"func": f"{Path(f[0]).name}:{f[1]}({f[2]})", "tottime": v[2], "cumtime": v[3], "calls": v[1]}
                 for f, v in rows]
    return {"total_tottime": total, "stage_seconds": shares,
            "stage_share": {k: v / total for k, v in sorted(shares.items(), key=lambda kv: -kv[1])},
            "top": top_funcs}

"""``sylog parse`` throughput and per-stage costs of the server's hot path, measured without a profiler.

* CLI: ``python -m sylog parse [--lenient] < N lines > /dev/null`` (parse + JSON out), lines/s.
* Stages, in-process, on the same workload (octet-counted TCP bytes of 1,000 hosts), each timed alone over the
  whole input: deframe (``TcpDeframer.feed`` on 256 KiB reads), parse (lenient ``parse``), fold host + format the
  timeline line, ``TimelineWriter.append`` + ``write_batch`` (the real file writes into a temp dir), and the
  incident engine's ``feed`` (context ring + kernel detection). The shares are those of a single-threaded
  pipeline; the cProfile of the running server (``bench.run profile``) adds the event loop and the shell.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.targets import REPO
from bench.workload import Workload, WorkloadSpec, frame


def parse_cli(lines: int = 200_000, lenient: bool = True, hosts: int = 1000) -> dict[str, Any]:
    w = Workload(WorkloadSpec(hosts=hosts, messages=lines, crashes=min(10, hosts), senders=1))
    with tempfile.TemporaryDirectory(prefix="sylog-bench-parse-") as tmp:
        src = Path(tmp) / "in.txt"
        with open(src, "wb") as f:
            n = 0
            for _h, m, _c in w.messages():
                f.write(m + b"\n")
                n += 1
        cmd = [sys.executable, "-m", "sylog", "parse"] + (["--lenient"] if lenient else [])
        with open(src, "rb") as fin, open("/dev/null", "wb") as fout:
            t0 = time.perf_counter()
            p = subprocess.run(cmd, stdin=fin, stdout=fout, stderr=subprocess.PIPE, cwd=str(REPO), timeout=600)
            dt = time.perf_counter() - t0
        # start-up cost, to subtract: the same command on an empty input
        with open("/dev/null", "rb") as fin, open("/dev/null", "wb") as fout:
            t1 = time.perf_counter()
            subprocess.run(cmd, stdin=fin, stdout=fout, cwd=str(REPO), timeout=60)
            boot = time.perf_counter() - t1
    return {"mode": "lenient" if lenient else "strict", "lines": n, "seconds": dt, "startup_s": boot,
            "lines_per_s": n / (dt - boot if dt - boot > 0.2 * dt else dt), "exit": p.returncode}


def stages(messages: int = 200_000, hosts: int = 1000) -> dict[str, Any]:
    from sylog.incidents.engine import IncidentEngine
    from sylog.syslog.framing import TcpDeframer
    from sylog.syslog.hostnames import fold_host
    from sylog.syslog.parse import parse
    from sylog.timeline.format import TimeCache, format_with_stamp
    from sylog.timeline.writer import TimelineWriter

    w = Workload(WorkloadSpec(hosts=hosts, messages=messages, crashes=min(10, hosts), senders=1))
    raw = b"".join(frame(m, "octet") for _h, m, _c in w.messages())
    reads = [raw[i:i + 256 * 1024] for i in range(0, len(raw), 256 * 1024)]
    out: dict[str, float] = {}

    t = time.perf_counter()
    d = TcpDeframer()
    frames: list[bytes] = []
    for r in reads:
        frames.extend(d.feed(r))
    out["deframe"] = time.perf_counter() - t
    n = len(frames)

    t = time.perf_counter()
    msgs = [parse(f) for f in frames]
    out["parse"] = time.perf_counter() - t

    now = time.time()
    stamp, day = TimeCache().stamp(now)
    t = time.perf_counter()
    hl = []
    for m in msgs:
        h = fold_host(m.hostname, "127.0.0.1")
        hl.append((h, format_with_stamp(stamp, h, m)))
    out["fold+format"] = time.perf_counter() - t

    with tempfile.TemporaryDirectory(prefix="sylog-bench-stages-") as tmp:
        wr = TimelineWriter(tmp, max_open_files=max(1024, hosts + 10), flush_lines=10 ** 9)
        t = time.perf_counter()
        for h, line in hl:
            wr.append(h, day, line)
        out["writer.append"] = time.perf_counter() - t
        batch = wr._pending  # the flush hands exactly this dict to the worker thread
        wr._pending = {}
        t = time.perf_counter()
        wr.write_batch(batch)
        out["write_batch (disk)"] = time.perf_counter() - t
        wr.close_sync()

        eng = IncidentEngine(tmp, quiet=600.0)
        feed = eng.feed
        t = time.perf_counter()
        for (h, line), m in zip(hl, msgs):
            feed(h, now, m, line)
        out["incident feed"] = time.perf_counter() - t
    total = sum(out.values())
    return {"messages": n, "bytes": len(raw), "seconds": out, "total_s": total,
            "us_per_msg": {k: v * 1e6 / n for k, v in out.items()},
            "share": {k: v / total for k, v in out.items()}, "pipeline_msgs_per_s": n / total}

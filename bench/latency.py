"""Crash latency: trigger line sent -> incident JSON visible on disk, under background load.

sylog runs with a background load (default: 1,000 hosts over 4 TCP connections paced at 100k msg/s, cycling a
pre-rendered workload; or UDP). On a separate TCP connection, K "crash hosts" first send 20 ordinary lines each
(their context ring), then, one after the other, each sends a realistic crash trace; the time just before the
``sendall`` of the trace is the send time (the first crash after start-up is reported apart as the cold
start: lazy imports and first-use work inside the server), and a stat loop (every 2 ms, no inotify) watches
``DATA/incidents/<host>/`` until a ``*.json`` appears. Reported: p50/p90/p99/max, the background rate the load
generator achieved and the rate sylog actually wrote during the test (lines on disk / duration).
"""

from __future__ import annotations

import os
import socket
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import procstat
from bench.harness import count_lines
from bench.loadgen import LoadRun
from bench.targets import Sylog
from bench.traces import TRACE_NAMES, TRACES
from bench.workload import Workload, WorkloadSpec, frame


def _crash_payloads(k: int, framing: str = "octet") -> tuple[list[str], bytes, list[bytes]]:
    """Host names, all context lines (one buffer), one trace buffer per host."""
    ctx_w = Workload(WorkloadSpec(hosts=k, messages=20 * k, prefix="crash", senders=1, kernel_share=0.1))
    context = b"".join(frame(m, framing) for _h, m, _c in ctx_w.messages())
    names, traces = [], []
    stamp = b"2026-11-25T10:05:00.000000Z"
    for i in range(k):
        name = ctx_w.host_name(i)
        tname = TRACE_NAMES[i % len(TRACE_NAMES)]
        fill = {"cpu": i % 32, "pid": 1000 + i, "comm": "kworker/1:2", "rel": "6.1.0-18-amd64"}
        lines = []
        for j, (sev, text) in enumerate(TRACES[tname][1]):
            m = b"<%d>1 %s %s kernel - - - [%12.6f] %s" % (sev, stamp, name.encode(), 500 + j * 1e-5,
                                                           text.format(**fill).encode())
            lines.append(frame(m, framing))
        names.append(name)
        traces.append(b"".join(lines))
    return names, context, traces


def pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    k = min(len(xs) - 1, max(0, round(p / 100 * (len(xs) - 1))))
    return xs[k]


def run_latency(*, crashes: int = 50, rate: float = 100_000, background: str = "tcp", hosts: int = 1000,
                senders: int = 4, gap: float = 0.1, warmup: float = 2.0, poll: float = 0.002,
                give_up: float = 5.0, tmp_root: str | None = None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="sylog-bench-latency-", dir=tmp_root) as tmp:
        tgt = Sylog(Path(tmp), tcp=True, udp=background == "udp", incident_quiet=30.0)
        tgt.start()
        names, context, traces = _crash_payloads(crashes + 1)  # the first one is the cold start, reported apart
        duration = warmup + crashes * (gap + 0.25) + 5.0
        per_sender_msgs = int(min(rate * duration, 400_000 * senders))
        spec = WorkloadSpec(hosts=hosts, messages=per_sender_msgs, senders=senders if background == "tcp" else 2)
        port = tgt.tcp_port if background == "tcp" else tgt.udp_port
        bg = LoadRun(spec, target=f"127.0.0.1:{port}", transport=background, rate=rate, cycle=True,
                     duration=duration, timeout=duration + 60)
        lat: list[float] = []
        missed: list[str] = []
        parts: list[dict[str, float]] = []  # per crash: where the time went (see _breakdown)
        try:
            bg.start()
            sock = socket.create_connection(("127.0.0.1", tgt.tcp_port))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(context)
            cpu0 = procstat.cpu_seconds(tgt.pid)
            t_bg = time.monotonic()
            bg.go()
            time.sleep(warmup)
            inc = tgt.data / "incidents"
            for name, trace in zip(names, traces):
                d = inc / name
                t0 = time.monotonic()
                w0 = time.time()
                sock.sendall(trace)
                seen = None
                while time.monotonic() - t0 < give_up:
                    try:
                        if any(f.endswith(".json") and not f.startswith(".") for f in os.listdir(d)):
                            seen = time.monotonic()
                            break
                    except FileNotFoundError:
                        pass
                    time.sleep(poll)
                if seen is None:
                    missed.append(name)
                else:
                    lat.append(seen - t0)
                    parts.append(_breakdown(d, w0, w0 + (seen - t0)))
                time.sleep(gap)
            t_end = time.monotonic()
            lines_mid, _, _ = count_lines(tgt.timelines)
            cpu = procstat.cpu_seconds(tgt.pid) - cpu0
            sock.close()
            lr = bg.wait()
        finally:
            bg.close()
            tgt.stop()
        final = tgt.final_counters()
        written_rate = lines_mid / max(1e-9, t_end - t_bg)
    cold = lat.pop(0) if lat and names[0] not in missed else float("nan")
    return {"crashes": crashes, "detected": len(lat), "missed": len(missed), "cold_ms": cold * 1000,
            "p50_ms": pct(lat, 50) * 1000, "p90_ms": pct(lat, 90) * 1000, "p99_ms": pct(lat, 99) * 1000,
            "max_ms": max(lat) * 1000 if lat else float("nan"),
            "mean_ms": statistics.mean(lat) * 1000 if lat else float("nan"),
            "background": background, "offered_rate": rate, "achieved_send_rate": lr.achieved_rate,
            "written_rate": written_rate, "cpu_util": cpu / max(1e-9, t_end - t_bg),
            "latencies_ms": [round(x * 1000, 2) for x in lat], "missed_hosts": missed,
            "parts_ms": parts[1:] if names[0] not in missed else parts,
            "loop_lag_max_ms": final.get("loop_lag_max_ms", -1), "turn_yields": final.get("turn_yields", -1)}


def _breakdown(d: Path, w_send: float, w_seen: float) -> dict[str, float]:
    """Split one crash's latency (ms) using what the server left on disk: ``recv`` = send -> the trigger's receive
    time (the incident's first_seen: socket queues + waiting for the event loop's turn); ``to_write`` = receive ->
    the .log's data written (detection, the wake-up of the writer thread); ``log_sync`` = .log written -> the .json
    written (the .log's fsync + rename); ``json_sync`` = .json written -> renamed (its fsync; the rename sets the
    ctime); ``poll`` = rename -> seen by the 2 ms stat loop. Clocks: the same wall clock, 1 us resolution in
    first_seen, file times at the kernel's tick granularity (a few ms), so parts can be slightly negative."""
    from sylog.incidents.model import parse_rfc3339

    try:
        jp = next(d / f for f in os.listdir(d) if f.endswith(".json") and not f.startswith("."))
        js = jp.stat()
        ls = jp.with_suffix(".log").stat()
        import orjson

        first = parse_rfc3339(orjson.loads(jp.read_bytes())["first_seen"]) or w_send
    except (OSError, StopIteration, ValueError, KeyError):
        return {}
    ms = 1000.0
    return {"sent": w_send, "recv": (first - w_send) * ms, "to_write": (ls.st_mtime - first) * ms,
            "log_sync": (js.st_mtime - ls.st_mtime) * ms, "json_sync": (js.st_ctime - js.st_mtime) * ms,
            "poll": (w_seen - js.st_ctime) * ms}

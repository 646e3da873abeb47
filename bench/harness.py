"""One measured run: start a receiver, send a workload, wait for the last line on disk, account, verify, stop.

Timing: from the first byte sent (the earliest sender's ``time.monotonic()`` just before its first send; the clock
is system-wide) to the last write of the receiver. The receiver's activity is watched through ``wchar`` in
``/proc/<pid>/io`` (summed over its process tree) every few ms - one small read, no directory walk while it
works; once it has been quiet for a second the timeline lines are counted (all files, per host) and compared with
the manifest. The end time is the last moment ``wchar`` moved.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import procstat
from bench.loadgen import LoadResult, LoadRun
from bench.targets import Rsyslog, Sink, Sylog, Target
from bench.workload import WorkloadSpec


def order_violations(timelines: Path) -> int:
    """Hosts whose ``seq=N`` line endings (bench.workload) ever go backwards in their timeline files."""
    bad = 0
    for d in os.scandir(timelines):
        if not d.is_dir():
            continue
        last = -1
        broken = False
        for f in sorted(os.scandir(d.path), key=lambda e: e.name):  # day files in date order
            if not f.name.endswith(".log"):
                continue
            with open(f.path, "rb") as fh:
                for line in fh:
                    i = line.rfind(b" seq=")
                    if i < 0:
                        continue
                    try:
                        n = int(line[i + 5:])
                    except ValueError:
                        continue
                    if n < last:
                        broken = True
                        break
                    last = n
            if broken:
                break
        bad += broken
    return bad


def count_kernel_lines(timelines: Path) -> int:
    """Timeline lines with facility kern (`` kern.<severity> `` field; sylog's and the rsyslog template's)."""
    n = 0
    for root, _dirs, files in os.walk(timelines):
        for name in files:
            if name.endswith(".log"):
                with open(os.path.join(root, name), "rb") as fh:
                    n += fh.read().count(b" kern.")
    return n


def count_lines(timelines: Path) -> tuple[int, dict[str, int], float]:
    """Lines per host directory (every ``*.log`` file in it), and the newest file mtime (wall clock)."""
    per: dict[str, int] = {}
    newest = 0
    try:
        hosts = list(os.scandir(timelines))
    except FileNotFoundError:
        return 0, per, 0.0
    for d in hosts:
        if not d.is_dir():
            continue
        n = 0
        for f in os.scandir(d.path):
            if f.name.endswith(".log"):
                newest = max(newest, f.stat().st_mtime_ns)
                with open(f.path, "rb") as fh:
                    while True:
                        b = fh.read(1 << 22)
                        if not b:
                            break
                        n += b.count(b"\n")
        per[d.name] = n
    return sum(per.values()), per, newest / 1e9


@dataclass
class WaitResult:
    t_end: float  # monotonic time of the last timeline write (newest mtime) or last received byte (sink)
    lines: int
    per_host: dict[str, int] = field(default_factory=dict)
    timed_out: bool = False
    t99: float | None = None  # monotonic time when 99% of all bytes the receiver wrote had been written (wchar)


def _mono(wall: float, fallback: float) -> float:
    """A wall-clock time (file mtime) on the monotonic clock the senders use."""
    return wall - (time.time() - time.monotonic()) if wall else fallback


def wait_files(target: Target, expected: int, load_done: Any, *, poll: float = 0.005, quiet: float = 1.0,
               give_up_quiet: float = 10.0, timeout: float = 900.0) -> WaitResult:
    """Wait until ``expected`` lines are on disk (or the receiver has written nothing for ``give_up_quiet`` s after
    the load finished: loss)."""
    deadline = time.monotonic() + timeout
    pids = procstat.tree(target.pid)
    pids_at = time.monotonic()
    last_w = -1
    t_change = time.monotonic()
    last_count_at = 0.0
    lines, per = 0, {}
    w0 = procstat.wchar(pids)
    samples: list[tuple[float, int]] = []

    def t99() -> float | None:
        total = last_w - w0
        if total <= 0:
            return None
        goal = w0 + 0.99 * total
        return next((t for t, w in samples if w >= goal), None)

    while True:
        now = time.monotonic()
        if now - pids_at > 1.0:
            pids, pids_at = procstat.tree(target.pid), now
        w = procstat.wchar(pids)
        if w != last_w:
            last_w, t_change = w, now
            samples.append((now, w))
        elif load_done() and now - t_change >= quiet and now - last_count_at >= quiet:
            lines, per, newest = count_lines(target.timelines)
            last_count_at = time.monotonic()
            if lines >= expected or now - t_change >= give_up_quiet:
                return WaitResult(_mono(newest, t_change), lines, per, t99=t99())
        if now > deadline or not target.alive():
            lines, per, newest = count_lines(target.timelines)
            return WaitResult(_mono(newest, t_change), lines, per, timed_out=True, t99=t99())
        time.sleep(poll)


def wait_sink(sink: Sink, expected_bytes: int | None, load_done: Any, *, udp: bool = False, quiet: float = 1.0,
              timeout: float = 600.0) -> WaitResult:
    deadline = time.monotonic() + timeout
    while True:
        now = time.monotonic()
        got = sink.udp_datagrams if udp else sink.tcp_bytes
        if not udp and expected_bytes is not None and got >= expected_bytes:
            return WaitResult(sink.last_activity, 0)
        if load_done() and now - max(sink.last_activity, 0) >= quiet:
            return WaitResult(sink.last_activity, sink.udp_datagrams if udp else 0, timed_out=not udp)
        if now > deadline:
            return WaitResult(sink.last_activity, got, timed_out=True)
        time.sleep(0.005)


def incidents_found(data: Path) -> dict[str, list[dict]]:
    """host -> incident JSON objects on disk (written atomically: ``*.json`` only, temp files skipped)."""
    out: dict[str, list[dict]] = {}
    root = data / "incidents"
    if not root.is_dir():
        return out
    for hd in os.scandir(root):
        if not hd.is_dir():
            continue
        for f in os.scandir(hd.path):
            if f.name.endswith(".json") and not f.name.startswith("."):
                try:
                    out.setdefault(hd.name, []).append(json.loads(Path(f.path).read_bytes()))
                except (OSError, ValueError):
                    continue
    return out


@dataclass
class IngestResult:
    target: str
    transport: str
    hosts: int
    offered: int  # messages sent
    lines: int  # lines found on disk (file targets) / datagrams or messages counted (sink)
    seconds: float  # first byte sent -> last line on disk
    rate: float  # offered / seconds (TCP: only meaningful when nothing was lost)
    rate99: float  # 99% of offered / (first byte -> 99% of the receiver's output written): no flush-tail effect
    cpu_s: float
    cpu_per_million: float
    peak_rss_mb: float
    rss_after_mb: float
    send_rate: float  # what the load generator achieved
    lost: int
    hosts_wrong: int  # hosts whose line count differs from the manifest
    hosts_out_of_order: int = 0  # hosts whose lines are not on disk in the order sent (TCP)
    incidents_expected: int = 0
    incidents_matched: int = 0
    incidents_extra: int = 0
    rcvbuf_errors: int = 0
    kernel_sent: int = 0  # UDP runs: kernel lines offered / found on disk (is overload shed on kernel lines?)
    kernel_received: int = 0
    server_counters: dict = field(default_factory=dict)  # sylog's final counter line
    exit_code: int | None = None
    main_thread_cpu: float = 0.0  # whole process lifetime (start-up included), from /proc/PID/task
    other_threads_cpu: float = 0.0
    note: str = ""

    def row(self) -> dict[str, Any]:
        return self.__dict__.copy()


def make_target(name: str, workdir: Path, *, tcp: bool, udp: bool, hosts: int, **kw: Any) -> Target:
    if name == "sylog":
        return Sylog(workdir, tcp=tcp, udp=udp, **kw)
    if name.startswith("sylog-x"):  # sylog-x2: the SO_REUSEPORT multi-process experiment (bench/multiserve.py)
        return Sylog(workdir, tcp=tcp, udp=udp, workers=int(name[7:]), **kw)
    if name == "rsyslog":
        return Rsyslog(workdir, tcp=tcp, udp=udp, hosts=hosts, **kw)
    if name == "sink":
        return Sink(workdir, tcp=tcp, udp=udp)
    raise ValueError(name)


def ingest(target_name: str, spec: WorkloadSpec, *, transport: str = "tcp", framing: str = "octet",
           rate: float | None = None, tmp_root: str | None = None, timeout: float = 900.0,
           target_kw: dict | None = None, keep: Path | None = None, info: dict | None = None,
           settle: float = 0.0) -> IngestResult:
    """One run of one receiver on one workload (``settle``: seconds to wait after the last line is on disk
    before reading the resting RSS)."""
    with tempfile.TemporaryDirectory(prefix=f"sylog-bench-{target_name}-", dir=tmp_root) as tmp:
        work = Path(tmp)
        tgt = make_target(target_name, work, tcp=transport == "tcp", udp=transport == "udp", hosts=spec.hosts,
                          **(target_kw or {}))
        tgt.start()
        port = tgt.tcp_port if transport == "tcp" else tgt.udp_port
        run = LoadRun(spec, target=f"127.0.0.1:{port}", transport=transport, framing=framing, rate=rate,
                      timeout=timeout)
        load: list[LoadResult] = []
        try:
            run.start()
            time.sleep(0.2)  # let the connections' accept settle
            pids = procstat.tree(tgt.pid)
            cpu0 = procstat.cpu_seconds(tgt.pid, pids=pids)
            snmp0 = procstat.snmp_udp()
            tgt.on_go()
            run.go()

            import threading

            def waiter() -> None:
                load.append(run.wait())

            th = threading.Thread(target=waiter, daemon=True)
            th.start()
            done = lambda: not th.is_alive()  # noqa: E731
            if isinstance(tgt, Sink):
                # expected bytes are known only once the senders report; before that wait on activity
                th.join(timeout)
                lr = load[0]
                w = wait_sink(tgt, lr.bytes if transport == "tcp" else None, done, udp=transport == "udp")
                if transport == "tcp":
                    w.lines = lr.messages if tgt.tcp_bytes >= lr.bytes else 0
            else:
                w = wait_files(tgt, spec_total(spec), done,
                               give_up_quiet=3.0 if transport == "udp" else 10.0, timeout=timeout)
            th.join(timeout)
            tgt.on_done()
            if info is not None:
                info["window_main_cpu"] = getattr(tgt, "window_cpu", None)
            lr = load[0]
            pids = procstat.tree(tgt.pid)
            cpu = procstat.cpu_seconds(tgt.pid, pids=pids) - cpu0
            if settle > 0:
                time.sleep(settle)
            peak = procstat.peak_rss_mb(tgt.pid)
            rss = procstat.rss_mb(tgt.pid)
            snmp1 = procstat.snmp_udp()
            found = incidents_found(tgt.data) if target_name.startswith("sylog") else {}
            kern_rx = count_kernel_lines(tgt.timelines) if transport == "udp" and tgt.writes_files else 0
            disorder = order_violations(tgt.timelines) if transport == "tcp" and tgt.writes_files else 0
            thr = procstat.threads_cpu(tgt.pid)
            main_cpu = next((c for t, _, c in thr if t == tgt.pid), 0.0)
            other_cpu = sum(c for t, _, c in thr if t != tgt.pid)
        finally:
            run.close()
            rc = tgt.stop()
        counters = tgt.final_counters() if hasattr(tgt, "final_counters") else {}
        if keep is not None:
            import shutil

            shutil.copytree(work, keep, dirs_exist_ok=True)
        man = lr.manifest
        offered = lr.messages
        seconds = max(1e-9, w.t_end - lr.t_first)
        wrong = 0
        if w.per_host and man.per_host and transport == "tcp":
            wrong = sum(1 for h, n in man.per_host.items() if w.per_host.get(h, 0) != n)
            wrong += sum(1 for h in w.per_host if h not in man.per_host)
        matched = extra = 0
        crash_hosts = {c.host: c.kind for c in man.crashes}
        for h, incs in found.items():
            if h in crash_hosts and any(i.get("kind") == crash_hosts[h] for i in incs):
                matched += 1
            elif h not in crash_hosts:
                extra += len(incs)
        note = []
        if w.timed_out:
            note.append("timed out")
        errs = [s.error for s in lr.senders if s.error]
        if errs:
            note.append("sender errors: " + "; ".join(errs[:2]))
        if len(getattr(tgt, "split", ())) > 1:
            note.append("split " + "/".join(map(str, sorted(tgt.split, reverse=True))))
        if rc not in (0, None, -15) and target_name != "sink":
            note.append(f"exit {rc}: {tgt.tail(300)!r}")
        return IngestResult(
            target=target_name, transport=transport, hosts=spec.hosts, offered=offered, lines=w.lines,
            seconds=seconds, rate=offered / seconds,
            rate99=(0.99 * offered / max(1e-9, w.t99 - lr.t_first)) if w.t99 else offered / seconds, cpu_s=cpu, cpu_per_million=cpu * 1e6 / max(1, offered),
            peak_rss_mb=peak, rss_after_mb=rss, send_rate=lr.achieved_rate, lost=max(0, offered - w.lines),
            hosts_wrong=wrong, hosts_out_of_order=disorder, incidents_expected=len(man.crashes) if target_name.startswith("sylog") else 0,
            incidents_matched=matched, incidents_extra=extra,
            rcvbuf_errors=snmp1.get("RcvbufErrors", 0) - snmp0.get("RcvbufErrors", 0), exit_code=rc,
            main_thread_cpu=main_cpu, other_threads_cpu=other_cpu, note="; ".join(note),
            kernel_sent=kernel_messages(spec) if transport == "udp" and tgt.writes_files else 0,
            kernel_received=kern_rx, server_counters=counters)


def spec_total(spec: WorkloadSpec) -> int:
    from bench.workload import Workload

    return Workload(spec).manifest("octet").total_messages


def kernel_messages(spec: WorkloadSpec) -> int:
    from bench.workload import Workload

    return sum(1 for _h, m, _c in Workload(spec).messages() if b" kernel - " in m[:120])


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")

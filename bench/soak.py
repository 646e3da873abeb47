"""Soak: minutes of mixed load with crash bursts from many hosts; checks memory, fds, incidents and accounting.

    .venv/bin/python -m bench.soak --minutes 10 --hosts 1000          # the issue's soak (not in CI)
    .venv/bin/python -m bench.soak --minutes 2 --hosts 1000           # smoke check

What it does (loopback only, bounded in time: about ``--minutes`` plus at most ``--drain`` seconds):
* starts ``sylog serve`` fresh in a temp dir (bench/targets.py's Sylog, free ports, short ``--incident-quiet``);
* sends bench/workload.py's mixed workload (daemon + kernel chatter, realistic crash traces injected into
  ``--crashes`` hosts at known rounds) through bench/loadgen.py at ``--rate`` msg/s over ``--senders`` TCP
  connections, for the load part of the run, and beside it the same hosts' chatter over UDP at ``--udp-rate``
  msg/s (another seed, no crashes; 0 turns UDP off);
* meanwhile, at ``--bursts`` known times, a burst sender opens its own connection and sends crash traces from
  ``--burst-hosts`` other hosts at once, their lines interleaved (a dying fleet);
* samples the server's RSS (``/proc/PID/status`` VmRSS) and open fds (``/proc/PID/fd``) every ``--sample`` s;
* after the load: waits (bounded) until every expected incident is closed, stops the server (SIGTERM: it drains
  and logs its final ``stopped: ...`` counter line), then checks:
  - memory flat: least-squares slope of RSS over the second half of the load <= ``--max-slope`` MB/min;
  - no fd growth: the second half's median fd count and the count after the load <= the first half's plateau
    (median of its second quarter) + 2 (the timeline writer keeps one file per active host open, so the plateau is
    reached once every host has spoken; a burst briefly holds incident files open, hence medians, not maxima);
  - every injected crash exactly one incident, of the trace's kind, and no other incident
    (``sylog incidents --data-dir DIR --json``);
  - every message accounted for: TCP sent = TCP received (no loss over TCP); UDP sent = datagrams read + the
    kernel's counted drops (udp_kernel_drops) and shed ones are counted (shed_ordinary); and
    received = lines in timelines + counted drops (write_failed + dropped + internal_errors).
The load average (1 min) is sampled with RSS and fds: the box is shared, figures mean little without it.
Exit status 0 when every check passes; the figures are printed and written as JSON (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from bench.harness import count_lines
from bench.loadgen import LoadRun
from bench.targets import REPO, Sylog
from bench.traces import TRACE_NAMES, TRACES
from bench.workload import Workload, WorkloadSpec, frame


@dataclass
class Sample:
    t: float  # seconds since go
    rss_mb: float
    fds: int
    threads: int
    load1: float = 0.0  # 1-minute load average of the box


@dataclass
class Burst:
    at: float  # scheduled, seconds since go
    hosts: dict[str, str]  # host -> trace name
    sent_at: float | None = None
    messages: int = 0
    error: str | None = None


@dataclass
class SoakResult:
    args: dict
    load_seconds: float = 0.0
    sent: int = 0
    sent_tcp: int = 0
    sent_udp: int = 0
    received: int = 0
    received_tcp: int = 0
    udp_read: int = 0
    udp_kernel_drops: int = 0
    udp_shed: int = 0
    internal_errors: int = 0
    loadavg_start: float = 0.0
    loadavg_end: float = 0.0
    loadavg_max: float = 0.0
    written_lines: int = 0
    write_failed: int = 0
    dropped: int = 0
    counters: dict = field(default_factory=dict)
    rss_start_mb: float = 0.0
    rss_end_mb: float = 0.0
    rss_peak_mb: float = 0.0
    rss_slope_2nd_half_mb_per_min: float = 0.0
    fds_before: int = 0
    fds_after: int = 0
    fds_max_1st_half: int = 0
    fds_max_2nd_half: int = 0
    fds_median_1st_half: float = 0.0
    fds_median_2nd_half: float = 0.0
    crashes_expected: int = 0
    crashes_one_incident: int = 0
    crashes_missing: list = field(default_factory=list)
    crashes_duplicated: list = field(default_factory=list)
    crashes_wrong_kind: list = field(default_factory=list)
    incidents_extra: list = field(default_factory=list)
    incidents_not_closed: int = 0
    checks: dict = field(default_factory=dict)
    samples: list = field(default_factory=list)
    bursts: list = field(default_factory=list)


def proc_sample(pid: int) -> tuple[float, int, int]:
    """(RSS MB, open fds, threads) of a live process, from /proc."""
    rss_kb, threads = 0, 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss_kb = int(line.split()[1])
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    return rss_kb / 1024, len(os.listdir(f"/proc/{pid}/fd")), threads


def slope_per_min(pts: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) points, per minute."""
    if len(pts) < 2:
        return 0.0
    n = len(pts)
    mx = sum(t for t, _ in pts) / n
    my = sum(v for _, v in pts) / n
    sxx = sum((t - mx) ** 2 for t, _ in pts)
    if sxx == 0:
        return 0.0
    return sum((t - mx) * (v - my) for t, v in pts) / sxx * 60.0


def burst_lines(hosts: dict[str, str], seed: int) -> list[bytes]:
    """The bursts' crash traces as RFC 5424 kernel messages, interleaved line by line across hosts."""
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ").encode()
    per: list[list[bytes]] = []
    for host, name in hosts.items():
        r = random.Random(f"{seed}/{host}")
        fill = {"cpu": r.randint(0, 63), "pid": r.randint(300, 4_000_000), "comm": "kworker/1:2",
                "rel": "6.1.0-18-amd64"}
        per.append([b"<%d>1 %s %s kernel - - - [%12.6f] %s" % (sev, stamp, host.encode(), 150.0 + k * 1e-5,
                                                                text.format(**fill).encode())
                    for k, (sev, text) in enumerate(TRACES[name][1])])
    out = []
    for k in range(max(map(len, per), default=0)):
        out += [lines[k] for lines in per if k < len(lines)]
    return out


def send_burst(port: int, b: Burst, seed: int) -> None:
    lines = burst_lines(b.hosts, seed)
    data = b"".join(frame(m, "octet") for m in lines)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            b.sent_at = time.time()
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            s.settimeout(30)
            while s.recv(4096):  # the server closes after reading everything (or on its idle timeout)
                pass
        b.messages = len(lines)
    except OSError as e:
        b.error = f"{type(e).__name__}: {e}"
        b.messages = len(lines)  # may have been partly sent: counted as sent, so a shortfall shows up


def incidents(data: Path) -> list[dict]:
    p = subprocess.run([sys.executable, "-m", "sylog", "incidents", "--data-dir", str(data), "--json"],
                       capture_output=True, cwd=str(REPO), timeout=120)
    if p.returncode != 0:
        raise RuntimeError(f"sylog incidents failed: {p.stderr.decode(errors='replace')[-500:]}")
    return json.loads(p.stdout or b"[]")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run(a: argparse.Namespace) -> SoakResult:
    total = a.minutes * 60.0
    load_seconds = max(10.0, total - max(15.0, a.quiet * 3))
    res = SoakResult(args=vars(a).copy(), load_seconds=load_seconds)
    res.args["workdir"] = str(res.args["workdir"])
    res.args["out"] = str(res.args["out"])
    spec = WorkloadSpec(hosts=a.hosts, messages=int(a.rate * load_seconds), seed=a.seed,
                        crashes=min(a.crashes, a.hosts), senders=a.senders)
    w = Workload(spec)
    expected: dict[str, str] = {c.host: c.kind for c in w.crashes.values()}
    free = [w.host_name(h) for h in range(a.hosts) if h not in w.crashes]
    rng = random.Random(a.seed)
    rng.shuffle(free)
    bursts: list[Burst] = []
    for k in range(a.bursts):
        chosen = free[k * a.burst_hosts:(k + 1) * a.burst_hosts]
        hosts = {h: TRACE_NAMES[(k + i) % len(TRACE_NAMES)] for i, h in enumerate(chosen)}
        bursts.append(Burst(at=load_seconds * (k + 1) / (a.bursts + 1), hosts=hosts))
        expected.update({h: TRACES[n][0] for h, n in hosts.items()})
    res.crashes_expected = len(expected)

    workdir = Path(a.workdir or tempfile.mkdtemp(prefix="sylog-soak-"))
    srv = Sylog(workdir, tcp=True, udp=a.udp_rate > 0, incident_quiet=a.quiet)
    log(f"soak: {a.hosts} hosts, {spec.messages:,} messages at {a.rate:,.0f}/s over {load_seconds:.0f}s, "
        f"{len(w.crashes)} workload crashes + {a.bursts} bursts x {a.burst_hosts} hosts; data {srv.data}")
    srv.start()
    lr = LoadRun(spec, target=f"127.0.0.1:{srv.tcp_port}", transport="tcp", framing="octet", rate=a.rate,
                 timeout=load_seconds * 3 + 60)
    ur = None
    if a.udp_rate > 0:  # the same hosts' chatter over UDP (another seed, no crash: crashes come by TCP)
        uspec = WorkloadSpec(hosts=a.hosts, messages=int(a.udp_rate * load_seconds), seed=a.seed + 1000,
                             crashes=0, senders=1)
        ur = LoadRun(uspec, target=f"127.0.0.1:{srv.udp_port}", transport="udp", rate=a.udp_rate,
                     timeout=load_seconds * 3 + 60)
    samples: list[Sample] = []
    stop = threading.Event()
    try:
        lr.start()  # senders render their share, then wait for go
        if ur is not None:
            ur.start()
        time.sleep(1.0)
        res.fds_before = proc_sample(srv.pid)[1]
        t_go = time.monotonic()

        def sampler() -> None:
            while not stop.is_set():
                try:
                    rss, fds, thr = proc_sample(srv.pid)
                except OSError:
                    return
                samples.append(Sample(round(time.monotonic() - t_go, 2), round(rss, 1), fds, thr,
                                      round(os.getloadavg()[0], 2)))
                stop.wait(a.sample)

        def burster() -> None:
            for b in bursts:
                if stop.wait(max(0.0, b.at - (time.monotonic() - t_go))):
                    return
                send_burst(srv.tcp_port, b, a.seed)
                log(f"burst at {b.at:.0f}s: {len(b.hosts)} hosts, {b.messages} lines{' ' + b.error if b.error else ''}")

        ths = [threading.Thread(target=sampler, daemon=True), threading.Thread(target=burster, daemon=True)]
        res.loadavg_start = round(os.getloadavg()[0], 2)
        lr.go()
        if ur is not None:
            ur.go()
        for t in ths:
            t.start()
        load = lr.wait()
        uload = ur.wait() if ur is not None else None
        res.loadavg_end = round(os.getloadavg()[0], 2)
        t_load_end = time.monotonic() - t_go
        ths[1].join(timeout=max(0.0, load_seconds - t_load_end) + 60)
        log(f"load done at {t_load_end:.0f}s: {load.messages:,} TCP messages sent ({load.summary().get('errors')} "
            f"errors){f', {uload.messages:,} UDP' if uload else ''}")
        res.sent_tcp = load.messages + sum(b.messages for b in bursts)
        res.sent_udp = uload.messages if uload else 0
        res.sent = res.sent_tcp + res.sent_udp
        # bounded wait: every expected incident closed (incident quiet) and the pipeline quiet
        deadline = time.monotonic() + a.drain
        found: list[dict] = []
        while time.monotonic() < deadline:
            found = incidents(srv.data)
            hosts_seen = {i["host"] for i in found}
            if set(expected) <= hosts_seen and all(i["state"] == "closed" for i in found):
                break
            time.sleep(1.0)
        time.sleep(1.5)  # connections closed by now: let the fd count settle before the last sample
        try:
            res.fds_after = proc_sample(srv.pid)[1]
        except OSError:
            res.fds_after = -1
        stop.set()
        for t in ths:
            t.join(timeout=5)
    finally:
        stop.set()
        lr.close()
        if ur is not None:
            ur.close()
        rc = srv.stop()
    log(f"server stopped (rc={rc})")
    c = srv.final_counters()
    res.counters = c
    res.received = c.get("received", -1)
    res.write_failed = c.get("write_failed", 0)
    res.dropped = c.get("dropped", 0)
    res.internal_errors = c.get("internal_errors", 0)
    res.received_tcp = c.get("tcp_messages", 0)
    res.udp_read = c.get("udp_datagrams", 0)
    res.udp_kernel_drops = c.get("udp_kernel_drops", 0)
    res.udp_shed = c.get("shed_ordinary", 0)
    res.written_lines = count_lines(srv.timelines)[0]
    found = incidents(srv.data)

    by_host: dict[str, list[dict]] = {}
    for i in found:
        by_host.setdefault(i["host"], []).append(i)
    for h, kind in sorted(expected.items()):
        got = by_host.get(h, [])
        if not got:
            res.crashes_missing.append(h)
        elif len(got) > 1:
            res.crashes_duplicated.append({h: [(i["kind"], i["title"]) for i in got]})
        elif got[0]["kind"] != kind:
            res.crashes_wrong_kind.append({h: [kind, got[0]["kind"], got[0]["title"]]})
        else:
            res.crashes_one_incident += 1
    res.incidents_extra = [{h: [(i["kind"], i["title"]) for i in v]} for h, v in sorted(by_host.items())
                           if h not in expected]
    res.incidents_not_closed = sum(1 for i in found if i["state"] != "closed")

    load_samples = [s for s in samples if s.t <= load_seconds]
    half = load_seconds / 2
    first = [s for s in load_samples if s.t <= half]
    second = [s for s in load_samples if s.t > half]
    if samples:
        res.rss_start_mb = samples[0].rss_mb
        res.rss_end_mb = (load_samples or samples)[-1].rss_mb
        res.rss_peak_mb = max(s.rss_mb for s in samples)
        res.loadavg_max = max(s.load1 for s in samples)
    res.rss_slope_2nd_half_mb_per_min = round(slope_per_min([(s.t, s.rss_mb) for s in second]), 2)
    res.fds_max_1st_half = max((s.fds for s in first), default=0)
    res.fds_max_2nd_half = max((s.fds for s in second), default=0)
    # medians, not maxima, for the check: a crash burst briefly holds incident files and the burst connection open
    res.fds_median_1st_half = statistics.median([s.fds for s in first if s.t >= half / 2] or [0])
    res.fds_median_2nd_half = statistics.median([s.fds for s in second] or [0])
    res.samples = [asdict(s) for s in samples]
    res.bursts = [{"at": b.at, "hosts": len(b.hosts), "messages": b.messages, "sent_at": b.sent_at,
                   "error": b.error} for b in bursts]
    res.checks = {
        "server_ran_to_the_end": rc == 0 and res.received >= 0,
        "memory_flat": res.rss_slope_2nd_half_mb_per_min <= a.max_slope and len(second) >= 3,
        # the timeline writer keeps a file per active host open, so the plateau is reached once every host has
        # spoken (early in the first half); after that, and after the load, no growth
        "no_fd_growth": 0 <= res.fds_after <= res.fds_median_1st_half + 2
                        and res.fds_median_2nd_half <= res.fds_median_1st_half + 2,
        "every_crash_one_incident": res.crashes_one_incident == res.crashes_expected and not res.incidents_extra,
        "incidents_closed": res.incidents_not_closed == 0,
        "tcp_sent_equals_received": res.sent_tcp == res.received_tcp,
        "udp_sent_accounted": res.sent_udp == res.udp_read + res.udp_kernel_drops,
        "received_accounted": res.received == res.written_lines + res.write_failed + res.dropped
                              + res.internal_errors,
    }
    return res


def summary(r: SoakResult) -> str:
    """The figures the issue asks for, in a few lines (also for the README)."""
    a = r.args
    return "\n".join([
        f"soak: {a['minutes']:g} min, {a['hosts']} hosts, TCP {a['rate']:,.0f} msg/s over {a['senders']} connections"
        f" + UDP {a['udp_rate']:,.0f} msg/s, {a['bursts']} crash bursts x {a['burst_hosts']} hosts;"
        f" load average (1 min) {r.loadavg_start} at start, {r.loadavg_max} max, {r.loadavg_end} at end",
        f"memory: RSS {r.rss_start_mb:.1f} MB at start, {r.rss_end_mb:.1f} MB at end, peak {r.rss_peak_mb:.1f} MB;"
        f" slope over the 2nd half {r.rss_slope_2nd_half_mb_per_min:+.2f} MB/min (limit {a['max_slope']:g})",
        f"fds: {r.fds_before} before the load, 1st-half plateau {r.fds_median_1st_half:g}, 2nd-half median"
        f" {r.fds_median_2nd_half:g} (max {r.fds_max_2nd_half}), {r.fds_after} after the load",
        f"crashes: {r.crashes_expected} injected -> {r.crashes_one_incident} exactly one incident of the right kind;"
        f" missing {len(r.crashes_missing)}, duplicated {len(r.crashes_duplicated)}, wrong kind"
        f" {len(r.crashes_wrong_kind)}, extra incidents {len(r.incidents_extra)}, not closed {r.incidents_not_closed}",
        f"messages: sent {r.sent:,} (TCP {r.sent_tcp:,}, UDP {r.sent_udp:,}); TCP received {r.received_tcp:,};"
        f" UDP read {r.udp_read:,} + kernel drops {r.udp_kernel_drops:,} (shed {r.udp_shed:,})",
        f"accounting: received {r.received:,} = written {r.written_lines:,} + write_failed {r.write_failed:,}"
        f" + dropped {r.dropped:,} + internal_errors {r.internal_errors:,}"
        f" ({'holds' if r.checks.get('received_accounted') else 'DOES NOT HOLD'})",
    ])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--hosts", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=20_000, help="workload msg/s (all senders)")
    ap.add_argument("--senders", type=int, default=4, help="loadgen TCP connections")
    ap.add_argument("--udp-rate", type=float, default=2_000, help="UDP msg/s beside the TCP load (0: no UDP)")
    ap.add_argument("--crashes", type=int, default=50, help="workload hosts with a crash injected at a known round")
    ap.add_argument("--bursts", type=int, default=3)
    ap.add_argument("--burst-hosts", type=int, default=100, help="hosts crashing at once in each burst")
    ap.add_argument("--quiet", type=float, default=5.0, help="server --incident-quiet (s)")
    ap.add_argument("--sample", type=float, default=2.0, help="RSS/fd sampling interval (s)")
    ap.add_argument("--drain", type=float, default=90.0, help="max wait for incidents to close after the load (s)")
    ap.add_argument("--max-slope", type=float, default=2.0, help="memory_flat: max RSS slope, MB/min (2nd half)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workdir", type=Path, help="default: a new temp dir (kept, for inspection)")
    ap.add_argument("--out", type=Path, default=Path("/tmp/sylog-soak-result.json"))
    a = ap.parse_args(argv)
    if a.crashes + a.bursts * a.burst_hosts > a.hosts:
        ap.error("crashes + bursts * burst-hosts must not exceed hosts (one crash per host)")
    r = run(a)
    a.out.write_text(json.dumps(asdict(r), indent=1))
    brief = {k: v for k, v in asdict(r).items() if k not in ("samples", "args", "counters")}
    for k in ("crashes_missing", "crashes_duplicated", "crashes_wrong_kind", "incidents_extra"):
        if len(brief[k]) > 10:
            brief[k] = brief[k][:10] + [f"... {len(brief[k])} in all"]
    print(json.dumps(brief, indent=1))
    print("server counters:", " ".join(f"{k}={v}" for k, v in r.counters.items() if v))
    print(summary(r))
    ok = all(r.checks.values())
    print(f"soak {'PASSED' if ok else 'FAILED'}: " + ", ".join(f"{k}={'ok' if v else 'FAIL'}"
                                                            for k, v in r.checks.items()))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

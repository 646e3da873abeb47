"""Process faults under load, against real ``sylog serve`` processes on loopback (issue 7, item 4).

* kill -9 while several TCP senders stream and crashes are open: every incident file parses, the open incidents are
  resumed by the restart and closed correctly, each host's timeline is a gap-free prefix of what it sent (in order,
  no torn or duplicated line, also after the restart appends to the same files), and what is missing is at most
  what arrived in the last flush interval (checked against the server's own periodic ``received=`` count).
* SIGTERM with a backlog: the senders' bytes are all accepted by the kernel (sendall returned, connections still
  open) but not yet read when SIGTERM arrives; the server drains and exits 0 with every message on disk.
* SIGHUP by a real ``logrotate`` (``create`` + ``postrotate kill -HUP``) twice while traffic flows: the rotated files
  plus the new one hold every line, in order per host.

The neighbours (not repeated here): tests/test_incident_e2e.py (kill -9 / SIGTERM with one idle crash),
tests/test_incident_store.py (kill -9 of a writer mid-write), tests/test_server_cli.py (SIGTERM drains one
connection, SIGHUP after a hand-made rename), tests/test_reload.py (SIGHUP reloads the config file).
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from conftest import LOOPBACK, parse_timeline_line, read_timeline, require_binary, wait_for
from test_incident_e2e import CRASH, frame  # an oops escalating to a panic; one octet-counted RFC 5424 message

SPLIT = 8  # crash lines sent before the kill; the rest after the restart
QUIET = 6.0  # --incident-quiet of the kill -9 test's restarted server
STATS_INTERVAL = 0.1  # --stats-interval of the kill -9 test: its received= counts bound the loss

FLUSH_INTERVAL = 0.2  # the default [timeline] flush_interval the README documents
# A flush started just before the kill may still be in its write() calls: on a 2-core box shared with other test
# runs that takes up to a few hundred ms. The assertion is "lines received up to FLUSH_INTERVAL + WRITE_ALLOWANCE
# before the kill are on disk".
WRITE_ALLOWANCE = 0.8

SEQ_RE = re.compile(r" seq=(\d+) ")
STAMP_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


class Sender(threading.Thread):
    """One TCP connection streaming numbered messages (``seq=N``) round-robin over its hosts, in chunks.

    ``sent[host]``: messages of the chunks ``sendall`` completed; ``tried[host]``: including the chunk in flight
    when the connection broke (an upper bound of what the server can have). ``close=False`` leaves the connection
    open after the last chunk until :meth:`finish` (a client like rsyslog, which keeps its connection). ``gate``:
    send the first chunk, then wait for the event before the rest. ``rate``: paced to about that many msg/s.
    """

    def __init__(self, port: int, hosts: list[str], per_host: int, *, chunk: int = 500, close: bool = True,
                 pad: int = 40, gate: threading.Event | None = None, rate: float = 0.0) -> None:
        super().__init__(daemon=True)
        self.gate = gate
        self.rate = rate  # messages per second (0: as fast as the server takes them)
        self.port, self.hosts, self.per_host, self.chunk, self.close_at_end = port, hosts, per_host, chunk, close
        self.pad = "x" * pad
        self.sent = dict.fromkeys(hosts, 0)
        self.tried = dict.fromkeys(hosts, 0)
        self.error: str | None = None
        self.done_sending = threading.Event()
        self.stop = threading.Event()
        self._release = threading.Event()
        self.sock: socket.socket | None = None

    def messages(self) -> list[tuple[str, int, bytes]]:
        return [(h, i, frame(h, f"load seq={i} {self.pad}", app="app", pri=30))
                for i in range(self.per_host) for h in self.hosts]

    def run(self) -> None:
        msgs = self.messages()
        try:
            self.sock = s = socket.create_connection((LOOPBACK, self.port), timeout=30)
            t0 = time.monotonic()
            for k in range(0, len(msgs), self.chunk):
                if self.stop.is_set():
                    break
                if self.rate:
                    self.stop.wait(max(0.0, t0 + k / self.rate - time.monotonic()))  # pacing, not waiting for a result
                part = msgs[k:k + self.chunk]
                for h, i, _ in part:
                    self.tried[h] = i + 1
                s.sendall(b"".join(m for _, _, m in part))
                for h, i, _ in part:
                    self.sent[h] = i + 1
                if k == 0 and self.gate is not None:
                    self.gate.wait(60)
            self.done_sending.set()
            if not self.close_at_end:
                self._release.wait(60)
            s.close()
        except OSError as e:
            self.error = f"{type(e).__name__}: {e}"
        finally:
            self.done_sending.set()

    def finish(self) -> None:
        self._release.set()


def seqs(lines: list[str], host: str) -> list[int]:
    """The ``seq=`` numbers of a host's load lines, checking that every line is a whole timeline line of it."""
    out = []
    for ln in lines:
        r = parse_timeline_line(ln)
        assert STAMP_RE.match(r.time) and r.host == host, f"torn or foreign timeline line of {host}: {ln!r}"
        m = SEQ_RE.search(ln)
        if m and r.tag.startswith("app"):
            out.append(int(m.group(1)))
    return out


def assert_gap_free_prefix(got: list[int], host: str, upper: int) -> None:
    """``got`` is exactly 0, 1, ..., n-1 with n <= upper: in order, nothing missing in between, no duplicate."""
    assert got == list(range(len(got))), (
        f"{host}: timeline is not a gap-free prefix of what was sent: first problem at index "
        f"{next(i for i, v in enumerate(got) if v != i)} (got {got[:3]}..., {len(got)} lines)")
    assert len(got) <= upper, f"{host}: {len(got)} lines on disk but only {upper} sent"


def timeline_bytes(data_dir: Path) -> int:
    total = 0
    for f in (data_dir / "timelines").glob("*/*.log"):
        try:
            total += f.stat().st_size
        except FileNotFoundError:
            pass
    return total


def stats_lines(stderr: str) -> list[tuple[float, int]]:
    """(wall-clock time, received) of each periodic ``stats`` log line (the log's time is local, ms)."""
    out = []
    for ln in stderr.splitlines():
        if " stats " not in ln:
            continue
        m = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) .* stats .*\breceived=(\d+)\b", ln)
        if m:
            t = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S").timestamp() + int(m.group(2)) / 1000
            out.append((t, int(m.group(3))))
    return out


def incident_files(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "incidents").glob("*/*.json"))


def json_of(p: Path) -> dict[str, Any]:
    return json.loads(p.read_bytes())


# ------------------------------------------------------------------------------------------------------- kill -9


def test_kill_9_under_load_then_restart(sylog_server_factory: Any) -> None:
    """Two crashes open long before the kill (the restart closes them: ``restart``), three open just before it (the
    restart resumes them; their rest joins the same incidents, which close on quiet), 200,000 messages streaming
    from 200 hosts when SIGKILL comes."""
    srv = sylog_server_factory("--stats-interval", str(STATS_INTERVAL), incident_quiet=60)  # nothing closes before the kill
    old_hosts = [f"crash-old-{k}" for k in range(2)]
    new_hosts = [f"crash-new-{k}" for k in range(3)]
    # the old crashes' first half, interleaved on one connection: on disk as open incidents
    srv.send_tcp(b"".join(frame(h, ln) for ln in CRASH[:SPLIT] for h in old_hosts))
    wait_for(lambda: len(incident_files(srv.data_dir)) == 2, 10, what="2 incident files", diagnose=srv.dump)
    t_old = time.monotonic()

    # 4 connections x 50 hosts x 1,000 messages, 20,000 msg/s in all: about 10 s of load
    senders = [Sender(srv.tcp_port, [f"load-{s}-{h}" for h in range(50)], per_host=1000, chunk=100, rate=5_000)
               for s in range(4)]
    total = sum(s.per_host * len(s.hosts) for s in senders)
    for s in senders:
        s.start()
    # the old crashes quiet for longer than the restarted server's QUIET, a fifth of the load sent
    wait_for(lambda: time.monotonic() > t_old + QUIET + 0.5 and sum(sum(s.sent.values()) for s in senders) >= total / 5,
             60, interval=0.01, what="old crashes quiet and 20% of the load sent", diagnose=srv.dump)
    # the new crashes' first half, then kill as soon as their incidents are on disk
    srv.send_tcp(b"".join(frame(h, ln) for ln in CRASH[:SPLIT] for h in new_hosts))
    wait_for(lambda: len(incident_files(srv.data_dir)) == 5, 10, interval=0.005, what="5 incident files",
             diagnose=srv.dump)
    t_kill = time.time()
    srv.kill()
    assert not all(s.done_sending.is_set() and s.error is None for s in senders), \
        "every sender finished before the kill: not a kill under load (make the load bigger)"
    for s in senders:
        s.stop.set()
        s.join(30)

    # every incident file parses right after the kill (atomic writes), and says open
    files = incident_files(srv.data_dir)
    assert len(files) == 5
    for p in files:
        inc = json_of(p)
        assert inc["state"] == "open" and inc["host"] in old_hosts + new_hosts and inc["lines"] == SPLIT, inc

    # timelines: every host a gap-free prefix of what it sent, whole lines only
    on_disk = 0
    for s in senders:
        for h in s.hosts:
            got = seqs(read_timeline(srv.data_dir, h), h)
            assert_gap_free_prefix(got, h, s.tried[h])
            on_disk += len(got)
    for h in old_hosts + new_hosts:
        on_disk += len(read_timeline(srv.data_dir, h))
    # loss bound: what the server had received FLUSH_INTERVAL (+ allowance for the write in flight) before the kill
    # is on disk. "Before" in the server's own time too: at least that many of its 100 ms stats lines came after
    # (a loop starved by other processes on this box runs its flusher late, and logs its stats late alike).
    stats = stats_lines(srv.stderr_path.read_text())
    at_kill = [r for t, r in stats if t <= t_kill]
    window = FLUSH_INTERVAL + WRITE_ALLOWANCE
    ref = [r for t, r in stats if t <= t_kill - window][:max(0, len(at_kill) - round(window / STATS_INTERVAL))]
    assert ref, f"no stats line {window}s before the kill\n{srv.output()}"
    print(f"kill -9 at {sum(sum(s.sent.values()) for s in senders)} of {total} sent: {on_disk} lines on disk; "
          f"received {ref[-1]} {window:.1f}s before the kill, {at_kill[-1]} at the last stats line before it "
          f"(lost about {max(0, at_kill[-1] - on_disk)} of those)")
    assert on_disk >= ref[-1], (f"lost lines older than the last flush interval: {on_disk} on disk, "
                                f"{ref[-1]} received {window}s before the kill")

    # restart on the same data dir: the old incidents are closed ("restart"), the new ones resumed
    srv2 = sylog_server_factory(incident_quiet=QUIET, data_dir=srv.data_dir)
    wait_for(lambda: "recovered 5 open incident(s): 3 resumed, 2 closed" in srv2.stderr_path.read_text(), 10,
             what="recovery log line", diagnose=srv2.output)
    # the new crashes go on (same incidents), and every load host sends once more: appended after its prefix
    srv2.send_tcp(b"".join(frame(h, ln) for ln in CRASH[SPLIT:] for h in new_hosts)
                  + b"".join(frame(h, "after restart", app="app", pri=30) for s in senders for h in s.hosts))
    wait_for(lambda: all(json_of(p)["state"] == "closed" for p in incident_files(srv.data_dir)), QUIET + 10,
             what="the resumed incidents closed", diagnose=srv2.dump)
    files = incident_files(srv.data_dir)
    assert len(files) == 5, [p.name for p in files]  # resumed: no second incident per host
    for p in files:
        inc = json_of(p)
        assert inc["kinds"][0] == "page-fault", inc
        if inc["host"] in old_hosts:
            assert inc["lines"] == SPLIT and inc["closed_reason"] == "restart", inc
        else:
            assert inc["lines"] == len(CRASH) and inc["fatal"] and inc["closed_reason"] == "quiet", inc
            assert "panic" in inc["kinds"], inc
    assert not list((srv.data_dir / "incidents").glob("*/.*")), "temp files left behind"
    srv2.stop()
    torn = 0
    for s in senders:
        whole = re.compile(r"load seq=\d+ " + s.pad + "$")
        for h in s.hosts:
            lines = read_timeline(srv.data_dir, h)
            # the restart's line is a line of its own, never glued onto a line the kill cut off mid-write
            last = parse_timeline_line(lines[-1])
            assert STAMP_RE.match(last.time) and last.host == h and last.msg == "after restart", lines[-2:]
            body = lines[:-1]
            if body and not whole.search(body[-1]):  # cut by the kill inside a write(), ended by the restart
                torn += 1
                body = body[:-1]
            assert_gap_free_prefix(seqs(body, h), h, s.tried[h])
    print(f"after the restart: {torn} timeline(s) had a line cut by the kill (ended, not glued)")


# ------------------------------------------------------------------------------------------------------- SIGTERM


@pytest.mark.parametrize("pending", [None, 1000], ids=["default", "back-pressure"])
def test_sigterm_with_a_backlog_loses_no_accepted_message(sylog_server_factory: Any, tmp_path: Path,
                                                          pending: int | None) -> None:
    """SIGTERM while the kernel holds a backlog the server has not read: the server is SIGSTOPped, two connected
    senders (accepted, already streaming) and two new ones (still in the accept queue) get all their bytes accepted
    by the kernel (sendall returned) and keep their connections open, as rsyslog does; then SIGTERM + SIGCONT. The
    server must drain it all and exit 0. ``back-pressure``: a tiny ``max_pending_lines`` makes the server pause
    reading again and again while it drains."""
    extra: list[str] = ["--stats-interval", "0"]
    if pending is not None:
        cfg = tmp_path / "sylog.toml"
        cfg.write_text(f"[timeline]\nmax_pending_lines = {pending}\n")
        extra += ["--config", str(cfg)]
    srv = sylog_server_factory(*extra)
    assert srv.proc is not None
    gate = threading.Event()
    early = [Sender(srv.tcp_port, [f"term-{s}-{h}" for h in range(20)], per_host=500, chunk=400, close=False,
                    gate=gate) for s in range(2)]
    for s in early:  # connected, accepted and streaming: their first chunk is on disk
        s.start()
    wait_for(lambda: all(read_timeline(srv.data_dir, s.hosts[0]) for s in early), 10, what="first chunks stored",
             diagnose=srv.dump)
    srv.proc.send_signal(signal.SIGSTOP)
    stopped = True
    try:
        late = [Sender(srv.tcp_port, [f"term-{s}-{h}" for h in range(20)], per_host=500, chunk=400, close=False)
                for s in range(2, 4)]
        senders = early + late
        for s in late:
            s.start()
        gate.set()
        # ~1 MB per connection fits in loopback socket buffers on a default Linux: then SIGTERM reaches a server
        # that has read none of it. Smaller buffers: let the server run until the kernel has accepted everything.
        deadline = time.monotonic() + 5
        backlog = all(s.done_sending.wait(max(0.0, deadline - time.monotonic())) for s in senders)
        if backlog:
            srv.proc.send_signal(signal.SIGTERM)
        srv.proc.send_signal(signal.SIGCONT)
        stopped = False
        for s in senders:
            assert s.done_sending.wait(60), "a sender did not get its bytes into the kernel within 60s"
            assert s.error is None, s.error
        if not backlog:
            srv.proc.send_signal(signal.SIGTERM)
    finally:
        if stopped:
            srv.proc.send_signal(signal.SIGCONT)
    rc = srv.stop(timeout=60)
    for s in senders:
        s.finish()
        s.join(10)
    total = sum(sum(s.sent.values()) for s in senders)
    lost = {}
    for s in senders:
        for h in s.hosts:
            got = seqs(read_timeline(srv.data_dir, h), h)
            assert_gap_free_prefix(got, h, s.sent[h])
            if len(got) != s.sent[h]:
                lost[h] = s.sent[h] - len(got)
    last = srv.stderr_path.read_text().strip().splitlines()[-1]
    print(f"SIGTERM with {'an unread backlog' if backlog else 'a live stream'}: {total} messages sent; {last}")
    assert not lost, f"SIGTERM lost accepted messages: {sum(lost.values())} of {total} ({lost})\n{last}"
    assert rc == 0 and f"received={total} " in last + " ", last


# ------------------------------------------------------------------------------------------------------- SIGHUP


LOGROTATE_CONF = """\
{data}/timelines/*/*.log {{
    rotate 5
    create 0600
    nocompress
    missingok
    notifempty
    sharedscripts
    postrotate
        kill -HUP {pid}
    endscript
}}
"""


@pytest.mark.realclient
def test_logrotate_postrotate_sighup_loses_nothing(sylog_server_factory: Any, tmp_path: Path) -> None:
    logrotate = require_binary("logrotate")
    srv = sylog_server_factory("--stats-interval", "0")
    assert srv.proc is not None
    conf = tmp_path / "logrotate.conf"
    conf.write_text(LOGROTATE_CONF.format(data=srv.data_dir, pid=srv.proc.pid))
    conf.chmod(0o644)
    state = tmp_path / "logrotate.state"
    hosts = [f"rot-{h}" for h in range(10)]
    # about 6 s of traffic at a bounded rate: the rotations happen while it flows
    sender = RateSender(srv.tcp_port, hosts, per_host=3000, rate=5000)
    sender.start()

    def rotate(n: int) -> None:
        p = subprocess.run([logrotate, "-f", "-s", str(state), str(conf)], capture_output=True, text=True,
                           timeout=30)
        assert p.returncode == 0, f"logrotate failed ({p.returncode}): {p.stderr}"
        wait_for(lambda: srv.stderr_path.read_text().count("SIGHUP") >= n, 10, what=f"SIGHUP #{n} handled",
                 diagnose=srv.output)

    for n in (1, 2):
        floor = sender.count() + 2000
        wait_for(lambda: sender.count() >= floor or sender.done.is_set(), 30, what="traffic before rotating")
        assert not sender.done.is_set(), "the traffic ended before the rotation: not a rotation under load"
        rotate(n)
    assert not sender.done.is_set(), "the traffic ended during the rotations"
    sender.join(60)
    assert sender.error is None, sender.error
    srv.stop()
    for h in hosts:
        d = srv.data_dir / "timelines" / h
        files = sorted(d.glob("*.log.2")) + sorted(d.glob("*.log.1")) + sorted(d.glob("*.log"))
        assert len(files) == 3, f"{h}: expected .log.2, .log.1 and .log, got {[f.name for f in files]}"
        lines: list[str] = []
        for f in files:
            data = f.read_text()
            assert data == "" or data.endswith("\n"), f"{f}: torn last line"
            lines += data.splitlines()
        assert_gap_free_prefix(seqs(lines, h), h, sender.per_host)
        assert len(seqs(lines, h)) == sender.per_host, f"{h}: lost lines across the rotation"
        assert all(f.stat().st_mode & 0o777 == 0o600 for f in files)
    assert srv.stderr_path.read_text().count("SIGHUP") == 2


class RateSender(threading.Thread):
    """One connection sending numbered messages round-robin over ``hosts`` at about ``rate`` msg/s (bounded)."""

    def __init__(self, port: int, hosts: list[str], per_host: int, rate: float) -> None:
        super().__init__(daemon=True)
        self.port, self.hosts, self.per_host, self.rate = port, hosts, per_host, rate
        self.sent = 0
        self.error: str | None = None
        self.done = threading.Event()

    def count(self) -> int:
        return self.sent

    def run(self) -> None:
        msgs = [frame(h, f"rot seq={i} ", app="app", pri=30) for i in range(self.per_host) for h in self.hosts]
        step = max(1, int(self.rate / 100))  # 10 ms worth per sendall
        t0 = time.monotonic()
        try:
            with socket.create_connection((LOOPBACK, self.port), timeout=30) as s:
                for k in range(0, len(msgs), step):
                    s.sendall(b"".join(msgs[k:k + step]))
                    self.sent = min(len(msgs), k + step)
                    ahead = t0 + self.sent / self.rate - time.monotonic()
                    if ahead > 0:
                        time.sleep(ahead)  # pacing the sender, not waiting for a result
        except OSError as e:
            self.error = f"{type(e).__name__}: {e}"
        finally:
            self.done.set()


# ------------------------------------------------------------------------------------------------------- torn last line


def test_restart_after_a_torn_last_line_starts_a_new_line(sylog_server_factory: Any, tmp_path: Path) -> None:
    """The state a kill mid-write leaves (simulated: the kill's timing cannot be chosen): the next line must not be
    glued to the cut one - the writer ends the cut line (counted) before its first write to the file."""
    data = tmp_path / "data"
    day = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    hdir = data / "timelines" / "torn"
    hdir.mkdir(parents=True, mode=0o700)
    (hdir / f"{day}.log").write_bytes(b"2026-11-25T10:00:00.000000Z torn user.info app: cut off in the mid")
    srv = sylog_server_factory(data_dir=data)
    srv.send_tcp(frame("torn", "after restart", app="app", pri=14))
    wait_for(lambda: b"after restart\n" in (hdir / f"{day}.log").read_bytes(), 10, what="the new line",
             diagnose=srv.dump)
    lines = (hdir / f"{day}.log").read_text().splitlines()
    assert lines[-1].endswith(" after restart") and "cut off" not in lines[-1], lines
    assert lines[-2].endswith("cut off in the mid"), lines  # the cut line itself is kept, ended


# ------------------------------------------------------------------------------------------------------- slow disk


async def test_shutdown_drain_outlasts_back_pressure_on_a_slow_disk(tmp_path: Path) -> None:
    """SIGTERM while back-pressure holds every connection because each timeline write takes 300 ms (a slow disk):
    input is then silent for longer than the drain's 100 ms quiet time, but only because sylog is not reading. The
    bytes the kernel accepted must still all be read and stored (in-process server: the slow write is injected)."""
    from conftest import until

    from sylog.config import load_config
    from sylog.server.app import Server

    data = tmp_path / "data"
    cfgf = tmp_path / "sylog.toml"
    cfgf.write_text(f'data_dir = "{data}"\nstats_interval = 0.0\n[listen]\nudp = []\ntcp = ["127.0.0.1:0"]\n'
                    "[timeline]\nmax_pending_lines = 1000\nflush_interval = 0.05\n")
    srv = Server(load_config(cfgf))
    await srv.start()
    real_write = srv.writer.write_batch

    def slow_write(batch: Any) -> Any:
        time.sleep(0.3)
        return real_write(batch)

    srv.writer.write_batch = slow_write  # type: ignore[method-assign]
    try:
        senders = [Sender(srv.tcp_addresses[0][1], [f"slow-{s}-{h}" for h in range(10)], per_host=200, chunk=500,
                          close=False) for s in range(2)]
        for s in senders:
            s.start()
        await until(lambda: all(s.done_sending.is_set() for s in senders), 30, what="the kernel took every byte")
        assert all(s.error is None for s in senders), [s.error for s in senders]
        await until(lambda: srv.counters.tcp_pauses > 0, 10, what="back-pressure")
        srv.request_stop()
        await srv.shutdown()
    finally:
        for s in senders:
            s.finish()
        await srv.shutdown()
    total = sum(sum(s.sent.values()) for s in senders)
    missing = {h: s.sent[h] - len(seqs(read_timeline(data, h), h)) for s in senders for h in s.hosts}
    assert srv.counters.received == total and not any(missing.values()), (srv.counters.summary(), missing)

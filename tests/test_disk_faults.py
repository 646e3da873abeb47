"""Disk faults (issue 7 item 3): ENOSPC / EIO on timeline and incident writes.

The guarantee under test (sylog/timeline/writer.py module doc): the server keeps receiving; kernel lines a write
could not store are held in a bounded queue and written, in order and before newer lines of the same file, when
writes work again; ordinary lines of a failed write are counted lost (``write_failed``); an incident JSON on disk
is always a complete version (atomic temp + fsync + rename; the engine retries failed writes).

Three layers: the writer alone with injected errors (exact counters), an in-process server with injected errors
(keeps receiving over TCP), and a real ``sylog serve`` on a 256 KiB tmpfs that fills up and is freed again.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import re
import subprocess
import time
from collections import deque
from pathlib import Path
from typing import Any

import pytest

from sylog.config import Config, apply_overrides
from sylog.incidents.engine import IncidentEngine
from sylog.server.app import Server
from sylog.syslog.message import Message
from sylog.timeline.format import format_line
from sylog.timeline.writer import TimelineWriter, is_kernel_line
from conftest import until, wait_for

from test_incident_e2e import CRASH, frame

DAY = "2026-11-25"
T = 1_795_600_000.0


def kline(host: str, text: str, app: str = "kernel", fac: int = 0) -> bytes:
    return format_line(T, host, Message(format="rfc5424", pri=fac * 8 + 4, facility=fac, severity=4,
                                        app_name=app, msg=text))


def oline(host: str, text: str) -> bytes:
    return format_line(T, host, Message(format="rfc5424", pri=30, facility=3, severity=6, app_name="sshd",
                                        procid="77", msg=text))


class Disk:
    """``os.write`` on the writer's timeline files fails with ``err`` while ``full`` (other fds untouched);
    ``room`` > 0 lets that many bytes through first (a short write, as a filling disk does)."""

    def __init__(self, writer: TimelineWriter, monkeypatch: pytest.MonkeyPatch, err: int = errno.ENOSPC) -> None:
        self.w = writer
        self.err = err
        self.full = False
        self.room = 0
        self.calls = 0
        self.real = os.write
        monkeypatch.setattr(os, "write", self.write)

    def write(self, fd: int, data: Any) -> int:
        if self.full and fd in self.w._fds.values():
            self.calls += 1
            if self.room > 0:
                n = self.real(fd, bytes(data[:self.room]))
                self.room -= n
                return n
            raise OSError(self.err, os.strerror(self.err))
        return self.real(fd, data)


def flush(w: TimelineWriter) -> None:
    """One flush on the worker thread, as the server's flusher does (retry backoff ignored: tests are fast)."""
    batch, w._pending, w.pending_lines = w._pending, {}, 0
    w._retry_at = 0.0
    w._executor.submit(w.write_batch, batch).result()


def tl(root: Path, host: str, day: str = DAY) -> bytes:
    p = root / "timelines" / host / f"{day}.log"
    return p.read_bytes() if p.exists() else b""


# ---------------------------------------------------------------------------------------------- the writer alone


def test_kernel_lines_are_recognised_from_the_line_itself():
    assert is_kernel_line(kline("h", "Oops: 0000 [#1] SMP"))
    assert is_kernel_line(kline("h", "BUG: x", app="kernel", fac=1))  # tag kernel, facility lost by a relay
    assert is_kernel_line(kline("h", "x", app="", fac=0))  # facility kern, no tag
    assert is_kernel_line(format_line(T, "h", Message(format="raw", facility=0, app_name="kernel", msg="raw k")))
    assert not is_kernel_line(oline("h", "session opened kern.warning kernel: lookalike"))
    assert not is_kernel_line(kline("kern.h", "x", app="kernelish", fac=3))
    assert not is_kernel_line(b"garbage\n")


@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EIO, errno.EDQUOT, errno.EROFS])
def test_failed_batch_holds_kernel_lines_counts_ordinary_and_writes_them_in_order(tmp_path, monkeypatch, err):
    w = TimelineWriter(tmp_path)
    disk = Disk(w, monkeypatch, err)
    w.append("db", DAY, oline("db", "before"))
    w.append("db", DAY, kline("db", "early kernel"))
    flush(w)
    disk.full = True
    for i in range(3):
        w.append("db", DAY, kline("db", f"Oops {i}"))
        w.append("db", DAY, oline("db", f"lost {i}"))
    flush(w)
    c = w.counters
    assert (c.written, c.write_failed, c.write_retry_queued, c.write_retry_held) == (2, 3, 3, 3)
    assert c.write_errors == 1
    w.append("db", DAY, kline("db", "Oops 3"))  # still failing: appended behind the held ones
    w.append("db", DAY, oline("db", "lost 3"))
    flush(w)
    assert (c.write_failed, c.write_retry_queued, c.write_retry_held, c.written) == (4, 4, 4, 2)
    disk.full = False
    w.append("db", DAY, oline("db", "after"))
    flush(w)
    body = tl(tmp_path, "db").decode()
    msgs = [ln.split(" ", 4)[4] for ln in body.splitlines()]
    assert msgs == ["before", "early kernel", "Oops 0", "Oops 1", "Oops 2", "Oops 3", "after"]
    assert (c.written, c.write_retry_written, c.write_retry_held, c.write_failed) == (7, 4, 0, 4)
    assert c.write_retry_dropped == 0
    assert c.written + c.write_failed + c.write_retry_held == 2 + 6 + 2 + 1  # every line accounted for
    w.close_sync()


def test_short_write_line_is_completed_first_and_never_torn(tmp_path, monkeypatch):
    w = TimelineWriter(tmp_path)
    disk = Disk(w, monkeypatch)
    lines = [oline("h", "ordinary cut in the middle"), kline("h", "Oops a"), oline("h", "gone"), kline("h", "Oops b")]
    disk.full, disk.room = True, 10  # the disk takes 10 bytes of the batch, then ENOSPC
    for ln in lines:
        w.append("h", DAY, ln)
    flush(w)
    assert tl(tmp_path, "h") == lines[0][:10]
    c = w.counters
    assert c.write_failed == 1 and c.write_retry_held == 3 and c.write_retry_queued == 3  # the cut line's rest too
    disk.full = False
    w.append("h", DAY, oline("h", "later"))
    flush(w)
    assert tl(tmp_path, "h") == lines[0] + lines[1] + lines[3] + oline("h", "later")
    assert c.written == 4 and c.write_retry_written == 3 and c.write_retry_held == 0
    w.close_sync()


def test_short_write_inside_the_held_lines_keeps_the_rest(tmp_path, monkeypatch):
    w = TimelineWriter(tmp_path)
    disk = Disk(w, monkeypatch)
    ks = [kline("h", f"Call Trace frame {i}") for i in range(5)]
    disk.full = True
    for k in ks:
        w.append("h", DAY, k)
    flush(w)
    assert w.counters.write_retry_held == 5
    disk.room = len(ks[0]) + 7  # the retry gets one line and a bit of the next in
    flush(w)
    assert tl(tmp_path, "h") == ks[0] + ks[1][:7]
    assert w.counters.write_retry_written == 1 and w.counters.write_retry_held == 4
    disk.full = False
    flush(w)  # a quiet host: retried with no new lines at all
    assert tl(tmp_path, "h") == b"".join(ks)
    assert w.counters.write_retry_written == 5 and w.counters.written == 5 and w.counters.write_retry_held == 0
    w.close_sync()


def test_queue_bound_drops_oldest_of_the_file_holding_most(tmp_path, monkeypatch, caplog):
    w = TimelineWriter(tmp_path, retry_lines=10)
    disk = Disk(w, monkeypatch)
    disk.full = True
    w.append("crashed", DAY, kline("crashed", "BUG: the one that matters"))
    w.append("crashed", DAY, kline("crashed", "RIP: here"))
    for i in range(30):
        w.append("noisy", DAY, kline("noisy", f"spew {i}"))
    with caplog.at_level("ERROR", "sylog.timeline"):
        flush(w)
    c = w.counters
    assert c.write_retry_held == 10 and c.write_retry_dropped == 22 and c.write_failed == 22
    assert "retry queue full" in caplog.text
    disk.full = False
    flush(w)
    assert [ln.split(" ", 4)[4] for ln in tl(tmp_path, "crashed").decode().splitlines()] == \
        ["BUG: the one that matters", "RIP: here"]
    assert [ln.split(" ", 4)[4] for ln in tl(tmp_path, "noisy").decode().splitlines()] == \
        [f"spew {i}" for i in range(22, 30)]  # its newest 8 kept, in order
    assert c.written + c.write_failed == 32
    w.close_sync()


def test_queue_bound_in_bytes_and_levelling_across_equal_files(tmp_path, monkeypatch):
    k = kline("a", "x" * 200)
    w = TimelineWriter(tmp_path, retry_bytes=len(k) * 6)
    disk = Disk(w, monkeypatch)
    disk.full = True
    for h in ("a", "b", "c"):
        for i in range(4):
            w.append(h, DAY, kline(h, f"{i}" * 200))
    flush(w)
    assert w.held_bytes <= len(k) * 6 and w.counters.write_retry_held == 6
    assert sorted(len(q) for q in w._held.values()) == [2, 2, 2]  # levelled, not one file emptied
    assert all(q[0].endswith(b"2" * 200 + b"\n") for q in w._held.values())  # the oldest went
    disk.full = False
    w.close_sync()
    assert w.counters.written == 6 and w.counters.write_failed == 6


def test_held_lines_lost_at_shutdown_are_counted(tmp_path, monkeypatch, caplog):
    w = TimelineWriter(tmp_path)
    disk = Disk(w, monkeypatch, errno.EIO)
    disk.full = True
    w.append("h", DAY, kline("h", "Oops"))
    flush(w)
    with caplog.at_level("ERROR", "sylog.timeline"):
        w.close_sync()  # one last try, still EIO
    c = w.counters
    assert c.write_retry_held == 0 and c.write_retry_dropped == 1 and c.write_failed == 1 and c.written == 0
    assert "held kernel lines that could not be written" in caplog.text


def test_unusable_host_name_is_not_held_forever(tmp_path):
    w = TimelineWriter(tmp_path)
    w.append("..", DAY, kline("..", "Oops"))  # EINVAL from the writer's own path check: retrying cannot help
    w.close_sync()
    assert w.counters.write_failed == 1 and w.counters.write_retry_queued == 0 and w.counters.write_retry_held == 0


def test_zero_retry_lines_holds_nothing(tmp_path, monkeypatch):
    w = TimelineWriter(tmp_path, retry_lines=0)
    disk = Disk(w, monkeypatch)
    disk.full = True
    w.append("h", DAY, kline("h", "Oops"))
    flush(w)
    assert w.counters.write_failed == 1 and w.counters.write_retry_held == 0
    w.close_sync()


def test_log_is_rate_limited_and_says_what_is_held(tmp_path, monkeypatch, caplog):
    w = TimelineWriter(tmp_path)
    disk = Disk(w, monkeypatch)
    disk.full = True
    with caplog.at_level("WARNING", "sylog.timeline"):
        for i in range(20):
            w.append("db", DAY, kline("db", f"Oops {i}"))
            w.append("db", DAY, oline("db", f"o {i}"))
            flush(w)
        fails = [r.getMessage() for r in caplog.records if "write failed" in r.getMessage()]
        assert len(fails) == 1, fails
        assert re.search(r"timeline write failed on db: ENOSPC \(No space left on device\); holding 1 kernel lines "
                         r"for retry \(1 held in all", fails[0]), fails[0]
        disk.err = errno.EIO  # a different problem is logged at once
        w.append("db", DAY, kline("db", "more"))
        flush(w)
        assert sum("write failed" in r.getMessage() for r in caplog.records) == 2
        disk.full = False
        flush(w)
        assert "timeline writes work again: 21 held kernel lines written" in caplog.text
    w.close_sync()


async def test_quiet_host_is_retried_on_its_own_with_backoff(tmp_path, monkeypatch):
    """No new line ever arrives for the host: the flusher retries the held lines by itself, spaced by the
    backoff (not a failing syscall per flush interval forever)."""
    w = TimelineWriter(tmp_path, flush_interval=0.02)
    disk = Disk(w, monkeypatch)
    task = asyncio.create_task(w.run())
    try:
        disk.full = True
        w.append("quiet", DAY, kline("quiet", "last gasp"))
        await until(lambda: w.counters.write_retry_held == 1, 5, "held")
        await until(lambda: w._backoff >= 0.3, 10, "backoff growing")
        calls = disk.calls
        t0 = time.monotonic()
        await until(lambda: disk.calls >= calls + 2, 20, "two more retries")
        # two retries at least one backoff (>= 0.3 s) apart, where a flush runs every 0.02 s
        assert time.monotonic() - t0 >= 0.29 and disk.calls == calls + 2
        disk.full = False
        await until(lambda: tl(tmp_path, "quiet"), 10, "held line written without new traffic")
        assert w.counters.write_retry_written == 1 and w.counters.write_retry_held == 0
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await w.aclose()


# ------------------------------------------------------------------------------ in-process server, injected errors


def octet(m: bytes) -> bytes:
    return b"%d %s" % (len(m), m)


async def test_server_keeps_receiving_while_timeline_writes_fail(tmp_path, monkeypatch):
    data = tmp_path / "data"
    cfg = apply_overrides(Config(), {"data_dir": str(data), "listen.udp": ["127.0.0.1:0"],
                                     "listen.tcp": ["127.0.0.1:0"], "stats_interval": 0.0,
                                     "timeline.flush_interval": 0.05, "incidents.quiet": 60.0})
    srv = Server(cfg)
    await srv.start()
    disk = Disk(srv.writer, monkeypatch)
    c = srv.counters
    try:
        r, wr = await asyncio.open_connection(*srv.tcp_addresses[0][:2])

        async def send(host: str, texts: list[str], app: str, pri: int) -> None:
            wr.write(b"".join(octet(f"<{pri}>1 2026-11-25T10:00:00Z {host} {app} - - - {t}".encode())
                              for t in texts))
            await wr.drain()

        await send("web", ["hello"], "app", 14)
        await until(lambda: c.written == 1, 5, "first line written")
        disk.full = True
        n0 = c.received
        for b in range(5):  # receiving goes on: 5 rounds of ordinary + kernel lines while the disk fails
            await send("web", [f"req {b}.{i}" for i in range(100)], "app", 14)
            await send("web", [f"kernel {b}"], "kernel", 4)
            await until(lambda: c.received == n0 + (b + 1) * 101, 5, f"round {b} received")
            await until(lambda: c.write_failed == (b + 1) * 100, 5, f"round {b} counted")
        assert c.write_retry_held == 5 and c.write_retry_queued == 5 and c.write_errors >= 1
        assert srv.tcp_state is not None and not srv.tcp_state.paused
        disk.full = False
        await send("web", ["back"], "app", 14)
        await until(lambda: c.written == 7, 5, "held lines + new line written")
        msgs = [ln.split(" ", 4)[4] for ln in tl(data, "web", time.strftime("%Y-%m-%d", time.gmtime())).decode()
                .splitlines()]
        assert msgs == ["hello"] + [f"kernel {b}" for b in range(5)] + ["back"]
        assert c.received == c.written + c.write_failed + c.write_retry_held
        wr.close()
    finally:
        srv.request_stop()
        await srv.shutdown()


# ------------------------------------------------------------------------------- incident store: EIO, engine retry


@pytest.mark.parametrize("where", ["write", "fsync"])
async def test_incident_write_eio_is_retried_and_json_never_half_written(tmp_path, monkeypatch, where):
    """EIO on the incident files (from ``write`` or from ``fsync``): every JSON on disk is always a complete
    version, no temp file is left behind, an update that fails leaves the previous version, and the engine's
    retry writes the incident once the error clears. Only fds under ``incidents/`` fail."""
    real = getattr(os, where)
    inc_dir = str(tmp_path / "incidents")
    failing = {"on": False, "n": 0}

    def hit(fd: int) -> bool:
        if not failing["on"]:
            return False
        try:
            return os.readlink(f"/proc/self/fd/{fd}").startswith(inc_dir)
        except OSError:
            return False

    def broken(fd: int, *a: Any) -> Any:
        if hit(fd):
            failing["n"] += 1
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real(fd, *a)

    monkeypatch.setattr(os, where, broken)
    e = IncidentEngine(str(tmp_path), quiet=60, refresh_interval=0.05)
    stop = asyncio.Event()

    async def ticker() -> None:
        while not stop.is_set():
            e.tick(time.time())
            await asyncio.sleep(0.02)

    def files() -> list[Path]:
        return sorted(p for p in (tmp_path / "incidents").rglob("*") if p.is_file()) \
            if (tmp_path / "incidents").exists() else []

    def jsons() -> list[dict[str, Any]]:
        out = []
        for p in files():
            if p.suffix == ".json":
                try:
                    out.append(json.loads(p.read_bytes()))  # a half-written JSON raises ValueError: test fails
                except FileNotFoundError:
                    pass
        return out

    def feed(lines: list[str], t: float) -> None:
        for i, text in enumerate(lines):
            e.feed("db-07", t + i * 0.001, Message(format="rfc5424", facility=0, severity=4, app_name="kernel",
                                                   msg=text), kline("db-07", text))

    task = asyncio.create_task(ticker())
    half = len(CRASH) // 2
    try:
        failing["on"] = True
        feed(CRASH[:half], time.time())
        await until(lambda: failing["n"] >= 1 and (where == "fsync" or e.counters["write_errors"] >= 1), 10,
                    "a failed incident write")
        assert all(i["host"] == "db-07" for i in jsons())
        if where == "write":  # nothing reached the disk: no JSON, not even a temp file
            assert files() == []
        failing["on"] = False
        await until(lambda: [i for i in jsons() if i["lines"] == half], 10, "incident written after EIO cleared")
        failing["on"] = True  # an update fails: the complete previous version stays
        n = failing["n"]
        feed(CRASH[half:], time.time())
        await until(lambda: failing["n"] > n, 10, "a failed update")
        await until(lambda: not [p for p in files() if ".tmp-" in p.name], 5, "temp files removed")
        (inc,) = jsons()
        assert inc["lines"] == half
        failing["on"] = False
        await until(lambda: jsons()[0]["lines"] == len(CRASH), 10, "update written after EIO cleared")
    finally:
        stop.set()
        await task
        await e.aclose()
    (inc,) = jsons()
    assert inc["lines"] == len(CRASH) and not [p for p in files() if ".tmp-" in p.name]


# --------------------------------------------------------------------------------- a real full filesystem (tmpfs)


def _mount_tmpfs(d: Path, size: str) -> None:
    d.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (this test fills a real filesystem)")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(d)],
                       capture_output=True, text=True, timeout=20)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip() or r.returncode}): no real full-disk test")


def _umount(d: Path) -> None:
    r = subprocess.run(["umount", str(d)], capture_output=True, timeout=20)
    if r.returncode != 0:  # still busy (a failed test left the server running): detach it lazily
        subprocess.run(["umount", "-l", str(d)], capture_output=True, timeout=20)


def _fill(path: Path) -> int:
    """Write ``path`` until the filesystem is full; returns its size."""
    n = 0
    with open(path, "wb", buffering=0) as f:
        chunk = b"\0" * 4096
        while True:
            try:
                k = f.write(chunk)
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
                break
            if not k:
                break
            n += k
    return n


def _stats(srv: Any) -> dict[str, int]:
    """The last ``stats``/``stopped`` counter line the server logged."""
    text = srv.output(tail=200_000)
    found = re.findall(r"(?:stats|stopped:) ((?:\w+=\d+ ?)+)", text)
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", found[-1])} if found else {}


def test_real_full_tmpfs_holds_kernel_lines_and_incident_until_space_returns(tmp_path, sylog_server_factory):
    mnt = tmp_path / "mnt"
    _mount_tmpfs(mnt, "256k")
    srv = None
    try:
        cfgf = tmp_path / "disk.toml"
        cfgf.write_text("stats_interval = 0.2\n[timeline]\nflush_interval = 0.05\n")
        srv = sylog_server_factory("--config", str(cfgf), data_dir=mnt / "data", incident_quiet=2)
        srv.send_tcp(frame("warm", "warm-up", app="app", pri=14))
        srv.wait_for_text("warm", "warm-up")
        filler = mnt / "filler"
        size = _fill(filler)
        assert size > 100_000

        ordinary = [frame("web-1", f"GET /{i} 200", app="nginx", pri=30) for i in range(200)]
        kernel = [frame("web-1", f"[ 99.{i:06d}] EXT4-fs error (device sda1): bad block {i}") for i in range(20)]
        mixed = b"".join(o + (kernel[i // 10] if i % 10 == 9 else b"") for i, o in enumerate(ordinary))
        srv.send_tcp(mixed)
        srv.send_tcp(b"".join(frame("db-07", ln) for ln in CRASH))

        def failing() -> dict[str, int]:
            s = _stats(srv)
            return s if s.get("write_retry_held", 0) >= 20 + len(CRASH) and s.get("write_failed", 0) >= 150 else {}

        s = wait_for(failing, 15, what="held kernel lines and counted ordinary losses", diagnose=srv.dump)
        assert srv.running
        assert s["received"] >= 1 + 200 + 20 + len(CRASH)

        def json_ok() -> list[dict[str, Any]]:
            out = []
            for p in (srv.data_dir / "incidents").glob("*/*.json"):
                try:
                    out.append(json.loads(p.read_bytes()))
                except FileNotFoundError:
                    continue  # renamed away between glob and read: fine
            return out  # a half-written JSON raises ValueError here and fails the test

        deadline = time.monotonic() + 1.5  # the disk stays full a while: every JSON on it always parses
        while time.monotonic() < deadline:
            assert all(i["host"] == "db-07" for i in json_ok())
            time.sleep(0.05)
        assert srv.running and _stats(srv).get("write_errors", 0) >= 2
        assert srv.timeline("db-07") == [] and srv.timeline("web-1") == []

        t_free = time.monotonic()
        filler.unlink()  # space returns
        got = wait_for(lambda: len(srv.timeline("web-1")) >= 20 and len(srv.timeline("db-07")) >= len(CRASH)
                       and json_ok(), 15, what="held lines and the incident on disk after space returned",
                       diagnose=srv.dump)
        assert got
        recovered = time.monotonic() - t_free
        assert recovered < 2 * 5.0  # quiet hosts: retried at least every RETRY_MAX_BACKOFF seconds
        web = [ln.split(" ", 4)[4] for ln in srv.timeline("web-1")]
        assert web[:20] == [f"[ 99.{i:06d}] EXT4-fs error (device sda1): bad block {i}" for i in range(20)]
        assert web[20:] == []  # the ordinary lines sent while full were lost (counted in write_failed)
        db = [ln.split(" ", 4)[4] for ln in srv.timeline("db-07")]
        assert db == CRASH
        inc = wait_for(lambda: [i for i in json_ok() if i["state"] == "closed"], 15, what="incident closed",
                       diagnose=srv.dump)[0]
        assert inc["host"] == "db-07" and inc["lines"] == len(CRASH) and inc["fatal"] is True
        srv.send_tcp(frame("web-1", "after recovery", app="nginx", pri=30))
        srv.wait_for_text("web-1", "after recovery")
        s = wait_for(lambda: (lambda d: d if d.get("write_retry_written", 0) >= 20 + len(CRASH)
                              and "write_retry_held" not in d else {})(_stats(srv)), 10, what="stats after recovery",
                     diagnose=srv.dump)
        assert s.get("write_retry_dropped", 0) == 0
        srv.stop()
        s = _stats(srv)
        lines = sum(len(srv.timeline(h)) for h in ("warm", "web-1", "db-07"))
        assert s["received"] == lines + s["write_failed"], s  # every message accounted for
        print(f"tmpfs 256k: received={s['received']} written={lines} write_failed={s['write_failed']} "
              f"held_then_written={s['write_retry_written']} write_errors={s['write_errors']} "
              f"space-back->held lines and incident on disk {recovered:.2f}s")
    finally:
        if srv is not None and srv.running:
            srv.kill()
        _umount(mnt)

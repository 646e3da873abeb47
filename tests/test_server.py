"""The asyncio shell, in process, over loopback: real sockets, real timeline files, bounded waits."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from sylog.config import Config, apply_overrides
from sylog.server.app import Server
from conftest import until


def lines_of(data_dir: Path, host: str) -> list[bytes]:
    d = data_dir / "timelines" / host
    out: list[bytes] = []
    for f in sorted(d.glob("*.log")) if d.is_dir() else []:
        out += f.read_bytes().splitlines()
    return out


def all_lines(data_dir: Path) -> int:
    return sum(f.read_bytes().count(b"\n") for f in (data_dir / "timelines").glob("*/*.log"))


class Running:
    def __init__(self, srv: Server, data: Path) -> None:
        self.srv = srv
        self.data = data
        self.c = srv.counters
        self.udp = srv.udp_addresses[0][:2]
        self.tcp = srv.tcp_addresses[0][:2]

    async def flushed(self, host: str, n: int, timeout: float = 10.0) -> list[bytes]:
        await until(lambda: len(lines_of(self.data, host)) >= n, timeout, f"{n} lines for {host}")
        return lines_of(self.data, host)

    async def tcp_send(self, data: bytes, close: bool = True) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        r, w = await asyncio.open_connection(*self.tcp)
        w.write(data)
        await w.drain()
        if close:
            w.close()
            await w.wait_closed()
        return r, w


@pytest.fixture
def server(inproc_server: Any, tmp_path: Path) -> Any:
    async def start(**over: Any) -> Running:
        return Running(await inproc_server(**over), tmp_path / "data")

    return start


def r5424(host: str, msg: str, app: str = "app") -> bytes:
    return f"<13>1 2026-11-25T10:00:00Z {host} {app} 1 - - {msg}".encode()


def octet(m: bytes) -> bytes:
    return b"%d %s" % (len(m), m)


async def test_udp_both_formats_and_modes(server):
    s = await server()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.sendto(r5424("web-1", "hello 5424") + b"\n", s.udp)
        u.sendto(b"<30>Nov 25 10:00:00 web-1 sshd[42]: hello 3164", s.udp)
        u.sendto(b"\n", s.udp)
    lines = await s.flushed("web-1", 2)
    assert lines[0].endswith(b" web-1 user.notice app[1]: hello 5424")
    assert lines[1].endswith(b" web-1 daemon.info sshd[42]: hello 3164")
    assert s.c.udp_empty == 1 and s.c.rfc5424 == 1 and s.c.rfc3164 == 1
    assert stat.S_IMODE(os.stat(s.data / "timelines" / "web-1").st_mode) == 0o700
    for f in (s.data / "timelines" / "web-1").iterdir():
        assert stat.S_IMODE(os.stat(f).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(s.data).st_mode) == 0o700


async def test_tcp_octet_and_lf_on_one_connection(server):
    s = await server()
    data = octet(r5424("h1", "one")) + r5424("h1", "two").replace(b"two", b"two") + b"\n" + \
        octet(r5424("h1", "three\nwith newline")) + b"<13>Nov 25 10:00:00 h1 app: four\r\n"
    await s.tcp_send(data)
    lines = await s.flushed("h1", 4)
    assert [ln.split(b" ", 4)[4] for ln in lines] == [b"one", b"two", b"three#012with newline", b"four"]


async def test_message_split_at_every_byte_boundary(server):
    s = await server()
    msg = octet(r5424("split", "every byte")) + r5424("split", "lf framed") + b"\n"
    r, w = await asyncio.open_connection(*s.tcp)
    w.transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn = await until(lambda: next(iter(s.srv.tcp_state.conns), None), what="server-side connection")
    for i in range(len(msg)):
        w.write(msg[i:i + 1])
        await w.drain()
        # wait until the server has read this byte: each byte is its own read
        await until(lambda: conn.nread == i + 1, 5, f"byte {i}")
    w.close()
    await w.wait_closed()
    lines = await s.flushed("split", 2)
    assert [ln.split(b" ", 4)[4] for ln in lines] == [b"every byte", b"lf framed"]
    assert s.c.framing_errors == 0


async def test_lying_octet_counts(server):
    s = await server()
    # count too short: the rest becomes its own (raw) line; count too long + close: delivered, marked truncated
    await s.tcp_send(b"5 <13>hello world\n" + octet(r5424("liar", "ok")))
    await s.tcp_send(b"500 " + r5424("liar", "cut short by close"))
    lines = await s.flushed("liar", 2)
    assert lines[0].endswith(b"ok") and lines[1].endswith(b"cut short by close")
    assert s.c.truncated == 1
    # impossible count: framing error closes that connection only, frames before it are kept
    r, w = await s.tcp_send(octet(r5424("liar", "before error")) + b"12x34 <13>junk", close=False)
    assert await asyncio.wait_for(r.read(), 5) == b""  # closed by the server
    w.close()
    assert s.c.framing_errors == 1
    await s.tcp_send(octet(r5424("liar", "other connection fine")))
    lines = await s.flushed("liar", 4)
    assert lines[2].endswith(b"before error") and lines[3].endswith(b"other connection fine")


async def test_ten_megabytes_without_newline(server):
    s = await server()
    r, w = await asyncio.open_connection(*s.tcp)
    chunk = b"<13>" + b"x" * (1024 * 1024 - 4)
    w.write(chunk)
    for _ in range(9):
        w.write(b"x" * (1024 * 1024))
        await w.drain()
    w.write(b"\n" + r5424("big", "still alive") + b"\n")
    await w.drain()
    await until(lambda: s.c.received >= 2, 20, "both messages")
    w.close()
    await w.wait_closed()
    assert s.c.truncated == 1 and s.c.framing_errors == 0
    assert (await s.flushed("big", 1))[-1].endswith(b"still alive")
    assert any(len(ln) > 65536 for f in (s.data / "timelines").glob("*/*.log") for ln in f.read_bytes().splitlines())


async def test_nul_and_invalid_utf8_are_stored(server):
    s = await server()
    await s.tcp_send(octet(r5424("bin", "a\0b").replace(b"a\0b", b"a\x00b \xff\xfe\xc3\x28 end")))
    line = (await s.flushed("bin", 1))[0]
    assert line.endswith(b" a#000b \xff\xfe\xc3( end")


async def test_hostile_host_names_stay_inside(server, tmp_path):
    s = await server()
    names = ["../../etc", "a/b", "x" * 300, "..", ".", "/abs", "UPPER.Case.", "ok-host"]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        for n in names:
            u.sendto(f"<13>1 - {n} app - - - from {n[:20]}".encode(), s.udp)
        u.sendto(b"<13>Nov 25 10:00:00 ../../../tmp/pwn app: 3164 hostile", s.udp)
        u.sendto(b"\xff\xfegarbage", s.udp)
    await until(lambda: s.c.written >= len(names) + 2, 10, "all written")
    root = (s.data / "timelines").resolve()
    hosts = sorted(p.name for p in root.iterdir())
    for p in s.data.rglob("*"):
        assert p.resolve().is_relative_to(root), p
    assert all(len(h) <= 253 and not h.startswith(".") for h in hosts)
    assert "ok-host" in hosts and "upper.case" in hosts and "127.0.0.1" in hosts
    assert [p for p in tmp_path.iterdir() if p.name != "data"] == []
    raw = lines_of(s.data, "127.0.0.1")
    assert any(b" -.raw - " in ln for ln in raw)


async def test_idle_connection_is_closed(server):
    s = await server(**{"limits.tcp_idle_timeout": 0.3})
    r, w = await asyncio.open_connection(*s.tcp)
    t0 = time.monotonic()
    assert await asyncio.wait_for(r.read(), 10) == b""
    assert time.monotonic() - t0 >= 0.25
    assert s.c.conn_idle_closed == 1 and s.c.conn_open == 0
    w.close()


async def test_max_connections_refuses_and_counts(server):
    s = await server(**{"limits.max_connections": 3})
    keep = [await asyncio.open_connection(*s.tcp) for _ in range(3)]
    await until(lambda: s.c.conn_open == 3, 5, "3 open")
    r, w = await asyncio.open_connection(*s.tcp)
    try:
        assert await asyncio.wait_for(r.read(), 5) == b""
    except ConnectionResetError:
        pass
    assert s.c.conn_refused == 1
    for _, kw in keep:
        kw.close()
    w.close()


async def test_send_and_close_immediately_loses_nothing(server):
    s = await server()
    for i in range(20):
        sock = socket.create_connection(s.tcp)
        sock.sendall(r5424("quick", f"msg {i}"))  # no trailing newline
        sock.close()
    lines = await s.flushed("quick", 20)
    assert sorted(ln.split(b" ", 4)[4] for ln in lines) == sorted(b"msg %d" % i for i in range(20))


async def test_two_thousand_concurrent_connections(server):
    s = await server()
    n = 2000

    async def client(i: int) -> None:
        r, w = await asyncio.open_connection(*s.tcp)
        w.write(b"".join(octet(r5424(f"c{i % 50}", f"conn {i} msg {k}")) for k in range(3)))
        await w.drain()
        await started.wait()  # every connection is open at the same time
        w.close()
        await w.wait_closed()

    started = asyncio.Event()
    tasks = [asyncio.create_task(client(i)) for i in range(n)]
    await until(lambda: s.c.conn_open >= n, 60, f"{n} open connections")
    started.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 60)
    await until(lambda: s.c.written >= 3 * n, 30, "all lines written")
    assert all_lines(s.data) == 3 * n
    assert s.c.conn_accepted == n and s.c.conn_refused == 0


async def test_nothing_lost_over_tcp(server):
    s = await server()
    per_conn = 20_000

    async def client(c: int) -> None:
        r, w = await asyncio.open_connection(*s.tcp)
        for b in range(0, per_conn, 1000):
            w.write(b"".join(octet(r5424(f"n{(c * per_conn + k) % 100}", f"c{c} k{k}"))
                             for k in range(b, b + 1000)))
            await w.drain()
        w.close()
        await w.wait_closed()

    await asyncio.wait_for(asyncio.gather(*(client(c) for c in range(4))), 60)
    await until(lambda: s.c.written >= 4 * per_conn, 30, "all written")
    assert all_lines(s.data) == 4 * per_conn
    assert len(list((s.data / "timelines").iterdir())) == 100


async def test_shutdown_flushes_and_reports(server, caplog):
    s = await server(**{"timeline.flush_interval": 30.0})
    await s.tcp_send(b"".join(octet(r5424("bye", f"m{i}")) for i in range(100)))
    await until(lambda: s.c.received == 100, 5, "received")
    assert lines_of(s.data, "bye") == []  # not flushed yet (30 s interval)
    with caplog.at_level("INFO", logger="sylog"):
        s.srv.request_stop()
        await s.srv.shutdown()
    s.srv._started = False
    assert len(lines_of(s.data, "bye")) == 100
    assert any("stopped:" in r.message and "received=100" in r.message for r in caplog.records)


async def test_observers_fed_ticked_and_closed(tmp_path):
    class Obs:
        def __init__(self) -> None:
            self.fed: list[tuple[str, bytes]] = []
            self.ticks = 0
            self.closed = False

        def feed(self, host, recv_time, msg, line):
            self.fed.append((host, line))
            if msg.msg == "boom":
                raise RuntimeError("observer bug")

        def tick(self, now):
            self.ticks += 1

        async def aclose(self):
            self.closed = True

    ob = Obs()
    cfg = apply_overrides(Config(), {"data_dir": str(tmp_path), "listen.udp": ["127.0.0.1:0"],
                                     "listen.tcp": [], "stats_interval": 0.0})
    srv = Server(cfg, observers=[ob])
    await srv.start()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.sendto(r5424("o1", "boom"), srv.udp_addresses[0])
        u.sendto(r5424("o1", "fine"), srv.udp_addresses[0])
    await until(lambda: len(ob.fed) == 2 and ob.ticks >= 2, 5, "fed and ticked")
    srv.request_stop()
    await srv.shutdown()
    assert ob.closed and srv.counters.observer_errors == 1
    assert ob.fed[1][0] == "o1" and ob.fed[1][1].endswith(b" fine\n")
    assert len(lines_of(tmp_path, "o1")) == 2


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback on this machine")
async def test_ipv6_listeners_and_peer_fallback(server):
    s = await server(**{"listen.udp": ["[::1]:0"], "listen.tcp": ["[::1]:0"]})
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as u:
        u.sendto(b"<13>no header at all over v6", s.udp)
    r, w = await asyncio.open_connection(*s.tcp)
    w.write(b"<13>1 - - app - - - nil hostname over v6 tcp\n")
    await w.drain()
    w.close()
    lines = await s.flushed("::1", 2)
    assert any(b"header at all over v6" in ln for ln in lines)
    assert any(ln.endswith(b"nil hostname over v6 tcp") for ln in lines)


async def test_udp_truncation_is_counted(server):
    s = await server(**{"limits.max_message_size": 100})
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.sendto(r5424("udptrunc", "y" * 500), s.udp)
    line = (await s.flushed("udptrunc", 1))[0]
    assert s.c.truncated == 1 and line.endswith(b"y") and len(line) < 200


def test_parse_address_forms():
    from sylog.server.listeners import parse_address

    assert parse_address("0.0.0.0:514") == ("0.0.0.0", 514)
    assert parse_address("[::]:5514") == ("::", 5514)
    assert parse_address(":514") == ("0.0.0.0", 514)
    assert parse_address("514") == ("0.0.0.0", 514)
    for bad in ("::1:514", "host", "1.2.3.4:70000", "[::1]514", "a:b"):
        with pytest.raises(ValueError):
            parse_address(bad)


async def test_shutdown_keeps_connections_waiting_in_the_accept_queue(server):
    s = await server()
    # Blocking client calls: the kernel completes the handshake and buffers the data while the server's loop
    # has not run yet, so this connection is still in the accept queue when shutdown starts.
    socks = []
    for i in range(3):
        c = socket.create_connection(s.tcp)
        c.sendall(octet(r5424("queued", f"m{i}")))
        socks.append(c)
    s.srv.request_stop()
    await s.srv.shutdown()
    s.srv._started = False
    for c in socks:
        c.close()
    assert sorted(ln.split(b" ", 4)[4] for ln in lines_of(s.data, "queued")) == [b"m0", b"m1", b"m2"]


async def test_backpressure_pauses_tcp_when_the_writer_is_behind(server):
    import threading

    s = await server(**{"timeline.max_pending_lines": 1000})
    w = s.srv.writer
    gate = threading.Event()
    real = w.write_batch

    def slow(batch):
        gate.wait(30)  # a stuck disk
        return real(batch)

    w.write_batch = slow
    n = 20_000
    peak = 0

    async def send() -> None:
        r, wr = await asyncio.open_connection(*s.tcp)
        for b in range(0, n, 500):
            wr.write(b"".join(octet(r5424("bp", f"m{k}")) for k in range(b, b + 500)))
            await wr.drain()
        wr.close()

    sender = asyncio.create_task(send())

    def paused() -> bool:
        nonlocal peak
        peak = max(peak, w.pending_lines)
        return s.srv.tcp_state.paused

    await until(paused, 10, "TCP reading paused")
    for _ in range(20):  # while paused, the backlog stays bounded
        await asyncio.sleep(0.01)
        peak = max(peak, w.pending_lines)
    assert peak < 1000 + 6000, peak  # the limit plus at most one read (<= 256 KiB) of frames
    assert s.c.tcp_pauses >= 1
    gate.set()
    await asyncio.wait_for(sender, 30)
    await until(lambda: s.c.written >= n, 30, "everything written after the disk recovered")
    assert len(lines_of(s.data, "bp")) == n


async def test_udp_kernel_drops_are_read_for_our_socket(server):
    from sylog.server.listeners import udp_kernel_drops

    s = await server(**{"limits.udp_rcvbuf": 4096})  # tiny, whatever the machine default
    tr = s.srv.udp_transports[0]
    tr.pause_reading()  # nobody reads: a flood must overflow the receive buffer
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        for _ in range(5000):
            u.sendto(b"x" * 1000, s.udp)
    drops = udp_kernel_drops(s.srv._udp_inodes)
    assert drops > 0
    tr.resume_reading()
    await until(lambda: s.c.udp_datagrams > 0, 5, "reading again")
    s.srv._update_kernel_counters()
    assert s.c.udp_kernel_drops >= drops


async def test_reuse_port_lets_two_servers_share_the_ports(server, tmp_path):
    a = await server(**{"listen.reuse_port": True})
    port = a.tcp[1]
    b_srv = Server(apply_overrides(Config(), {
        "data_dir": str(tmp_path / "data"), "listen.udp": [f"127.0.0.1:{a.udp[1]}"],
        "listen.tcp": [f"127.0.0.1:{port}"], "listen.reuse_port": True, "stats_interval": 0.0,
        "timeline.flush_interval": 0.05}))
    await b_srv.start()
    try:
        for i in range(40):  # the kernel spreads connections over both; every message lands once
            await a.tcp_send(octet(r5424("shared", f"m{i}")))
        await until(lambda: a.c.written + b_srv.counters.written >= 40, 10, "40 written by the two")
        assert len(lines_of(a.data, "shared")) == 40
    finally:
        b_srv.request_stop()
        await b_srv.shutdown()


async def test_busy_connections_yield_their_turn_and_lose_nothing(server):
    from sylog.server import listeners

    s = await server()
    n = 3 * listeners.TURN_BUDGET * 4
    payload = b"".join(octet(r5424("busy", f"m{k}")) for k in range(n // 3))
    socks = [socket.create_connection(s.tcp) for _ in range(3)]
    for c in socks:  # all three buffered in the kernel before the loop reads: one turn sees them all
        c.setblocking(False)
    sent = [0, 0, 0]
    while min(sent) < len(payload):
        for i, c in enumerate(socks):
            if sent[i] < len(payload):
                try:
                    sent[i] += c.send(payload[sent[i]:sent[i] + (1 << 20)])
                except BlockingIOError:
                    pass
        await asyncio.sleep(0)
    for c in socks:
        c.close()
    await until(lambda: s.c.written >= n, 30, "all written")
    assert len(lines_of(s.data, "busy")) == n
    assert s.c.turn_yields > 0


async def test_truncation_counted_when_the_cut_frame_spans_reads(server):
    s = await server(**{"limits.max_message_size": 100})
    body = r5424("spans", "z" * 5000)
    r, w = await asyncio.open_connection(*s.tcp)
    conn = await until(lambda: next(iter(s.srv.tcp_state.conns), None), what="server-side connection")
    w.write(b"%d " % len(body) + body[:50])  # header + part of the kept 100 bytes: cut decided, frame incomplete
    await w.drain()
    await until(lambda: conn.nread >= 50, 5, "first part read")
    w.write(body[50:] + octet(r5424("spans", "next")))
    await w.drain()
    w.close()
    lines = await s.flushed("spans", 2)
    assert s.c.truncated == 1 and lines[1].endswith(b"next")

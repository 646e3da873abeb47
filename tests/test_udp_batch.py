"""Batched UDP reading and kernel-first shedding (sylog/server/udp.py, Pipeline.process_datagrams).

The shed policy is driven directly (sans-IO); the reader's per-batch handling with a recording pipeline; and the
whole server over loopback: a burst lands datagram for datagram, hosts fold per peer, the allowlist is per peer,
truncation is counted, and when the ordinary socket overflows, kernel lines still all arrive and every loss is
counted.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest
from conftest import read_timeline, until

from sylog.config import apply_overrides
from sylog.server.allow import Access, Allowlist, parse_networks
from sylog.server.counters import Counters
from sylog.server.udp import ShedPolicy, UdpReader, is_kernel_datagram


def r5424(host: str, msg: str, pri: int = 13, app: str = "app") -> bytes:
    return f"<{pri}>1 2026-11-25T10:00:00Z {host} {app} 1 - - {msg}".encode()


# -- sans-IO: what is a kernel datagram, how much ordinary traffic goes on ----------------------------------------
def test_kernel_datagram_byte_check() -> None:
    for pri in range(8):
        assert is_kernel_datagram(b"<%d>1 2026-11-25T10:00:00Z h kernel - - - x" % pri)
        assert is_kernel_datagram(b"<%d>Nov 25 10:00:00 h x" % pri)
    assert is_kernel_datagram(b"<13>Nov 25 10:00:00 relay-host kernel: [ 1.0] oops")  # relay lost the facility
    assert is_kernel_datagram(b"<14>1 2026-11-25T10:00:00Z h kernel - - - x")
    # a message text naming the kernel early is a (harmless) false positive: it is spared, not mis-stored
    assert is_kernel_datagram(b"<13>1 2026-11-25T10:00:00Z h sshd 1 - - kernel panic talk")
    for d in (b"<8>x", b"<13>1 2026-11-25T10:00:00Z h sshd 1 - - " + b"." * 200 + b" kernel text past the header",
              b"<86>1 2026-11-25T10:00:00Z h sshd 1 - - x", b"<0", b"", b"plain text", b"<30>x"):
        assert not is_kernel_datagram(d), d


def test_policy_sheds_only_under_pressure_then_recovers() -> None:
    p = ShedPolicy(high=0.5, low=0.25, min_share=1 / 16, recover=1 / 4)
    assert p.update(0.1, False) == 1.0 and not p.shedding
    assert p.update(0.45, True) == 1.0  # filling but below high: nothing shed yet
    assert p.update(0.6, True) == 0.5 and p.shedding and p.episodes == 1
    assert p.update(0.7, True) == 0.25
    for _ in range(10):
        p.update(0.9, True)
    assert p.share == 1 / 16  # ordinary traffic thins, never goes dark
    assert p.update(0.6, True) == 1 / 16  # above high but draining: hold
    assert p.update(0.3, False) == 1 / 16  # between low and high: hold
    shares = [p.update(0.1, False) for _ in range(5)]
    assert shares[-1] == 1.0 and not p.shedding
    assert shares == sorted(shares)  # grows back step by step


def test_policy_writer_backlog_is_pressure_and_no_level_means_full_drains() -> None:
    p = ShedPolicy()
    assert p.update(0.0, False, backlog=True) == 0.5
    q = ShedPolicy(full_wakes=3)
    assert [q.update(None, True) for _ in range(3)] == [1.0, 1.0, 0.5]
    assert q.update(None, False) > 0.5  # a drain that emptied the socket: recovering


def test_select_keeps_every_kernel_datagram_and_a_share_of_ordinary() -> None:
    p = ShedPolicy()
    p.share = 0.25
    frames, peers = [], []
    for i in range(1100):
        kern = i % 11 == 0
        frames.append(r5424(f"h{i % 7}", f"n={i}", pri=4 if kern else 30))
        peers.append(f"10.0.0.{i % 3}")
    kf, kp, shed = p.select(frames, peers)
    kernel_in = [f for f in frames if f.startswith(b"<4>")]
    assert [f for f in kf if f.startswith(b"<4>")] == kernel_in  # all of them, in order
    ordinary_kept = len(kf) - len(kernel_in)
    assert ordinary_kept == 250 and shed == 1000 - 250  # the share, evenly spread (credit carried)
    assert len(kf) + shed == len(frames)
    assert [frames.index(f) for f in kf] == sorted(frames.index(f) for f in kf)  # arrival order kept
    assert all(peers[frames.index(f)] == pp for f, pp in zip(kf, kp))  # each frame keeps its own peer
    p.share = 1.0
    assert p.select(frames, peers) == (frames, peers, 0)


# -- the reader's batch handling, with a recording pipeline ----------------------------------------------------------
class FakeWriter:
    def __init__(self) -> None:
        self.pending_lines = 0
        self.on_flushed: list[Any] = []


class RecordingPipeline:
    def __init__(self) -> None:
        self.writer = FakeWriter()
        self.calls: list[tuple[list[bytes], list[str]]] = []

    def process_datagrams(self, frames: list[bytes], peers: list[str], now: float) -> None:
        self.calls.append((list(frames), list(peers)))


class CountingDenyLog:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def denied(self, kind: str, peer: str) -> bool:
        self.calls.append((kind, peer))
        return True


def make_reader(pipeline: RecordingPipeline, **kw: Any) -> tuple[UdpReader, Counters, socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    c = Counters()
    return UdpReader(sock, pipeline, c, kw.pop("max_message_size", 1000), steer=False, **kw), c, sock


def test_one_pipeline_call_per_batch_with_framing_and_counters() -> None:
    pl = RecordingPipeline()
    rd, c, sock = make_reader(pl, max_message_size=100)
    with sock:
        rd.handle([r5424("a", "one") + b"\n", b"\r\n\0", r5424("b", "x" * 200), r5424("c", "three")],
                  ["10.0.0.1", "10.0.0.2", "10.0.0.2", "10.0.0.3"])
    assert len(pl.calls) == 1
    frames, peers = pl.calls[0]
    assert frames[0] == r5424("a", "one") and len(frames[1]) == 100 and frames[2] == r5424("c", "three")
    assert peers == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    assert (c.udp_datagrams, c.udp_messages, c.udp_empty, c.truncated, c.shed_ordinary) == (4, 4, 1, 1, 0)


def test_allowlist_decided_once_per_distinct_peer_per_batch() -> None:
    pl = RecordingPipeline()
    access = Access({"udp": Allowlist(parse_networks(["10.0.0.0/24"]))})
    dl = CountingDenyLog()
    rd, c, sock = make_reader(pl, access=access, deny_log=dl)
    with sock:
        frames = [r5424("h", f"m{i}") for i in range(40)]
        senders = [f"{'10.0.0' if i % 2 else '192.0.2'}.{i % 4}" for i in range(40)]
        rd.handle(frames, senders)
        assert sorted(dl.calls) == [("udp", "192.0.2.0"), ("udp", "192.0.2.2")]  # not 20 calls
        assert c.denied_datagrams == 20 and c.udp_messages == 20
        assert all(p.startswith("10.0.0.") for p in pl.calls[0][1]) and len(pl.calls[0][0]) == 20
        access.lists = Access().lists  # a reload opens the listener to everyone: the next batch sees it
        rd.handle(frames[:4], senders[:4])
        assert len(pl.calls[1][0]) == 4 and c.denied_datagrams == 20


def test_overload_without_steering_passes_kernel_lines_and_counts_the_shed() -> None:
    pl = RecordingPipeline()
    rd, c, sock = make_reader(pl, max_pending_lines=1000)
    with sock:
        pl.writer.pending_lines = 5000  # the writer is far behind: pressure on every wake
        sent_kernel = sent = 0
        for wake in range(8):
            frames = []
            for i in range(500):
                kern = i % 20 == 0
                frames.append(r5424(f"h{i % 9}", f"w{wake} i{i}", pri=3 if kern else 86))
                sent_kernel += kern
            sent += len(frames)
            rd.handle(frames, ["10.0.0.1"] * len(frames), fill=0.9, full=True)
        got = [f for frames, _ in pl.calls for f in frames]
        assert sum(f.startswith(b"<3>") for f in got) == sent_kernel  # every kernel line went on
        assert c.shed_ordinary > 0.8 * (sent - sent_kernel)  # most ordinary ones were shed ...
        assert len(got) + c.shed_ordinary == sent  # ... and every one of them is counted
        pl.writer.pending_lines = 0  # caught up: after a few calm wakes nothing is shed any more
        for _ in range(40):
            rd.handle([r5424("h", "calm")], ["10.0.0.1"], fill=0.0)
        before = c.shed_ordinary
        rd.handle([r5424("h", "calm")] * 10, ["10.0.0.1"] * 10, fill=0.0)
        assert c.shed_ordinary == before and not rd.policy.shedding


# -- the whole server over loopback ----------------------------------------------------------------------------------
@pytest.fixture
def server(inproc_server: Any) -> Any:
    return inproc_server


def sender(src: str = "127.0.0.1") -> socket.socket:
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind((src, 0))
    return u


@pytest.mark.parametrize("steer", [True, False])
async def test_burst_lands_whole_in_batches_with_per_peer_hosts(server, tmp_path: Path, monkeypatch,
                                                                steer: bool) -> None:
    from sylog.server import udp

    if not steer:
        monkeypatch.setattr(udp, "kernel_socket", lambda sock: None)
    srv = await server(**{"limits.max_message_size": 300})
    if not steer:
        assert not srv.udp_transports[0].steering
    data = tmp_path / "data"
    addr = srv.udp_addresses[0][:2]
    calls: list[int] = []
    orig = srv.pipeline.process_datagrams

    def spy(frames: list[bytes], peers: list[str], now: float) -> None:
        calls.append(len(frames))
        orig(frames, peers, now)

    srv.pipeline.process_datagrams = spy  # type: ignore[method-assign]
    n_hosts, per_host = 40, 50
    with sender() as a, sender() as b, sender("127.0.0.2") as c2:
        for i in range(per_host):  # all sent before the server's loop runs again: one burst
            for h in range(n_hosts):
                (a if h % 2 else b).sendto(r5424(f"burst-{h:02d}", f"seq={i}", pri=4 if h == 0 else 30), addr)
        for i in range(5):  # no usable hostname: folded to the peer address, per datagram
            a.sendto(r5424("-", f"nil-a {i}"), addr)
            c2.sendto(r5424("-", f"nil-c {i}"), addr)
        a.sendto(r5424("longish", "y" * 500), addr)
    total = n_hosts * per_host + 11
    await until(lambda: srv.counters.written >= total, 20, f"{total} lines written")
    for h in range(n_hosts):
        lines = read_timeline(data, f"burst-{h:02d}")
        assert [ln.rsplit("seq=", 1)[1] for ln in lines] == [str(i) for i in range(per_host)], h  # all, in order
    assert len(read_timeline(data, "127.0.0.1")) == 5 and len(read_timeline(data, "127.0.0.2")) == 5
    assert all("nil-c" in ln for ln in read_timeline(data, "127.0.0.2"))
    c = srv.counters
    assert c.truncated == 1 and c.udp_datagrams == total and c.received == total and c.shed_ordinary == 0
    assert max(calls) > 100 and len(calls) < total / 10  # batched: far fewer pipeline calls than datagrams


async def test_allowlist_per_peer_and_reload_over_loopback(server, tmp_path: Path) -> None:
    srv = await server(**{"listen.udp_allow": ["127.0.0.2/32"]})
    addr = srv.udp_addresses[0][:2]
    with sender("127.0.0.1") as bad, sender("127.0.0.2") as good:
        for i in range(10):
            bad.sendto(r5424("denied-host", f"d{i}"), addr)
            good.sendto(r5424("allowed-host", f"a{i}"), addr)
        await until(lambda: len(read_timeline(tmp_path / "data", "allowed-host")) == 10, 10, "allowed lines")
        assert srv.counters.denied_datagrams == 10 and not read_timeline(tmp_path / "data", "denied-host")
        assert srv.reload(apply_overrides(srv.cfg, {"listen.udp_allow": ["127.0.0.1/32"]}))
        bad.sendto(r5424("denied-host", "now allowed"), addr)
        good.sendto(r5424("allowed-host", "now denied"), addr)
        await until(lambda: read_timeline(tmp_path / "data", "denied-host"), 10, "line after reload")
    assert srv.counters.denied_datagrams == 11


async def test_kernel_lines_survive_when_ordinary_overflow_and_every_loss_is_counted(server, tmp_path: Path) -> None:
    srv = await server(**{"limits.udp_rcvbuf": 65536})
    rd = srv.udp_transports[0]
    if not rd.steering:
        pytest.skip("kernel-line steering (SO_ATTACH_REUSEPORT_CBPF) not available here")
    addr = srv.udp_addresses[0][:2]
    rd.pause_reading()  # nobody reads for a while: the reader is "behind"
    n_kernel, n_ordinary = 30, 4000
    with sender() as u:
        for i in range(n_ordinary):
            u.sendto(r5424("busy", f"ordinary {i} " + "z" * 200, pri=86), addr)
            if i % (n_ordinary // n_kernel) == 0 and i // (n_ordinary // n_kernel) < n_kernel:
                u.sendto(r5424("busy", f"kernel {i // (n_ordinary // n_kernel)}", pri=3, app="kernel"), addr)
    rd.resume_reading()
    sent = n_kernel + n_ordinary
    c = srv.counters

    def settled() -> bool:
        srv._update_kernel_counters()
        return c.written + c.udp_kernel_drops + c.shed_ordinary >= sent

    await until(settled, 20, "every datagram written or counted as dropped")
    lines = read_timeline(tmp_path / "data", "busy")
    kernel = [ln for ln in lines if " kern." in ln]
    assert len(kernel) == n_kernel  # every kernel line arrived
    assert c.udp_kernel_drops > 0 and len(lines) < sent  # ordinary ones overflowed ...
    assert len(lines) + c.udp_kernel_drops + c.shed_ordinary == sent  # ... and each loss is counted


async def test_shutdown_delivers_what_the_socket_still_holds(server, tmp_path: Path) -> None:
    srv = await server()
    srv.udp_transports[0].pause_reading()
    with sender() as u:
        for i in range(200):
            u.sendto(r5424("late", f"n={i}", pri=4 if i % 10 == 0 else 30), srv.udp_addresses[0][:2])
    srv.request_stop()
    await asyncio.wait_for(srv.shutdown(), 30)
    assert len(read_timeline(tmp_path / "data", "late")) == 200


async def test_ipv6_sender_address_names_the_host(server, tmp_path: Path) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        probe = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        probe.bind(("::1", 0))
        probe.close()
    except OSError:
        pytest.skip("no IPv6 loopback")
    srv = await server(**{"listen.udp": ["[::1]:0"], "listen.tcp": ["[::1]:0"], "listen.udp_allow": ["::1/128"]})
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as u:
        for i in range(3):
            u.sendto(r5424("-", f"v6 {i}", pri=4 if i == 1 else 30), srv.udp_addresses[0][:2])
    await until(lambda: len(read_timeline(tmp_path / "data", "::1")) == 3, 10, "3 lines under ::1")
    assert srv.counters.denied_datagrams == 0


async def test_steering_keeps_the_port_exclusive(server) -> None:
    """The listening socket joins a SO_REUSEPORT group for the kernel-line socket; a second daemon binding the
    port the ordinary way must still be refused (``address already in use``), as before."""
    srv = await server()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other, pytest.raises(OSError) as e:
        other.bind(srv.udp_addresses[0][:2])
    assert e.value.errno == 98  # EADDRINUSE

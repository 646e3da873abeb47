"""Smoke tests of the benchmark load generator: determinism, framing, bounded counts, loopback only.

No performance assertions: these only prove the generator sends what its manifest says.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.loadgen import LoadRun, NotLoopback, parse_target  # noqa: E402
from bench.traces import TRACES  # noqa: E402
from bench.workload import Workload, WorkloadSpec  # noqa: E402

SPEC = WorkloadSpec(hosts=37, messages=5000, crashes=5, senders=3, seed=7)


def _deframe_octet(buf: bytes) -> list[bytes]:
    out, i = [], 0
    while i < len(buf):
        sp = buf.index(b" ", i)
        n = int(buf[i:sp])
        out.append(buf[sp + 1:sp + 1 + n])
        i = sp + 1 + n
    return out


def test_same_spec_same_bytes_other_seed_other_bytes() -> None:
    a = b"".join(Workload(SPEC).render(1, "octet").chunks)
    b = b"".join(Workload(SPEC).render(1, "octet").chunks)
    c = b"".join(Workload(WorkloadSpec(hosts=37, messages=5000, crashes=5, senders=3, seed=8)).render(1, "octet")
                 .chunks)
    assert a == b
    assert a != c


def test_octet_framing_is_exact_and_counts_match_manifest() -> None:
    w = Workload(SPEC)
    man = w.manifest("octet")
    per_host: dict[str, int] = {}
    total = 0
    for s in range(SPEC.senders):
        r = w.render(s, "octet", chunk_bytes=4096)
        frames = _deframe_octet(b"".join(r.chunks))
        assert len(frames) == r.messages
        total += len(frames)
        for f in frames:
            assert f.startswith(b"<") and b"\n" not in f
            host = f.split(b" ", 3)[2].decode()
            assert int(host.rsplit("-", 1)[1]) % SPEC.senders == s  # hosts partitioned over senders
            per_host[host] = per_host.get(host, 0) + 1
    assert total == man.total_messages == SPEC.messages + sum(c.lines for c in man.crashes)
    assert per_host == man.per_host


def test_lf_and_udp_framing() -> None:
    w = Workload(SPEC)
    lf = b"".join(w.render(0, "lf").chunks)
    udp = w.render(0, "udp")
    assert lf.count(b"\n") == len(udp.chunks) == udp.messages
    assert lf.split(b"\n")[:-1] == udp.chunks


def test_crash_traces_injected_in_host_order() -> None:
    w = Workload(SPEC)
    man = w.manifest("lf")
    assert len(man.crashes) == SPEC.crashes
    for c in man.crashes:
        r = w.render(c.sender, "lf", chunk_bytes=1 << 30)
        lines = b"".join(r.chunks).split(b"\n")
        mine = [ln for ln in lines if f" {c.host} ".encode() in ln]
        trig = [i for i, ln in enumerate(mine) if ln.endswith(c.trigger.encode())]
        assert len(trig) == 1
        i = trig[0]
        assert i == c.after_round + 1  # right after the host's message of that round
        assert len(mine) == man.per_host[c.host]
        assert c.lines == len(TRACES[c.trace][1])
        # a trace starts a new chunk, so the sender can time-stamp it
        assert any(ch.startswith(mine[i]) for ch in r.chunks)


def test_loopback_only() -> None:
    assert parse_target("127.0.0.1:514") == ("127.0.0.1", 514)
    assert parse_target("[::1]:514") == ("::1", 514)
    assert parse_target("127.3.2.1:9") == ("127.3.2.1", 9)
    for bad in ("10.0.0.1:514", "8.8.8.8:53", "[2001:db8::1]:514", "example.com:514", "0.0.0.0:514"):
        with pytest.raises(NotLoopback):
            parse_target(bad)


def test_tcp_senders_deliver_every_byte() -> None:
    spec = WorkloadSpec(hosts=20, messages=3000, crashes=2, senders=2, seed=3)
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    port = srv.getsockname()[1]
    got: list[bytes] = []

    def serve() -> None:
        srv.settimeout(30)
        conns = []
        for _ in range(spec.senders):
            c, _ = srv.accept()
            conns.append(c)
        for c in conns:
            c.settimeout(30)
            buf = []
            while True:
                b = c.recv(1 << 16)
                if not b:
                    break
                buf.append(b)
            got.append(b"".join(buf))
            c.close()

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    res = LoadRun(spec, target=f"127.0.0.1:{port}", transport="tcp", timeout=60).run()
    th.join(30)
    srv.close()
    assert not th.is_alive()
    assert res.summary()["errors"] == []
    frames = [f for g in got for f in _deframe_octet(g)]
    assert len(frames) == res.messages == res.manifest.total_messages
    assert sum(map(len, got)) == res.bytes
    assert all(c.sent_mono is not None for c in res.manifest.crashes)


def test_udp_paced_and_bounded() -> None:
    spec = WorkloadSpec(hosts=10, messages=400, senders=2, seed=5)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    s.bind(("127.0.0.1", 0))
    s.settimeout(0.5)
    port = s.getsockname()[1]
    run = LoadRun(spec, target=f"127.0.0.1:{port}", transport="udp", rate=4000, timeout=30)
    got = 0
    t0 = time.monotonic()
    res_box: list = []
    th = threading.Thread(target=lambda: res_box.append(run.run()), daemon=True)
    th.start()
    while time.monotonic() - t0 < 20:
        try:
            s.recv(65536)
            got += 1
        except TimeoutError:
            if not th.is_alive():
                break
    th.join(10)
    s.close()
    res = res_box[0]
    assert res.messages == 400 == res.manifest.total_messages
    assert got <= 400
    assert got >= 1
    assert res.seconds >= 0.05  # paced (400 at 4000/s is about 0.1 s), not blasted


def test_cycled_background_load_stops_at_duration() -> None:
    spec = WorkloadSpec(hosts=5, messages=50, senders=1, seed=9)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    t0 = time.monotonic()
    res = LoadRun(spec, target=f"127.0.0.1:{port}", transport="udp", rate=2000, cycle=True, duration=0.4,
                  timeout=10).run()
    s.close()
    assert time.monotonic() - t0 < 8
    assert res.senders[0].cycles >= 2  # the 50-message workload was repeated
    assert 50 < res.messages <= 2000 * 0.4 * 1.5 + 50


def test_every_ordinary_message_carries_its_round_and_order_check_sees_reordering(tmp_path: Path) -> None:
    from bench.harness import order_violations

    w = Workload(SPEC)
    tagged = [m for _h, m, _c in w.messages(0) if m.rsplit(b" seq=", 1)[-1].isdigit()]
    assert len(tagged) == sum(w.host_messages(h) for h in w.sender_hosts(0))  # all but the crash trace lines
    t = tmp_path / "timelines"
    (t / "a").mkdir(parents=True)
    (t / "b").mkdir()
    (t / "a" / "2026-11-25.log").write_bytes(b"x seq=1\nkernel trace line\nx seq=2\nx seq=2\n")
    (t / "b" / "2026-11-25.log").write_bytes(b"x seq=1\nx seq=3\nx seq=2\n")
    assert order_violations(t) == 1

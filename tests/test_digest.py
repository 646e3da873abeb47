"""The digest stage (sylog.server.digest): its fast path must give exactly the lines the general road gives, keep
each host's order, set the clean-shutdown bit exactly when the detector would, and survive the wire."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sylog.incidents.correlator import Correlator, clean_shutdown_filter
from sylog.kernel import detect
from sylog.server.counters import Counters
from sylog.server.digest import Digester, decode_batches, encode_batches, has_ctrl, is_run
from sylog.syslog.hostnames import fold_host
from sylog.syslog.message import Message
from sylog.syslog.parse import parse
from sylog.timeline.format import TimeCache, format_with_stamp

NOW = 1764064800.123456  # 2025-11-25T10:00:00.123456Z
FILTER = clean_shutdown_filter()


def reference(frames: list[bytes], peers: list[str], now: float = NOW):
    """Per frame, the general road: (host, line, is_kernel, clean) - what the server stored before the digest."""
    stamp, _ = TimeCache().stamp(now)
    out = []
    for raw, peer in zip(frames, peers):
        msg = parse(raw)
        host = fold_host(msg.hostname, peer)
        kernel = msg.facility == 0 or msg.app_name == "kernel"
        clean = not kernel and msg.app_name in FILTER.apps and FILTER.check(msg)
        out.append((host, format_with_stamp(stamp, host, msg), kernel, clean))
    return out


def flatten(batch) -> dict[str, list[tuple[bytes, bool]]]:
    """host -> [(line, is_kernel)] in item order, runs split back into lines."""
    per: dict[str, list[tuple[bytes, bool]]] = {}
    for it in batch.items:
        if is_run(it):
            host, blob, n, _clean = it
            lines = [ln + b"\n" for ln in blob.split(b"\n")[:-1]]
            assert len(lines) == n
            per.setdefault(host, []).extend((ln, False) for ln in lines)
        else:
            per.setdefault(it[0], []).append((it[1], True))
    return per


def check_same(frames: list[bytes], peers: list[str] | str) -> None:
    plist = [peers] * len(frames) if isinstance(peers, str) else peers
    ref = reference(frames, plist)
    batch = Digester(Counters(), shutdown=FILTER).digest(frames, peers, NOW)
    want: dict[str, list[tuple[bytes, bool]]] = {}
    clean: dict[str, bool] = {}
    for host, line, kernel, cl in ref:
        want.setdefault(host, []).append((line, kernel))
        clean[host] = clean.get(host, False) or cl
    assert flatten(batch) == want
    got_clean: dict[str, bool] = {}
    for it in batch.items:
        if is_run(it):
            got_clean[it[0]] = got_clean.get(it[0], False) or it[3]
    assert {h: c for h, c in got_clean.items() if c} == {h: c for h, c in clean.items() if c}
    assert batch.messages == len(frames)


CASES = [
    b"<86>1 2026-11-25T10:00:00.000000Z node-00042 sshd 4242 - - pid 1 session opened",
    b"<86>1 2026-11-25T10:00:00.000000Z Node-00042 sshd 4242 - - upper case host folds like lower",
    b"<86>1 2026-11-25T10:00:00.000000Z node-00042. sshd - - - trailing dot, nil procid",
    b"<0>1 2026-11-25T10:00:00Z db-07 kernel - - - [   12.345678] BUG: unable to handle page fault",
    b"<30>1 2026-11-25T10:00:00Z db-07 kernel - - - relayed kernel line with another facility",
    b"<13>1 - - - - - -",
    b"<13>1 - h a p m - nil stamp",
    b"<13>1 2026-02-29T10:00:00Z h app 1 m - leap day 2026 does not exist",
    b"<13>1 2026-11-25T10:00:00Z h app 1 m \xef\xbb\xbfBOM then text",
    b"<13>1 2026-11-25T10:00:00Z h\xff app 1 m - not utf-8 \xfe\xff",
    b"<13>1 2026-11-25T10:00:00Z h app 1 m [x@1 a=\"b\"] with SD",
    b"<13>1 2026-11-25T10:00:00Z h  app 1 m - empty host field",
    b"<13>1 2026-11-25T10:00:00Z h app 1 m",
    b"<191>1 2026-11-25T10:00:00Z h app 1 m - tail\tand\x00controls\x7f",
    b"<13>1 2026-11-25T10:00:00Z ../../etc app 1 m - path trick host",
    b"<13>1 2026-11-25T10:00:00Z h ap\x01p 1 m - control byte in the app name",
    b"<13>1 2026-11-25T10:00:00Z h app 1/2 m - procid not alphanumeric",
    b"<13>1 2026-11-25T10:00:00Z h app\xc3\xa9 12 m - non-ASCII app name",
    b"<30>1 2026-11-25T10:00:00Z h systemd 1 - - Reached target System Reboot.",
    b"<30>1 2026-11-25T10:00:00Z h systemd 1 - - Started Session 4 of user root.",
    b"<46>1 2026-11-25T10:00:00Z h rsyslogd 7 - - [origin] exiting on signal 15.",
    b"<30>1 2026-11-25T10:00:00Z h systemd-shutdown 1 - - Syncing filesystems and block devices.",
    b"<30>Nov 25 10:00:01 node-1 sshd[42]: RFC 3164 goes the general road",
    b"<6>Nov 25 10:00:01 node-1 kernel: [  1.0] 3164 kernel line",
    b"no pri at all",
    b"<999>bad pri",
]


@pytest.mark.parametrize("peer", ["10.0.0.7", "::ffff:10.0.0.8"])
def test_cases_single_sender(peer):
    check_same(CASES, peer)


def test_cases_one_sender_per_frame_and_peer_notes():
    peers = [f"10.0.0.{i % 3}" for i in range(len(CASES))]
    check_same(CASES, peers)
    batch = Digester(Counters()).digest(CASES, peers, NOW)
    ref = reference(CASES, peers)
    last = {}
    for (host, *_), p in zip(ref, peers):
        last[p] = host
    assert batch.peers == last


def test_host_order_kept_around_kernel_lines():
    f = [b"<30>1 - a app 1 - - one", b"<30>1 - b app 1 - - x", b"<4>1 - a kernel - - - [1.0] two",
         b"<30>1 - a app 1 - - three", b"<30>1 - b app 1 - - y"]
    batch = Digester(Counters()).digest(f, "10.0.0.1", NOW)
    seq = [(it[0], "run" if is_run(it) else "msg") for it in batch.items]
    assert seq == [("a", "run"), ("b", "run"), ("a", "msg"), ("a", "run")]
    assert isinstance(batch.items[2][2], Message) and batch.items[2][2].facility == 0
    assert flatten(batch)["a"][1][0].endswith(b"kernel: [1.0] two\n")


_byte = st.sampled_from([b"a", b"Z", b"0", b"-", b".", b"/", b"\x00", b"\n", b"\t", b"\x7f", b"\xff", b"\xc3\xa9",
                         b"[", b"]", b"=", b'"', b" ", b"\xef\xbb\xbf"])
_field = st.one_of(st.sampled_from([b"-", b"", b"h", b"node-1", b"NODE-1", b"kernel", b"systemd", b"rsyslogd",
                                    b"systemd-logind", b"12345", b"x" * 300]),
                   st.lists(_byte, max_size=6).map(b"".join))
_ts = st.sampled_from([b"-", b"2026-11-25T10:00:00Z", b"2026-11-25T10:00:00.123456+01:00", b"2026-02-30T10:00:00Z",
                       b"2026-11-25t10:00:00z", b"garbage", b""])
_msg = st.one_of(st.sampled_from([b"Reached target System Reboot.", b"System is rebooting.", b"exiting on signal 15",
                                  b"", b"plain text"]),
                 st.lists(_byte, max_size=20).map(b"".join))


@st.composite
def frames(draw):
    pri = draw(st.sampled_from([b"0", b"4", b"8", b"13", b"30", b"46", b"86", b"191", b"192", b"013"]))
    sd = draw(st.sampled_from([b"-", b"[a@1 b=\"c\"]", b"-x"]))
    parts = [b"<" + pri + b">1", draw(_ts), draw(_field), draw(_field), draw(_field), draw(_field), sd]
    cut = draw(st.integers(1, 8))
    raw = b" ".join(parts[:cut])
    if cut == 8 or draw(st.booleans()):
        raw += b" " + draw(_msg)
    return raw


@settings(max_examples=400, deadline=None)
@given(st.lists(frames(), min_size=1, max_size=12), st.sampled_from(["10.1.1.1", "fe80::1%eth0"]))
def test_fast_path_equals_general_road(fs, peer):
    check_same(fs, peer)


def test_clean_shutdown_hints_agree_with_the_detector():
    # every announcement the detector knows contains its app's hint, so the hint never hides one
    for text in detect._SYSTEMD_SHUTDOWN:
        assert any(h.decode() in text for h in detect.CLEAN_SHUTDOWN_HINTS["systemd"])
    for text in ("System is rebooting", "System is powering down", "System is halting"):
        assert any(h.decode() in text for h in detect.CLEAN_SHUTDOWN_HINTS["systemd-logind"])
    assert set(detect.CLEAN_SHUTDOWN_HINTS) <= FILTER.apps


def test_has_ctrl():
    assert not has_ctrl([b"abc", b"\xff\xfe"])
    assert has_ctrl([b"abc", b"x\ty"]) and has_ctrl([b"\x7f"]) and has_ctrl([b"\x00"])


def test_wire_round_trip_and_ingest_equivalence(tmp_path):
    from sylog.server.pipeline import Pipeline
    from sylog.timeline.writer import TimelineWriter

    rng = random.Random(3)
    fs = [rng.choice(CASES) for _ in range(300)]
    wire = Digester(Counters(), keep_messages=False, shutdown=FILTER)
    batches = [wire.digest(fs[i:i + 50], "10.0.0.9", NOW + i) for i in range(0, 300, 50)]
    back = decode_batches(encode_batches(batches))
    assert [b.items for b in back] == [[list(it) for it in b.items] for b in batches]
    assert [(b.now, b.messages, b.peers) for b in back] == [(b.now, b.messages, b.peers) for b in batches]

    class Rec:
        def __init__(self) -> None:
            self.corr = Correlator(quiet=30)
            self.feed = self.corr.feed
            self.feed_run = self.corr.feed_run
            self.shutdown_filter = self.corr.shutdown_filter

        def tick(self, now): ...

        async def aclose(self): ...

    def run(ingest_wire: bool):
        c = Counters()
        wr = TimelineWriter(tmp_path / ("w" if ingest_wire else "p"), counters=c)
        rec = Rec()
        p = Pipeline(wr, c, [rec])
        if ingest_wire:
            for b in back:
                p.ingest(b)
        else:
            for i in range(0, 300, 50):
                p.process(fs[i:i + 50], "10.0.0.9", NOW + i)
        queued = {h: b"".join(v) for q in wr._pending.values() for h, v in q.items()}
        rings = {h: st.lines(200) for h, st in rec.corr.hosts.items()}
        return queued, rings, rec.corr.counters, {h: st.clean for h, st in rec.corr.hosts.items()}

    assert run(True) == run(False)


def test_feed_run_equals_feed_per_line():
    a, b = Correlator(quiet=30), Correlator(quiet=30)
    lines = [b"2026-11-25T10:00:00.000000Z h daemon.info app: line %d\n" % i for i in range(100)]
    msg = Message(format="rfc5424", facility=3, severity=6, app_name="app", msg="x")
    for ln in lines:
        a.feed("h", NOW, msg, ln)
    i = 0
    for n in (1, 3, 17, 40, 39):
        b.feed_run("h", NOW, b"".join(lines[i:i + n]), n)
        i += n
    assert a.hosts["h"].lines(200) == b.hosts["h"].lines(200) == lines
    assert a.hosts["h"].lines(30) == b.hosts["h"].lines(30) == lines[-30:]

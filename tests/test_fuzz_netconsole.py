"""Fuzz properties of the netconsole decoder: arbitrary datagrams (and datagrams built from header fragments:
levels, sequence numbers, continuation flags, ncfrag offsets that lie, callers, prepended releases, dictionary
lines, escapes) from a few sources at arbitrary times never raise; every record converts to a Message; what waits
stays bounded and ``flush`` empties it."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sylog.kernel.netconsole import KernelRecord, NetconsoleDecoder, console_text, to_message
from sylog.syslog.message import Message

HEAD = st.builds(
    lambda rel, lvl, seq, ts, flag, extra: (rel + b"%d,%d,%d,%s" % (lvl, seq, ts, flag) + extra + b";"),
    st.sampled_from([b"", b"6.4.0,", b"x,", b","]), st.integers(0, 1 << 40), st.integers(0, 1 << 70),
    st.integers(0, 1 << 64), st.sampled_from([b"-", b"c", b"+", b"x", b""]),
    st.lists(st.one_of(st.builds(lambda o, n: b",ncfrag=%d/%d" % (o, n), st.integers(0, 3000), st.integers(0, 3000)),
                       st.sampled_from([b",caller=T123", b",caller=C3", b",caller=", b",ncfrag=a/b", b",ncfrag=",
                                        b",x=y", b","])), max_size=3).map(b"".join),
)
BODY = st.lists(st.one_of(st.binary(max_size=40), st.sampled_from([
    b"\n", b"\r\n", b"\nrelease=6.4.0", b"\ntaskname=bash", b"\ncpu=3", b"\nmsgid=1", b"\n=", b"\\x41", b"\\x0",
    b"\\xzz", b"\\", b"BUG: kernel NULL pointer dereference", b"Kernel panic - not syncing: x", b"\xff", b"\0"])),
    max_size=8).map(b"".join)
DATAGRAM = st.one_of(st.binary(max_size=200), st.builds(lambda h, b: h + b, HEAD, BODY), BODY)


def _check(recs: list[KernelRecord]) -> None:
    for r in recs:
        assert isinstance(r, KernelRecord) and isinstance(r.text, str)
        assert isinstance(console_text(r), str)
        m = to_message(r, "h")
        assert isinstance(m, Message) and m.app_name == "kernel"
        assert m.facility is not None and 0 <= m.facility < 24 and 0 <= m.severity <= 7


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(DATAGRAM, st.sampled_from(["10.0.0.1", "10.0.0.2", "::1"]), st.floats(0.0, 7.0)),
                max_size=40),
       st.integers(1, 4), st.integers(16, 4096))
def test_arbitrary_datagrams_never_raise(items, max_sets, max_record):
    d = NetconsoleDecoder(max_frag_sets=max_sets, max_record=max_record)
    now = 1000.0
    for data, src, dt in items:
        now += dt
        _check(d.feed(data, src, now))
        if dt > 3:
            _check(d.expire(now))
        assert len(d._frags) <= max_sets
    _check(d.flush())
    assert d.waiting == 0

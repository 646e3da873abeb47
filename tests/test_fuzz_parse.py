"""Fuzz properties of the parsers that tests/test_parse_props.py does not already state.

That file covers: lenient never raises + MSG a suffix of the frame for a fixed list of prefixes followed by random
bytes (one fixed ``now``), strict raises only ParseError, and the RFC 5424 round trip. Added here: frames built
from a *grammar* of syslog-ish tokens (PRIs in and out of range, BSD/ISO/Cisco/broken stamps, host names, tags with
and without ``[pid]``, colons, BOM, NUL, invalid UTF-8, blanks) at an arbitrary ``now`` (year inference near New
Year, epoch 0, far future), and the RFC 3164 render -> parse round trip.
"""

from __future__ import annotations

import calendar

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from sylog.syslog.parse import ParseError, parse

SETTINGS = dict(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])

TOKENS = st.one_of(
    st.sampled_from([b"<0>", b"<13>", b"<191>", b"<192>", b"<999>", b"<>", b"<1", b"<-1>", b"<0013>", b"<13>1 ",
                     b"<13>2 ", b"1 ", b"- ", b"Nov 25 10:00:00 ", b"Nov  5 10:00:00 ", b"nov 25 23:59:59.123456 ",
                     b"Feb 29 10:00:00 ", b"Dec 31 23:59:59 ", b"Jan  1 00:00:00 ", b"Nov 25 2026 10:00:00 ",
                     b"Nov 25 10:00:00 2026 ", b"Nov 25 10:00:00: ", b"*Nov 25 10:00:00.1: ", b"91: ", b"000123: ",
                     b"2026-11-25T10:00:00Z ", b"2026-11-25 10:00:00+01:00 ", b"2026-13-45T25:61:61Z ",
                     b"2026-11-25T10:00:00.123456789-0530 ", b"9999-12-31T23:59:59Z ", b"0000-00-00T00:00:00Z ",
                     b"host ", b"host.example.com ", b"10.0.0.1 ", b"fe80::1 ", b"0002:: ", b"-host- ",
                     b"Message forwarded from relay: ", b"sshd[123]: ", b"sshd[: ", b"sshd[]: ", b"[12.3] ",
                     b"{\"a\":1} ", b"/usr/bin/x[1]: ", b"kernel: ", b"CRON[42]:", b": ", b":", b"[", b"]", b"=",
                     b'[a b="c"] ', b'[a b="\\"]', b"\xef\xbb\xbf", b"\0", b"\r", b"\n", b"\t", b" ", b"  ",
                     b"\xff\xfe", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80"]),
    st.binary(max_size=12),
)
frames = st.lists(TOKENS, max_size=14).map(b"".join)
NOWS = st.one_of(st.sampled_from([0.0, 1.0, 86400.0 * 365, calendar.timegm((2026, 12, 31, 23, 59, 59)),
                                  calendar.timegm((2027, 1, 1, 0, 0, 1)), calendar.timegm((2024, 2, 29, 12, 0, 0)),
                                  253402300799.0]),
                 st.floats(min_value=0, max_value=253402300799.0, allow_nan=False))


@settings(**SETTINGS)
@given(frames, NOWS)
def test_grammar_frames_lenient_never_raises_and_msg_is_a_suffix(raw, now):
    m = parse(raw, now=now)
    assert m.format in ("rfc5424", "rfc3164", "raw")
    assert raw.endswith(m.msg.encode("utf-8", "surrogateescape"))
    if m.pri is not None:
        assert 0 <= m.pri <= 191 and (m.facility, m.severity) == (m.pri >> 3, m.pri & 7)
    if m.format == "raw":
        assert m.msg.encode("utf-8", "surrogateescape") == raw
    for f in (m.hostname, m.app_name, m.procid, m.msgid, m.timestamp):
        assert f is None or isinstance(f, str)


@settings(**SETTINGS)
@given(frames, NOWS)
def test_grammar_frames_strict_raises_only_parse_error(raw, now):
    try:
        m = parse(raw, strict=True, now=now)
    except ParseError as e:
        assert str(e)
    else:
        assert raw.endswith(m.msg.encode("utf-8", "surrogateescape"))


# ---------------------------------------------------------------- RFC 3164 round trip

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
MDAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
HOSTCH = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
hosts = st.builds(lambda a, b: a + b, st.text(HOSTCH + ".-_", max_size=40), st.text(HOSTCH, min_size=1, max_size=1))
TAGCH = st.characters(min_codepoint=33, max_codepoint=126, blacklist_characters=":[]")
tags = st.text(TAGCH, min_size=1, max_size=32).filter(lambda t: t[0] not in "{[/")


@settings(**SETTINGS)
@given(pri=st.integers(0, 191), year=st.integers(1971, 2200), mon=st.integers(1, 12), day=st.integers(1, 31),
       hh=st.integers(0, 23), mi=st.integers(0, 59), ss=st.integers(0, 59), host=hosts, tag=tags,
       pid=st.one_of(st.none(), st.integers(0, 4_000_000).map(str)),
       msg=st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\0"), max_size=80),
       drift=st.integers(-80 * 86400, 80 * 86400))
def test_rfc3164_round_trip(pri, year, mon, day, hh, mi, ss, host, tag, pid, msg, drift):
    day = min(day, MDAYS[mon - 1])
    assume(not (len(host) == 4 and host.isdigit() and host[:2] in ("19", "20")))  # reads as a year (Linksys form)
    now = calendar.timegm((year, mon, day, hh, mi, ss)) + drift  # the stamp's own year is the nearest
    stamp = f"{MONTHS[mon - 1]} {day:2d} {hh:02d}:{mi:02d}:{ss:02d}"
    tagtext = f"{tag}[{pid}]" if pid is not None else tag
    raw = f"<{pri}>{stamp} {host} {tagtext}: {msg}".encode()
    for strict in (False, True):
        m = parse(raw, strict=strict, now=now)
        assert (m.format, m.pri, m.facility, m.severity) == ("rfc3164", pri, pri >> 3, pri & 7)
        assert m.timestamp == f"{year:04d}-{mon:02d}-{day:02d}T{hh:02d}:{mi:02d}:{ss:02d}"
        assert (m.hostname, m.app_name, m.procid) == (host, tag, pid)
        assert m.msg == msg
        assert m.tag == tagtext

"""Properties: lenient parsing never raises and never loses message bytes; RFC 5424 render -> parse round-trips."""

from __future__ import annotations

import calendar
import datetime as dt

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sylog.syslog.parse import ParseError, parse

NOW = calendar.timegm((2026, 11, 25, 10, 0, 0))

PREFIXES = [b"", b"<13>", b"<13>1 ", b"<13>1 - h a p m ", b"<13>1 - h a p m [", b'<13>1 - - - - - [a b="',
            b"<13>Nov 25 10:00:00 ", b"<13>Nov 25 10:00:00 host ", b"<4>2026-11-25T10:00:00Z h kernel: ",
            b"<0>91: *Oct 07 03:10:04", b"\xef\xbb\xbf", b"<13>1 - - - - - - \xef\xbb\xbf"]

raw_frames = st.builds(lambda pre, body: pre + body, st.sampled_from(PREFIXES), st.binary(max_size=300))


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(raw_frames)
@example(b"<13>1 2026-11-25T10:00:00Z")
@example(b"<1>1 - - - - - [a]\xff")
def test_lenient_never_raises_and_keeps_message_bytes(raw):
    m = parse(raw, now=NOW)
    assert m.format in ("rfc5424", "rfc3164", "raw")
    msg = m.msg.encode("utf-8", "surrogateescape")
    # MSG is always a tail of the frame (only header bytes, one separator SP and a BOM are dropped)
    assert raw.endswith(msg)
    if m.format == "raw":
        assert msg == raw
    if m.pri is not None:
        assert 0 <= m.pri <= 191 and m.facility == m.pri >> 3 and m.severity == m.pri & 7


@settings(max_examples=800, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(raw_frames)
def test_strict_raises_only_parse_error(raw):
    try:
        m = parse(raw, strict=True, now=NOW)
    except ParseError as e:
        assert str(e).startswith(("RFC 5424: ", "not syslog: "))
    else:
        assert raw.endswith(m.msg.encode("utf-8", "surrogateescape"))


# ---------------------------------------------------------------- round trip

PRINTUS = st.characters(min_codepoint=33, max_codepoint=126)
SD_NAME = st.text(st.characters(min_codepoint=33, max_codepoint=126, blacklist_characters='= ]"'),
                  min_size=1, max_size=32)
SD_VALUE = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)


def field(max_size):
    return st.one_of(st.none(), st.text(PRINTUS, min_size=1, max_size=max_size).filter(lambda s: s != "-"))


@st.composite
def timestamps(draw):
    if draw(st.booleans()):
        return None
    t = draw(st.datetimes(min_value=dt.datetime(1970, 1, 1), max_value=dt.datetime(2200, 12, 31)))
    digits = draw(st.integers(0, 6))
    frac = f"{t.microsecond:06d}"[:digits]
    off = draw(st.integers(-23 * 60 - 59, 23 * 60 + 59))
    zone = "Z" if draw(st.booleans()) else f"{'+' if off >= 0 else '-'}{abs(off) // 60:02d}:{abs(off) % 60:02d}"
    return t.strftime("%Y-%m-%dT%H:%M:%S") + (f".{frac}" if frac else "") + zone


def sd_escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


@settings(max_examples=600, deadline=None)
@given(pri=st.integers(0, 191), version=st.integers(1, 999), ts=timestamps(), host=field(255), app=field(48),
       procid=field(128), msgid=field(32),
       sd=st.one_of(st.none(), st.dictionaries(SD_NAME, st.dictionaries(SD_NAME, SD_VALUE, max_size=3),
                                               min_size=1, max_size=3)),
       msg=st.text(st.characters(blacklist_categories=("Cs",)), max_size=60).filter(lambda s: not s.startswith("\ufeff")),
       bom=st.booleans())
def test_rfc5424_round_trip(pri, version, ts, host, app, procid, msgid, sd, msg, bom):
    sd_text = "-" if sd is None else "".join(
        f"[{k}" + "".join(f' {pk}="{sd_escape(pv)}"' for pk, pv in params.items()) + "]" for k, params in sd.items())
    head = f"<{pri}>{version} {ts or '-'} {host or '-'} {app or '-'} {procid or '-'} {msgid or '-'} {sd_text}"
    raw = head.encode()
    if msg or bom:
        raw += b" " + (b"\xef\xbb\xbf" if bom else b"") + msg.encode()
    for strict in (True, False):
        m = parse(raw, strict=strict, now=NOW)
        assert (m.format, m.pri, m.facility, m.severity, m.version) == ("rfc5424", pri, pri >> 3, pri & 7, version)
        assert (m.timestamp, m.hostname, m.app_name, m.procid, m.msgid) == (ts, host, app, procid, msgid)
        assert m.structured_data == sd
        assert m.msg == msg
        assert m.missing == []

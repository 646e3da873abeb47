"""One entry point for every received frame: ``parse(raw) -> Message``, RFC 5424 or RFC 3164 or raw.

Which parser: after a valid ``<PRI>``, a digit means RFC 5424 (``<PRI>VERSION SP``) unless it is clearly the start
of an ISO date (``2026-``, RSYSLOG_ForwardFormat) or a Cisco sequence number (``123: ``); anything else is
RFC 3164 / rsyslog traditional. No PRI at all: RFC 3164 with PRI 13 assumed (RFC 3164 section 4.3.3).

``strict=True`` (``sylog parse``) raises :class:`ParseError` for an empty frame, a broken PRI ("not syslog: ...")
and for input that starts like RFC 5424 but breaks its ABNF ("RFC 5424: bad TIMESTAMP at column 6: ...", column =
0-based byte offset). ``strict=False`` (the server's hot path) never raises: a broken RFC 5424 header is read as far
as it goes (the rest is MSG) or, when even VERSION is wrong, read as RFC 3164; a broken PRI, or neither PRI nor
timestamp, gives format 'raw' with the whole frame as MSG. ``Message.missing`` names what had to be guessed.
All text is UTF-8 decoded with surrogateescape, so the original bytes are always recoverable.

Choices worth knowing (details in :mod:`rfc5424` and :mod:`rfc3164`):
  - RFC 5424 TIMESTAMP is kept exactly as sent. RFC 3164 stamps get the year nearest to ``now`` (the server's
    receive time; default ``time.time()``) and, having no zone, are rendered as a naive wall clock
    ``YYYY-MM-DDThh:mm:ss[.ffffff]``; ISO stamps keep their offset when they have one.
  - A leading UTF-8 BOM is removed from an RFC 5424 MSG (strict: what follows must then be UTF-8).
  - Duplicate SD-IDs: strict error (RFC 5424 6.3.2); lenient merges them, first value of a parameter wins.
  - Message.structured_data dicts are cached and shared between messages with identical SD: treat as read-only.
"""

from __future__ import annotations

import time

from sylog.syslog.message import FORMAT_RAW, FORMAT_RFC5424, Message
from sylog.syslog.rfc3164 import NotSyslog, parse_3164
from sylog.syslog.rfc5424 import _TS_SEEN, BOM, Rfc5424Error, fast_timestamp, parse_5424

__all__ = ["ParseError", "parse"]


class ParseError(ValueError):
    """The frame is not valid syslog; the text says what is wrong (and where, for RFC 5424)."""


_RAW_MISSING = ("pri", "timestamp", "hostname")
# b"0".."191" -> int: one dict lookup validates digits, range and "no leading zeros" at once.
_PRI = {str(i).encode(): i for i in range(192)}
# b"<0>1".."<191>1" -> PRI: the first word of an RFC 5424 VERSION 1 frame, validated by one lookup.
_PRI_V1 = {b"<%d>1" % i: i for i in range(192)}
# b"<PRI>Mmm" (month as usually spelt) -> PRI: the first word of a traditional frame with a BSD stamp.
_PRI_BSD = {b"<%d>%s" % (i, m): i for i in range(192)
            for m in (b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec")}


def _raw(raw: bytes) -> Message:
    return Message(format=FORMAT_RAW, msg=raw.decode("utf-8", "surrogateescape"), missing=list(_RAW_MISSING))


def _looks_5424(raw: bytes, p: int) -> bool:
    """After ``<PRI>``, at a digit: RFC 5424 VERSION, unless an ISO date or a Cisco ``NNN:`` sequence number."""
    if raw[p + 4:p + 5] == b"-" and raw[p:p + 4].isdigit():
        return False
    q, n = p, min(len(raw), p + 11)
    while q < n and 48 <= raw[q] <= 57:
        q += 1
    return raw[q:q + 1] != b":"


def parse(raw: bytes, *, strict: bool = False, now: float | None = None) -> Message:
    """Parse one syslog frame (framing already removed). See the module doc for strict vs lenient."""
    if raw[:1] == b"<":
        if not strict:
            # Lenient fast path for what nearly every RFC 5424 sender emits (``<PRI>1 TS HOST APP PROCID MSGID -
            # MSG``): one split of the whole frame and one dict lookup for ``<PRI>1``, no per-field Python work
            # beyond the checks below. Anything else (SD present, an empty field, a stamp not seen valid before
            # and not valid now) takes the general road, which gives the same Message for these frames
            # (tests/test_parse_fast.py compares them).
            f = raw.split(b" ", 7)
            pri = _PRI_V1.get(f[0])
            if pri is None:
                pri = _PRI_BSD.get(f[0])
                if pri is not None:  # "<PRI>Nov": RFC 3164 with a BSD stamp, what the general road would decide
                    return parse_3164(raw, len(f[0]) - 3, pri, False, time.time() if now is None else now)
            elif len(f) < 7 or f[6] != b"-":
                # <PRI>1 but SD present or a short/odd header: straight to the RFC 5424 reader
                try:
                    return parse_5424(raw, len(f[0]) - 2, pri, False)
                except Rfc5424Error:
                    pass  # (not expected for VERSION 1 in lenient mode) the general road decides below
            else:
                ts = f[1]
                host = f[2]
                app = f[3]
                procid = f[4]
                msgid = f[5]
                if host and app and procid and msgid:
                    if ts == b"-":
                        ts_s = None
                    else:
                        ts_s = _TS_SEEN.get(ts)
                        if ts_s is None:
                            ts_s = fast_timestamp(ts)
                    if ts_s is not False:
                        msg_b = f[7] if len(f) == 8 else b""
                        if msg_b[:3] == BOM:
                            msg_b = msg_b[3:]
                        return Message(
                            format=FORMAT_RFC5424, pri=pri, facility=pri >> 3, severity=pri & 7, version=1,
                            timestamp=ts_s,
                            hostname=None if host == b"-" else host.decode("utf-8", "surrogateescape"),
                            app_name=None if app == b"-" else app.decode("utf-8", "surrogateescape"),
                            procid=None if procid == b"-" else procid.decode("utf-8", "surrogateescape"),
                            msgid=None if msgid == b"-" else msgid.decode("utf-8", "surrogateescape"),
                            msg=msg_b.decode("utf-8", "surrogateescape"), missing=[],
                        )
        gt = raw.find(b">", 1, 5)
        pri = _PRI.get(raw[1:gt]) if gt > 1 else None
        if pri is None:
            if strict:
                shown = raw[:gt + 1] if gt > 0 else raw[:6]
                raise ParseError(f"not syslog: bad PRI {shown!r} (want <0>..<191> without leading zeros)")
            return _raw(raw)
        p = gt + 1
        c = raw[p:p + 1]
        if c.isdigit() and (raw[p + 1:p + 2] == b" " or _looks_5424(raw, p)):
            try:
                return parse_5424(raw, gt, pri, strict)
            except Rfc5424Error as e:
                if strict:
                    raise ParseError(str(e)) from None
        return parse_3164(raw, p, pri, strict, time.time() if now is None else now)
    if not raw.strip():
        if strict:
            raise ParseError("not syslog: empty message" if not raw else "not syslog: only blanks")
        return _raw(raw)
    try:
        return parse_3164(raw, 0, None, strict, time.time() if now is None else now)
    except NotSyslog as e:
        raise ParseError(f"not syslog: {e}") from None

"""RFC 3164 / "traditional" syslog parser over bytes, modelled on what rsyslog's pmrfc3164 really does.

Layout: ``[<PRI>] [TIMESTAMP SP] [HOSTNAME SP] [TAG[:]] [SP] MSG``. Every piece is optional in the wild, so this is
a best-effort reading by rules, never an error (strict mode only rejects, via :mod:`sylog.syslog.parse`, a broken
PRI, an empty frame, or control bytes in a frame with neither PRI nor TIMESTAMP).

TIMESTAMP, tried at the start (after any blanks):
  - BSD ``Mmm dd hh:mm:ss`` (month in any case, day space- or zero-padded), also ``Mmm dd yyyy hh:mm:ss``
    (Cisco/rsyslog) and ``Mmm dd hh:mm:ss yyyy`` (Linksys; rsyslog's detect.YearAfterTimestamp), optional
    ``.fraction``, optional Cisco extras: a leading ``*``/``.``, a trailing ``:``, and a
    sequence number ``NNN: `` before it;
  - ISO / RFC 3339 ``yyyy-mm-ddThh:mm:ss[.frac][Z|+hh:mm]`` (RSYSLOG_ForwardFormat; a space for ``T`` accepted).
  A BSD stamp has no year: the year that puts it nearest to ``now`` is chosen (rsyslog does the same around New
  Year); ``now`` is UTC epoch seconds and the stamp is compared as if it were UTC (the sender's zone is unknown),
  which can only matter for a stamp almost exactly six months away from now. Stamps without a zone are rendered as a naive wall clock ``YYYY-MM-DDThh:mm:ss[.ffffff]`` (RFC 3339
  without offset): inventing the receiver's zone would silently lie; the fraction is cut to microseconds.

HOSTNAME (rsyslog's rule): the next word after the TIMESTAMP is a host name when it is made of ``[A-Za-z0-9._-]``,
ends in a letter or digit and is followed by a space (or ends the frame); an IPv6 address (``0002::``) is one too.
So in ``<13>Nov 25 10:00:00 sshd[12]: x`` the word ``sshd[12]:`` is the tag and there is no host.
``Message forwarded from HOST:`` (AIX relays) names the host. A frame without TIMESTAMP has no HEADER (RFC 3164
section 4.3.2), so no host name is read from it (syslog-ng does the same; rsyslog would take the first word), but
its MSG may still start with a TAG. In lenient mode a frame with neither PRI nor TIMESTAMP is 'raw'.

TAG (rsyslog's rule): up to the first ``:`` or space (RFC 3164 says 32 bytes; we cut at 510 as rsyslog does); a word
that starts with ``{`` or ``[`` is message text (JSON payload, kernel ``[ time]`` prefix), not a tag. APP-NAME is
the tag up to ``[`` (a tag that starts with ``/`` has none, as in rsyslog); PROCID is the text between ``[`` and the
next ``]``. One space after the tag is the separator and is not part of MSG; everything else is kept verbatim.
"""

from __future__ import annotations

import ipaddress
import re
import time

from sylog.syslog.message import FORMAT_RAW, FORMAT_RFC3164, Message

_BSD = re.compile(rb"[*.]?([A-Za-z]{3}) {1,2}(\d{1,2}) (?:(\d{4}) )?((\d\d):(\d\d):(\d\d))(\.\d*)?"
                  rb"(?: ((?:19|20)\d\d))?:?(?= |\Z)")
_ISO = re.compile(rb"(\d{4})-(\d\d)-(\d\d)[Tt ]((\d\d):(\d\d):(\d\d))(\.\d+)?([Zz]|[+-]\d\d:?\d\d)?(?= |\Z)")
_ISO_FAST = re.compile(rb"\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d"
                       rb"(?:\.\d{1,6})?(?:Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)?(?= |\Z)")
_CISCO_SEQ = re.compile(rb"\d{1,10}: ")

_MONTH_NAMES = (b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov", b"dec")


def _case_variants(word: bytes) -> list[bytes]:
    out = [b""]
    for c in word:
        ch = bytes([c])
        out = [p + v for p in out for v in {ch.lower(), ch.upper()}]
    return out


# Every spelling (Jan, JAN, jan, jAn, ...) -> month number: one dict lookup instead of lower() per message.
_MONTHS = {v: i for i, name in enumerate(_MONTH_NAMES, 1) for v in _case_variants(name)}
_DAYS = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_CUM = (
    (0, 0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334),
    (0, 0, 31, 60, 91, 121, 152, 182, 213, 244, 274, 305, 335),
)
_HOSTCHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-"
_HEXCHARS = b"ABCDEFabcdef0123456789.:"
_ALNUM = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_AIX = b"Message forwarded from "
# Bytes that may appear in text: everything but the C0 controls (TAB allowed) and DEL.
_TEXT_BYTES = bytes([9]) + bytes(range(32, 127)) + bytes(range(128, 256))


class NotSyslog(ValueError):
    """Strict mode only: the frame has nothing of syslog (no PRI, no timestamp, binary bytes)."""
_MAX_TAG = 510
_MAX_HOST = 255


def _leap(y: int) -> int:
    return 1 if y % 4 == 0 and (y % 100 != 0 or y % 400 == 0) else 0


_year_cache: list = [None, 0, ()]  # [day number of `now`, its UTC year, epoch of Jan 1 for year-1 .. year+1]


def _year_starts(now: float) -> tuple[int, tuple[int, int, int]]:
    day = int(now // 86400)
    c = _year_cache
    if c[0] != day:
        y = time.gmtime(now).tm_year
        starts = []
        for yy in (y - 1, y, y + 1):
            # days from 1970-01-01 to yy-01-01
            d = (yy - 1970) * 365 + ((yy - 1969) // 4) - ((yy - 1901) // 100) + ((yy - 1601) // 400)
            starts.append(d * 86400)
        c[0], c[1], c[2] = day, y, tuple(starts)
    return c[1], c[2]


def infer_year(mon: int, day: int, secs: int, now: float) -> int | None:
    """The year that puts ``mon/day + secs`` (a BSD stamp) nearest to ``now``; None for an impossible date."""
    y, starts = _year_starts(now)
    best, best_diff = None, None
    for k, yy in ((1, y), (0, y - 1), (2, y + 1)):
        lp = _leap(yy)
        if day > _DAYS[mon] or (mon == 2 and day == 29 and not lp):
            continue
        t = starts[k] + (_CUM[lp][mon] + day - 1) * 86400 + secs
        diff = abs(t - now)
        if k == 1 and diff < 150 * 86400:
            return yy  # the common case: within five months of now
        if best_diff is None or diff < best_diff:
            best, best_diff = yy, diff
    return best


def _frac(f: bytes | None) -> str:
    if not f or len(f) < 2:
        return ""
    return f[:7].decode("ascii")


def parse_timestamp(data: bytes, pos: int, now: float) -> tuple[str, int] | None:
    """Read a 3164-position timestamp at ``pos``; return (RFC 3339 text, position after it) or None."""
    c = data[pos:pos + 1]
    if c.isdigit():
        m = _ISO_FAST.match(data, pos)
        if m is not None and data[pos + 8] != 51 and not (data[pos + 8] == 50 and data[pos + 9] == 57):
            # already RFC 3339 (RSYSLOG_ForwardFormat): keep it as sent; days 29-31 take the checked path below
            return data[pos:m.end()].decode("ascii"), m.end()
        m = _ISO.match(data, pos)
        if m is not None:
            y, mo, d, hms, hh, mi, ss, frac, zone = m.groups()
            if not (b"01" <= mo <= b"12" and b"01" <= d <= b"31" and hh <= b"23" and mi <= b"59" and ss <= b"60"):
                return None
            yy, mon, dd = int(y), int(mo), int(d)
            if dd > _DAYS[mon] or (mon == 2 and dd == 29 and not _leap(yy)):
                return None
            if zone is None:
                z = ""
            elif zone in (b"Z", b"z"):
                z = "Z"
            else:
                if zone[1:3] > b"23" or zone[-2:] > b"59":
                    return None
                z = f"{zone[:3].decode()}:{zone[-2:].decode()}"
            return f"{y.decode()}-{mo.decode()}-{d.decode()}T{hms.decode()}{_frac(frac)}{z}", m.end()
        m = _CISCO_SEQ.match(data, pos)
        if m is None:
            return None
        pos = m.end()
    m = _BSD.match(data, pos)
    if m is None:
        return None
    mname, d, y, hms, hh, mi, ss, frac, y_after = m.groups()
    if y is None:
        y = y_after
    mon = _MONTHS.get(mname)
    if mon is None or hh > b"23" or mi > b"59" or ss > b"60":
        return None
    dd = int(d)
    if dd == 0:
        return None
    if y is not None:
        yy = int(y)
        if dd > _DAYS[mon] or (mon == 2 and dd == 29 and not _leap(yy)):
            return None
    else:
        yy = infer_year(mon, dd, int(hh) * 3600 + int(mi) * 60 + int(ss), now)
        if yy is None:
            return None
    return f"{yy:04d}-{mon:02d}-{dd:02d}T{hms.decode()}{_frac(frac)}", m.end()


def hostname_end(data: bytes, pos: int) -> int:
    """End of the host-name word at ``pos`` (rsyslog's rule, plus IPv6 addresses), or -1 when there is none."""
    sp = data.find(b" ", pos, pos + _MAX_HOST + 1)
    end = len(data) if sp < 0 else sp
    if end == pos or (sp < 0 and end - pos > _MAX_HOST):
        return -1
    word = data[pos:end]
    rest = word.translate(None, _HOSTCHARS)
    if not rest:
        if sp >= 0 and word[-1] not in _ALNUM:
            return -1
        return end
    if word.count(b":") >= 2 and not word.translate(None, _HEXCHARS):
        try:
            ipaddress.IPv6Address(word.decode("ascii"))
        except ValueError:
            return -1
        return end
    return -1


def split_tag(data: bytes, pos: int) -> tuple[str | None, str | None, int]:
    """Read the TAG at ``pos``: (app_name, procid, start of MSG)."""
    n = len(data)
    if pos >= n:
        return None, None, pos
    c = data[pos]
    if c == 32 or c == 123 or c == 91:  # SP, '{', '['
        return None, None, pos
    lim = pos + _MAX_TAG
    sp = data.find(b" ", pos, lim)
    colon = data.find(b":", pos, lim if sp < 0 else sp)
    if colon >= 0:
        end, nxt = colon, colon + 1
    elif sp >= 0:
        end, nxt = sp, sp
    else:
        end = nxt = min(n, lim)
    if nxt < n and data[nxt] == 32:
        nxt += 1
    tag = data[pos:end]
    r = _tag_cache.get(tag)  # tags repeat ("kernel", "sshd[1234]"): skip the splitting and decoding
    if r is None:
        r = _split_tag_text(tag)
        if len(_tag_cache) >= 4096:
            _tag_cache.clear()
        _tag_cache[tag] = r
    return r[0], r[1], nxt


_tag_cache: dict[bytes, tuple[str | None, str | None]] = {}


def _split_tag_text(tag: bytes) -> tuple[str | None, str | None]:
    lb = tag.find(b"[")
    if lb < 0:
        app, procid = tag, None
    else:
        app = tag[:lb]
        rb = tag.find(b"]", lb + 1)
        procid = tag[lb + 1:rb].decode("utf-8", "surrogateescape") if rb > lb + 1 else None
    if not app or app[0] == 47:  # '/'
        return None, procid
    return app.decode("utf-8", "surrogateescape"), procid


_CENTURIES = (b"19", b"20")  # "Mmm dd hh:mm:ss yyyy" (year after time) takes the regex path
_stamp_cache: dict[bytes, str] = {}
_stamp_valid = [0.0, -1.0]  # the cache holds renderings made for `now` in [lo, hi): one UTC day


def _bsd_stamp_cached(raw: bytes, p: int, now: float) -> str | None:
    """Rendering of the 15-byte ``Mmm dd hh:mm:ss`` at ``p`` (cached: it repeats for every message of a second)."""
    v = _stamp_valid
    if not v[0] <= now < v[1]:
        _stamp_cache.clear()
        v[0] = now - now % 86400
        v[1] = v[0] + 86400
    key = raw[p:p + 15]
    ts = _stamp_cache.get(key)
    if ts is None:
        r = parse_timestamp(raw, p, now)
        if r is None or r[1] != p + 15:
            return None
        ts = r[0]
        if len(_stamp_cache) >= 4096:
            _stamp_cache.clear()
        _stamp_cache[key] = ts
    return ts


def parse_3164(raw: bytes, pos: int, pri: int | None, strict: bool, now: float,
               missing: list[str] | None = None) -> Message:
    """Parse the part of ``raw`` after the PRI (``pos``); ``pri`` None means the frame had none (13 is assumed,
    RFC 3164 section 4.3.3, and "pri" recorded as missing)."""
    if missing is None:
        missing = []
    if pri is None:
        pri = 13
        missing.append("pri")
    n = len(raw)
    p = pos
    while p < n and raw[p] == 32:
        p += 1
    timestamp = None
    if p + 15 <= n and raw[p + 3] == 32 and raw[p + 9] == 58 and raw[p + 12] == 58 \
            and (p + 15 == n or raw[p + 15] == 32) and raw[p + 16:p + 18] not in _CENTURIES:
        timestamp = _bsd_stamp_cached(raw, p, now)
        if timestamp is not None:
            p += 16
    if timestamp is None and p < n:
        ts = parse_timestamp(raw, p, now)
        if ts is not None:
            timestamp, p = ts
            p += 1  # the SP after the timestamp (p may now be n + 1: slicing copes)
    hostname = None
    if timestamp is not None:
        if p < n:
            # common case inline: "host " with rsyslog's host-name characters, ending in a letter or digit
            sp = raw.find(b" ", p, p + _MAX_HOST + 1)
            if sp > p and raw[sp - 1] in _ALNUM and not raw[p:sp].translate(None, _HOSTCHARS) \
                    and not raw.startswith(_AIX, p):
                hostname = raw[p:sp].decode("ascii")
                p = sp + 1
            else:
                if raw.startswith(_AIX, p):
                    q = p + len(_AIX)
                    colon = raw.find(b": ", q, q + _MAX_HOST)
                    if colon > q:
                        hostname = raw[q:colon].decode("utf-8", "surrogateescape")
                        p = colon + 2
                if hostname is None:
                    he = hostname_end(raw, p)
                    if he >= 0:
                        hostname = raw[p:he].decode("ascii")
                        p = he + 1 if he < n else he
        if hostname is None:
            missing.append("hostname")
        app, procid, p = split_tag(raw, p)
    else:
        # No TIMESTAMP means no HEADER (RFC 3164 section 4.3.2): no host name; MSG may still start with a TAG.
        missing.append("timestamp")
        missing.append("hostname")
        if "pri" in missing:
            if not strict:
                # neither PRI nor TIMESTAMP: nothing says this is syslog; keep it whole.
                return Message(format=FORMAT_RAW, msg=raw.decode("utf-8", "surrogateescape"), missing=missing)
            if raw.translate(None, _TEXT_BYTES):
                raise NotSyslog("no PRI, no timestamp, and control bytes in the text")
        app, procid, p = split_tag(raw, p)
        if app is None and procid is None:
            p = pos  # nothing read: MSG is everything after the PRI, leading blanks included
    return Message(
        format=FORMAT_RFC3164, pri=pri, facility=pri >> 3, severity=pri & 7, timestamp=timestamp,
        hostname=hostname, app_name=app, procid=procid, msg=raw[p:].decode("utf-8", "surrogateescape"),
        missing=missing,
    )

"""RFC 5424 (the syslog protocol) parser over bytes, strict or lenient.

Called by :func:`sylog.syslog.parse.parse` once it has read a valid ``<PRI>`` and seen a digit after it. The header
is cut with one ``bytes.split`` (C speed); each field is then checked with a couple of bytes operations, and the
timestamp with one precompiled regex plus byte-wise range comparisons. STRUCTURED-DATA, which needs a scanner because
values may hold escaped ``]`` and spaces, uses a few regexes per element.

Strict mode follows the ABNF of RFC 5424 section 6 and raises :class:`Rfc5424Error` naming the first field that
breaks it and its column (0-based byte offset into the frame).

Lenient mode (what the server stores) is tolerant where the ABNF is needlessly picky and real senders differ
(field lengths, lower-case ``t``/``z``, more than 6 fraction digits, unescaped ``]`` or spaces around ``=`` in SD,
a bad token where the timestamp belongs), records in ``missing`` what it could not read, and stops at the first
structural break: everything from the break on becomes MSG, so no byte is lost. Duplicate SD-IDs, which the RFC
forbids, are an error in strict mode; lenient mode merges them into the first element (first value of a parameter
wins).
"""

from __future__ import annotations

import re

from sylog.syslog.message import FORMAT_RFC5424, Message


class Rfc5424Error(ValueError):
    """Input that starts like RFC 5424 but breaks its ABNF (message text names the field and column)."""


BOM = b"\xef\xbb\xbf"
NIL = b"-"

# Every byte that PRINTUSASCII (%d33-126) allows; ``field.translate(None, _PRINTUS)`` leaves what is not allowed.
_PRINTUS = bytes(range(33, 127))
# SD-NAME: PRINTUSASCII except '=', SP, ']', '"'.
_SD_NAME_DELETE = bytes(c for c in range(33, 127) if c not in b'=]"')

# FULL-DATE "T" FULL-TIME; TIME-SECFRAC 1*6DIGIT; TIME-OFFSET "Z" / ("+" / "-") HH ":" MM.
_TS_STRICT = re.compile(rb"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.\d{1,6})?(?:Z|[+-](\d\d):(\d\d))")
_TS_LENIENT = re.compile(rb"(\d{4})-(\d\d)-(\d\d)[Tt](\d\d):(\d\d):(\d\d)(?:\.\d+)?(?:[Zz]|[+-](\d\d):(\d\d))")

_SD_PARAM_STRICT = re.compile(rb' ([^= \]"]+)="((?:[^"\\\]]|\\.)*)"', re.S)
_SD_PARAM_LENIENT = re.compile(rb' *([^= \]"]+) *= *"((?:[^"\\]|\\.)*)"', re.S)
_SD_UNESCAPE = re.compile(rb'\\(["\\\]])')

_MAX_HOST, _MAX_APP, _MAX_PROCID, _MAX_MSGID, _MAX_SDNAME = 255, 48, 128, 32, 32
_LIMITS = (0, 0, _MAX_HOST, _MAX_APP, _MAX_PROCID, _MAX_MSGID)

# Same as _TS_STRICT with the calendar ranges in the pattern (days 29-31 still need a month check).
_TS_FAST = re.compile(rb"\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d"
                      rb"(?:\.\d{1,6})?(?:Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)")

# Parsed STRUCTURED-DATA by its exact bytes, one cache per mode: senders repeat the same SD (logger's timeQuality)
# in every message. The cached dicts are shared between messages: treat Message.structured_data as read-only.
_SD_CACHE: tuple[dict[bytes, dict], dict[bytes, dict]] = ({}, {})
_SD_CACHE_MAX = 4096

_DAYS = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)

_FIELDS = ("version", "timestamp", "hostname", "app_name", "procid", "msgid", "structured_data")
_FIELD_TITLE = ("VERSION", "TIMESTAMP", "HOSTNAME", "APP-NAME", "PROCID", "MSGID", "STRUCTURED-DATA")


def _err(field: str, col: int, why: str) -> Rfc5424Error:
    return Rfc5424Error(f"RFC 5424: bad {field} at column {col}: {why}")


def _leap(y: int) -> bool:
    return y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)


def check_timestamp(ts: bytes, strict: bool) -> str | None:
    """Why ``ts`` is not an RFC 5424 TIMESTAMP, or None when it is one (calendar ranges included)."""
    m = (_TS_STRICT if strict else _TS_LENIENT).fullmatch(ts)
    if m is None:
        return f"{ts[:40]!r} is not YYYY-MM-DDThh:mm:ss[.1-6 digits](Z|+hh:mm|-hh:mm)"
    _, mo, d, hh, mi, ss, oh, om = m.groups()
    # Fixed-width ASCII digits compare like numbers; only days 29-31 need real arithmetic.
    if not b"01" <= mo <= b"12":
        return "month out of range"
    if not b"01" <= d <= b"31":
        return "day out of range"
    if d > b"28":
        mon = int(mo)
        dd = int(d)
        if dd > _DAYS[mon] or (mon == 2 and dd == 29 and not _leap(int(m.group(1)))):
            return "day out of range for its month"
    if hh > b"23" or mi > b"59" or ss > b"59":
        return "time of day out of range"
    if oh is not None and (oh > b"23" or om > b"59"):
        return "zone offset out of range"
    return None


# Valid stamps already seen (bytes -> str): senders stamp many messages with the same second, so most frames skip the
# regex. Only stamps the fast-path regex accepts and whose day fits the month are cached.
_TS_SEEN: dict[bytes, str] = {}
_TS_SEEN_MAX = 4096


def fast_timestamp(ts: bytes) -> str | bool:
    """``ts`` as str if it is a valid RFC 5424 TIMESTAMP in the strict shape (cached), else False."""
    s = _TS_SEEN.get(ts)
    if s is not None:
        return s
    if _TS_FAST.fullmatch(ts) is None:
        return False
    if (ts[8] == 51 or (ts[8] == 50 and ts[9] == 57 and ts[5:7] == b"02")) and check_timestamp(ts, True):
        return False  # day 29-31 that its month does not have
    if len(_TS_SEEN) >= _TS_SEEN_MAX:
        _TS_SEEN.clear()
    s = _TS_SEEN[ts] = ts.decode("ascii")
    return s


def _text(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")


def parse_sd(data: bytes, pos: int, strict: bool) -> tuple[dict[str, dict[str, str]], int]:
    """Parse SD-ELEMENTs starting at ``data[pos] == '['``; return (elements, position after the last ']').

    Raises :class:`Rfc5424Error` on a structural error (in lenient mode too: the caller turns that into a break).
    """
    sd: dict[str, dict[str, str]] = {}
    param_re = _SD_PARAM_STRICT if strict else _SD_PARAM_LENIENT
    n = len(data)
    while pos < n and data[pos] == 91:  # '['
        start = pos + 1
        # SD-ID ends at the first SP or ']'.
        sp = data.find(b" ", start)
        rb = data.find(b"]", start)
        if rb < 0:
            raise _err("STRUCTURED-DATA", pos, "SD-ELEMENT without closing ']'")
        end = rb if sp < 0 or rb < sp else sp
        name = data[start:end]
        if not name or name.translate(None, _SD_NAME_DELETE) or (strict and len(name) > _MAX_SDNAME):
            raise _err("STRUCTURED-DATA", start, f"SD-ID {name[:40]!r} is not 1-32 printable ASCII without = ] \" SP")
        params: dict[str, str] = {}
        pos = end
        while True:
            if pos >= n:
                raise _err("STRUCTURED-DATA", pos, "SD-ELEMENT without closing ']'")
            c = data[pos]
            if c == 93:  # ']'
                pos += 1
                break
            m = param_re.match(data, pos)
            if m is None:
                if not strict and c == 32:
                    # lenient: tolerate trailing blanks before ']'
                    q = pos
                    while q < n and data[q] == 32:
                        q += 1
                    if q < n and data[q] == 93:
                        pos = q + 1
                        break
                raise _err("STRUCTURED-DATA", pos, "expected SP PARAM-NAME=\"PARAM-VALUE\" (with \\\" \\\\ \\] escaped) "
                           "or ']'")
            pname, value = m.group(1), m.group(2)
            if pname.translate(None, _SD_NAME_DELETE) or (strict and len(pname) > _MAX_SDNAME):
                raise _err("STRUCTURED-DATA", m.start(1), f"PARAM-NAME {pname[:40]!r} is not 1-32 printable ASCII")
            if b"\\" in value:
                value = _SD_UNESCAPE.sub(rb"\1", value)
            pkey = pname.decode("ascii")
            if strict:
                try:
                    text = value.decode("utf-8")  # PARAM-VALUE = UTF-8-STRING
                except UnicodeDecodeError:
                    raise _err("STRUCTURED-DATA", m.start(2), f"PARAM-VALUE of {pkey!r} is not UTF-8") from None
            else:
                text = _text(value)
            if pkey not in params:  # first value of a repeated parameter wins
                params[pkey] = text
            pos = m.end()
        key = name.decode("ascii")
        if key in sd:
            if strict:
                raise _err("STRUCTURED-DATA", start, f"duplicate SD-ID {key!r}")
            merged = sd[key]
            for k, v in params.items():
                merged.setdefault(k, v)
        else:
            sd[key] = params
    return sd, pos


def parse_5424(raw: bytes, gt: int, pri: int, strict: bool) -> Message:
    """Parse ``raw`` whose ``<PRI>`` ends at index ``gt`` (the '>'), strictly or leniently (see module doc).

    Fast path for the shape nearly every sender uses (VERSION 1, seven fields, valid stamp, '-' or cached SD);
    anything unusual goes through the general field-by-field reader, which gives the same result.
    """
    f = raw[gt + 1:].split(b" ", 6)
    if len(f) == 7:
        v, ts, host, app, procid, msgid, rest = f
        if v == b"1" and rest and host and app and procid and msgid and (ts == NIL or _TS_FAST.fullmatch(ts)) \
                and (not strict or _fields_ok(host, app, procid, msgid)):
            if ts == NIL:
                ts_s = None
            elif ts[8] == 51 or (ts[8] == 50 and ts[9] == 57 and ts[5:7] == b"02"):  # day 29-31: check month
                ts_s = None if check_timestamp(ts, True) else ts.decode("ascii")
                if ts_s is None:
                    return _parse_5424_general(raw, gt, pri, strict)
            else:
                ts_s = ts.decode("ascii")
            c = rest[0]
            sd = None
            if c == 45:  # '-'
                if len(rest) == 1:
                    msg_b = b""
                elif rest[1] == 32:
                    msg_b = rest[2:]
                else:
                    return _parse_5424_general(raw, gt, pri, strict)
            elif c == 91:  # '['
                e = rest.find(b"] ")
                e = e + 1 if e >= 0 else (len(rest) if rest[-1] == 93 else -1)
                cache = _SD_CACHE[strict]
                sd = cache.get(rest[:e]) if e > 0 else None
                if sd is None:
                    return _parse_5424_general(raw, gt, pri, strict)
                msg_b = rest[e + 1:]
            else:
                return _parse_5424_general(raw, gt, pri, strict)
            if msg_b[:3] == BOM:
                if strict:
                    return _parse_5424_general(raw, gt, pri, strict)
                msg_b = msg_b[3:]
            return Message(
                format=FORMAT_RFC5424, pri=pri, facility=pri >> 3, severity=pri & 7, version=1, timestamp=ts_s,
                hostname=None if host == NIL else host.decode("utf-8", "surrogateescape"),
                app_name=None if app == NIL else app.decode("utf-8", "surrogateescape"),
                procid=None if procid == NIL else procid.decode("utf-8", "surrogateescape"),
                msgid=None if msgid == NIL else msgid.decode("utf-8", "surrogateescape"),
                structured_data=sd, msg=msg_b.decode("utf-8", "surrogateescape"), missing=[],
            )
    return _parse_5424_general(raw, gt, pri, strict)


def _fields_ok(host: bytes, app: bytes, procid: bytes, msgid: bytes) -> bool:
    return (len(host) <= _MAX_HOST and len(app) <= _MAX_APP and len(procid) <= _MAX_PROCID
            and len(msgid) <= _MAX_MSGID and not (host + app + procid + msgid).translate(None, _PRINTUS))


def _parse_5424_general(raw: bytes, gt: int, pri: int, strict: bool) -> Message:
    """Field-by-field reader: every check, every error message, lenient breaks (see module doc)."""
    col = gt + 1  # column (0-based offset into raw) of the field being read
    f = raw[col:].split(b" ", 6)
    last = len(f) - 1
    missing: list[str] = []
    out: list = [None] * 7  # version, timestamp, hostname, app_name, procid, msgid, structured_data
    broke_at = -1  # lenient: index of the first field that could not be read
    for i in range(6):
        tok = f[i]
        if not tok:
            if strict:
                if i == last:
                    raise Rfc5424Error(f"RFC 5424: header ends at column {col}: missing {_FIELD_TITLE[i]}")
                raise _err(_FIELD_TITLE[i], col, "empty field (two spaces in a row?)")
            broke_at = i
            break
        if i == 0:
            if not tok.isdigit() or tok[0] == 48 or len(tok) > 3:
                raise _err("VERSION", col, f"{tok[:20]!r} is not 1-999 without leading zeros")
            out[0] = int(tok)
        elif tok == NIL:
            pass
        elif i == 1:
            why = check_timestamp(tok, strict)
            if why is None:
                out[1] = tok.decode("ascii") if strict else tok.decode("ascii").upper()
            elif strict:
                raise _err("TIMESTAMP", col, why)
            else:
                missing.append("timestamp")
                if i == last or not (tok[:4].isdigit() and tok[4:5] == b"-"):
                    # not even a broken RFC 3339 date (e.g. "Nov 25 10:00:00"): the rest is MSG, kept whole
                    broke_at = 1
                    break
        else:
            limit = _LIMITS[i]
            if strict:
                if len(tok) > limit or tok.translate(None, _PRINTUS):
                    raise _err(_FIELD_TITLE[i], col, f"{tok[:40]!r} is not 1-{limit} printable US-ASCII characters")
                out[i] = tok.decode("ascii")
            else:
                out[i] = _text(tok)
        col += len(tok) + 1
        if i == last:
            # the frame ends right after this field: the rest of the header is missing
            if strict:
                raise Rfc5424Error(f"RFC 5424: header ends at column {col - 1}: missing {_FIELD_TITLE[i + 1]}")
            broke_at = i + 1
            col -= 1
            break
    rest_start = col
    if broke_at < 0:
        rest = f[6]
        if not rest:
            if strict:
                raise _err("STRUCTURED-DATA", col, "missing (use '-' for none)")
            broke_at = 6
        elif rest[0] == 45:  # '-'
            if len(rest) > 1 and rest[1] != 32:
                if strict:
                    raise _err("STRUCTURED-DATA", col, "'-' must be followed by SP or end of frame")
                broke_at = 6
            else:
                rest_start = col + 2
        elif rest[0] == 91:  # '['
            try:
                sd, end = parse_sd(raw, col, strict)
            except Rfc5424Error:
                if strict:
                    raise
                broke_at = 6
            else:
                if end < len(raw) and raw[end] != 32:
                    if strict:
                        raise _err("STRUCTURED-DATA", end, "must be followed by SP or end of frame")
                    broke_at = 6
                else:
                    out[6] = sd
                    rest_start = end + 1
                    cache = _SD_CACHE[strict]
                    if len(cache) >= _SD_CACHE_MAX:
                        cache.clear()
                    cache[raw[col:end]] = sd
        else:
            if strict:
                raise _err("STRUCTURED-DATA", col, f"{rest[:20]!r} is neither '-' nor '[SD-ID ...]'")
            broke_at = 6
    if broke_at >= 0:
        # lenient only: what follows the break is kept as MSG, the unread fields are recorded as missing
        for name in _FIELDS[max(broke_at, 1):]:
            if name not in missing:
                missing.append(name)
    msg_b = raw[rest_start:]
    if msg_b.startswith(BOM):
        msg_b = msg_b[3:]
        if strict:
            try:
                msg = msg_b.decode("utf-8")
            except UnicodeDecodeError as e:
                raise Rfc5424Error(f"RFC 5424: bad MSG at column {rest_start + 3 + e.start}: starts with a BOM "
                                   f"but is not valid UTF-8") from None
        else:
            msg = _text(msg_b)
    else:
        msg = _text(msg_b)
    return Message(
        format=FORMAT_RFC5424, pri=pri, facility=pri >> 3, severity=pri & 7, version=out[0], timestamp=out[1],
        hostname=out[2], app_name=out[3], procid=out[4], msgid=out[5], structured_data=out[6], msg=msg,
        missing=missing,
    )

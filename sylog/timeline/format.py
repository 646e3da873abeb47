"""One timeline line per message (public contract).

    <receive time> <host> <facility>.<severity> <tag> <msg>\\n
    2026-11-25T10:00:00.123456Z db-07 kern.warning kernel: [  12.3] BUG: ...

* receive time: RFC 3339, UTC, microseconds, ``Z`` — the receiver's clock, so lines sort and files roll by it;
* host: the folded directory name (:func:`sylog.syslog.hostnames.fold_host`);
* ``facility.severity`` by name (``-`` for an unknown part); for input that is not syslog at all (format
  ``raw``) the severity is the word ``raw`` (``-.raw``, or e.g. ``user.raw`` when a PRI was seen), so
  ``grep ' [a-z0-9-]*\\.raw '`` finds everything that was stored unparsed;
* tag: ``app[procid]:`` or ``app:``, ``-`` when the message has no app name;
* msg: the message text, bytes exactly as received (invalid UTF-8 included) except that control characters
  (0x00-0x1F, including tab, and DEL 0x7F) are escaped rsyslog-style as ``#`` plus three octal digits:
  LF -> ``#012``, CR -> ``#015``, TAB -> ``#011``, NUL -> ``#000``, DEL -> ``#177``. One message is therefore
  always exactly one line. Like rsyslog, a literal ``#012`` in a message is not itself escaped; the escaping is
  for grep-ability, not for reversible storage.

The time prefix is formatted once per second (cached); ordinary printable messages take the fast path (one
``str.isprintable`` check, no regex).
"""

from __future__ import annotations

import re
import time

from sylog.syslog.message import FACILITIES, FORMAT_RAW, SEVERITIES, Message

__all__ = ["TimeCache", "format_line", "format_with_stamp", "escape"]

_CTRL = re.compile("[\x00-\x1f\x7f]")


def _esc(m: re.Match[str]) -> str:
    return "#%03o" % ord(m.group())


def escape(text: str) -> str:
    """Escape control characters and DEL as ``#ooo`` (text may carry surrogate escapes; they are kept)."""
    if text.isprintable():
        return text
    return _CTRL.sub(_esc, text)


def _fs_table() -> list[str]:
    fac = list(FACILITIES) + ["-"] * (32 - len(FACILITIES))
    return [f"{fac[p >> 3]}.{SEVERITIES[p & 7]}" for p in range(256)]


_FS = _fs_table()


class TimeCache:
    """RFC 3339 UTC prefix and UTC day of a receive time, formatted once per second."""

    __slots__ = ("_sec", "_prefix", "_day")

    def __init__(self) -> None:
        self._sec = -1
        self._prefix = ""
        self._day = ""

    def stamp(self, t: float) -> tuple[str, str]:
        """``(YYYY-MM-DDTHH:MM:SS.ffffffZ, YYYY-MM-DD)``."""
        sec = int(t)
        if sec != self._sec:
            tm = time.gmtime(sec)
            self._day = "%04d-%02d-%02d" % (tm.tm_year, tm.tm_mon, tm.tm_mday)
            self._prefix = "%sT%02d:%02d:%02d." % (self._day, tm.tm_hour, tm.tm_min, tm.tm_sec)
            self._sec = sec
        us = int((t - sec) * 1_000_000)
        if us > 999_999:
            us = 999_999
        return f"{self._prefix}{us:06d}Z", self._day


_tc = TimeCache()
_tags: dict[tuple[str, str | None], str] = {}


def _make_tag(key: tuple[str, str | None]) -> str:
    """``app[procid]:`` / ``app:``, escaped so it stays one field (cached: tags repeat)."""
    app, procid = key
    tag = f"{app}[{procid}]:" if procid else app + ":"
    if not tag.isprintable() or " " in tag:
        tag = escape(tag).replace(" ", "#040")
    if len(_tags) >= 50_000:
        _tags.clear()
    _tags[key] = tag
    return tag


def format_with_stamp(stamp: str, host: str, msg: Message) -> bytes:
    """The line for ``msg`` with a precomputed time stamp (the server stamps a whole read batch once)."""
    fac = msg.facility
    sev = msg.severity
    if msg.format == FORMAT_RAW:
        fs = (FACILITIES[fac] if fac is not None and 0 <= fac < len(FACILITIES) else "-") + ".raw"
    elif fac is not None and sev is not None and 0 <= fac < 32 and 0 <= sev < 8:
        fs = _FS[(fac << 3) | sev]
    else:
        fs = f"{msg.facility_name()}.{msg.severity_name()}"
    app = msg.app_name
    if app:
        key = (app, msg.procid)
        tag = _tags.get(key)
        if tag is None:
            tag = _make_tag(key)
    else:
        tag = "-"
    text = msg.msg
    if not text.isprintable():
        text = _CTRL.sub(_esc, text)
    line = f"{stamp} {host} {fs} {tag} {text}\n"
    try:
        return line.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that did not come from undecodable bytes: keep it visible
        return line.encode("utf-8", "backslashreplace")


def format_line(recv_time: float, host: str, msg: Message) -> bytes:
    """One timeline line (ends in ``\\n``, contains no other LF or control byte)."""
    return format_with_stamp(_tc.stamp(recv_time)[0], host, msg)

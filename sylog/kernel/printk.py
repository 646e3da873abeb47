"""printk line prefixes: `<4>` level, `[  123.456789]` time since boot, `[T123]`/`[C2]` caller id.

They are parsed for ordering (time back near zero = new boot) and for telling interleaved tasks apart (caller
id), then stripped so that the detectors match the text the kernel meant. Lines without any prefix (plain dmesg
via syslog, `dmesg -t`, netconsole bodies) pass through unchanged. Pure functions over str, no I/O.
"""

from __future__ import annotations

import re
from typing import NamedTuple


class PrintkLine(NamedTuple):
    """One console line split into its printk prefix parts and the message body."""

    level: int | None  # 0..7 from `<N>` (facility bits dropped), None when absent
    ts: float | None  # seconds since boot from `[  12.345678]`, None when absent
    caller: str | None  # `T123` (task) or `C2` (CPU, interrupt context), None when absent
    body: str  # the message text, prefixes removed (a frame's own indentation is kept)


# The common shapes, anchored at the start: `<6>`, `[  12.345678]`, `[  12.3][ T123]`, `[  12.3] [T42]`, `[T123]`.
_STD = re.compile(r"(?:<(\d{1,3})>)?(?:\[ *(\d+\.\d+)\])?(?: ?\[ *([TC]\d+)\])? ?")
_TS = re.compile(r"\[ *(\d+\.\d+)\](?: ?\[ *([TC]\d+)\])? ?")
# Junk a serial console puts before the prefix: `syzkaller login: [  12.3] ...` (a getty prompt the kernel wrote
# over) and `** 5 printk messages dropped **`.
_JUNK = re.compile(r"(?:[^\[<]*? login: |\*\* \d+ printk messages dropped \*\* ?)")


_new = tuple.__new__  # builds a PrintkLine without the Python-level NamedTuple __new__ (hot path)


def split_printk(text: str) -> PrintkLine:
    """Split a console/syslog kernel line; tolerant: a line with no prefix is all body."""
    if not text:
        return _new(PrintkLine, (None, None, None, ""))
    c = text[0]
    start = 0
    if c not in "<[":
        # Fast path: most syslog-relayed kernel lines carry no prefix at all.
        if c == "k" and text.startswith("kernel: ["):  # a relay kept the syslog tag in the text
            inner = split_printk(text[8:])
            if inner.ts is not None or inner.caller is not None:
                return inner
        if " login: " not in text and not text.startswith("** "):
            return _new(PrintkLine, (None, None, None, text.rstrip("\r\n")))
        j = _JUNK.match(text)
        if j is None:
            return _new(PrintkLine, (None, None, None, text.rstrip("\r\n")))
        start = j.end()
    if c == "[" and not start:  # the usual console shape: a simpler pattern is measurably faster
        m = _TS.match(text)
        if m is not None:
            ts_s, caller = m.group(1, 2)
            return _new(PrintkLine, (None, float(ts_s), caller, text[m.end():].rstrip("\r\n")))
    m = _STD.match(text, start)
    lvl_s, ts_s, caller = m.group(1, 2, 3)
    if lvl_s is None and ts_s is None and caller is None:
        return _new(PrintkLine, (None, None, None, text.rstrip("\r\n")))
    return _new(PrintkLine, (int(lvl_s) & 7 if lvl_s is not None else None,
                             float(ts_s) if ts_s is not None else None, caller, text[m.end():].rstrip("\r\n")))


def strip_printk(text: str) -> str:
    """The body alone (see split_printk)."""
    return split_printk(text).body

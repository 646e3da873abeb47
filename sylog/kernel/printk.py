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


# Everything optional; anchored at the start. Accepted junk before the prefix, as seen on serial consoles:
# `syzkaller login: [  12.3] ...` (a getty prompt the kernel wrote over) and `** 5 printk messages dropped **`.
# Combined forms: `[  12.3][ T123] x`, `[  12.3] [T123] x`, `[T123] x`, `<6>[  12.3] x`.
_PREFIX = re.compile(
    r"(?:[^\[<]*? login: |\*\* \d+ printk messages dropped \*\* ?)?"
    r"(?:<(\d{1,3})>)?"
    r"(?:\[ *(\d+)\.(\d+)\])?"
    r"(?: ?\[ *([TC]\d+)\])?"
)


def split_printk(text: str) -> PrintkLine:
    """Split a console/syslog kernel line; tolerant: a line with no prefix is all body."""
    if not text:
        return PrintkLine(None, None, None, "")
    c = text[0]
    # Fast path: most syslog-relayed kernel lines carry no prefix at all.
    if c not in "<[" and " login: " not in text and not text.startswith("** "):
        if c == "k" and text.startswith("kernel: ["):  # a relay kept the syslog tag in the text
            inner = split_printk(text[8:])
            if inner.ts is not None or inner.caller is not None:
                return inner
        return PrintkLine(None, None, None, text.rstrip("\r\n"))
    m = _PREFIX.match(text)
    lvl_s, sec, frac, caller = m.group(1, 2, 3, 4)
    if m.end() == 0:
        return PrintkLine(None, None, None, text.rstrip("\r\n"))
    if lvl_s is None and sec is None and caller is None:
        # only junk matched (e.g. `foo login: ` without a printk prefix): keep the line whole
        return PrintkLine(None, None, None, text.rstrip("\r\n"))
    body = text[m.end():]
    if body[:1] == " ":
        body = body[1:]
    level = int(lvl_s) & 7 if lvl_s is not None else None
    ts = float(f"{sec}.{frac}") if sec is not None else None
    return PrintkLine(level, ts, caller, body.rstrip("\r\n"))


def strip_printk(text: str) -> str:
    """The body alone (see split_printk)."""
    return split_printk(text).body

"""The incident record: what ``DATA/incidents/<host>/<id>.json`` holds and ``sylog incidents --json`` prints.

Times are RFC 3339 UTC strings with microseconds (``2026-11-25T10:15:00.123456Z``) so that scripts can sort and
compare them as text; the correlator keeps float epochs beside them for its own arithmetic.
"""

from __future__ import annotations

import re
import secrets
import time
from datetime import datetime, timezone

import msgspec

KINDS = (
    "panic", "oops", "bug", "page-fault", "gpf", "mce", "hw-error", "soft-lockup", "hard-lockup", "hung-task",
    "rcu-stall", "sanitizer", "warning", "oom", "unclean-reboot",
)
STATES = ("open", "closed")
SOURCES = ("syslog", "netconsole", "vmcore")

# IDs are typed by responders and used as file names: `20261125T101500Z-3f2a9c` (UTC second + 24 random bits).
ID_RE = re.compile(r"^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}$")


class Incident(msgspec.Struct, kw_only=True, omit_defaults=False):
    """One crash (or unclean reboot) of one host. Field order is the JSON key order."""

    id: str
    host: str
    kind: str
    kinds: list[str] = []  # every kind seen, in order of first appearance; kinds[0] == kind
    fatal: bool = False  # ended in a panic
    title: str = ""
    function: str | None = None
    module: str | None = None
    kernel_release: str | None = None
    taint: str | None = None
    cpu: int | None = None
    pid: int | None = None
    comm: str | None = None
    hardware: str | None = None
    frames: list[str] = []
    signature: str = ""
    state: str = "open"
    first_seen: str = ""
    last_seen: str = ""
    lines: int = 0  # crash lines attached (including any cut from the .log)
    lines_cut: int = 0  # crash lines not kept in the .log because of the per-incident cap
    path: str = ""  # the .json file
    log_path: str = ""  # the .log file: context, separator, crash lines
    vmcore: dict | None = None  # set by the vmcore linker
    vmcore_missing: bool = False  # set by the vmcore linker when a fatal incident got no dump in its window
    source: str = "syslog"
    trigger: str = ""  # the trigger line's message text
    context_lines: int = 0
    closed_reason: str | None = None  # quiet | reboot | restart | shutdown | unclean-reboot


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Incident)


def encode(inc: Incident) -> bytes:
    return _encoder.encode(inc)


def decode(data: bytes) -> Incident:
    """Raises msgspec.DecodeError / ValidationError on a bad file."""
    return _decoder.decode(data)


def rfc3339(t: float) -> str:
    """Epoch seconds -> ``YYYY-MM-DDTHH:MM:SS.ffffffZ``, truncated to the microsecond exactly as the timeline's
    receive stamps are (``sylog.timeline.format.TimeCache``), so an incident's times equal its lines' times."""
    sec = int(t)
    us = min(int((t - sec) * 1_000_000), 999_999)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{us:06d}Z"


def parse_rfc3339(s: str) -> float | None:
    """Inverse of :func:`rfc3339` (accepts any offset); None when unparseable."""
    if not s:
        return None
    try:
        d = datetime.fromisoformat(s.replace("Z", "+00:00") if s.endswith("Z") else s)
    except ValueError:
        return None
    if d.tzinfo is None:
        d = d.replace(tzinfo=timezone.utc)
    return d.timestamp()


def new_id(t: float, taken: "set[str] | None" = None, rand=secrets.token_hex) -> str:
    """A short, filename-safe ID that sorts by time; ``taken`` guards against a same-second collision."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(t))
    while True:
        i = f"{stamp}-{rand(3)}"
        if taken is None or i not in taken:
            return i

"""Time bounds for the query CLI: ``--since 2h`` / ``--until 2026-11-25T10:00`` and the times stored in DATA/.

Shared by ``timeline``, ``signatures`` (and free for ``incidents``): one grammar for every command, so a
responder can paste the same ``--since`` everywhere. Pure functions; ``now`` is injected for tests.

Accepted forms:
- durations back from now: ``90s``, ``30m``, ``2h``, ``7d``, ``1w``, combined ``1h30m``; a bare number is seconds;
- dates/times (ISO 8601): ``2026-11-25``, ``2026-11-25T10:00``, ``2026-11-25 10:00:05.5``, with ``Z`` or an
  offset; a time without an offset is UTC (timelines and incidents are stored in UTC);
- ``now``, ``today``, ``yesterday`` (UTC midnights), and ``@<epoch seconds>``.
"""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta, timezone

__all__ = ["TimeSpecError", "parse_time", "parse_stored_time", "format_utc", "day_of"]


class TimeSpecError(ValueError):
    """A --since/--until value that is neither a duration nor a date; the message says what was given."""


_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(w|d|h|min|m|sec|s)", re.IGNORECASE)
_DURATION_FULL = re.compile(r"(?:\d+(?:\.\d+)?\s*(?:w|d|h|min|m|sec|s)\s*)+", re.IGNORECASE)


def parse_duration(text: str) -> float | None:
    """``1h30m`` -> 5400.0; ``None`` when ``text`` is not a duration."""
    t = text.strip()
    if not t:
        return None
    if re.fullmatch(r"\d+(?:\.\d+)?", t):
        return float(t)
    if not _DURATION_FULL.fullmatch(t):
        return None
    return float(sum(float(n) * _UNITS[u.lower()] for n, u in _DURATION.findall(t)))


def parse_time(text: str, *, now: float | None = None) -> float:
    """Turn a --since/--until value into epoch seconds (UTC). Raises ``TimeSpecError`` with a one-line reason."""
    if now is None:
        now = time.time()
    t = text.strip()
    low = t.lower()
    if low == "now":
        return now
    if low in ("today", "yesterday"):
        midnight = datetime.fromtimestamp(now, timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
        if low == "yesterday":
            midnight -= timedelta(days=1)
        return midnight.timestamp()
    if t.startswith("@"):
        try:
            return float(t[1:])
        except ValueError:
            raise TimeSpecError(f"bad time {text!r}: '@' must be followed by epoch seconds") from None
    d = parse_duration(t)
    if d is not None:
        return now - d
    ts = _parse_iso(t)
    if ts is None:
        raise TimeSpecError(
            f"bad time {text!r}: expected a duration (30m, 2h, 7d, 1h30m) or a date (2026-11-25, 2026-11-25T10:00Z)"
        )
    return ts


def _parse_iso(t: str) -> float | None:
    s = t.strip()
    if s.endswith(("z", "Z")):
        s = s[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def parse_stored_time(value: object) -> float | None:
    """A time as stored in incident JSON (RFC 3339 string or epoch number) -> epoch seconds; ``None`` if absent."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        return _parse_iso(value)
    return None


def format_utc(ts: float) -> str:
    """Epoch seconds -> ``2026-11-25T10:14:43.123456Z``, the timeline's fixed-width form."""
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def day_of(ts: float) -> str:
    """Epoch seconds -> the UTC day ``YYYY-MM-DD`` that names a timeline file."""
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d")

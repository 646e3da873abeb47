"""``sylog timeline HOST``: stream one host's timeline across its day files, in order.

Built for files of gigabytes: day files are picked by name from --since/--until, the start and end offsets inside
a file are found by binary search on the leading receive time (a host's lines are written in receive order), and
the bytes in between go out with ``sendfile`` (or large buffered reads when filtering) — never decoded, so what is
printed is exactly what was stored. ``--grep`` is a bytes regex run over whole chunks and confirmed per line, so
sparse matches cost one C-level scan rather than a Python call per line.
"""

from __future__ import annotations

import argparse
import errno
import os
import re
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sylog.query.timefilter import TimeSpecError, day_of, parse_stored_time, parse_time

CHUNK = 4 * 1024 * 1024  # streaming read size
PROBE = 64 * 1024  # read size while bisecting / scanning for a line start
LINEAR = 256 * 1024  # below this window, bisection stops and lines are scanned
_DAY = re.compile(rb"^\d{4}-\d{2}-\d{2}\.log$")


class TimelineError(Exception):
    """A one-line reason the command cannot run (unknown host, bad regex, unknown incident)."""


# --------------------------------------------------------------------------------------------------- host names
def host_candidates(name: str) -> list[str]:
    """Folded forms of a host argument, as the server folds names (and peer addresses) into directory names.

    ``DB-07.`` finds ``db-07``; ``::ffff:10.0.0.1`` finds ``10.0.0.1``. An implausible name (``../x``) yields
    nothing rather than the server's ``unknown`` fallback, so it is reported as an unknown host.
    """
    try:
        from sylog.syslog.hostnames import fold_host, fold_name
    except ImportError:  # pragma: no cover - server module missing: the obvious folding
        s = name.strip().rstrip(".").lower()
        return [s] if _safe_component(s) else []
    out = []
    for cand in (fold_name(name), fold_host(None, name)):
        if cand and _safe_component(cand) and cand not in out and (cand != "unknown" or name == "unknown"):
            out.append(cand)
    return out


def fold_host_name(name: str) -> str:
    """The directory name the server would use for host ``name`` ('' when implausible)."""
    c = host_candidates(name)
    return c[0] if c else ""


def _safe_component(name: str) -> bool:
    return bool(name) and name not in (".", "..") and "/" not in name and "\0" not in name


def host_dir(data_dir: Path, host: str) -> Path:
    """The host's timeline directory; ``TimelineError`` when the host never sent anything."""
    base = data_dir / "timelines"
    cands = host_candidates(host)
    for cand in cands:
        if (base / cand).is_dir():
            return base / cand
    hint = ""
    try:
        import difflib

        known = [e.name for e in os.scandir(base) if e.is_dir()]
        close = difflib.get_close_matches(cands[0] if cands else host.lower(), known, n=3, cutoff=0.6)
        if close:
            hint = " (did you mean " + ", ".join(close) + "?)"
    except OSError:
        pass
    raise TimelineError(f"unknown host {host!r}: no timeline in {base}{hint}")


def day_files(hdir: Path, since: float | None, until: float | None) -> list[Path]:
    """Day files of a host in time order, skipping whole days outside [since, until] by their names."""
    lo = day_of(since) if since is not None else None
    hi = day_of(until) if until is not None else None
    out = []
    for entry in os.scandir(hdir):
        name = entry.name
        if not _DAY.match(name.encode()) or not entry.is_file():
            continue
        day = name[:10]
        if (lo is not None and day < lo) or (hi is not None and day > hi):
            continue
        out.append(Path(entry.path))
    out.sort(key=lambda p: p.name)
    return out


# ------------------------------------------------------------------------------------------- binary search
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_US = timedelta(microseconds=1)


def to_us(ts: float) -> int:
    """Epoch seconds -> integer microseconds, rounded exactly as the stored timestamps were (via datetime)."""
    return (datetime.fromtimestamp(ts, timezone.utc) - _EPOCH) // _US


def line_time(line: bytes) -> int | None:
    """Receive time (epoch µs) from the leading RFC 3339 field of a timeline line; ``None`` if unreadable.

    Integers, not floats: a bound and a stored time that print the same must compare equal.
    """
    sp = line.find(b" ", 0, 48)
    if sp <= 0:
        return None
    s = line[:sp].decode("ascii", "replace")
    if s.endswith(("Z", "z")):
        s = s[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return (dt - _EPOCH) // _US


def _next_line_start(fd: int, pos: int, size: int) -> int:
    """First line start at or after ``pos`` (``size`` if none)."""
    if pos <= 0:
        return 0
    p = pos - 1  # a line starts at pos if the byte before it is a newline
    while p < size:
        buf = os.pread(fd, PROBE, p)
        if not buf:
            break
        i = buf.find(b"\n")
        if i >= 0:
            return p + i + 1
        p += len(buf)
    return size


def _head(fd: int, p: int) -> bytes:
    return os.pread(fd, 64, p)


def find_offset(fd: int, size: int, bound: float, *, after: bool = False) -> int:
    """Offset of the first line with time >= ``bound`` (``after``: > ``bound``); ``size`` if there is none.

    Bisection keeps one invariant — every line starting before ``lo`` is earlier than the bound — and uses ``hi``
    only to bound the work, so lines that cannot be read just make it scan a little more.
    """

    b = to_us(bound)

    def before(t: int) -> bool:
        return t <= b if after else t < b

    lo, hi = 0, size
    if size:
        t0 = line_time(_head(fd, 0))
        if t0 is not None and not before(t0):
            return 0  # the whole file is past the bound: the common case for all but the first day file
    while hi - lo > LINEAR:
        mid = (lo + hi) // 2
        p = _next_line_start(fd, mid, size)
        t = line_time(_head(fd, p)) if p < hi else None
        if t is not None and before(t):
            lo = p
        else:
            hi = mid
    # Linear part: scan lines from lo.
    pos = lo
    carry = b""
    while pos < size:
        buf = os.pread(fd, min(PROBE, size - pos), pos)
        if not buf:
            break
        data = carry + buf
        base = pos - len(carry)
        start = 0
        while True:
            nl = data.find(b"\n", start)
            if nl < 0:
                break
            t = line_time(data[start : start + 48])
            if t is not None and not before(t):
                return base + start
            start = nl + 1
        carry = data[start:]
        pos += len(buf)
    if carry:
        t = line_time(carry[:48])
        if t is not None and not before(t):
            return size - len(carry)
    return size


def complete_size(fd: int) -> int:
    """File size up to its last newline: a line the server is still writing is not shown half."""
    size = os.fstat(fd).st_size
    end = size
    while end > 0:
        n = min(PROBE, end)
        buf = os.pread(fd, n, end - n)
        i = buf.rfind(b"\n")
        if i >= 0:
            return end - n + i + 1
        end -= n
    return 0


# --------------------------------------------------------------------------------------------------- output
class Output:
    """Raw byte sink on stdout: ``sendfile`` for unfiltered ranges, buffered writes otherwise."""

    def __init__(self, stream=None) -> None:
        self.stream = stream if stream is not None else sys.stdout.buffer
        try:
            self.fd: int | None = self.stream.fileno()
        except (AttributeError, OSError, ValueError):
            self.fd = None
        self.sendfile_ok = self.fd is not None

    def write(self, data: bytes) -> None:
        if data:
            self.stream.write(data)

    def copy_range(self, fd: int, start: int, end: int) -> None:
        """Copy bytes [start, end) of ``fd`` to the output without touching them."""
        if self.sendfile_ok:
            self.stream.flush()
            pos = start
            try:
                while pos < end:
                    n = os.sendfile(self.fd, fd, pos, min(end - pos, 1 << 30))
                    if n == 0:
                        return
                    pos += n
                return
            except OSError as e:
                if e.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):  # not a sendfile target: copy
                    raise
                self.sendfile_ok = False
                start = pos
        pos = start
        while pos < end:
            buf = os.pread(fd, min(CHUNK, end - pos), pos)
            if not buf:
                return
            self.stream.write(buf)
            pos += len(buf)

    def flush(self) -> None:
        self.stream.flush()


class Grep:
    """A line filter over whole chunks: ``rx`` decides per line; ``scan`` finds candidate lines fast.

    ``^``-anchored patterns (a time prefix, a tag) are scanned as ``\\n(?:rest)`` over the chunk with a newline
    in front: Python's ``re`` skips ahead by literal prefix then, instead of trying ``^`` at every byte (~14x).
    """

    def __init__(self, pattern: bytes, ignore_case: bool = False) -> None:
        flags = re.MULTILINE | (re.IGNORECASE if ignore_case else 0)
        self.rx = re.compile(pattern, flags)
        self.scan: re.Pattern[bytes] | None = None
        if pattern.startswith(b"^") and _leading_anchor_only(pattern, flags):
            try:
                self.scan = re.compile(b"\n(?:" + pattern[1:] + b")", flags)
            except re.error:
                self.scan = None

    def lines(self, data: bytes) -> list[bytes]:
        """Matching lines of ``data`` (complete lines)."""
        if self.scan is None:
            return grep_chunk(self.rx, data)
        out = []
        rx_search = self.rx.search
        sd = b"\n" + data  # sd[i] is the newline before the line starting at data[i]
        search = self.scan.search
        pos = 0
        n = len(data)
        while pos < n:
            m = search(sd, pos)
            if m is None:
                break
            ls = m.start()
            if ls >= n:
                break
            le = data.find(b"\n", ls)
            le = n if le < 0 else le + 1
            line_end = le - 1 if data[le - 1 : le] == b"\n" else le
            if rx_search(data, ls, line_end):
                out.append(data[ls:le])
            pos = le
        return out

    def keep(self, line: bytes) -> bool:
        return self.rx.search(line, 0, len(line) - 1 if line.endswith(b"\n") else len(line)) is not None


def _leading_anchor_only(pattern: bytes, flags: int) -> bool:
    """True when the pattern is ``^`` followed by one alternative (not ``^a|b``), so ``\\n(?:rest)`` is equal."""
    try:
        from re import _parser as sre_parse  # type: ignore[attr-defined]
        from re._constants import AT, AT_BEGINNING  # type: ignore[attr-defined]
    except ImportError:  # pragma: no cover - older layouts
        return False
    try:
        parsed = sre_parse.parse(pattern, flags)
    except re.error:
        return False
    items = list(parsed)
    return bool(items) and items[0] == (AT, AT_BEGINNING)


def grep_chunk(rx: re.Pattern[bytes], data: bytes) -> list[bytes]:
    """Lines of ``data`` (complete lines only) that ``rx`` matches, found with one scan per match."""
    out = []
    pos = 0
    n = len(data)
    search = rx.search
    while pos < n:
        m = search(data, pos)
        if m is None:
            break
        s = m.start()
        if s >= n:  # empty match at the very end: no line there
            break
        ls = max(data.rfind(b"\n", pos, s) + 1, pos)
        le = data.find(b"\n", s)
        le = n if le < 0 else le + 1
        line_end = le - 1 if data[le - 1 : le] == b"\n" else le
        # Confirm against the line alone: a match may not span lines (e.g. `\s` eating the newline).
        if m.end() <= line_end or search(data, ls, line_end):
            out.append(data[ls:le])
        pos = le
    return out


def stream_range(out: Output, fd: int, start: int, end: int, rx: Grep | None) -> None:
    if rx is None:
        out.copy_range(fd, start, end)
        return
    pos = start
    carry = b""
    while pos < end:
        buf = os.pread(fd, min(CHUNK, end - pos), pos)
        if not buf:
            break
        pos += len(buf)
        data = carry + buf if carry else buf
        cut = data.rfind(b"\n") + 1
        if cut == 0:
            carry = data
            continue
        carry = data[cut:]
        lines = rx.lines(data[:cut] if cut < len(data) else data)
        if lines:
            out.write(b"".join(lines))
    if carry:
        lines = rx.lines(carry)
        if lines:
            out.write(b"".join(lines))


# --------------------------------------------------------------------------------------------------- --around
def lines_forward(files: list[Path], first_start: int) -> Iterator[bytes]:
    """Lines from offset ``first_start`` of the first file onwards, across files."""
    for i, path in enumerate(files):
        with open(path, "rb") as f:
            fd = f.fileno()
            end = complete_size(fd)
            pos = first_start if i == 0 else 0
            carry = b""
            while pos < end:
                buf = os.pread(fd, min(PROBE, end - pos), pos)
                if not buf:
                    break
                pos += len(buf)
                data = carry + buf
                parts = data.split(b"\n")
                carry = parts.pop()
                for p in parts:
                    yield p + b"\n"
            if carry:
                yield carry + b"\n"


def lines_backward(files: list[Path], last_end: int) -> Iterator[bytes]:
    """Lines before offset ``last_end`` of the last file, newest first, across files (``files`` oldest first).

    Every block read ends at a line boundary (the tail of the line cut by the block start is carried into the
    next, earlier, read), so each block splits cleanly into whole lines.
    """
    for i, path in enumerate(reversed(files)):
        with open(path, "rb") as f:
            fd = f.fileno()
            pos = last_end if i == 0 else complete_size(fd)
            tail = b""
            while pos > 0:
                n = min(PROBE, pos)
                pos -= n
                parts = (os.pread(fd, n, pos) + tail).split(b"\n")
                parts.pop()  # empty piece after the final newline
                first = parts[0]
                for p in reversed(parts[1:]):
                    yield p + b"\n"
                if pos == 0:
                    yield first + b"\n"
                else:
                    tail = first + b"\n"


def find_incident(data_dir: Path, ident: str) -> dict:
    """The incident (exact ID or unique prefix), via the INCIDENTS engineer's shared reader."""
    from sylog.query.incidents import QueryError, find_incident as _find

    try:
        return _find(data_dir, ident)
    except QueryError as e:
        raise TimelineError(str(e)) from None


def trigger_line(inc: dict) -> bytes | None:
    """The exact stored line that opened the incident: the first crash line of its ``.log`` (the store writes the
    timeline line itself there, after the context and a separator line)."""
    try:
        from sylog.incidents.store import SEPARATOR_PREFIX
    except ImportError:  # pragma: no cover
        SEPARATOR_PREFIX = b"---- sylog: crash lines of incident "
    path = str(inc.get("path") or "")
    lp = inc.get("log_path") or (path[:-5] + ".log" if path.endswith(".json") else "")
    if not lp:
        return None
    try:
        with open(lp, "rb") as f:
            data = f.read(64 * 1024 * 1024)
    except OSError:
        return None
    i = data.find(SEPARATOR_PREFIX)
    if i < 0 or (i > 0 and data[i - 1 : i] != b"\n"):
        return None
    j = data.find(b"\n", i)
    k = data.find(b"\n", j + 1) if j >= 0 else -1
    return data[j + 1 : k + 1] if k > j >= 0 else None


def refine_anchor(fd: int, start: int, size: int, t_us: int, want: bytes | None, text: bytes | None) -> int | None:
    """Among the lines from ``start`` stamped no later than ``t_us`` (one receive batch shares one time), the
    offset of the trigger line — ``want`` exactly, else the first containing ``text`` — or ``None``."""
    if not want and not text:
        return None
    pos, carry, scanned = start, b"", 0
    while pos < size and scanned < 64 * 1024 * 1024:
        buf = os.pread(fd, min(PROBE, size - pos), pos)
        if not buf:
            break
        data = carry + buf
        base = pos - len(carry)
        pos += len(buf)
        scanned += len(buf)
        b = 0
        while True:
            nl = data.find(b"\n", b)
            if nl < 0:
                break
            ln = data[b : nl + 1]
            t = line_time(ln[:48])
            if t is not None and t > t_us:
                return None
            if (want and ln == want) or (not want and text and text in ln):
                return base + b
            b = nl + 1
        carry = data[b:]
    return None


def run_around(out: Output, data_dir: Path, hdir: Path, ident: str, before: int, after: int,
               rx: Grep | None) -> None:
    inc = find_incident(data_dir, ident)
    if inc.get("host") not in (hdir.name, None) and fold_host_name(str(inc.get("host"))) != hdir.name:
        raise TimelineError(f"incident {ident!r} belongs to host {inc.get('host')!r}, not {hdir.name!r}")
    t0 = parse_stored_time(inc.get("first_seen"))
    if t0 is None:
        raise TimelineError(f"incident {ident!r} has no readable first_seen")
    files = day_files(hdir, None, None)
    # The anchor: first line at or after first_seen, in the first file whose day can hold it.
    day0 = day_of(t0)
    idx = next((i for i, p in enumerate(files) if p.name[:10] >= day0), len(files))
    anchor_off = 0
    if idx < len(files):
        with open(files[idx], "rb") as f:
            fd = f.fileno()
            size = complete_size(fd)
            anchor_off = find_offset(fd, size, t0)
            trig = inc.get("trigger")
            # The timeline truncates to the microsecond and first_seen may be rounded: look for the trigger line
            # from 2 µs earlier on, and fall back to the first line at first_seen when it is not there.
            t_us = to_us(t0)
            early = find_offset(fd, size, (t_us - 2) / 1e6)
            found = refine_anchor(fd, early, size, t_us + 1, trigger_line(inc),
                                  trig.encode("utf-8", "surrogateescape") if isinstance(trig, str) and trig
                                  else None)
            if found is not None:
                anchor_off = found
    keep = (lambda line: True) if rx is None else rx.keep
    back: list[bytes] = []
    if before > 0:
        older = files[: idx + 1] if idx < len(files) else files
        end = anchor_off if idx < len(files) else None
        if older:
            if end is None:
                with open(older[-1], "rb") as f:
                    end = complete_size(f.fileno())
            for line in lines_backward(older, end):
                if keep(line):
                    back.append(line)
                    if len(back) >= before:
                        break
    back.reverse()
    out.write(b"".join(back))
    if after > 0 and idx < len(files):
        n = 0
        chunk: list[bytes] = []
        for line in lines_forward(files[idx:], anchor_off):
            if keep(line):
                chunk.append(line)
                n += 1
                if n >= after:
                    break
        out.write(b"".join(chunk))


# --------------------------------------------------------------------------------------------------- command
def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "timeline",
        help="stream a host's timeline (all it sent, in order)",
        description="Stream HOST's timeline across day files, in receive order, bytes exactly as stored.",
    )
    p.add_argument("host", metavar="HOST")
    p.add_argument("--data-dir", default=None, help="data directory (default: from --config, else ./sylog-data)")
    p.add_argument("--config", default=None, help="config file to take data_dir from")
    p.add_argument("--since", help="start: duration back from now (30m, 2h, 7d) or date/time (UTC unless offset)")
    p.add_argument("--until", help="end (inclusive): duration back from now or date/time")
    p.add_argument("--grep", metavar="REGEX", help="only lines matching this regex (bytes, Python syntax)")
    p.add_argument("-i", "--ignore-case", action="store_true", help="--grep ignores case")
    p.add_argument("--around", metavar="ID", help="the lines around incident ID's trigger (its first_seen); "
                   "with --grep, N counts matching lines")
    p.add_argument("--before", type=int, default=50, metavar="N",
                   help="with --around: lines before the trigger (default 50)")
    p.add_argument("--after", type=int, default=20, metavar="N",
                   help="with --around: lines from the trigger on, the trigger included (default 20)")
    p.add_argument("-f", "--follow", action="store_true",
                   help="keep printing lines as they arrive, across day files (Ctrl-C to stop)")
    p.add_argument("--follow-interval", type=float, default=0.25, metavar="S", help=argparse.SUPPRESS)
    p.set_defaults(func=run)


def resolve_data_dir(args: argparse.Namespace) -> Path:
    if getattr(args, "data_dir", None):
        return Path(args.data_dir)
    cfg = getattr(args, "config", None)
    if cfg:
        from sylog.config import ConfigError, load_config  # only when asked: the query CLI needs no config

        try:
            return Path(load_config(cfg).data_dir)
        except ConfigError as e:
            raise TimelineError(str(e)) from None
    return Path("./sylog-data")


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except (TimelineError, TimeSpecError) as e:
        print(f"sylog timeline: {e}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    if args.around and (args.since or args.until or args.follow):
        raise TimelineError("--around cannot be combined with --since/--until/--follow")
    if args.follow and args.until:
        raise TimelineError("--follow cannot be combined with --until")
    if args.before < 0 or args.after < 0:
        raise TimelineError("--before/--after must be >= 0")
    rx = None
    if args.grep is not None:
        try:
            rx = Grep(args.grep.encode("utf-8", "surrogateescape"), args.ignore_case)
        except re.error as e:
            raise TimelineError(f"bad --grep regex {args.grep!r}: {e}") from None
    since = parse_time(args.since) if args.since else None
    until = parse_time(args.until) if args.until else None
    data_dir = resolve_data_dir(args)
    hdir = host_dir(data_dir, args.host)
    out = Output()
    try:
        if args.around:
            run_around(out, data_dir, hdir, args.around, args.before, args.after, rx)
            return 0
        if since is not None and until is not None and until < since:
            return 0
        last: tuple[Path, int] | None = None
        for path in day_files(hdir, since, until):
            try:
                f = open(path, "rb")
            except FileNotFoundError:  # removed by retention while we ran
                continue
            with f:
                fd = f.fileno()
                size = complete_size(fd)
                start = find_offset(fd, size, since) if since is not None else 0
                end = find_offset(fd, size, until, after=True) if until is not None else size
                if end > start:
                    stream_range(out, fd, start, end, rx)
                last = (path, max(start, end))
        if args.follow:
            follow(out, hdir, last, rx, args.follow_interval, min_day=day_of(since) if since is not None else "")
    finally:
        out.flush()
    return 0


def follow(out: Output, hdir: Path, last: tuple[Path, int] | None, rx: Grep | None, interval: float,
           *, min_day: str = "", max_polls: int | None = None) -> None:
    """``tail -f`` for a host: print complete lines as they are appended, then move on to the next day's file.

    Polls (the server batches writes every ~200 ms anyway). After a day rolls over, the old file is still watched
    for a few polls, for the last batch written across midnight. A file that shrank is read again from its start.
    Runs until interrupted (or ``max_polls``, for tests).
    """
    import time

    cur, off = last if last is not None else (None, 0)
    old: list[tuple[Path, int, int]] = []  # (path, offset, polls left) of files left behind at a rollover
    polls = 0
    while max_polls is None or polls < max_polls:
        polls += 1
        old = [(p, _drain(out, p, o, rx), n - 1) for p, o, n in old if n > 0]
        if cur is not None:
            off = _drain(out, cur, off, rx)
        newer = [p for p in day_files(hdir, None, None) if (p.name > cur.name if cur is not None
                                                             else p.name[:10] >= min_day)]
        if newer:
            if cur is not None:
                old.append((cur, off, 8))
            cur, off = newer[0], 0
            continue
        out.flush()
        time.sleep(interval)


def _drain(out: Output, path: Path, off: int, rx: Grep | None) -> int:
    """Print what was appended to ``path`` after ``off`` (complete lines); the new offset."""
    try:
        with open(path, "rb") as f:
            fd = f.fileno()
            size = complete_size(fd)
            if size < off:
                off = 0
            if size > off:
                stream_range(out, fd, off, size, rx)
            return size
    except FileNotFoundError:
        return off

"""Sans-IO per-host crash correlation: turns each host's message stream into incidents.

Fed every accepted message (``feed``) and a clock (``tick``); emits ``(event, OpenIncident)`` to a sink, where event
is ``opened`` | ``updated`` | ``closed``. No I/O, no asyncio: the engine (``engine.py``) persists what it is told.

Per host:
- every line goes into a compact ring (``ring.py``): the last-gasp context of the next incident;
- a kernel line is split (printk prefix) and classified by ``sylog.kernel``; a trigger opens an incident or joins the
  open one; while open, every kernel line of that host attaches (a dying kernel's output is all report), non-kernel
  lines do not;
- the incident closes when the host has sent no crash line (trigger or continuation) for ``quiet`` seconds, when a
  new boot starts, or after ``max_open`` seconds;
- a new boot (boot banner, or printk time back near zero) with no crash and no clean shutdown seen since the
  previous boot gives an ``unclean-reboot`` incident, opened and closed at once.

The only work for a non-kernel message is a dict lookup, two attribute tests and a ring append.
"""

from __future__ import annotations

import hashlib
import time
from collections import deque
from types import SimpleNamespace
from typing import Any, Callable, NamedTuple

from sylog.incidents.model import Incident, new_id, rfc3339
from sylog.incidents.ring import BIG_LINE, BLOCK_LINES, DEFAULT_MAX_BYTES, ContextRing, pack

REPORT_FIELDS = ("title", "function", "module", "kernel_release", "taint", "cpu", "pid", "comm", "hardware",
                 "frames", "signature")
# Non-kernel programs whose messages may announce a clean shutdown (is_clean_shutdown is only asked about these
# and about kernel lines, so ordinary daemon chatter never reaches the detector).
SHUTDOWN_APPS = frozenset({"rsyslogd", "systemd-shutdown", "systemd", "shutdown", "init", "systemd-logind",
                           "reboot", "halt", "poweroff", "syslog-ng", "syslogd"})
# Kinds that explain a following reboot by themselves: no extra unclean-reboot incident after them.
DIE_KINDS = frozenset({"panic", "oops", "bug", "page-fault", "gpf", "mce", "hard-lockup", "hw-error"})
RING_BUDGET = 32 * 1024 * 1024  # deflated context bytes for all hosts together (the cap per ring shrinks with
                                # the host count, never below MIN_RING_BYTES): 10,000 hosts stay well under 150 MB
MIN_RING_BYTES = 2048
# Deflating context costs ~1.8 us per line (16-line blocks, zlib level 1: a quarter of all the CPU sylog spends on an
# ordinary message). While every host's context fits in this many RAW bytes (estimated: hosts x (context_lines +
# BLOCK_LINES) x mean line size), sealed blocks simply stay raw; past it (e.g. 10,000 hosts) they are deflated as
# before. Blocks of long lines (mean > RAW_LINE_MAX bytes) are always deflated, so one host cannot hog the budget.
RAW_RING_BUDGET = 48 * 1024 * 1024
RAW_LINE_MAX = 512
MAX_PENDING_BLOCKS = 2048  # sealed blocks waiting for the engine's worker thread; beyond this, deflate inline
MAX_HOSTS = 100_000  # beyond this, the longest-silent hosts without an open incident are forgotten
BOOT_TS_LOW = 5.0  # printk seconds: "back near zero" ...
BOOT_TS_HIGH = 60.0  # ... after having been at least this large
BOOTING_TS = 30.0  # a boot is over once printk time passes this (or BOOTING_WALL seconds of wall time)
BOOTING_WALL = 60.0
UNCLEAN_TITLE = "unexpected kernel reboot"


class ShutdownFilter(NamedTuple):
    apps: frozenset[str]
    check: Callable[[Any], bool]
    hints: dict[str, tuple[bytes, ...] | None]


def default_detector() -> SimpleNamespace:
    """The DETECTOR engineer's sylog.kernel functions, bundled so tests can inject fakes."""
    from sylog.kernel import detect, printk

    try:
        from sylog.kernel.report import analyze
    except ImportError:  # report analysis not available: incidents still open, titled by their trigger line
        analyze = _minimal_analyze
    return SimpleNamespace(
        split_printk=printk.split_printk, classify=detect.classify, is_boot_marker=detect.is_boot_marker,
        is_clean_shutdown=detect.is_clean_shutdown, analyze=analyze,
        is_crash_continuation=getattr(detect, "is_crash_continuation", None),
        CLEAN_SHUTDOWN_HINTS=detect.CLEAN_SHUTDOWN_HINTS,
    )


def clean_shutdown_filter(detector: Any = None) -> ShutdownFilter:
    """Which ordinary (non-kernel) messages can announce a clean shutdown: their app names, the test to ask them
    (the detector's) and, per app, byte strings one of which such a message must contain (None: no hint; the
    detector's ``CLEAN_SHUTDOWN_HINTS``). The digest stage asks it, so that ordinary lines reach the correlator as
    whole runs with one "clean" bit (:meth:`Correlator.feed_run`)."""
    det = detector if detector is not None else default_detector()
    apps = frozenset(getattr(det, "CLEAN_SHUTDOWN_APPS", ())) | SHUTDOWN_APPS
    hints = getattr(det, "CLEAN_SHUTDOWN_HINTS", None) or {}
    return ShutdownFilter(apps, det.is_clean_shutdown, {a: hints.get(a) for a in apps})


def _minimal_analyze(kind: str, bodies: list[str]) -> SimpleNamespace:
    title = bodies[0].strip() if bodies else kind
    return SimpleNamespace(title=title, signature=_fallback_signature(kind, title))


class OpenIncident:
    """Live state of one incident. ``inc`` is the record written to disk; the rest is working memory."""

    __slots__ = ("inc", "first_t", "last_t", "last_crash_t", "context", "head", "tail", "bodies", "tail_bodies",
                 "stale", "analyzed_at", "resumed", "new_lines", "version", "closed")

    def __init__(self, inc: Incident, t: float, context: bytes, tail_keep: int) -> None:
        self.inc = inc
        self.first_t = t
        self.last_t = t
        self.last_crash_t = t
        self.context = context  # joined context lines, fixed at open
        self.head: list[bytes] = []  # first crash lines (up to the cap minus tail_keep)
        self.tail: deque[bytes] = deque(maxlen=tail_keep)  # last crash lines once the head is full
        self.bodies: list[str] = []
        self.tail_bodies: deque[str] = deque(maxlen=tail_keep)
        self.stale = True  # the report does not reflect every attached line yet
        self.analyzed_at = float("-inf")
        self.resumed = False
        self.new_lines = 0
        self.version = 0  # bumped on every change; the writer compares it
        self.closed = False

    def crash_lines(self) -> list[bytes]:
        out = list(self.head)
        if self.inc.lines_cut:
            out.append(b"---- sylog: %d crash lines cut here (per-incident cap) ----\n" % self.inc.lines_cut)
        out.extend(self.tail)
        return out

    def all_bodies(self) -> list[str]:
        return self.bodies + list(self.tail_bodies) if self.tail_bodies else self.bodies


class _Host(ContextRing):
    """A host's state machine; it IS its context ring (one object per host, and ``feed`` appends to the ring's
    raw tail inline — the cheapest thing Python can do per message)."""

    __slots__ = ("open", "seen", "booting", "boot_t", "max_ts", "clean", "crashed", "last_t", "release")

    def __init__(self) -> None:
        super().__init__()
        self.open: OpenIncident | None = None
        self.seen = False  # any line since the last boot (or since we started listening)
        self.booting = False
        self.boot_t = 0.0
        self.max_ts = 0.0  # largest printk time since the last boot
        self.clean = False  # a clean shutdown was announced since the last boot
        self.crashed = False  # an incident that explains a reboot happened since the last boot
        self.last_t = 0.0
        self.release: str | None = None  # kernel release last seen (banner or report): the one that died


Sink = Callable[[str, OpenIncident], None]


class Correlator:
    """Per-host state machines. ``feed`` for every message, ``tick(now)`` a few times a second."""

    def __init__(self, sink: Sink | None = None, *, quiet: float = 30.0, context_lines: int = 200,
                 refresh_interval: float = 0.5, max_lines: int = 5000, tail_keep: int = 200,
                 ring_bytes: int = DEFAULT_MAX_BYTES, ring_budget: int = RING_BUDGET, max_hosts: int = MAX_HOSTS,
                 max_open: float = 3600.0, detector: Any = None, inline_pack: bool = True,
                 id_factory: Callable[[float], str] | None = None, raw_budget: int = RAW_RING_BUDGET) -> None:
        self.sink: Sink = sink or (lambda ev, rec: None)
        self.quiet = quiet
        self.context_lines = context_lines
        self.refresh_interval = refresh_interval
        self.max_lines = max(max_lines, 2)
        self.tail_keep = max(1, min(tail_keep, self.max_lines // 2))
        self.ring_bytes = ring_bytes
        self.ring_budget = ring_budget
        self.max_hosts = max_hosts
        self._ring_cap = ring_bytes
        self.raw_budget = raw_budget
        self._line_avg = 200.0  # running mean bytes per context line (for the raw budget estimate)
        # Sealed context blocks waiting to be deflated: inline (inline_pack) or by the engine on a worker thread.
        self.inline_pack = inline_pack
        self.pending_blocks: list[tuple[ContextRing, list]] = []
        self.sealed = 0  # blocks sealed so far (one per BLOCK_LINES lines of a host): the engine's load gauge
        self.max_open = max_open
        self.det = detector if detector is not None else default_detector()
        self.cpu_clock: Callable[[], float] = time.perf_counter  # for the per-tick analysis budget only
        self._cont = getattr(self.det, "is_crash_continuation", None)
        self.shutdown_filter = clean_shutdown_filter(self.det)
        self._shutdown_apps = self.shutdown_filter[0]
        self._ids: set[str] = set()  # IDs issued in the current second (IDs differ in their second otherwise)
        self._id_sec = -1
        self._id_factory = id_factory or self._new_id
        self.hosts: dict[str, _Host] = {}
        self.open: dict[str, OpenIncident] = {}  # host -> its open incident
        self.counters = {"kernel_lines": 0, "incidents_opened": 0, "incidents_closed": 0, "lines_cut": 0,
                         "unclean_reboots": 0, "analyze_errors": 0, "detector_errors": 0, "hosts_forgotten": 0}

    # --- input ------------------------------------------------------------------------------------------------

    def feed(self, host: str, recv_time: float, msg: Any, line: bytes) -> None:
        st = self.hosts.get(host)
        if st is None:
            st = self._new_host(host)
        if msg.facility == 0 or msg.app_name == "kernel":
            try:
                self._kernel(st, host, recv_time, msg, line)
            except Exception:  # a detector bug must never cost the line or the server
                self.counters["detector_errors"] += 1
        elif msg.app_name in self._shutdown_apps:
            try:
                if self.det.is_clean_shutdown(msg):
                    st.clean = True
            except Exception:
                self.counters["detector_errors"] += 1
        # ContextRing.append, inlined (timeline lines always end in one newline: format_line's contract).
        tail = st._tail
        tail += line
        n = st._tail_n = st._tail_n + 1
        if n >= BLOCK_LINES or len(line) >= BIG_LINE:
            self._seal(st)
        st.seen = True
        st.last_t = recv_time

    def feed_run(self, host: str, recv_time: float, lines: bytes, n: int, clean: bool = False) -> None:
        """``n`` ordinary (non-kernel) timeline lines of ``host`` at once, joined: what :meth:`feed` does for each
        of them (they only go into the context ring), for one dict lookup and one copy. ``clean``: one of them
        announced a clean shutdown (:func:`clean_shutdown_filter` said so)."""
        st = self.hosts.get(host)
        if st is None:
            st = self._new_host(host)
        if clean:
            st.clean = True
        tail = st._tail
        tail += lines
        k = st._tail_n = st._tail_n + n
        if k >= BLOCK_LINES or len(lines) >= BIG_LINE:
            self._seal(st)
        st.seen = True
        st.last_t = recv_time

    def _seal(self, st: _Host) -> None:
        self.sealed += 1
        blk = st._seal(self.context_lines, self._ring_cap)
        size = len(blk[1])
        nl = blk[0]
        avg = self._line_avg = self._line_avg + (size / nl - self._line_avg) * 0.01
        if size <= nl * RAW_LINE_MAX and len(self.hosts) * (self.context_lines + BLOCK_LINES) * avg <= self.raw_budget:
            return  # fits the raw budget: the block stays raw (read as is by ContextRing.lines; if the budget is
            # exceeded later, packing this ring's next block packs its older raw ones first, in order)
        if self.inline_pack or len(self.pending_blocks) >= MAX_PENDING_BLOCKS:
            # (also when ticks lag behind a flood: raw blocks piling up would cost more memory than the rings)
            st.packed(blk, pack(blk[1]), self.context_lines, self._ring_cap)
        else:
            self.pending_blocks.append((st, blk))

    def _new_id(self, t: float) -> str:
        if int(t) != self._id_sec:
            self._id_sec = int(t)
            self._ids.clear()
        return new_id(t, self._ids)

    def _new_host(self, host: str) -> _Host:
        st = self.hosts[host] = _Host()
        n = len(self.hosts)
        self._ring_cap = max(MIN_RING_BYTES, min(self.ring_bytes, self.ring_budget // n))
        return st

    def take_pending_blocks(self) -> list[tuple[ContextRing, list]]:
        """Sealed blocks to deflate (``ring.pack(block[1])``) and install with :meth:`install_packed`."""
        jobs, self.pending_blocks = self.pending_blocks, []
        return jobs

    def install_packed(self, jobs: list[tuple[ContextRing, list]], packed: list[bytes]) -> None:
        for (ring, blk), data in zip(jobs, packed):
            ring.packed(blk, data, self.context_lines, self._ring_cap)

    def _forget_hosts(self) -> None:
        """Bound the host table: drop the longest-silent tenth of hosts that have no open incident."""
        idle = sorted((st.last_t, h) for h, st in self.hosts.items() if st.open is None)
        for _, h in idle[: max(1, len(self.hosts) // 10)]:
            st = self.hosts.pop(h)
            st.clear()
            self.counters["hosts_forgotten"] += 1

    def _kernel(self, st: _Host, host: str, t: float, msg: Any, line: bytes) -> None:
        self.counters["kernel_lines"] += 1
        det = self.det
        pl = det.split_printk(msg.msg)
        body = pl.body
        ts = pl.ts
        rec = st.open
        if rec is not None and self._expired(rec, t):
            self._close(st, rec, "restart" if rec.resumed and not rec.new_lines else "quiet")
            rec = None
        # A new boot?
        if st.booting and ((ts is not None and ts >= BOOTING_TS) or t - st.boot_t >= BOOTING_WALL):
            st.booting = False
        if not st.booting and (det.is_boot_marker(body) or (
                ts is not None and ts < BOOT_TS_LOW and st.max_ts >= BOOT_TS_HIGH)):
            self._new_boot(st, host, t, msg, line, body)
            rec = None
            return
        if ts is not None and ts > st.max_ts:
            st.max_ts = ts
        if det.is_clean_shutdown(msg):
            st.clean = True
        hit = det.classify(body)
        if hit is not None:
            if rec is None:
                self._open(st, host, t, hit, body, line, msg)  # report lines are the raw texts: their caller
                # ids ([T123]/[C2]) let analyze() keep interleaved tasks apart
            else:
                self._join(rec, t, hit, msg.msg, line)
        elif rec is not None:
            cont = self._cont
            crashy = cont is None or bool(cont(body))
            self._attach(rec, t, msg.msg, line, crashy)

    # --- incident life ----------------------------------------------------------------------------------------

    def _open(self, st: _Host, host: str, t: float, hit: Any, body: str, line: bytes, msg: Any) -> None:
        kind = hit.kind
        ctx = st.lines(self.context_lines)
        iid = self._id_factory(t)
        self._ids.add(iid)
        stamp = rfc3339(t)
        inc = Incident(id=iid, host=host, kind=kind, kinds=[kind], fatal=_is_fatal(hit), state="open",
                       first_seen=stamp, last_seen=stamp, source=_source(msg), trigger=body,
                       context_lines=len(ctx), title=body.strip()[:200])
        rec = OpenIncident(inc, t, b"".join(ctx), self.tail_keep)
        self._append(rec, msg.msg, line)
        st.open = rec
        self.open[host] = rec
        self.counters["incidents_opened"] += 1
        if kind in DIE_KINDS or inc.fatal:
            st.crashed = True
        self._analyze(rec, t)
        self.sink("opened", rec)

    def _join(self, rec: OpenIncident, t: float, hit: Any, body: str, line: bytes) -> None:
        inc = rec.inc
        if hit.kind not in inc.kinds:
            inc.kinds.append(hit.kind)
        if _is_fatal(hit):
            inc.fatal = True
        st = self.hosts.get(inc.host)
        if st is not None and (hit.kind in DIE_KINDS or inc.fatal):
            st.crashed = True
        self._attach(rec, t, body, line, True)

    def _attach(self, rec: OpenIncident, t: float, body: str, line: bytes, crashy: bool) -> None:
        self._append(rec, body, line)
        rec.last_t = t
        if crashy:
            rec.last_crash_t = t
        rec.inc.last_seen = rfc3339(t)
        rec.stale = True
        rec.new_lines += 1
        rec.version += 1

    def _append(self, rec: OpenIncident, body: str, line: bytes) -> None:
        inc = rec.inc
        inc.lines += 1
        if len(rec.head) < self.max_lines - self.tail_keep:
            rec.head.append(line)
            rec.bodies.append(body)
        else:
            if len(rec.tail) == rec.tail.maxlen:
                inc.lines_cut += 1
                self.counters["lines_cut"] += 1
            rec.tail.append(line)
            rec.tail_bodies.append(body)

    def _expired(self, rec: OpenIncident, now: float) -> bool:
        return now - rec.last_crash_t >= self.quiet or now - rec.first_t >= self.max_open

    def _close(self, st: _Host | None, rec: OpenIncident, reason: str) -> None:
        if rec.closed:
            return
        rec.closed = True
        inc = rec.inc
        if rec.stale:
            self._analyze(rec, rec.last_t)
        inc.state = "closed"
        inc.closed_reason = reason
        rec.version += 1
        if st is not None and st.open is rec:
            st.open = None
        if self.open.get(inc.host) is rec:
            del self.open[inc.host]
        self.counters["incidents_closed"] += 1
        self.sink("closed", rec)

    def _new_boot(self, st: _Host, host: str, t: float, msg: Any, line: bytes, body: str) -> None:
        rec = st.open
        if rec is not None:
            self._close(st, rec, "reboot")
        elif st.seen and not st.clean and not st.crashed:
            self._unclean(st, host, t, msg, line, body)
        if body.startswith("Linux version "):
            parts = body.split(None, 3)
            if len(parts) > 2:
                st.release = parts[2]
        st.booting = True
        st.boot_t = t
        st.max_ts = 0.0
        st.clean = False
        st.crashed = False
        st.seen = False

    def _unclean(self, st: _Host, host: str, t: float, msg: Any, line: bytes, body: str) -> None:
        ctx = st.lines(self.context_lines)
        iid = self._id_factory(st.last_t or t)
        self._ids.add(iid)
        inc = Incident(id=iid, host=host, kind="unclean-reboot", kinds=["unclean-reboot"], fatal=False,
                       state="open", first_seen=rfc3339(st.last_t or t), last_seen=rfc3339(t), source=_source(msg),
                       trigger=body, context_lines=len(ctx), title=UNCLEAN_TITLE)
        rec = OpenIncident(inc, st.last_t or t, b"".join(ctx), self.tail_keep)
        rec.last_t = t
        self._append(rec, msg.msg, line)
        self.counters["incidents_opened"] += 1
        self.counters["unclean_reboots"] += 1
        self._analyze(rec, t)
        if st.release:  # the release that was running before the silence, not the one now booting
            inc.kernel_release = st.release
        inc.title = UNCLEAN_TITLE
        inc.function = None
        inc.module = None
        inc.frames = []
        inc.signature = _fallback_signature("unclean-reboot", UNCLEAN_TITLE)
        self.sink("opened", rec)
        self._close(None, rec, "unclean-reboot")

    def _analyze(self, rec: OpenIncident, now: float) -> None:
        """Recompute title/function/signature... from every kept body (bounded by the caller's rate)."""
        inc = rec.inc
        rec.stale = False
        rec.analyzed_at = now
        rec.version += 1
        try:
            rep = self.det.analyze(inc.kind, rec.all_bodies())
        except Exception:
            self.counters["analyze_errors"] += 1
            rep = None
        if rep is not None:
            for f in REPORT_FIELDS:
                v = getattr(rep, f, None)
                if f in ("cpu", "pid"):
                    v = _int_or_none(v)
                elif f == "frames":
                    v = [str(x) for x in v] if v else []
                elif v is not None and not isinstance(v, str):
                    v = str(v)
                if f in ("title", "signature") and not v:
                    continue
                setattr(inc, f, v)
        if not inc.signature:
            inc.signature = _fallback_signature(inc.kind, inc.title)
        if inc.kernel_release and inc.kind != "unclean-reboot":
            st = self.hosts.get(inc.host)
            if st is not None:
                st.release = inc.kernel_release

    # --- clock ------------------------------------------------------------------------------------------------

    def tick(self, now: float, budget: float = 0.03) -> None:
        """Close quiet incidents; refresh the report of busy ones at most every refresh_interval.

        Report analysis is pure Python on the event loop, so one tick spends at most ``budget`` CPU seconds on it:
        in a crash storm (hundreds of hosts at once) closes go first, refreshes oldest-first, the rest next tick."""
        if len(self.hosts) > self.max_hosts:
            self._forget_hosts()
        if not self.open:
            return
        cpu = self.cpu_clock
        t_end = cpu() + budget
        refresh = []
        for host, rec in list(self.open.items()):
            if self._expired(rec, now):
                if rec.stale and cpu() > t_end:
                    continue  # its final analysis does not fit in this tick: it closes in the next one
                reason = "restart" if rec.resumed and not rec.new_lines else (
                    "quiet" if now - rec.last_crash_t >= self.quiet else "max-open")
                self._close(self.hosts.get(host), rec, reason)
            elif rec.stale and now - rec.analyzed_at >= self.refresh_interval:
                refresh.append(rec)
        if refresh:
            refresh.sort(key=lambda r: r.analyzed_at)
            for rec in refresh:
                if cpu() > t_end:
                    break
                self._analyze(rec, now)
                self.sink("updated", rec)

    def close_all(self, reason: str = "shutdown") -> None:
        for host, rec in list(self.open.items()):
            self._close(self.hosts.get(host), rec, reason)

    def resume(self, inc: Incident, context: bytes, crash_lines: list[bytes], bodies: list[str],
               last_t: float) -> OpenIncident:
        """Adopt an incident that was open when sylog stopped: it stays open for ``quiet`` after ``last_t`` and
        closes with reason ``restart`` unless the host sends more."""
        st = self.hosts.get(inc.host)
        if st is None:
            st = self._new_host(inc.host)
        if st.open is not None:
            self._close(st, st.open, "restart")
        rec = OpenIncident(inc, last_t, context, self.tail_keep)
        rec.last_t = rec.last_crash_t = last_t
        for ln, b in zip(crash_lines, bodies):
            if len(rec.head) < self.max_lines - self.tail_keep:
                rec.head.append(ln)
                rec.bodies.append(b)
            else:
                rec.tail.append(ln)
                rec.tail_bodies.append(b)
        rec.stale = False
        rec.resumed = True
        self._ids.add(inc.id)
        st.open = rec
        st.seen = True
        if inc.kind in DIE_KINDS or inc.fatal:
            st.crashed = True
        self.open[inc.host] = rec
        return rec

    # --- introspection ----------------------------------------------------------------------------------------

    def ring_bytes_total(self) -> int:
        return sum(h.nbytes() for h in self.hosts.values())


def _is_fatal(hit: Any) -> bool:
    return bool(getattr(hit, "fatal", False)) or getattr(hit, "kind", None) == "panic"


def _source(msg: Any) -> str:
    src = getattr(msg, "source", None)
    if src in ("syslog", "netconsole", "vmcore"):
        return src
    return "netconsole" if getattr(msg, "msgid", None) == "netconsole" else "syslog"


def _int_or_none(v: Any) -> int | None:
    if v is None or isinstance(v, bool):
        return None
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def _fallback_signature(kind: str, title: str) -> str:
    return hashlib.sha1(f"{kind}\n{title}".encode("utf-8", "surrogateescape")).hexdigest()[:16]

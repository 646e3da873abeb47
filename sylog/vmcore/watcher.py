"""Asyncio shell: scan the vmcore dirs at start-up and every interval, off the event loop.

An observer of the server like the incident engine (``tick(now)``, ``await aclose()``; ``feed = None``, so the
pipeline never calls it per message):
``tick`` starts a scan when one is due and none is running. The scan (directory listing, dump headers, dmesg
analysis, incident file writes) runs in a one-thread executor; back on the loop, links to incidents the incident
engine still holds in memory are handed to ``engine.update_incident`` so the engine's next write carries them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from sylog.vmcore import scan as vscan

log = logging.getLogger("sylog.vmcore")


class VmcoreWatcher:
    """Tick-only observer (``feed = None``): ``tick(now)`` starts due scans, ``await aclose()`` waits."""

    def __init__(self, data_dir: str, dirs: list[str], *, interval: float = 30.0, window: float = 7200.0,
                 quiet: float = 30.0, engine: Any = None, detector: Any = None,
                 clock: Callable[[], float] = time.time, tz: str = "local", settle: float = 300.0) -> None:
        self.data_dir = data_dir
        self.dirs = list(dirs)
        self.interval = max(0.05, float(interval))
        self.window = window
        self.quiet = quiet
        self.engine = engine
        self.detector = detector
        self.clock = clock
        self.tz = tz
        self.settle = settle  # seconds a dump must be old before a guess (time / dump-only) links it
        self._next = 0.0  # scan at the first tick (start-up)
        self._inflight: asyncio.Future | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._closed = False
        self._logged: set[tuple[str, str]] = set()
        self.scans = 0
        self.counters = {"vmcore_scans": 0, "vmcore_linked": 0, "vmcore_created": 0, "vmcore_pending": 0,
                         "vmcore_errors": 0, "vmcore_unresolved": 0, "vmcore_missing_marked": 0,
                         "vmcore_deferred": 0}
        self.results: list[vscan.LinkResult] = []  # the last scan's (for tests and stats)
        self._cache: dict = {}  # dumps that cannot be linked as they are: not re-read until they change
        self._settled: dict = {}  # incident files judged for good by mark_missing: not decoded again

    @classmethod
    def from_config(cls, cfg: Any, *, engine: Any = None, data_dir: Any = None, **kw: Any) -> "VmcoreWatcher":
        v = cfg.vmcore
        kw.setdefault("settle", getattr(v, "settle", 300.0))
        return cls(str(data_dir or cfg.data_dir), list(v.dirs), interval=v.interval, window=v.window,
                   quiet=cfg.incidents.quiet, engine=engine, **kw)

    feed = None  # tick-only observer: the pipeline does not call it per message

    # --- engine cooperation (loop thread) -------------------------------------------------------------------------

    def _in_memory(self, host: str, iid: str) -> bool:
        """Executor thread asks: does the engine still hold this incident? (a read of two dicts; racy by nature,
        so a True only defers the link to the loop thread, where it is decided again)."""
        eng = self.engine
        if eng is None:
            return False
        try:
            rec = eng.corr.open.get(host)
            if rec is not None and rec.inc.id == iid:
                return True
            return iid in eng._dirty
        except AttributeError:
            return False

    def tick(self, now: float | None = None) -> None:
        if self._closed or not self.dirs:
            return
        now = self.clock() if now is None else now
        if now < self._next or (self._inflight is not None and not self._inflight.done()):
            return
        self._next = now + self.interval
        loop = asyncio.get_running_loop()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sylog-vmcore")
        fut = loop.run_in_executor(self._executor, self._scan_blocking, now)
        fut.add_done_callback(self._scanned)
        self._inflight = fut

    def _scan_blocking(self, now: float) -> tuple[list[vscan.LinkResult], list[str]]:
        for d in self.dirs:
            ok = os.path.isdir(d) and os.access(d, os.R_OK | os.X_OK)
            if not ok and ("dir", d) not in self._logged:
                self._logged.add(("dir", d))
                log.warning("vmcore: cannot read vmcore dir %s (missing or no permission); will keep looking", d)
            elif ok:
                self._logged.discard(("dir", d))
        res = vscan.scan(self.data_dir, self.dirs, window=self.window, quiet=self.quiet, now=now,
                         detector=self.detector, in_memory=self._in_memory, tz=self.tz,
                         cache=self._cache, settle=self.settle)
        marked = vscan.mark_missing(self.data_dir, window=self.window, now=now, in_memory=self._in_memory,
                                    cache=self._settled)
        return res, marked

    def _scanned(self, fut: asyncio.Future) -> None:
        if fut.cancelled():
            return
        exc = fut.exception()
        self.scans += 1
        self.counters["vmcore_scans"] += 1
        if exc is not None:
            self.counters["vmcore_errors"] += 1
            log.error("vmcore scan failed: %s", exc)
            return
        res, marked = fut.result()
        self.results = res
        self.counters["vmcore_missing_marked"] += len(marked)
        for iid in marked:
            log.warning("vmcore: fatal incident %s got no dump within %.0fs: is kdump working on that host?",
                        iid, self.window)
        for r in res:
            if r.status in ("linked", "created"):
                self.counters["vmcore_" + r.status] += 1
                log.info("vmcore: %s %s -> incident %s (host %s, matched by %s)", r.status, r.dir, r.incident_id,
                         r.host, r.matched_by)
                if r.incident is not None:
                    self._announce(r.incident)
            elif r.status == "deferred":
                self._hand_to_engine(r)
            elif r.status in ("pending", "unresolved", "error"):
                if r.status == "unresolved":
                    self.counters["vmcore_unresolved"] += 1
                elif r.status == "error":
                    self.counters["vmcore_errors"] += 1
                else:
                    self.counters["vmcore_pending"] += 1
                if (r.dir, r.status) not in self._logged:
                    self._logged.add((r.dir, r.status))
                    (log.info if r.status == "pending" else log.warning)("vmcore: %s: %s", r.dir, r.message)

    def _hand_to_engine(self, r: vscan.LinkResult) -> None:
        """The incident is still open in the engine: give it the vmcore there (loop thread, no race)."""
        eng = self.engine
        if eng is None or not r.incident_id or not r.host:
            return
        extra: dict[str, Any] = {}
        rec = eng.corr.open.get(r.host) if hasattr(eng, "corr") else None
        if rec is not None and rec.inc.id == r.incident_id and rec.inc.vmcore:
            return  # it got another dump meanwhile: one incident, one dump
        if rec is not None and rec.inc.id == r.incident_id and "panic" not in rec.inc.kinds:
            extra["kinds"] = [*rec.inc.kinds, "panic"]  # kdump ran: the kernel panicked
        ok = eng.update_incident(r.host, r.incident_id, vmcore=r.vmcore, vmcore_missing=False, fatal=True, **extra)
        if not ok:
            return  # it closed meanwhile: the next scan links it through its file
        self.counters["vmcore_deferred"] += 1
        rec = eng.corr.open.get(r.host) if hasattr(eng, "corr") else None
        if rec is not None and rec.inc.id == r.incident_id:
            self._announce(rec.inc)
        self.counters["vmcore_linked"] += 1
        log.info("vmcore: linked %s -> open incident %s (host %s, matched by %s)", r.dir, r.incident_id, r.host,
                 r.matched_by)
        if self._executor is not None and not self._closed:
            asyncio.get_running_loop().run_in_executor(self._executor, vscan.record_deferred, self.data_dir, r)

    def _announce(self, inc: Any) -> None:
        """Tell the engine's listeners (alert hooks) that an incident got its vmcore: event ``vmcore``."""
        for fn in list(getattr(self.engine, "listeners", None) or ()):
            try:
                fn("vmcore", inc)
            except Exception:  # a hook must not break the watcher
                log.exception("vmcore listener failed")

    async def scan_now(self) -> list[vscan.LinkResult]:
        """Run a scan now and wait for it (tests, SIGHUP)."""
        if self._inflight is not None and not self._inflight.done():
            try:
                await self._inflight
            except Exception:
                pass
        self._next = 0.0
        self.tick(self.clock())
        if self._inflight is not None:
            try:
                await self._inflight
            except Exception:
                pass
        return self.results

    async def aclose(self) -> None:
        self._closed = True
        if self._inflight is not None:
            try:
                await self._inflight
            except Exception:
                pass
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    def stats(self) -> dict[str, int]:
        return dict(self.counters)

"""The asyncio-facing incident observer the server registers.

``feed`` (sync, cheap) hands every message to the sans-IO correlator; ``tick(now)`` closes quiet incidents and sends
every incident that changed since the last tick to disk in ONE executor hop (a dedicated single thread, so writes of
one incident never race and never queue behind other work); ``aclose()`` persists open incidents as ``open`` (a
restart resumes or closes them) and waits for the last write.

Latency: a trigger emits ``opened`` and schedules a write for right after the current read batch (``call_soon``).
The FIRST version of a new incident is published there, on the loop: temp file + rename without fsync (a few
page-cache syscalls, at most ``FAST_MAX`` incidents per kick), so it is visible in a few ms even when an fsync
takes hundreds of ms under heavy timeline writing, and never waits for the writer thread, the GIL or another
incident's write in flight. The writer thread then fsyncs those files and their directory (``sync_batch``) before
listeners hear about them: listeners still only learn of incidents that are durably on disk. Every later version
is written by the writer thread, fsync before rename. Measured under 100k msg/s background TCP load on a busy
2-core machine: the time from receipt to a visible JSON fell from up to 1 s (fsync behind another incident's
fsync) to a few ms. A failed write (ENOSPC, EIO) is counted and retried with backoff; the incident stays in
memory meanwhile (bounded by ``max_pending``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from sylog.incidents.correlator import Correlator, OpenIncident
from sylog.incidents.model import Incident, encode, parse_rfc3339
from sylog.incidents.ring import BLOCK_LINES, pack
from sylog.incidents.store import IncidentStore, separator

log = logging.getLogger("sylog.incidents")

# New incidents published on the loop per flush: two file creations + renames, 0.5-1.3 ms each on this VM's ext4
# (measured), so a crash storm stalls the loop at most ~10 ms; the rest of a storm takes the durable thread path.
FAST_MAX = 8
# When a burst of ingest ends (more than BURST_LINES context lines a tick, then fewer than QUIET_LINES), glibc's
# malloc_trim(0) runs on the ring-pack thread: it hands back to the OS the free pages the burst left in malloc's
# heaps (the timeline backlog, read buffers, deflate buffers). Measured with 10,000 hosts at rest after an
# ingest: 160 -> 127 MB RSS. It takes a few ms and drops the GIL; under steady load it does not run (the pages
# would only be faulted in again).
BURST_LINES = 2000
QUIET_LINES = 200

Listener = Callable[[str, Incident], None]


class IncidentEngine:
    """Observer: ``feed(host, recv_time, msg, line)``, ``tick(now)``, ``await aclose()``."""

    def __init__(self, data_dir: str, *, quiet: float = 30.0, context_lines: int = 200,
                 refresh_interval: float = 0.5, detector: Any = None, clock: Callable[[], float] = time.time,
                 max_pending: int = 10000, recover: bool = True, **correlator_kw: Any) -> None:
        self.store = IncidentStore(data_dir)
        self.clock = clock
        correlator_kw.setdefault("inline_pack", False)  # context blocks are deflated on a worker thread
        self.corr = Correlator(self._on_event, quiet=quiet, context_lines=context_lines,
                               refresh_interval=refresh_interval, detector=detector, **correlator_kw)
        self.feed = self.corr.feed  # the hot path: no extra Python frame per message
        self.feed_run = self.corr.feed_run  # ... or per run of ordinary lines (sylog.server.digest)
        self.shutdown_filter = self.corr.shutdown_filter
        self.max_pending = max_pending
        self._dirty: dict[str, OpenIncident] = {}  # id -> record to write at the next tick
        self._fresh: dict[str, None] = {}  # ids (in order) opened and never written: published on the loop (see module doc)
        self._unsynced: list[tuple] = []  # snapshots published without fsync: the writer thread syncs them next
        self._events: dict[str, list[str]] = {}  # id -> events not yet announced to listeners
        self._inflight: asyncio.Future | None = None
        self._writing: dict[str, OpenIncident] = {}  # id -> record whose snapshot is being written right now
        self._kick_pending = False
        self._executor: ThreadPoolExecutor | None = None
        self._packer: ThreadPoolExecutor | None = None
        self._packing: asyncio.Future | None = None
        self._retry_at = 0.0
        self._backoff = 0.0
        self._sealed_seen = 0  # correlator.sealed at the last tick: how busy ingest is (16 lines a seal)
        self._burst = False
        self.listeners: list[Listener] = []
        self.counters = {"writes": 0, "write_errors": 0, "write_batches": 0, "pending_dropped": 0, "published": 0,
                         "recovered_resumed": 0, "recovered_closed": 0, "recover_unreadable": 0}
        if recover:
            self._recover(clock())

    @classmethod
    def from_config(cls, cfg: Any, data_dir: Any = None, **kw: Any) -> "IncidentEngine":
        """From a ``sylog.config.Config`` (incidents.quiet, context_lines, refresh_interval, data_dir)."""
        ic = cfg.incidents
        return cls(str(data_dir or cfg.data_dir), quiet=ic.quiet, context_lines=ic.context_lines,
                   refresh_interval=ic.refresh_interval, **kw)

    # --- events from the correlator ---------------------------------------------------------------------------

    def _on_event(self, event: str, rec: OpenIncident) -> None:
        iid = rec.inc.id
        self._dirty[iid] = rec
        if event != "updated":
            self._events.setdefault(iid, []).append(event)
            if event == "opened":
                self._fresh[iid] = None
                self._schedule_kick()
        if len(self._dirty) > self.max_pending:  # disk gone for long: keep the newest, count the rest
            old = next(iter(self._dirty))
            if old != iid:
                self._dirty.pop(old, None)
                self._events.pop(old, None)
                self._fresh.pop(old, None)
                self.counters["pending_dropped"] += 1

    def _snapshot(self, rec: OpenIncident) -> tuple[OpenIncident, str, str, bytes, bytes, list[str]]:
        inc = rec.inc
        jp, lp = self.store.paths(inc.host, inc.id)
        inc.path = str(jp)
        inc.log_path = str(lp)
        lb = b"".join([rec.context, separator(inc.id, inc.context_lines), *rec.crash_lines()])
        return rec, inc.host, inc.id, encode(inc), lb, self._events.pop(inc.id, [])

    # --- clock ------------------------------------------------------------------------------------------------

    def tick(self, now: float | None = None) -> None:
        now = self.clock() if now is None else now
        self.corr.tick(now)
        if self.corr.pending_blocks:
            self._pack()
        self._flush(now)
        sealed = self.corr.sealed
        lines = (sealed - self._sealed_seen) * BLOCK_LINES
        self._sealed_seen = sealed
        if lines > BURST_LINES:
            self._burst = True
        elif lines < QUIET_LINES and self._burst:
            self._burst = False
            self._trim_memory()

    def _kick(self) -> None:
        self._kick_pending = False
        self._flush(self.clock())

    def _schedule_kick(self) -> None:
        """Write soon (after the current read batch), not at the next tick: a new trigger reaches disk in a few
        ms instead of up to a tick interval later."""
        if self._kick_pending:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._kick_pending = True
        loop.call_soon(self._kick)

    def _flush(self, now: float) -> None:
        """Publish new incidents at once (loop), then snapshot every changed one and hand them to the writer
        thread in one hop (with the fsyncs the published ones still need)."""
        if (not self._dirty and not self._unsynced) or now < self._retry_at:
            return
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if self._fresh:
            if loop is not None:
                self._publish()
            else:
                self._fresh.clear()  # no loop (tools, tests): the synchronous durable write below is as fast
        if self._inflight is not None and not self._inflight.done():
            return  # one batch at a time; the next tick takes what piled up
        batch = [(*self._snapshot(r), False) for r in self._dirty.values()]
        if self._unsynced:
            writing = {b[2] for b in batch}  # a full durable write supersedes a bare fsync of the same incident
            for u in self._unsynced:
                if u[2] in writing:
                    next(b for b in batch if b[2] == u[2])[5][:0] = u[5]  # its events, in order
                else:
                    batch.append(u)
            self._unsynced = []
        self._writing = dict(self._dirty)
        self._dirty.clear()
        self._fresh.clear()  # new incidents not published above are in this durable batch
        if loop is None:
            self._done(batch, self._write(batch), now)
            return
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sylog-incidents")
        fut = loop.run_in_executor(self._executor, self._write, batch)
        fut.add_done_callback(lambda f: self._done(batch, _outcome(f, batch), self.clock()))
        self._inflight = fut

    def _pack(self) -> None:
        """Deflate the context blocks sealed since the last tick in one worker-thread hop (zlib drops the GIL)."""
        if self._packing is not None and not self._packing.done():
            return
        jobs = self.corr.take_pending_blocks()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.corr.install_packed(jobs, _pack_all([b[1] for _, b in jobs]))
            return
        if self._packer is None:
            self._packer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sylog-ringpack")
        fut = loop.run_in_executor(self._packer, _pack_all, [b[1] for _, b in jobs])

        def done(f: asyncio.Future) -> None:
            if not f.cancelled() and f.exception() is None:
                self.corr.install_packed(jobs, f.result())
            else:  # keep them raw-but-correct; try again next tick
                self.corr.pending_blocks.extend(jobs)

        fut.add_done_callback(done)
        self._packing = fut

    def _publish(self) -> None:
        """Loop thread: write the first version of up to FAST_MAX new incidents without fsync (visible now; the
        next writer-thread batch fsyncs them). A failure leaves them to the ordinary durable path."""
        ids = [i for i in self._fresh if i in self._dirty][:FAST_MAX]
        for i in ids:
            del self._fresh[i]
        if not ids:
            return
        snaps = [self._snapshot(self._dirty[i]) for i in ids]
        try:
            failed = {iid for _, iid, _ in self.store.write_batch([(h, i, jb, lb) for _, h, i, jb, lb, _ in snaps],
                                                                   durable=False)}
        except Exception:  # e.g. a store stand-in without durable=: the thread path writes them all
            failed = set(ids)
        for snap in snaps:
            rec, iid = snap[0], snap[2]
            if iid in failed:
                self._events.setdefault(iid, [])[:0] = snap[5]
                continue
            if self._dirty.get(iid) is rec:
                del self._dirty[iid]
            self._unsynced.append((*snap, True))
            self.counters["published"] += 1

    def _trim_memory(self) -> None:
        """Give free malloc pages back to the OS, off the loop (see BURST_LINES); nothing without glibc."""
        if _malloc_trim is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if self._packer is None:
            self._packer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sylog-ringpack")
        loop.run_in_executor(self._packer, _malloc_trim, 0)

    def _write(self, batch: list) -> list[tuple[str, BaseException]]:
        """Executor thread: incident files are written (and published ones fsynced) here and only here, except
        the first version of a new incident (:meth:`_publish`)."""
        failed = self.store.write_batch([(h, i, jb, lb) for _, h, i, jb, lb, _, synced in batch if not synced])
        keys = [(h, i) for _, h, i, _, _, _, synced in batch if synced]
        if keys:
            failed = [*failed, *self.store.sync_batch(keys)]
        return [(iid, e) for _, iid, e in failed]

    def _done(self, batch: list, failed: list[tuple[str, BaseException]], now: float) -> None:
        """Loop thread: count, re-queue failures, tell listeners about incidents now on disk."""
        bad = {iid for iid, _ in failed}
        self._writing = {}
        self.counters["write_batches"] += 1
        self.counters["writes"] += len(batch) - len(bad)
        if failed:
            self.counters["write_errors"] += len(failed)
            self._backoff = min(max(self._backoff * 2, 0.25), 5.0)
            self._retry_at = now + self._backoff
            log.warning("incident write failed for %d incident(s), retrying in %.2fs: %s", len(failed),
                        self._backoff, failed[0][1])
        else:
            self._backoff = 0.0
            if any(self._events.get(i) for i in self._dirty):  # triggers that came during this write
                self._schedule_kick()
        for rec, _, iid, _, _, events, _ in batch:
            if iid in bad:
                if iid not in self._dirty:
                    self._dirty[iid] = rec  # retried as an ordinary durable write (a failed fsync too)
                self._events.setdefault(iid, [])[:0] = events
                continue
            for ev in events:
                for fn in self.listeners:
                    try:
                        fn(ev, rec.inc)
                    except Exception:  # an alert hook must not break ingestion
                        log.exception("incident listener failed")

    async def aclose(self) -> None:
        """Persist open incidents as open (a restart resumes them) and wait for the files."""
        for rec in list(self.corr.open.values()):
            if rec.stale:
                self.corr._analyze(rec, self.clock())
            self._dirty[rec.inc.id] = rec
        for _ in range(3):
            if self._inflight is not None:
                try:
                    await self._inflight
                except Exception:
                    pass
                self._inflight = None
            if not self._dirty and not self._unsynced:
                break
            self._retry_at = 0.0
            self.tick(self.clock())
        if self._inflight is not None:
            try:
                await self._inflight
            except Exception:
                pass
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        if self._packer is not None:
            self._packer.shutdown(wait=False, cancel_futures=True)
            self._packer = None
        self.store.close()

    def flush_sync(self) -> None:
        """Write everything pending now, in this thread (tests, tools without a loop)."""
        if self._dirty or self._unsynced:
            batch = [(*self._snapshot(r), False) for r in self._dirty.values()]
            batch += [u for u in self._unsynced if u[2] not in self._dirty]
            self._unsynced = []
            self._fresh.clear()
            self._dirty.clear()
            self._done(batch, self._write(batch), self.clock())

    # --- recovery ---------------------------------------------------------------------------------------------

    def _recover(self, now: float) -> None:
        items, bad = self.store.load_open()
        self.counters["recover_unreadable"] = bad
        for inc, ctx, crash in items:
            last = parse_rfc3339(inc.last_seen) or now
            if now - last >= self.corr.quiet:
                inc.state = "closed"
                inc.closed_reason = "restart"
                jp, _ = self.store.paths(inc.host, inc.id)
                inc.path = str(jp)
                try:
                    self.store.write(inc.host, inc.id, encode(inc), None)
                    self.counters["recovered_closed"] += 1
                except OSError as e:
                    log.warning("cannot close recovered incident %s: %s", inc.id, e)
                continue
            bodies = [_body_of(ln) for ln in crash]
            self.corr.resume(inc, ctx, crash, bodies, last)
            self.counters["recovered_resumed"] += 1
        if items:
            log.info("incidents: recovered %d open incident(s): %d resumed, %d closed", len(items),
                     self.counters["recovered_resumed"], self.counters["recovered_closed"])

    # --- for other parts of sylog (vmcore linker, stats) ------------------------------------------------------

    def update_incident(self, host: str, iid: str, **fields: Any) -> bool:
        """Set fields (e.g. ``vmcore=...``) of an incident the engine still holds (open, or waiting for / in the
        middle of its write): the engine's next write carries them. False when it does not hold it: then the
        files are the truth and the caller updates them itself (the engine will not write that incident again)."""
        rec = self._dirty.get(iid) or self._writing.get(iid) or self.corr.open.get(host)
        if rec is None or rec.inc.id != iid:
            return False
        for k, v in fields.items():
            setattr(rec.inc, k, v)
        rec.version += 1
        self._on_event("updated", rec)
        return True

    def stats(self) -> dict[str, int]:
        out = dict(self.corr.counters)
        out.update(self.counters)
        out["incidents_open"] = len(self.corr.open)
        out["incidents_pending_write"] = len(self._dirty)
        out["hosts_tracked"] = len(self.corr.hosts)
        return out


def _find_malloc_trim() -> Callable[[int], int] | None:
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6").malloc_trim  # a foreign call: ctypes releases the GIL around it
    except (OSError, AttributeError):
        return None


_malloc_trim = _find_malloc_trim()


def _pack_all(datas: list) -> list[bytes]:
    return [pack(d) for d in datas]


def _outcome(fut: asyncio.Future, batch: list) -> list[tuple[str, BaseException]]:
    if fut.cancelled():
        return [(b[2], RuntimeError("write cancelled")) for b in batch]
    exc = fut.exception()
    return [(b[2], exc) for b in batch] if exc is not None else fut.result()


def _body_of(line: bytes) -> str:
    """Best-effort message text of a stored timeline line (``TIME HOST FAC.SEV TAG MSG``), for re-analysis of a
    resumed incident (analyze takes raw texts, printk prefix included)."""
    parts = line.rstrip(b"\n").split(b" ", 4)
    return (parts[4] if len(parts) == 5 else parts[-1]).decode("utf-8", "surrogateescape")

"""The per-message path: digest (parse -> fold host -> format line) -> ingest (timeline writer -> observers).

Two halves (``sylog.server.digest`` says why): the stateless :class:`~sylog.server.digest.Digester` and
:meth:`Pipeline.ingest`, which owns the per-host state (the timeline writer's queues, the incident engine). In one
process :meth:`Pipeline.process` runs both; with ingest workers (``sylog.server.workers``) the workers digest and
this process only ingests their batches. The shell hands over a whole batch (every frame of one TCP read with its
peer address, or every UDP datagram read in one wake with one peer per datagram: :meth:`Pipeline.process_datagrams`)
and one receive time, so the clock is read and the time stamp formatted once per batch, not per message. Nothing
here does I/O.

Observers (the incident engine is one) see every accepted message::

    observer.feed(host: str, recv_time: float, msg: Message, line: bytes) -> None   # per message, must be cheap
    observer.feed_run(host, recv_time, lines: bytes, n: int, clean: bool) -> None   # optional: n ordinary lines
    observer.tick(now: float) -> None                                             # ~every 100 ms
    await observer.aclose()                                                       # once, at shutdown

An observer with ``feed_run`` gets ordinary (non-kernel) lines as runs and ``feed`` only for kernel lines; it may
name the ordinary messages whose ``clean`` bit it wants in ``shutdown_filter``
(:class:`~sylog.incidents.correlator.ShutdownFilter`). While any
observer has only ``feed``, every message goes to every observer's ``feed`` (and ingest workers are not used).
An observer that raises is counted (``observer_errors``) and logged once per distinct error; the message is
already stored and the server goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from sylog.server.digest import Digested, Digester
from sylog.syslog.message import Message
from sylog.syslog.parse import parse as lenient_parse
from sylog.timeline.format import TimeCache, format_with_stamp

log = logging.getLogger("sylog.server")

ParseFn = Callable[[bytes], Message]


class Observer(Protocol):
    def feed(self, host: str, recv_time: float, msg: Message, line: bytes) -> None: ...

    def tick(self, now: float) -> None: ...

    async def aclose(self) -> None: ...


class Pipeline:
    """Frames in, timeline lines and observer calls out."""

    def __init__(self, writer: Any, counters: Any, observers: Iterable[Observer] = (),
                 parse: ParseFn | None = None) -> None:
        self.writer = writer
        self.counters = counters
        self.observers: list[Observer] = []
        self.run_observers: list[Any] = []  # observers with feed_run (all of them, or runs are off)
        self.all_observers: list[Any] = []  # ticked and closed; ``feed = None`` ones are tick-only (vmcore watcher)
        self.peer_listeners: list[Callable[[str, str], None]] = []  # once per batch: (peer, host of its last message)
        self._parse = parse
        self.digester = Digester(counters, parse=parse)
        for ob in observers:
            self.add_observer(ob)
        self.dedup: Any = None  # sylog.server.dedup.KernelDedup when netconsole listens (kernel lines only)
        self._tc = TimeCache()
        self._last_error: str | None = None

    @property
    def runs(self) -> bool:
        """Ordinary lines travel as runs (every feeding observer has ``feed_run``): ingest workers may be used."""
        return self.digester.runs

    def add_observer(self, ob: Observer) -> None:
        self.all_observers.append(ob)
        if getattr(ob, "feed", None) is not None:
            self.observers.append(ob)
        note = getattr(ob, "note_peer", None)
        if note is not None:
            self.peer_listeners.append(note)
        runs = all(getattr(o, "feed_run", None) is not None for o in self.observers)
        self.run_observers = list(self.observers) if runs else []
        shutdown = next((f for o in self.run_observers if (f := getattr(o, "shutdown_filter", None))), None)
        self.digester = Digester(self.counters, parse=self._parse, runs=runs, shutdown=shutdown)

    def process(self, frames: list[bytes], peer: str, now: float) -> None:
        """Handle every frame of one read from one peer (a TCP/TLS read); never raises."""
        self.ingest(self.digester.digest(frames, peer, now))

    def process_datagrams(self, frames: list[bytes], peers: list[str], now: float) -> None:
        """Handle a batch of UDP datagrams read in one wake, ``peers[i]`` the sender of ``frames[i]``: one clock
        read, one time stamp and one writer queue lookup for the whole batch (the per-datagram call cost is what
        made UDP lose messages). Peer listeners hear each distinct peer once, with the host of its last message.
        Never raises."""
        self.ingest(self.digester.digest(frames, peers, now))

    def ingest(self, batch: Digested, source: str = "syslog") -> None:
        """The stateful half: queue each item's lines for the timeline writer (per-host order kept) and feed the
        observers - runs to ``feed_run``, message items to ``feed`` (a raw frame is parsed here first). Never
        raises."""
        now = batch.now
        _, day = self._tc.stamp(now)
        queue = self.writer.queue(day)  # host -> lines of this day; valid for this whole (synchronous) batch
        observers = self.observers
        run_observers = self.run_observers
        dedup = self.dedup
        c = self.counters
        nlines = 0
        for it in batch.items:
            host = it[0]
            lines = queue.get(host)
            if lines is None:
                lines = queue[host] = []
            if len(it) == 4:  # a run of ordinary lines
                lines.append(it[1])
                nlines += it[2]
                for ob in run_observers:
                    try:
                        ob.feed_run(host, now, it[1], it[2], it[3])
                    except Exception as e:
                        self._observer_error(ob, e)
                continue
            line = it[1]
            lines.append(line)
            nlines += 1
            msg = it[2]
            if type(msg) is not Message:  # a raw frame from an ingest worker: parsed again, same receive time
                try:
                    msg = lenient_parse(msg, now=now)
                except Exception as e:
                    self._internal_error(e, msg)
                    continue
            if not observers:
                continue
            if dedup is not None and (source != "syslog" or msg.facility == 0 or msg.app_name == "kernel") and \
                    dedup.duplicate(host, msg.msg, source, now):
                c.kernel_dups += 1  # the other path (netconsole / syslog) brought this line already
                continue
            for ob in observers:
                try:
                    ob.feed(host, now, msg, line)
                except Exception as e:
                    self._observer_error(ob, e)
        self.writer.added(nlines)
        if batch.peers and self.peer_listeners:
            for peer, host in batch.peers.items():
                self._note_peer(peer, host)

    def _note_peer(self, peer: str, host: str) -> None:
        for fn in self.peer_listeners:
            try:
                fn(peer, host)
            except Exception as e:
                self._observer_error(fn, e)

    def process_messages(self, items: list[tuple[str, Message]], now: float) -> None:
        """Messages built by a listener itself (netconsole: no syslog to parse), each with its host already
        decided: timeline line + observers, exactly as for parsed frames. Never raises."""
        if not items:
            return
        stamp, _ = self._tc.stamp(now)
        out: list[Any] = []
        for host, msg in items:
            try:
                out.append((host, format_with_stamp(stamp, host, msg), msg))
            except Exception as e:
                self._internal_error(e, msg.msg.encode("utf-8", "surrogateescape"))
        self.counters.received += len(items)
        self.ingest(Digested(now, out, len(out), {}), source="netconsole")

    def tick(self, now: float) -> None:
        for ob in self.all_observers:
            try:
                ob.tick(now)
            except Exception as e:
                self._observer_error(ob, e)

    async def aclose(self) -> None:
        for ob in self.all_observers:
            try:
                await ob.aclose()
            except Exception as e:
                self._observer_error(ob, e)

    def _internal_error(self, e: Exception, raw: bytes) -> None:
        self.counters.internal_errors += 1
        key = f"{type(e).__name__}: {e}"
        if key != self._last_error:
            log.error("message dropped by an internal error (%s); first bytes %r", key, raw[:80])
            self._last_error = key

    def _observer_error(self, ob: Any, e: Exception) -> None:
        self.counters.observer_errors += 1
        key = f"{type(ob).__name__} {type(e).__name__}: {e}"
        if key != self._last_error:
            log.error("observer %s failed: %s: %s", type(ob).__name__, type(e).__name__, e)
            self._last_error = key

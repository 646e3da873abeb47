"""The per-message path: parse -> fold host -> format line -> timeline writer -> observers.

The shell hands over a whole batch (every frame of one TCP read with its peer address, or every UDP datagram read
in one wake with one peer per datagram: :meth:`Pipeline.process_datagrams`) and one receive time, so the clock is
read and the time stamp formatted once per batch, not per message. The loop body is plain attribute-free local
calls; nothing here does I/O. A Pipeline holds no global state, so a later
multi-core change can run one per SO_REUSEPORT worker process (timeline files are O_APPEND whole-line writes).

Observers (the incident engine is one) see every accepted message::

    observer.feed(host: str, recv_time: float, msg: Message, line: bytes) -> None   # per message, must be cheap
    observer.tick(now: float) -> None                                             # ~every 100 ms
    await observer.aclose()                                                       # once, at shutdown

An observer that raises is counted (``observer_errors``) and logged once per distinct error; the message is
already stored and the server goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from itertools import repeat
from typing import Any, Protocol

from sylog.syslog.hostnames import fold_host
from sylog.syslog.parse import parse as lenient_parse
from sylog.syslog.message import Message
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
        self.all_observers: list[Any] = []  # ticked and closed; ``feed = None`` ones are tick-only (vmcore watcher)
        self.peer_listeners: list[Callable[[str, str], None]] = []  # once per batch: (peer, host of its last message)
        for ob in observers:
            self.add_observer(ob)
        self.parse = parse or lenient_parse
        self.dedup: Any = None  # sylog.server.dedup.KernelDedup when netconsole listens (kernel lines only)
        self._tc = TimeCache()
        self._last_error: str | None = None

    def add_observer(self, ob: Observer) -> None:
        self.all_observers.append(ob)
        if getattr(ob, "feed", None) is not None:
            self.observers.append(ob)
        note = getattr(ob, "note_peer", None)
        if note is not None:
            self.peer_listeners.append(note)

    def process(self, frames: list[bytes], peer: str, now: float) -> None:
        """Handle every frame of one read from one peer (a TCP/TLS read); never raises."""
        host = self._run(frames, repeat(peer), now, None)
        if host is not None and self.peer_listeners:
            self._note_peer(peer, host)

    def process_datagrams(self, frames: list[bytes], peers: list[str], now: float) -> None:
        """Handle a batch of UDP datagrams read in one wake, ``peers[i]`` the sender of ``frames[i]``: one clock
        read, one time stamp and one writer queue lookup for the whole batch (the per-datagram call cost is what
        made UDP lose messages). Peer listeners hear each distinct peer once, with the host of its last message.
        Never raises."""
        last: dict[str, str] | None = {} if self.peer_listeners else None
        self._run(frames, peers, now, last)
        if last:
            for peer, host in last.items():
                self._note_peer(peer, host)

    def _run(self, frames: list[bytes], peers: Iterable[str], now: float, last: dict[str, str] | None) -> str | None:
        """The shared loop: parse, fold, format, queue, observe. ``last`` (when given) collects peer -> host of
        its last message. Returns the host of the last message (None: nothing stored)."""
        c = self.counters
        stamp, day = self._tc.stamp(now)
        parse = self.parse
        queue = self.writer.queue(day)  # host -> lines of this day; valid for this whole (synchronous) batch
        observers = self.observers
        dedup = self.dedup
        n5424 = n3164 = nerr = 0
        host = None
        for raw, peer in zip(frames, peers):
            try:
                msg = parse(raw)
                host = fold_host(msg.hostname, peer)
                line = format_with_stamp(stamp, host, msg)
                lines = queue.get(host)
                if lines is None:
                    queue[host] = [line]
                else:
                    lines.append(line)
            except Exception as e:  # a parser bug must cost one message, not the server
                self._internal_error(e, raw)
                nerr += 1
                continue
            if last is not None:
                last[peer] = host
            f = msg.format
            if f == "rfc5424":
                n5424 += 1
            elif f == "rfc3164":
                n3164 += 1
            if observers:
                if dedup is not None and (msg.facility == 0 or msg.app_name == "kernel") and \
                        dedup.duplicate(host, msg.msg, "syslog", now):
                    c.kernel_dups += 1  # netconsole brought this line already: stored, not fed twice
                    continue
                for ob in observers:
                    try:
                        ob.feed(host, now, msg, line)
                    except Exception as e:
                        self._observer_error(ob, e)
        n = len(frames)
        self.writer.added(n - nerr)
        c.received += n
        c.bytes += sum(map(len, frames))
        c.rfc5424 += n5424
        c.rfc3164 += n3164
        c.raw += n - n5424 - n3164 - nerr
        return host if n > nerr else None

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
        stamp, day = self._tc.stamp(now)
        queue = self.writer.queue(day)
        nerr = 0
        for host, msg in items:
            try:
                line = format_with_stamp(stamp, host, msg)
            except Exception as e:
                self._internal_error(e, msg.msg.encode("utf-8", "surrogateescape"))
                nerr += 1
                continue
            lines = queue.get(host)
            if lines is None:
                queue[host] = [line]
            else:
                lines.append(line)
            if self.dedup is not None and self.dedup.duplicate(host, msg.msg, "netconsole", now):
                self.counters.kernel_dups += 1  # syslog brought this line already
                continue
            for ob in self.observers:
                try:
                    ob.feed(host, now, msg, line)
                except Exception as e:
                    self._observer_error(ob, e)
        n = len(items)
        self.writer.added(n - nerr)
        self.counters.received += n

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

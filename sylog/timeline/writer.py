"""Batched per-host timeline writer.

``append(host, day, line)`` only puts bytes in a per-(host, day) list: no syscall, no thread hop per message.
``flush()`` hands the whole batch to ONE worker thread (a single-thread executor, so flushes never overlap and
the open-file cache needs no lock), which writes each host's lines with one ``os.write`` on an ``O_APPEND``
descriptor. Files are ``DATA/timelines/<host>/<YYYY-MM-DD>.log`` (UTC day of receipt): directories 0700, files
0600, created with those modes (``os.open``/``os.mkdir``), never chmod-ed after the fact.

Because every write is whole lines on an ``O_APPEND`` descriptor, several writers (e.g. later SO_REUSEPORT worker
processes) can append to the same file without tearing lines.

Write errors (ENOSPC, EIO, ...) never propagate: they are counted (``write_errors`` calls, ``write_failed``
lines), the descriptor is dropped so the next flush re-opens it, and the failed batches are returned by
:meth:`write_batch` so a later change can hold kernel lines and retry them when space returns.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from collections.abc import Iterator
from typing import Any

log = logging.getLogger("sylog.timeline")

_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC

Key = tuple[str, str]  # (host, day)


class _Stats:
    """Stand-in counters when the writer is used on its own."""

    written = 0
    written_bytes = 0
    write_errors = 0
    write_failed = 0


def safe_host_dir(host: str) -> bool:
    """Last line of defence: a folded host name is one plain path component."""
    return bool(host) and "/" not in host and "\0" not in host and host[0] != "." and len(host) <= 255


class TimelineWriter:
    """Collects timeline lines per (host, day) and writes them in batches."""

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        max_open_files: int = 1024,
        flush_interval: float = 0.2,
        flush_lines: int = 50_000,
        counters: Any = None,
    ) -> None:
        self.root = Path(data_dir) / "timelines"
        self.max_open_files = max(1, max_open_files)
        self.flush_interval = flush_interval
        self.flush_lines = flush_lines
        self.counters = counters if counters is not None else _Stats()
        self.pending_lines = 0
        self.last_error: str | None = None
        self._pending: dict[str, dict[str, list[bytes]]] = {}  # day -> host -> lines
        self._fds: OrderedDict[Key, int] = OrderedDict()
        self._dirs: set[str] = set()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="sylog-timeline")
        self._lock: asyncio.Lock | None = None
        self._wake: asyncio.Event | None = None
        self._closed = False
        self._reopen = False
        self.flushing_since = 0.0  # monotonic start of the write in flight (0: none)
        self.last_write_time = 0.0
        #: called (loop thread) when a flush takes the queue: the server resumes paused TCP reading from here
        #: (memory is then bounded by two batches: the one being written and the one filling)
        self.on_flushed: list[Any] = []

    # -- hot path (event loop thread) ------------------------------------------------------------------------------
    def append(self, host: str, day: str, line: bytes) -> None:
        """Queue one line; written by the next flush."""
        q = self.queue(day)
        lst = q.get(host)
        if lst is None:
            q[host] = [line]
        else:
            lst.append(line)
        self.added(1)

    def queue(self, day: str) -> dict[str, list[bytes]]:
        """The host -> lines queue of ``day``, for a caller that appends a whole batch itself (the server's
        pipeline: one lookup per read instead of per message) and then reports the count with :meth:`added`.
        Valid until the caller yields to the event loop (a flush swaps the queues)."""
        q = self._pending.get(day)
        if q is None:
            q = self._pending[day] = {}
        return q

    def added(self, n: int) -> None:
        """``n`` lines were put in a :meth:`queue`; wake the flusher early when enough are waiting."""
        before = self.pending_lines
        self.pending_lines = before + n
        if before < self.flush_lines <= before + n and self._wake is not None:
            self._wake.set()

    # -- flushing ----------------------------------------------------------------------------------------------------
    async def flush(self) -> None:
        """Write everything queued so far (one thread hop for all hosts); serialised with other flushes."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if not self._pending:
                return
            batch = self._pending
            self._pending = {}
            self.pending_lines = 0
            for cb in self.on_flushed:  # the queue is empty again: paused readers may go on while we write
                cb()
            loop = asyncio.get_running_loop()
            self.flushing_since = time.monotonic()
            try:
                await loop.run_in_executor(self._executor, self.write_batch, batch)
            finally:
                took = time.monotonic() - self.flushing_since
                self.flushing_since = 0.0
                if took > 1.0:
                    log.warning("timeline flush of %d hosts took %.1fs (writing %.1fs): disk or CPU starved",
                                sum(len(q) for q in batch.values()), took, self.last_write_time)

    async def run(self) -> None:
        """Flush at least every ``flush_interval`` (sooner when ``flush_lines`` are queued) until cancelled."""
        self._wake = asyncio.Event()
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.flush_interval)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.flush()
            except Exception:  # never let the flusher die; write_batch itself counts I/O errors
                log.exception("timeline flush failed")

    def reopen(self) -> None:
        """Close every open file before the next write (logrotate ``postrotate``: ``kill -HUP``)."""
        self._reopen = True
        if self._wake is not None:
            self._wake.set()

    async def aclose(self) -> None:
        """Final flush, then close every file."""
        if self._closed:
            return
        await self.flush()
        self._closed = True
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._close_all)
        self._executor.shutdown(wait=True)

    def close_sync(self) -> None:
        """Flush and close without an event loop (tests, emergency paths)."""
        batch, self._pending, self.pending_lines = self._pending, {}, 0
        if batch:
            self._executor.submit(self.write_batch, batch).result()
        self._executor.submit(self._close_all).result()
        self._executor.shutdown(wait=True)
        self._closed = True

    # -- worker thread -----------------------------------------------------------------------------------------------
    def write_batch(self, batch: dict[str, dict[str, list[bytes]]]) -> list[tuple[Key, bytes, int]]:
        """Write a batch ``{day: {host: lines}}`` (worker thread). Returns what could not be written:
        ``((host, day), bytes, errno)``."""
        failed: list[tuple[Key, bytes, int]] = []
        c = self.counters
        t0 = time.monotonic()
        try:
            return self._write_batch(batch, failed, c)
        finally:
            self.last_write_time = time.monotonic() - t0

    def _write_batch(self, batch: dict[str, dict[str, list[bytes]]], failed: list[tuple[Key, bytes, int]],
                     c: Any) -> list[tuple[Key, bytes, int]]:
        if self._reopen:  # SIGHUP (logrotate): let go of every file; the next write re-creates it
            self._reopen = False
            self._close_all()
            self._dirs.clear()
        for key, lines in ((k, v) for day, q in batch.items() for k, v in _keyed(day, q)):
            data = b"".join(lines)
            done = 0
            try:
                fd = self._fd(key)
                while done < len(data):
                    done += os.write(fd, data[done:] if done else data)
            except OSError as e:
                rest = data[done:]
                lost = rest.count(b"\n")
                c.write_errors += 1
                c.write_failed += lost
                c.written += len(lines) - lost
                self._note_error(key, e, lost)
                self._drop_fd(key)
                failed.append((key, rest, e.errno or 0))
                continue
            c.written += len(lines)
            c.written_bytes += len(data)
        return failed

    def _note_error(self, key: Key, e: OSError, lost: int) -> None:
        msg = f"cannot write timeline {key[0]}/{key[1]}.log: {e.strerror or e} ({lost} lines lost)"
        if msg != self.last_error:  # one log line per distinct problem, not per flush
            log.error(msg)
        self.last_error = msg

    def _fd(self, key: Key) -> int:
        fd = self._fds.get(key)
        if fd is not None:
            self._fds.move_to_end(key)
            return fd
        host, day = key
        if not safe_host_dir(host):
            raise OSError(errno.EINVAL, f"unsafe host directory name {host!r}")
        hdir = os.path.join(self.root, host)
        if host not in self._dirs:
            if not self._dirs:  # first host (or after an error/reopen): make sure the parents exist
                self._mkdir(self.root.parent)
                self._mkdir(self.root)
            self._mkdir(hdir)
            self._dirs.add(host)
        fd = os.open(os.path.join(hdir, day + ".log"), _OPEN_FLAGS, 0o600)
        self._fds[key] = fd
        while len(self._fds) > self.max_open_files:
            _, old = self._fds.popitem(last=False)
            _close(old)
        return fd

    @staticmethod
    def _mkdir(path: str | os.PathLike[str]) -> None:
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass

    def _drop_fd(self, key: Key) -> None:
        fd = self._fds.pop(key, None)
        if fd is not None:
            _close(fd)
        self._dirs.discard(key[0])  # the directory may be what vanished

    def _close_all(self) -> None:
        while self._fds:
            _, fd = self._fds.popitem()
            _close(fd)

    @property
    def open_files(self) -> int:
        return len(self._fds)


def _keyed(day: str, q: dict[str, list[bytes]]) -> Iterator[tuple[Key, list[bytes]]]:
    for host, lines in q.items():
        yield (host, day), lines


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass

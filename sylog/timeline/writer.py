"""Batched per-host timeline writer.

``append(host, day, line)`` only puts bytes in a per-(host, day) list: no syscall, no thread hop per message.
``flush()`` hands the whole batch to ONE worker thread (a single-thread executor, so flushes never overlap and
the open-file cache needs no lock), which writes each host's lines with one ``os.write`` on an ``O_APPEND``
descriptor. Files are ``DATA/timelines/<host>/<YYYY-MM-DD>.log`` (UTC day of receipt): directories 0700, files
0600, created with those modes (``os.open``/``os.mkdir``), never chmod-ed after the fact.

Because every write is whole lines on an ``O_APPEND`` descriptor, several writers (e.g. later SO_REUSEPORT worker
processes) can append to the same file without tearing lines.

Write errors (ENOSPC, EIO, EDQUOT, EROFS, ...) never propagate and never stop the server receiving. What a
failed write does to the lines of that file (the disk-full guarantee):

* lines that reached the file before the error are written (``written``);
* KERNEL lines (facility ``kern`` or tag ``kernel``: the crash lines) that did not are HELD in a bounded retry
  queue in memory (``write_retry_queued``; gauge ``write_retry_held``) and retried at every flush of their host,
  and at least every few seconds (backoff ``flush_interval`` .. ``RETRY_MAX_BACKOFF``) when the host is quiet.
  They are written, in their original order and BEFORE any newer line of the same file, as soon as a write
  succeeds (``write_retry_written``, also counted in ``written``);
* ORDINARY lines that did not reach the file are lost and counted (``write_failed``): holding them would let a
  full disk eat all memory, and they are not what a crash investigation needs;
* a line the kernel accepted only partly (a short write when the disk fills mid-line) is completed first when
  space returns, whatever its kind, so the file never gets a torn line glued to the next one;
* the queue holds at most ``retry_lines`` lines and ``retry_bytes`` bytes (config ``timeline.retry_queue_lines``
  / ``retry_queue_bytes``). When full, the oldest held line of the FILE HOLDING THE MOST is dropped
  (``write_retry_dropped``, also counted in ``write_failed``): one host spewing kernel messages cannot push out
  another host's crash trace;
* at shutdown the queue gets one last try; what still cannot be written is counted dropped and logged. A
  ``kill -9`` loses the queue (it is memory only).

So at any moment ``received = written + write_failed + write_retry_held + lines waiting for the next flush``.
Errors are logged rate-limited (one line per errno change or per ``LOG_EVERY`` seconds), and once on recovery.
Each failed write also counts ``write_errors`` (failed write attempts, retries included); the descriptor is
dropped so the next attempt re-opens the file (and re-creates a vanished directory).

Classifying a line as kernel costs nothing on the hot path: it is done only for the unwritten lines of a failed
write, from the line's own ``facility.severity`` and tag fields (:func:`is_kernel_line`).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import time
from collections import OrderedDict, deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from collections.abc import Iterator
from typing import Any

log = logging.getLogger("sylog.timeline")

_OPEN_FLAGS = os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC  # read: only the last byte, once (torn lines)
RETRY_MAX_BACKOFF = 5.0  # seconds: a quiet host's held kernel lines are retried at least this often
_PERMANENT = frozenset((errno.EINVAL, errno.ENAMETOOLONG))  # retrying cannot help (an unusable host name)
LOG_EVERY = 10.0  # seconds between repeated log lines about the same write error

Key = tuple[str, str]  # (host, day)


class _Stats:
    """Stand-in counters when the writer is used on its own."""

    written = 0
    written_bytes = 0
    write_errors = 0
    write_failed = 0
    write_retry_queued = 0
    write_retry_written = 0
    write_retry_dropped = 0
    write_retry_held = 0
    torn_lines_ended = 0


def is_kernel_line(line: bytes) -> bool:
    """A timeline line of a kernel message: facility ``kern`` or tag ``kernel`` (``Message.is_kernel``), read
    back from the line (``<time> <host> <fac>.<sev> <tag> <msg>``). Only called for lines a write could not
    store, so the hot path never pays for it."""
    parts = line.split(b" ", 4)
    if len(parts) < 4:
        return False
    tag = parts[3]
    return parts[2].startswith(b"kern.") or tag == b"kernel:" or tag.startswith(b"kernel[")


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
        retry_lines: int = 100_000,
        retry_bytes: int = 32 * 1024 * 1024,
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
        # retry queue of kernel lines a failed write could not store (worker thread only; see the module doc)
        self.retry_lines = max(0, retry_lines)
        self.retry_bytes = max(0, retry_bytes)
        self._held: dict[Key, deque[bytes]] = {}  # (host, day) -> held lines, oldest first
        self._tails: dict[Key, bytes] = {}  # (host, day) -> rest of a line the file got only partly
        self._checked: set[Key] = set()  # files whose last byte was checked on this process's first open
        self.held_lines = 0  # lines in _held (bounded by retry_lines)
        self.held_bytes = 0
        self._retry_at = 0.0  # monotonic: when quiet files' held lines may be tried again
        self._backoff = 0.0
        self._log_key: Any = None  # last logged error (errno); rate-limits the log
        self._log_at = 0.0
        self._drop_log_at = 0.0

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
        An entry may hold several whole lines (a run, ``sylog.server.digest``).
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
            if not self._pending and not self.retry_due():
                return
            batch = self._pending
            self._pending = {}
            self.pending_lines = 0
            if batch:
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

    def retry_due(self) -> bool:
        """Held lines wait and their backoff has passed (read on the loop thread; the worker sets both)."""
        return (self.held_lines > 0 or bool(self._tails)) and time.monotonic() >= self._retry_at

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
        self._retry_at = 0.0  # held kernel lines get one last try now, backoff or not
        await self.flush()
        self._closed = True
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._final_close)
        self._executor.shutdown(wait=True)

    def close_sync(self) -> None:
        """Flush and close without an event loop (tests, emergency paths)."""
        batch, self._pending, self.pending_lines = self._pending, {}, 0
        self._retry_at = 0.0
        if batch or self.retry_due():
            self._executor.submit(self.write_batch, batch).result()
        self._executor.submit(self._final_close).result()
        self._executor.shutdown(wait=True)
        self._closed = True

    # -- worker thread -----------------------------------------------------------------------------------------------
    def write_batch(self, batch: dict[str, dict[str, list[bytes]]]) -> list[tuple[Key, bytes, int]]:
        """Write a batch ``{day: {host: lines}}`` (worker thread), each file's held lines first; when the retry
        backoff has passed, also the held lines of files with nothing new. Returns what could not be written:
        ``((host, day), bytes, errno)`` (kernel lines among them are held, see the module doc)."""
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
        had_held = self.held_lines + len(self._tails)
        held_before = c.write_retry_written
        new_held = lost = 0
        for key, lines in ((k, v) for day, q in batch.items() for k, v in _keyed(day, q)):
            if had_held and (key in self._held or key in self._tails):
                if not self._write_held(key, c, failed):
                    h, f = self._fail_new(key, b"".join(lines), 0, None, c, failed)  # stays behind the held ones
                    new_held += h
                    lost += f
                    continue
            data = b"".join(lines)
            n = data.count(b"\n")  # an entry may be one line or a run of them (sylog.server.digest)
            lines.clear()  # free this host's line objects now, not after the whole batch (RSS at 10,000 hosts)
            done = 0
            try:
                fd = self._fd(key)
                while done < len(data):
                    done += os.write(fd, data[done:] if done else data)
            except OSError as e:
                h, f = self._fail_new(key, data, done, e, c, failed)
                new_held += h
                lost += f
                continue
            c.written += n
            c.written_bytes += len(data)
        if had_held and time.monotonic() >= self._retry_at:  # quiet files' held lines: retry on the backoff
            for key in [k for k in (*self._tails, *self._held) if k[1] not in batch or k[0] not in batch[k[1]]]:
                if key in self._held or key in self._tails:  # (a key can be listed twice)
                    self._write_held(key, c, failed)
        dropped = self._bound(c)
        c.write_retry_held = self.held_lines + len(self._tails)
        now = time.monotonic()
        if failed:
            self._backoff = min(max(self._backoff * 2, self.flush_interval), RETRY_MAX_BACKOFF)
            self._retry_at = now + self._backoff
            self._log_failure(failed, new_held, lost, dropped, now)
        else:
            self._backoff = 0.0
            self._retry_at = 0.0
            if self._log_key is not None:
                log.warning("timeline writes work again: %d held kernel lines written, %d still held",
                            c.write_retry_written - held_before, c.write_retry_held)
                self._log_key = None
                self.last_error = None
        return failed

    def _write_held(self, key: Key, c: Any, failed: list[tuple[Key, bytes, int]]) -> bool:
        """Write ``key``'s held lines (the partial line's rest first). True when none are left."""
        tail = self._tails.pop(key, None)
        held = self._held.pop(key, None) or deque()
        parts = ([tail] if tail else []) + list(held)
        data = b"".join(parts)
        self.held_lines -= len(held)
        self.held_bytes -= len(data) - (len(tail) if tail else 0)
        done = 0
        try:
            fd = self._fd(key)
            while done < len(data):
                done += os.write(fd, data[done:] if done else data)
        except OSError as e:
            c.write_errors += 1
            self._drop_fd(key)
            failed.append((key, data[done:], e.errno or 0))
            self.last_error = f"cannot write timeline {key[0]}/{key[1]}.log: {e.strerror or e}"
            if done == 0:  # the usual case on a full disk: put everything back as it was
                if tail:
                    self._tails[key] = tail
                if held:
                    self._hold(key, held)
                return False
            n = data[:done].count(b"\n")
            c.written += n
            c.write_retry_written += n
            c.written_bytes += done
            rest = data[done:]
            if data[done - 1:done] != b"\n":  # stopped inside a line: its rest must come first
                cut = rest.find(b"\n") + 1 or len(rest)
                self._tails[key] = rest[:cut]
                rest = rest[cut:]
            if rest:
                self._hold(key, deque(_split_lines(rest)))
            return False
        n = len(held) + (1 if tail else 0)
        c.written += n
        c.write_retry_written += n
        c.written_bytes += len(data)
        return True

    def _fail_new(self, key: Key, data: bytes, done: int, e: OSError | None, c: Any,
                  failed: list[tuple[Key, bytes, int]]) -> tuple[int, int]:
        """New lines of ``key`` from byte ``done`` on did not reach the file (``e`` None: they were not even
        tried because older held lines are still stuck): hold the kernel ones, count the rest lost. Returns
        ``(held, lost)``."""
        if e is not None:
            c.write_errors += 1
            self._drop_fd(key)
            self.last_error = f"cannot write timeline {key[0]}/{key[1]}.log: {e.strerror or e}"
            failed.append((key, data[done:], e.errno or 0))
        if done:
            n = data[:done].count(b"\n")
            c.written += n
            c.written_bytes += done
        rest = data[done:]
        if not rest:
            return 0, 0
        held_n = 0
        if done and data[done - 1:done] != b"\n":  # a short write stopped inside a line: finish it first
            cut = rest.find(b"\n") + 1 or len(rest)
            self._tails[key] = rest[:cut]
            rest = rest[cut:]
            c.write_retry_queued += 1
            held_n = 1
        keep: deque[bytes] = deque()
        lost = 0
        hold = self.retry_lines > 0 and (e is None or e.errno not in _PERMANENT)
        if rest:
            for line in _split_lines(rest):
                if hold and is_kernel_line(line):
                    keep.append(line)
                else:
                    lost += 1
        if keep:
            self._hold(key, keep)
            c.write_retry_queued += len(keep)
            held_n += len(keep)
        c.write_failed += lost
        return held_n, lost

    def _hold(self, key: Key, lines: deque[bytes]) -> None:
        """Append ``lines`` to ``key``'s held lines (after any still held: order is kept)."""
        q = self._held.get(key)
        if q is None:
            self._held[key] = lines
        else:
            q.extend(lines)
        self.held_lines += len(lines)
        self.held_bytes += sum(map(len, lines))

    def _bound(self, c: Any) -> int:
        """Drop held lines beyond ``retry_lines`` / ``retry_bytes``: the oldest of the file holding the most, so
        one host flooding kernel messages cannot push out another host's crash lines. Returns lines dropped."""
        if not self._held or (self.held_lines <= self.retry_lines and self.held_bytes <= self.retry_bytes):
            return 0
        dropped = 0
        # water-filling: level the biggest files down together (sorted once; O(files log files + drops))
        sizes = sorted(((len(q), k) for k, q in self._held.items()), key=lambda t: t[0], reverse=True)
        top = sizes[0][0]
        group = 0
        while top > 0 and (self.held_lines > self.retry_lines or self.held_bytes > self.retry_bytes):
            while group < len(sizes) and sizes[group][0] >= top:
                group += 1
            level = sizes[group][0] if group < len(sizes) else 0
            while top > level and (self.held_lines > self.retry_lines or self.held_bytes > self.retry_bytes):
                for _, key in sizes[:group]:
                    q = self._held[key]
                    if q and (self.held_lines > self.retry_lines or self.held_bytes > self.retry_bytes):
                        line = q.popleft()
                        self.held_lines -= 1
                        self.held_bytes -= len(line)
                        dropped += 1
                top -= 1
        for _, key in sizes[:group]:
            if not self._held[key]:
                del self._held[key]
        if dropped:
            c.write_retry_dropped += dropped
            c.write_failed += dropped
            now = time.monotonic()
            if now >= self._drop_log_at:
                self._drop_log_at = now + LOG_EVERY
                log.error("timeline retry queue full (%d lines, %d bytes held; limits %d / %d): dropped %d oldest "
                          "held kernel lines of the busiest files", self.held_lines, self.held_bytes,
                          self.retry_lines, self.retry_bytes, dropped)
        return dropped

    def _log_failure(self, failed: list[tuple[Key, bytes, int]], held: int, lost: int, dropped: int,
                     now: float) -> None:
        """One log line per errno change, or per LOG_EVERY seconds while the problem lasts."""
        key, _, err = failed[0]
        codes = tuple(sorted({e for _, _, e in failed}))
        if codes == self._log_key and now < self._log_at:
            return
        self._log_key = codes
        self._log_at = now + LOG_EVERY
        name = errno.errorcode.get(err, str(err))
        others = len({k for k, _, _ in failed}) - 1
        log.error("timeline write failed on %s%s: %s (%s); holding %d kernel lines for retry (%d held in all, "
                  "retry in %.1fs), %d ordinary lines lost", key[0], f" (+{others} more files)" if others else "",
                  name, os.strerror(err) if err else "?", held, self.held_lines + len(self._tails), self._backoff,
                  lost)

    def _final_close(self) -> None:
        """At shutdown: whatever is still held cannot be kept (memory only); count it and say so."""
        n = self.held_lines + len(self._tails)
        if n:
            c = self.counters
            c.write_retry_dropped += n
            c.write_failed += n
            c.write_retry_held = 0
            log.error("shutting down with %d held kernel lines that could not be written (disk full or failing): "
                      "they are lost", n)
            self._held.clear()
            self._tails.clear()
            self.held_lines = self.held_bytes = 0
        self._close_all()

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
        if key not in self._checked:
            if len(self._checked) > 65536:  # bounded: forgetting only costs a re-check (fstat) on the next open
                self._checked.clear()
            self._checked.add(key)
            if key not in self._tails:
                self._end_torn_line(fd, host, day)
        self._fds[key] = fd
        while len(self._fds) > self.max_open_files:
            _, old = self._fds.popitem(last=False)
            _close(old)
        return fd

    def _end_torn_line(self, fd: int, host: str, day: str) -> None:
        """A file this process has not written yet may end in a line cut off by a kill during a ``write()`` (or
        by a crash of the host): end that line, so the first new line is not glued onto it. One fstat per file
        and process; a failure here is left to the write that follows."""
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                os.write(fd, b"\n")
                self.counters.torn_lines_ended += 1
                log.warning("timeline %s/%s.log ended in a cut-off line (an earlier kill mid-write?): ended it",
                            host, day)
        except OSError:
            pass

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


def _split_lines(data: bytes) -> list[bytes]:
    """``data`` cut after each LF (only LF: a timeline line has no other line break, but be exact)."""
    parts = data.split(b"\n")
    out = [p + b"\n" for p in parts[:-1]]
    if parts[-1]:
        out.append(parts[-1])
    return out


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass

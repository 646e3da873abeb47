"""UDP syslog: batched reading, and kernel-first load shedding when the reader falls behind.

Why batched: an asyncio ``DatagramProtocol`` costs one Python callback and one pipeline call (clock read, time
stamp, writer queue lookup, counters) per datagram - about 13 us per message against 4-5 us on the TCP path, so
the kernel socket buffer overflowed from 50k msg/s on. :class:`UdpReader` instead watches non-blocking sockets
with ``loop.add_reader`` (asyncio and uvloop alike) and on each wake drains up to :data:`BATCH` datagrams with
``recvfrom`` in a tight loop, then hands the whole batch to :meth:`Pipeline.process_datagrams` in ONE call.
Measured and dropped: ``recvmmsg`` through ctypes (the kernel's own per-datagram cost, ~0.9 us on this VM,
dominates: read + process cost the same 6-7 us per message either way), and a reader thread with ``recvmmsg``
(every GIL re-acquisition after a syscall waits up to the 5 ms switch interval while the loop is busy, so reading
and processing serialise anyway; no gain at 200k msg/s, more code).

Why kernel-first: when messages arrive faster than the pipeline handles them, the kernel drops whatever does not
fit in the socket buffer - kernel lines (the crash traces sylog exists for) as often as sshd chatter. Reading a
datagram here costs ~1.7-2.3 us (syscall + objects) against ~4-6 us to process it, so "read everything and shed
ordinary ones in Python" spends most of a starved core on reading datagrams it then throws away (measured: 0.15
received at 200k msg/s instead of ~0.5). So the kernel sorts instead: a second socket joins the listening socket's
SO_REUSEPORT group and a classic-BPF steering program (:data:`STEER_PROGRAM`, run by the kernel per datagram, no
user-space cost) sends every datagram whose PRI is ``<0>``..``<7>`` (facility kern) to it. Each wake reads the
ordinary socket (bounded) and then the kernel socket, so kernel lines never wait behind a backlog; when the reader
is behind, only the ordinary socket's buffer overflows - dropped by the kernel at no cost to us, and counted
(``udp_kernel_drops`` covers both sockets). While the timeline writer is over its backlog limit the ordinary
socket is not read at all (like TCP back-pressure); the kernel socket always is.

Where steering is not possible (the port is shared with other processes by ``listen.reuse_port``, so the group's
socket order is not ours; or a kernel without SO_ATTACH_REUSEPORT_CBPF) the reader falls back to shedding in
Python: :class:`ShedPolicy` (sans-IO) decides from the socket buffer fill (``SO_MEMINFO``), drains hitting their
bound and the writer backlog which share of ordinary datagrams goes on; kernel ones (:func:`is_kernel_datagram`,
which also knows relayed lines tagged ``kernel``) always do; the rest are counted in ``shed_ordinary``.
"""

from __future__ import annotations

import asyncio
import logging
import operator
import os
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

from sylog.server.listeners import _denied, set_rcvbuf
from sylog.syslog.framing import Truncated, udp_frame

log = logging.getLogger("sylog.server")

#: Datagrams read per wake at most: big enough that the per-wake costs (pipeline call, time stamp, buffer level)
#: vanish per message, small enough that one wake (~5 ms of processing) does not starve timers and TCP.
BATCH = 1024
#: Datagrams read (and processed) at shutdown after the socket is closed to new wakes.
CLOSE_DRAIN = 64 * BATCH

LOG_EVERY = 10.0  # seconds: shedding start/stop is logged at most this often (it may flap under steady overload)

SO_MEMINFO = getattr(socket, "SO_MEMINFO", 55)  # Linux >= 3.19: u32[9], [0] rmem_alloc, [1] rcvbuf, [8] drops
_MEMINFO = struct.Struct("9I")

_KERNEL_PRI = frozenset(b"<%d>" % i for i in range(8))  # facility 0 (kern), any severity
_KERNEL_TAG = b" kernel"  # RFC 3164 "HOST kernel: ..." / RFC 5424 "HOST kernel PROCID" (relays that lose facility)
_KERNEL_TAG_WITHIN = 160  # bytes searched for the tag: header only, not the whole message
_STRIP = b"\r\n\0"
_ENDS_STRIP = operator.methodcaller("endswith", (b"\n", b"\r", b"\0"))

SO_ATTACH_REUSEPORT_CBPF = 51  # Linux >= 4.5


def _bpf(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k)


_LDB, _JEQ, _JGE, _JGT, _RET = 0x30, 0x15, 0x35, 0x25, 0x06  # ld b [k] (abs), jeq/jge/jgt #k, ret #k
#: Classic BPF run by the kernel for each datagram on the port (data = the UDP payload): returns the index in the
#: SO_REUSEPORT group of the socket that gets it - 1 (the kernel socket, added second) for ``<0>``..``<7>``, else 0
#: (the listening socket). A datagram shorter than 3 bytes makes the loads fail: the program then returns 0.
STEER_PROGRAM = b"".join([
    _bpf(_LDB, 0, 0, 0),     # 0: A = payload[0]
    _bpf(_JEQ, 0, 5, 0x3C),  # 1: '<' ? 2 : 7
    _bpf(_LDB, 0, 0, 2),     # 2: A = payload[2]
    _bpf(_JEQ, 0, 3, 0x3E),  # 3: '>' ? 4 : 7
    _bpf(_LDB, 0, 0, 1),     # 4: A = payload[1]
    _bpf(_JGE, 0, 1, 0x30),  # 5: >= '0' ? 6 : 7
    _bpf(_JGT, 0, 1, 0x37),  # 6: > '7' ? 7 : 8
    _bpf(_RET, 0, 0, 0),     # 7: ordinary -> socket 0
    _bpf(_RET, 0, 0, 1),     # 8: kernel -> socket 1
])


def kernel_socket(sock: socket.socket) -> socket.socket | None:
    """A second socket on ``sock``'s address that the kernel hands every facility-kern datagram (SO_REUSEPORT
    group + :data:`STEER_PROGRAM`), or None (logged) where that cannot be set up: the port is already shared with
    other processes (``listen.reuse_port``: the group's order is not ours), or the kernel refuses."""
    import ctypes

    try:
        if sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT):
            return None
    except (OSError, AttributeError):
        return None
    k: socket.socket | None = None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        k = socket.socket(sock.family, socket.SOCK_DGRAM)
        k.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if sock.family == socket.AF_INET6:
            k.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY,
                         sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY))
        set_rcvbuf(k, sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 2)  # Linux reports it doubled
        k.bind(sock.getsockname())
        prog = ctypes.create_string_buffer(STEER_PROGRAM, len(STEER_PROGRAM))
        k.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF,
                     struct.pack("@HP", len(STEER_PROGRAM) // 8, ctypes.addressof(prog)))
        k.setblocking(False)
        return k
    except OSError as e:
        log.info("UDP %s: kernel-line steering not available (%s); shedding in user space instead",
                 sock.getsockname(), e.strerror or e)
        if k is not None:
            k.close()
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 0)
        except OSError:
            pass
        return None


def is_kernel_datagram(d: bytes) -> bool:
    """A kernel line, judged from raw bytes without parsing: PRI ``<0>``..``<7>`` (facility kern), or the tag
    ``kernel`` near the start (relays that lose the facility). A false positive only spares an ordinary line."""
    return d[:3] in _KERNEL_PRI or d.find(_KERNEL_TAG, 0, _KERNEL_TAG_WITHIN) >= 0


class ShedPolicy:
    """How much ordinary traffic goes on, from how far behind the reader is (sans-IO; one call per wake).

    ``share`` is the fraction of ordinary datagrams passed on (1.0: not shedding). Under pressure (socket buffer
    at least ``high`` full, or the writer backlog over its limit) and while the buffer still fills, the share
    halves each wake down to ``min_share`` (ordinary traffic thins, never goes dark); once the buffer is below
    ``low`` it grows back by ``recover`` per wake. Kernel datagrams always pass. Without a buffer level
    (``fill`` None) pressure means ``full_wakes`` drains in a row that hit their bound.
    """

    def __init__(self, *, high: float = 0.5, low: float = 0.25, min_share: float = 1 / 32,
                 recover: float = 1 / 16, full_wakes: int = 4) -> None:
        self.high = high
        self.low = low
        self.min_share = min_share
        self.recover = recover
        self.full_wakes = full_wakes
        self.share = 1.0
        self.episodes = 0  # times shedding started (for the log)
        self._credit = 0.0
        self._prev_fill = 0.0
        self._full_streak = 0

    @property
    def shedding(self) -> bool:
        return self.share < 1.0

    def update(self, fill: float | None, full: bool, backlog: bool = False) -> float:
        """One wake's view: ``fill`` = socket buffer used/size before draining (None: unknown), ``full`` = the
        drain hit its bound, ``backlog`` = the timeline writer is over its pending limit. Returns the share."""
        self._full_streak = self._full_streak + 1 if full else 0
        if fill is None:
            pressure = self._full_streak >= self.full_wakes
            relief = not full
            rising = True
        else:
            pressure = fill >= self.high
            relief = fill < self.low
            rising = fill >= self._prev_fill
            self._prev_fill = fill
        if backlog:
            pressure, relief, rising = True, False, True
        if pressure:
            if rising:
                if self.share >= 1.0:
                    self.episodes += 1
                self.share = max(self.min_share, self.share * 0.5)
        elif relief and self.share < 1.0:
            self.share = min(1.0, self.share + self.recover)
        return self.share

    def select(self, frames: list[bytes], peers: list[str]) -> tuple[list[bytes], list[str], int]:
        """Kernel datagrams plus ``share`` of the ordinary ones (evenly spread, carried across batches); returns
        (frames, peers, how many were shed)."""
        share = self.share
        if share >= 1.0:
            return frames, peers, 0
        kf: list[bytes] = []
        kp: list[str] = []
        credit = self._credit
        shed = 0
        pri = _KERNEL_PRI
        tag = _KERNEL_TAG
        within = _KERNEL_TAG_WITHIN
        for d, p in zip(frames, peers):
            if not (d[:3] in pri or d.find(tag, 0, within) >= 0):
                credit += share
                if credit < 1.0:
                    shed += 1
                    continue
                credit -= 1.0
            kf.append(d)
            kp.append(p)
        self._credit = credit
        return kf, kp, shed



class UdpReader:
    """One UDP listening socket (plus its kernel-line socket, see the module doc) read in batches on the loop.

    Transport-like for the server: :meth:`pause_reading`, :meth:`resume_reading`, :meth:`close` (reads what is
    still queued, bounded, then closes), :meth:`is_closing`, :meth:`get_extra_info`; :meth:`inodes` for the
    kernel drop count.
    """

    def __init__(self, sock: socket.socket, pipeline: Any, counters: Any, max_message_size: int,
                 access: Any = None, deny_log: Any = None, *, max_pending_lines: int = 200_000,
                 batch: int = BATCH, steer: bool = True, policy: ShedPolicy | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.ksock = kernel_socket(sock) if steer else None  # None: one socket, shedding in Python (ShedPolicy)
        self.pipeline = pipeline
        self.writer = pipeline.writer
        self.counters = counters
        self.max_message_size = max_message_size
        # recvfrom size: one byte more than a message may have, so a cut is seen (udp_frame counts it)
        self.recv_size = max(max_message_size + 1, 2048)
        self.access = access  # sylog.server.allow.Access, its lists swapped in place by a reload; None: everyone
        self.deny_log = deny_log
        self.max_pending_lines = max_pending_lines
        self.batch = batch
        self.policy = policy or ShedPolicy()
        self.clock = clock
        self.held = False  # steering: the ordinary socket is not read while the writer is over its backlog limit
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reading = False
        self._closed = False
        self._meminfo = True  # SO_MEMINFO works here (cleared at the first failure)
        self._logged = -LOG_EVERY  # monotonic time of the last shedding log line

    @property
    def steering(self) -> bool:
        return self.ksock is not None

    def inodes(self) -> list[int]:
        """Inodes of our sockets (their kernel drop counts are in /proc/net/udp{,6})."""
        return [os.fstat(s.fileno()).st_ino for s in (self.sock, self.ksock) if s is not None and s.fileno() >= 0]

    # -- transport-like API ----------------------------------------------------------------------------------------
    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.writer.on_flushed.append(self._release)
        self.resume_reading()

    def pause_reading(self) -> None:
        if self._reading and self._loop is not None:
            if not self.held:
                self._loop.remove_reader(self.sock.fileno())
            if self.ksock is not None:
                self._loop.remove_reader(self.ksock.fileno())
        self._reading = False

    def resume_reading(self) -> None:
        if not self._reading and not self._closed and self._loop is not None:
            if not self.held:
                self._loop.add_reader(self.sock.fileno(), self._on_readable)
            if self.ksock is not None:
                self._loop.add_reader(self.ksock.fileno(), self._on_readable)
            self._reading = True

    def is_closing(self) -> bool:
        return self._closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "socket":
            return self.sock
        if name == "sockname":
            return self.sock.getsockname()
        return default

    def close(self) -> None:
        """Stop watching; deliver what the sockets still hold (bounded), then close them."""
        if self._closed:
            return
        self.pause_reading()
        self._closed = True
        self.held = False
        for _ in range(CLOSE_DRAIN // self.batch):
            if self.read_batch() < self.batch:
                break
        self.sock.close()
        if self.ksock is not None:
            self.ksock.close()
        try:
            self.writer.on_flushed.remove(self._release)
        except ValueError:
            pass

    def _hold(self) -> None:
        """Steering, writer over its backlog limit: stop reading ordinary datagrams (the kernel socket goes on)."""
        if not self.held:
            self.held = True
            if self._reading and self._loop is not None:
                self._loop.remove_reader(self.sock.fileno())
            if time.monotonic() - self._logged > LOG_EVERY:
                self._logged = time.monotonic()
                log.warning("timeline writer behind (%d lines pending): ordinary UDP datagrams wait in the socket "
                            "buffer (overflow is counted in udp_kernel_drops); kernel lines are still read",
                            self.writer.pending_lines)

    def _release(self) -> None:
        """After a flush: read ordinary datagrams again once the backlog is below half the limit."""
        if self.held and self.writer.pending_lines < self.max_pending_lines // 2:
            self.held = False
            if self._reading and self._loop is not None and not self._closed:
                self._loop.add_reader(self.sock.fileno(), self._on_readable)

    # -- reading ---------------------------------------------------------------------------------------------------
    def _fill(self) -> float | None:
        """How full the socket receive buffer is (0..1), or None where SO_MEMINFO is not available."""
        if not self._meminfo:
            return None
        try:
            info = _MEMINFO.unpack(self.sock.getsockopt(socket.SOL_SOCKET, SO_MEMINFO, _MEMINFO.size))
        except (OSError, struct.error):
            self._meminfo = False
            return None
        return info[0] / info[1] if info[1] else None

    def _on_readable(self) -> None:
        try:
            self.read_batch()
        except Exception:  # never let a bug stop UDP reading; the loop would drop the reader
            self.counters.internal_errors += 1
            log.exception("UDP batch failed")

    def _recv(self, sock: socket.socket, datagrams: list[bytes], peers: list[str], limit: int) -> int:
        """Append up to ``limit`` datagrams from ``sock`` (and their senders); returns how many."""
        n0 = len(datagrams)
        ap = datagrams.append
        pp = peers.append
        rf = sock.recvfrom
        size = self.recv_size
        try:
            for _ in range(limit):
                d, a = rf(size)
                ap(d)
                pp(a[0] if a else "unknown")
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:  # e.g. ICMP errors reported on the socket: counted, reading goes on next wake
            self.counters.udp_errors += 1
        return len(datagrams) - n0

    def read_batch(self) -> int:
        """One wake: up to ``batch`` ordinary datagrams, then (steering) up to ``batch`` kernel ones - ordinary
        first, so a host's ordinary lines queued before its kernel lines are not overtaken when we keep up - and
        one pipeline call for all. Returns how many datagrams were read."""
        datagrams: list[bytes] = []
        peers: list[str] = []
        if self.ksock is None:
            fill = self._fill()
            n = self._recv(self.sock, datagrams, peers, self.batch)
            if n:
                self.handle(datagrams, peers, fill, n >= self.batch)
            return n
        n = 0 if self.held else self._recv(self.sock, datagrams, peers, self.batch)
        n += self._recv(self.ksock, datagrams, peers, self.batch)
        if n:
            self.handle(datagrams, peers)
        return n

    # -- processing ------------------------------------------------------------------------------------------------
    def handle(self, datagrams: list[bytes], senders: list[str], fill: float | None = None,
               full: bool = False) -> None:
        """One wake's datagrams and their senders: allowlist (once per distinct peer), framing, shedding (without
        steering), then ONE pipeline call. Split from the socket reads so tests can drive it."""
        c = self.counters
        n = len(datagrams)
        c.udp_datagrams += n
        frames: list[bytes] = []
        peers: list[str] = []
        fa = frames.append
        pa = peers.append
        maxsize = self.max_message_size
        strip = _STRIP
        empty = trunc = denied = 0
        access = self.access
        open_ = access is None or access.lists.get("udp") is None
        lens = list(map(len, datagrams))
        if n and open_ and min(lens) > 0 and max(lens) <= maxsize and not any(map(_ENDS_STRIP, datagrams)):
            frames, peers = datagrams, senders  # the common case, checked at C speed: nothing to strip or cut
        elif open_:
            for d, peer in zip(datagrams, senders):
                if d and d[-1] not in strip and len(d) <= maxsize:  # the common case: nothing to strip or cut
                    fa(d)
                    pa(peer)
                    continue
                f = udp_frame(d, maxsize)
                if f is None:
                    empty += 1
                    continue
                if type(f) is Truncated:
                    trunc += 1
                fa(f)
                pa(peer)
        else:
            ok: dict[str, bool] = {}  # peer -> allowed, decided once per batch
            deny_log = self.deny_log
            for d, peer in zip(datagrams, senders):
                allowed = ok.get(peer)
                if allowed is None:
                    allowed = ok[peer] = not _denied(access, deny_log, "udp", peer)
                if not allowed:
                    denied += 1
                    continue
                f = udp_frame(d, maxsize)
                if f is None:
                    empty += 1
                    continue
                if type(f) is Truncated:
                    trunc += 1
                fa(f)
                pa(peer)
        if denied:
            c.denied_datagrams += denied
        c.udp_messages += n - denied
        if empty:
            c.udp_empty += empty
        if trunc:
            c.truncated += trunc
        if self.ksock is None:
            self._shed_step(fill, full)
            if self.policy.shedding:
                frames, peers, shed = self.policy.select(frames, peers)
                c.shed_ordinary += shed
        if frames:
            self.pipeline.process_datagrams(frames, peers, self.clock())
        if self.ksock is not None and self.writer.pending_lines >= self.max_pending_lines:
            self._hold()

    def _shed_step(self, fill: float | None, full: bool) -> None:
        pol = self.policy
        was = pol.shedding
        pol.update(fill, full, self.writer.pending_lines >= self.max_pending_lines)
        if pol.shedding != was and time.monotonic() - self._logged > LOG_EVERY:
            self._logged = time.monotonic()
            if was:
                log.info("UDP reader caught up: no more shedding (shed_ordinary=%d so far)",
                         self.counters.shed_ordinary)
            else:
                log.warning("UDP reader behind (socket buffer %s full, %d lines waiting for the writer): passing "
                            "kernel lines and a share of ordinary ones; shed ones are counted (shed_ordinary)",
                            "?" if fill is None else f"{fill:.0%}", self.writer.pending_lines)

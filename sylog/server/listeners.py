"""Socket listeners: thin asyncio protocols that hand bytes to the sans-IO deframer and frames to the pipeline.

TCP uses :class:`asyncio.BufferedProtocol` with ONE preallocated receive buffer shared by every connection: the
loop calls ``get_buffer``, ``recv_into`` and ``buffer_updated`` back to back for one connection, so the buffer is
free again before any other connection reads (no per-connection 256 KiB, no per-read allocation but the one
``bytes`` copy the frames are sliced from).
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import socket
import time
from typing import Any

from sylog.syslog.framing import TcpDeframer

log = logging.getLogger("sylog.server")

# One read: ~800 messages (~4 ms of work). A connection that becomes readable (a host sending its crash) waits
# behind one read of every busy connection ahead of it in epoll's ready list: measured under 100k msg/s on a busy
# 2-core machine, 256 KiB reads (1,600 messages, 10-50 ms each when CPU-starved) made that wait 100-400 ms, and
# the crash-latency tail with it. 64 KiB reads cost 5-7 % more CPU at 1,000 hosts (A/B, 3 pairs: more callbacks
# and GIL hand-overs to the writer thread); 128 KiB measured the same as 256 KiB and halves the wait.
READ_BUFFER = 128 * 1024
# Messages handled in one event-loop turn before busy connections yield (see TcpConnection.buffer_updated):
# bounds how long timers and a newly readable connection wait (was 10000: turns of up to ~80 ms of work).
TURN_BUDGET = 2000


class BindError(Exception):
    """A listener could not be bound; the message is the one line shown to the operator."""


def parse_address(spec: str) -> tuple[str, int]:
    """``ADDR:PORT``, ``[V6]:PORT``, ``:PORT`` or ``PORT`` -> (host, port). Raises ValueError naming the problem."""
    s = spec.strip()
    if s.startswith("["):
        host, sep, port = s[1:].partition("]:")
        if not sep:
            raise ValueError(f"{spec!r}: expected [IPV6]:PORT")
    elif s.count(":") == 1:
        host, _, port = s.partition(":")
    elif s.isdigit():
        host, port = "", s
    else:
        raise ValueError(f"{spec!r}: expected ADDR:PORT (IPv6 as [::]:514)")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{spec!r}: port must be 0-65535")
    return host or "0.0.0.0", int(port)


def _denied(access: Any, deny_log: Any, kind: str, peer: str) -> bool:
    """The allowlist check every listener makes: True (logged at a bounded rate) when ``peer`` may not send to a
    listener of ``kind``. ``access`` None: everyone may."""
    if access is None:
        return False
    allow = access.lists[kind]
    if allow is None or allow.allowed(peer):
        return False
    if deny_log is not None:
        deny_log.denied(kind, peer)
    return True


def format_address(addr: tuple[Any, ...]) -> str:
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _family(host: str) -> tuple[int, str]:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        if not infos:
            raise BindError(f"cannot resolve listen address {host!r}") from None
        fam, *_, sa = infos[0]
        return fam, sa[0]
    return (socket.AF_INET6 if ip.version == 6 else socket.AF_INET), host


def _bind_error(kind: str, spec: str, e: OSError) -> BindError:
    host, port = parse_address(spec)
    if e.errno == errno.EACCES:
        return BindError(
            f"cannot bind {kind} {spec}: permission denied - ports below 1024 need root or CAP_NET_BIND_SERVICE "
            f"(setcap cap_net_bind_service=+ep on the python binary, or AmbientCapabilities=CAP_NET_BIND_SERVICE "
            f"in the systemd unit), or use a port above 1023, e.g. --udp 0.0.0.0:5514 --tcp 0.0.0.0:5514")
    if e.errno == errno.EADDRINUSE:
        return BindError(f"cannot bind {kind} {spec}: address already in use - another syslog daemon (rsyslog, "
                         f"syslog-ng, another sylog) holds port {port}; stop it or choose another port")
    if e.errno == errno.EADDRNOTAVAIL:
        return BindError(f"cannot bind {kind} {spec}: address not available on this machine")
    return BindError(f"cannot bind {kind} {spec}: {e.strerror or e}")


def make_socket(kind: str, spec: str, *, rcvbuf: int = 0, reuse_port: bool = False) -> socket.socket:
    """A bound (TCP: listening) non-blocking socket, or BindError with an operator-friendly line."""
    try:
        host, port = parse_address(spec)
    except ValueError as e:
        raise BindError(f"bad {kind} listen address {e}") from None
    fam, host = _family(host)
    sock = socket.socket(fam, socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM)
    try:
        if fam == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)  # [::] and 0.0.0.0 can coexist
        if kind == "tcp":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if rcvbuf:
            set_rcvbuf(sock, rcvbuf)
        sock.bind((host, port))
        if kind == "tcp":
            sock.listen(4096)
        sock.setblocking(False)
    except OSError as e:
        sock.close()
        raise _bind_error(kind, spec, e) from None
    return sock


def set_rcvbuf(sock: socket.socket, size: int) -> int:
    """Ask for ``size`` bytes of receive buffer (SO_RCVBUFFORCE first: root may exceed net.core.rmem_max);
    return what the kernel granted (as getsockopt reports it, i.e. Linux's doubled figure)."""
    force = getattr(socket, "SO_RCVBUFFORCE", 33)
    try:
        sock.setsockopt(socket.SOL_SOCKET, force, size)
    except OSError:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
        except OSError:
            pass
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)


def udp_kernel_drops(inodes: set[int]) -> int:
    """Datagrams the kernel dropped on OUR UDP sockets (receive buffer full): the ``drops`` column of
    /proc/net/udp{,6} for their inodes. 0 where /proc is unavailable."""
    total = 0
    for path in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(path, "rb") as f:
                next(f, None)
                for line in f:
                    parts = line.split()
                    if len(parts) >= 13 and int(parts[9]) in inodes:
                        total += int(parts[12])
        except (OSError, ValueError):
            continue
    return total


def _peer_ip(addr: Any) -> str:
    if isinstance(addr, tuple) and addr:
        return str(addr[0])
    return "unknown"


class ConnGate:
    """The connection slots every stream listener (TCP and TLS) shares: one cap on open connections in total and
    one per sender address, so neither a flood nor a single peer can exhaust file descriptors (accept() failing
    with EMFILE would refuse everyone, the crashing hosts included). Beyond a cap a new connection is closed at
    once and counted (``conn_refused`` / ``conn_refused_per_peer``); refusals are logged at most once per
    ``interval`` seconds with the count since."""

    __slots__ = ("max_connections", "max_per_peer", "counters", "open", "per_peer", "interval", "clock", "_next",
                 "_pending")

    def __init__(self, max_connections: int, max_per_peer: int, counters: Any, *, interval: float = 10.0,
                 clock: Any = time.monotonic) -> None:
        self.max_connections = max_connections
        self.max_per_peer = max_per_peer  # 0: no per-peer cap
        self.counters = counters
        self.open = 0
        self.per_peer: dict[str, int] = {}
        self.interval = interval
        self.clock = clock
        self._next = 0.0
        self._pending = 0

    def admit(self, peer: str) -> bool:
        """Take a slot for ``peer``; False (counted, logged at a bounded rate) when a cap is reached."""
        if self.open >= self.max_connections:
            self.counters.conn_refused += 1
            self._refused(peer, f"limits.max_connections={self.max_connections} connections open")
            return False
        n = self.per_peer.get(peer, 0)
        if self.max_per_peer and n >= self.max_per_peer:
            self.counters.conn_refused_per_peer += 1
            self._refused(peer, f"limits.max_connections_per_peer={self.max_per_peer} open from this address")
            return False
        self.per_peer[peer] = n + 1
        self.open += 1
        return True

    def release(self, peer: str) -> None:
        self.open -= 1
        n = self.per_peer.get(peer, 0) - 1
        if n > 0:
            self.per_peer[peer] = n
        else:
            self.per_peer.pop(peer, None)

    def _refused(self, peer: str, why: str) -> None:
        self._pending += 1
        now = self.clock()
        if now < self._next:
            return
        log.warning("refusing connection from %s: %s (%d refused since the last such line)", peer, why,
                    self._pending)
        self._pending = 0
        self._next = now + self.interval


class TcpServerState:
    """What every TCP connection shares: pipeline, counters, limits, the open-connection set, the read buffer."""

    def __init__(self, pipeline: Any, counters: Any, *, max_message_size: int, max_connections: int,
                 idle_timeout: float, max_pending_lines: int = 200_000, kind: str = "tcp", access: Any = None,
                 deny_log: Any = None, peer_check: Any = None, gate: ConnGate | None = None,
                 frame_timeout: float = 0.0) -> None:
        # slots shared with the other stream listeners (app.py passes one gate to TCP and TLS)
        self.gate = gate if gate is not None else ConnGate(max_connections, 0, counters)
        self.frame_timeout = frame_timeout  # seconds an incomplete frame may stay pending (0: no bound)
        self.kind = kind  # "tcp" or "tls": which allowlist applies, which counter counts the messages
        self.access = access  # sylog.server.allow.Access (swapped on reload) or None: everyone
        self.deny_log = deny_log
        self.peer_check = peer_check  # TLS: callable(transport) -> None when the client may stay, else the reason
        self.pipeline = pipeline
        self.writer = pipeline.writer
        self.max_pending_lines = max_pending_lines
        self.paused = False  # back-pressure on: heavy connections held (see over_limit)
        # Back-pressure is fair: a connection that sent more than ``light`` messages since the last sweep (about a
        # second) is held; lighter ones (a host sending its crash among a flood) are still read until the
        # backlog reaches ``hard``, where every connection is held (memory stays bounded).
        self.light = max(100, max_pending_lines // 100)
        self.hard = 2 * max_pending_lines
        self.turn_frames = 0  # messages handled in this event-loop turn (fairness budget)
        self.turn_reset_pending = False
        self.counters = counters
        self.max_message_size = max_message_size
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.conns: set[TcpConnection] = set()
        self.buffer = bytearray(READ_BUFFER)
        self.view = memoryview(self.buffer)
        self._last_error: str | None = None

    def sweep_idle(self, now: float) -> int:
        """Close connections silent for longer than idle_timeout, and those whose incomplete frame is older than
        frame_timeout (slowloris: a byte a second resets the idle clock, never this one); called periodically,
        O(connections). The pending bytes are delivered first (``close``): nothing the client sent is lost."""
        if self.paused:  # a paused connection is silent (and its frame incomplete) because of us
            return 0
        for c in self.conns:  # shares count messages since the last sweep: who is heavy right now
            c.share = 0
        n = 0
        if self.idle_timeout > 0:
            limit = now - self.idle_timeout
            stale = [c for c in self.conns if c.last < limit]
            for c in stale:
                self.counters.conn_idle_closed += 1
                c.close()
            n += len(stale)
        if self.frame_timeout > 0:
            limit = now - self.frame_timeout
            slow = [c for c in self.conns if 0.0 < c.frame_since < limit]
            for c in slow:
                self.counters.conn_frame_timeouts += 1
                c.close()
            if slow:  # one line per sweep (at most one a second), however many
                log.warning("closed %d %s connection(s) holding a frame incomplete for over %g s "
                            "(limits.frame_timeout), e.g. from %s; the partial frames are stored",
                            len(slow), self.kind.upper(), self.frame_timeout, slow[0].peer)
            n += len(slow)
        return n

    def new_turn(self) -> None:
        self.turn_frames = 0
        self.turn_reset_pending = False

    def over_limit(self, conn: TcpConnection) -> None:
        """Back-pressure: the writer is behind (``conn`` just added to the backlog). Hold the heavy connections
        (senders wait in TCP, nothing is lost); light ones go on being read up to the hard bound."""
        if not self.paused:
            self.paused = True
            self.counters.tcp_pauses += 1
            log.warning("timeline writer behind (%d lines pending): pausing %s reading from the busiest senders",
                        self.writer.pending_lines, self.kind.upper())
            light = self.light
            for c in self.conns:
                if c.share > light:
                    c.hold()
        if self.writer.pending_lines >= self.hard:
            self.pause_all()
        elif conn.share > self.light:
            conn.hold()

    def pause_all(self) -> None:
        """Hold every connection (the backlog reached the hard bound)."""
        if not self.paused:
            self.paused = True
            self.counters.tcp_pauses += 1
        for c in self.conns:
            c.hold()

    def maybe_resume(self) -> None:
        """After a flush: resume reading once the backlog is below half the limit."""
        if self.paused and self.writer.pending_lines < self.max_pending_lines // 2:
            self.paused = False
            now = time.monotonic()
            for c in self.conns:
                c.last = now
                c.share = 0
                if c.frame_since:  # its frame waited on us, not on the sender
                    c.frame_since = now
                if c.held:
                    c.held = False
                    if c.transport is not None and not c.transport.is_closing() and not c._yielded:
                        c.transport.resume_reading()

    def close_all(self) -> None:
        """Shutdown: deliver each connection's unterminated tail, then close it."""
        for c in list(self.conns):
            c.close()

    def framing_error(self, peer: str, why: str) -> None:
        self.counters.framing_errors += 1
        if why != self._last_error:
            log.warning("closing TCP connection from %s: framing error: %s", peer, why)
            self._last_error = why


class TcpConnection(asyncio.BufferedProtocol):
    """One TCP client: bytes -> deframer -> pipeline."""

    __slots__ = ("st", "transport", "peer", "deframer", "last", "nread", "frame_since", "share", "held",
                 "_admitted", "_done", "_yielded")

    def __init__(self, st: TcpServerState) -> None:
        self.st = st
        self.transport: asyncio.Transport | None = None
        self.peer = "unknown"
        self.deframer: TcpDeframer | None = None
        self.last = time.monotonic()
        self.nread = 0  # bytes read on this connection
        self.frame_since = 0.0  # monotonic time the pending incomplete frame began (0.0: none pending)
        self.share = 0  # messages since the last idle sweep (heavy or light under back-pressure)
        self.held = False  # reading paused by back-pressure
        self._admitted = False  # holds a slot of st.gate
        self._done = False
        self._yielded = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        st = self.st
        c = st.counters
        self.peer = peer = _peer_ip(transport.get_extra_info("peername"))
        if _denied(st.access, st.deny_log, st.kind, peer):
            c.denied_connections += 1
            self._done = True
            transport.abort()
            return
        if st.peer_check is not None:
            why = st.peer_check(transport)
            if why is not None:
                c.tls_peer_rejected += 1
                if st.deny_log is not None:
                    st.deny_log.denied("tls", f"{peer} ({why})")
                self._done = True
                transport.abort()
                return
        if not st.gate.admit(peer):  # over the global or the per-peer cap: counted there
            self._done = True
            transport.abort()
            return
        self._admitted = True
        if st.kind == "tls":
            c.tls_sessions += 1
        self.transport = transport  # type: ignore[assignment]
        self.deframer = TcpDeframer(st.max_message_size)
        st.conns.add(self)
        c.conn_accepted += 1
        c.conn_open += 1
        if st.paused and st.writer.pending_lines >= st.hard:
            self.hold()

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.st.view

    def buffer_updated(self, nbytes: int) -> None:
        d = self.deframer
        if d is None or self._done:
            return
        self.last = time.monotonic()
        self.nread += nbytes
        self.st.counters.bytes_read += nbytes
        trunc = d.truncated
        frames = d.feed(bytes(self.st.view[:nbytes]))
        if d.truncated != trunc:  # counted when the cut is decided, maybe before the frame is complete
            self.st.counters.truncated += d.truncated - trunc
        if frames:
            if self.st.kind == "tcp":
                self.st.counters.tcp_messages += len(frames)
            else:
                self.st.counters.tls_messages += len(frames)
            self.st.pipeline.process(frames, self.peer, time.time())
            self.share += len(frames)
            if self.st.writer.pending_lines >= self.st.max_pending_lines:
                self.st.over_limit(self)
            # libuv reads a busy socket up to 32 times (x 256 KiB) per loop turn: under load, timers (flush,
            # observer tick) would starve for a second and one busy sender would starve the others. Once this
            # turn has handled TURN_BUDGET messages, each busy connection yields until the next turn.
            st = self.st
            st.turn_frames += len(frames)
            if not st.turn_reset_pending:
                st.turn_reset_pending = True
                asyncio.get_running_loop().call_soon(st.new_turn)
            elif st.turn_frames > TURN_BUDGET and not self._yielded and self.transport is not None:
                self._yielded = True
                st.counters.turn_yields += 1
                self.transport.pause_reading()
                asyncio.get_running_loop().call_soon(self._next_turn)
        # slowloris bound (sweep_idle): when did the frame now pending begin? Once per read, not per message.
        if d.in_frame:
            if frames or not self.frame_since:
                self.frame_since = self.last
        elif self.frame_since:
            self.frame_since = 0.0
        if d.error is not None:
            self.st.framing_error(self.peer, d.error)
            self._finish()
            if self.transport is not None:
                self.transport.abort()

    def _next_turn(self) -> None:
        self._yielded = False
        tr = self.transport
        if tr is not None and not self.held and not tr.is_closing():
            tr.resume_reading()

    def hold(self) -> None:
        """Stop reading for back-pressure (resumed by TcpServerState.maybe_resume)."""
        if not self.held:
            self.held = True
            if self.transport is not None and not self.transport.is_closing():
                self.transport.pause_reading()

    def eof_received(self) -> bool:
        self.close()
        return False

    def close(self) -> None:
        """Deliver the unterminated tail (nothing a client sent before closing is lost) and close."""
        self._finish()
        if self.transport is not None:
            self.transport.close()

    def _finish(self) -> None:
        if self._done:
            return
        self._done = True
        d = self.deframer
        st = self.st
        if d is not None:
            trunc = d.truncated
            frames = d.eof()
            if frames:
                st.counters.truncated += d.truncated - trunc
                if st.kind == "tcp":
                    st.counters.tcp_messages += len(frames)
                else:
                    st.counters.tls_messages += len(frames)
                st.pipeline.process(frames, self.peer, time.time())
            st.counters.framing_fallbacks += d.fallbacks
        if self in st.conns:
            st.conns.discard(self)
            st.counters.conn_open -= 1
        if self._admitted:
            self._admitted = False
            st.gate.release(self.peer)

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish()
        self.transport = None

    def __hash__(self) -> int:
        return id(self)


class NetconsoleListener(asyncio.DatagramProtocol):
    """Kernel netconsole datagrams -> sans-IO decoder -> Messages named by the host map -> pipeline."""

    def __init__(self, pipeline: Any, counters: Any, decoder: Any, hostmap: Any, access: Any = None,
                 deny_log: Any = None) -> None:
        self.pipeline = pipeline
        self.counters = counters
        self.decoder = decoder
        self.hostmap = hostmap
        self.access = access
        self.deny_log = deny_log
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        c = self.counters
        c.netconsole_datagrams += 1
        peer = addr[0] if addr else "unknown"
        if _denied(self.access, self.deny_log, "netconsole", peer):
            c.denied_datagrams += 1
            return
        c.bytes += len(data)
        try:
            recs = self.decoder.feed(data, peer, time.monotonic())
        except Exception as e:  # a decoder bug costs this datagram, never the server
            c.internal_errors += 1
            log.error("netconsole datagram from %s dropped: %s: %s", peer, type(e).__name__, e)
            return
        if recs:
            self.deliver(recs)

    def deliver(self, recs: list[Any]) -> None:
        from sylog.kernel.netconsole import to_message

        name = self.hostmap.name
        items = [(name(r.source), to_message(r, "")) for r in recs]
        for host, m in items:
            m.hostname = host
        self.counters.netconsole_messages += len(items)
        self.pipeline.process_messages(items, time.time())

    def tick(self, now_mono: float) -> None:
        """Deliver what waited too long (incomplete fragment sets, unterminated lines); copy decoder figures."""
        d = self.decoder
        if d.waiting:
            recs = d.expire(now_mono)
            if recs:
                self.deliver(recs)
        dc = d.counters
        c = self.counters
        c.netconsole_fragments = dc["fragments"]
        c.netconsole_reassembled = dc["reassembled"]
        c.netconsole_incomplete = dc["frag_expired"] + dc["frag_evicted"]

    def flush(self) -> None:
        recs = self.decoder.flush()
        if recs:
            self.deliver(recs)
        self.tick(time.monotonic())

    def error_received(self, exc: Exception) -> None:
        self.counters.udp_errors += 1

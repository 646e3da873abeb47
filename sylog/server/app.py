"""Wiring: build listeners, writer, pipeline and observers from a Config; run until told to stop; shut down.

Shutdown (SIGTERM/SIGINT, or :meth:`Server.request_stop`): stop accepting new TCP connections, keep reading the
established ones and UDP until input has been quiet for 100 ms (at most ``SHUTDOWN_DRAIN`` seconds), deliver each
connection's unterminated tail, close the observers, flush the timelines, log a final counter line.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import socket
import time
from pathlib import Path
from typing import Any

from sylog.alerts import AlertDispatcher
from sylog.config import Config
from sylog.incidents.engine import IncidentEngine
from sylog.server.counters import Counters
from sylog.server.listeners import (
    BindError, TcpConnection, TcpServerState, UdpListener, format_address, make_socket, set_rcvbuf,
    udp_kernel_drops,
)
from sylog.server.pipeline import Observer, Pipeline
from sylog.timeline.writer import TimelineWriter
from sylog.vmcore.peers import PeerRecorder
from sylog.vmcore.watcher import VmcoreWatcher

log = logging.getLogger("sylog.server")

TICK_INTERVAL = 0.1
SHUTDOWN_DRAIN = 2.0

__all__ = ["BindError", "Server", "build_observers", "raise_nofile_limit"]


def raise_nofile_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (thousands of connections + open timeline files)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 1 << 20)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


def build_observers(cfg: Config, data_dir: Path, counters: Counters) -> list[Observer]:
    """Everything that sees each accepted message besides the timeline writer.

    INCIDENTS engineer: register the incident engine here, e.g.
    ``observers.append(IncidentEngine(cfg.incidents, data_dir))``.
    """
    observers: list[Observer] = []
    engine = IncidentEngine.from_config(cfg, data_dir=data_dir)
    observers.append(engine)
    observers.append(PeerRecorder(str(data_dir)))  # sender address -> host name, for IP-named dump dirs
    if cfg.vmcore.dirs:
        observers.append(VmcoreWatcher.from_config(cfg, engine=engine, data_dir=data_dir))
    if cfg.alert:  # alert hooks hear the engine's (and the vmcore watcher's) events; an observer only so that
        alerts = AlertDispatcher.from_config(cfg)  # shutdown drains them: keep it last, after every event source
        engine.listeners.append(alerts.on_incident)
        observers.append(alerts)
    return observers


class Server:
    """One receiver process: ``await start()``, then ``await run()`` (returns after ``request_stop()``)."""

    def __init__(self, cfg: Config, *, observers: list[Observer] | None = None, parse: Any = None) -> None:
        self.cfg = cfg
        self.data_dir = Path(cfg.data_dir).absolute()
        self.counters = Counters()
        self.writer = TimelineWriter(self.data_dir, max_open_files=cfg.timeline.max_open_files,
                                     flush_interval=cfg.timeline.flush_interval, counters=self.counters,
                                     flush_lines=max(250, min(50_000, cfg.timeline.max_pending_lines // 4)))
        self._extra_observers = observers
        self._parse = parse
        self.pipeline: Pipeline | None = None
        self.tcp_state: TcpServerState | None = None
        self.tcp_servers: list[asyncio.AbstractServer] = []
        self.udp_transports: list[asyncio.DatagramTransport] = []
        self.tcp_addresses: list[tuple[Any, ...]] = []
        self.udp_addresses: list[tuple[Any, ...]] = []
        self._listen_socks: list[socket.socket] = []
        self._udp_inodes: set[int] = set()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._started = False

    # -- lifecycle -------------------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Bind every listener (BindError on failure, nothing left open), create the data dir, start tasks."""
        cfg = self.cfg
        loop = asyncio.get_running_loop()
        lim = cfg.limits
        nofile = raise_nofile_limit()
        max_conns = lim.max_connections
        room = nofile - cfg.timeline.max_open_files - 128  # timeline files, listeners, observers' files
        if max_conns > room:  # beyond this accept() would fail with EMFILE; refuse (and count) instead
            max_conns = max(room, 16)
        socks: list[tuple[str, str, socket.socket]] = []
        try:
            for spec in cfg.listen.udp:
                socks.append(("udp", spec, make_socket("udp", spec, rcvbuf=lim.udp_rcvbuf,
                                                       reuse_port=cfg.listen.reuse_port)))
            for spec in cfg.listen.tcp:
                socks.append(("tcp", spec, make_socket("tcp", spec, reuse_port=cfg.listen.reuse_port)))
        except BindError:
            for _, _, s in socks:
                s.close()
            raise
        try:
            self._make_data_dir()
        except OSError as e:
            for _, _, s in socks:
                s.close()
            raise BindError(f"cannot use data dir {self.data_dir}: {e.strerror or e}"
                            f"{' (' + e.filename + ')' if isinstance(e.filename, str) else ''}") from None

        observers = build_observers(cfg, self.data_dir, self.counters)
        if self._extra_observers:
            observers.extend(self._extra_observers)
        self.pipeline = Pipeline(self.writer, self.counters, observers, parse=self._parse)
        self.tcp_state = TcpServerState(self.pipeline, self.counters, max_message_size=lim.max_message_size,
                                        max_connections=max_conns, idle_timeout=lim.tcp_idle_timeout,
                                        max_pending_lines=cfg.timeline.max_pending_lines)
        self.writer.on_flushed.append(self.tcp_state.maybe_resume)
        st = self.tcp_state
        parts = []
        for kind, spec, s in socks:
            if kind == "udp":
                granted = s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
                tr, _ = await loop.create_datagram_endpoint(
                    lambda: UdpListener(self.pipeline, self.counters, lim.max_message_size), sock=s)
                self.udp_transports.append(tr)
                self._udp_inodes.add(os.fstat(s.fileno()).st_ino)
                addr = s.getsockname()
                self.udp_addresses.append(addr)
                parts.append(f"udp={format_address(addr)} (SO_RCVBUF asked {lim.udp_rcvbuf}, granted {granted})")
            else:
                srv = await loop.create_server(lambda: TcpConnection(st), sock=s, backlog=4096)
                self.tcp_servers.append(srv)
                self._listen_socks.append(s)
                addr = s.getsockname()
                self.tcp_addresses.append(addr)
                parts.append(f"tcp={format_address(addr)}")
        log.info("listening %s data_dir=%s loop=%s max_message_size=%d max_connections=%d%s pid=%d",
                 " ".join(parts) or "(no listeners)", self.data_dir, _loop_name(loop), lim.max_message_size,
                 max_conns, f" (RLIMIT_NOFILE {nofile})" if max_conns < lim.max_connections else "", os.getpid())
        self._tasks = [
            asyncio.create_task(self.writer.run(), name="timeline-flush"),
            asyncio.create_task(self._ticker(), name="observer-tick"),
            asyncio.create_task(self._sweeper(), name="idle-sweep"),
        ]
        if cfg.stats_interval > 0:
            self._tasks.append(asyncio.create_task(self._stats(), name="stats"))
        self._started = True

    def request_stop(self) -> None:
        self._stop.set()

    def reopen(self) -> None:
        """SIGHUP: timeline files are reopened on the next flush (after logrotate moved them)."""
        log.info("SIGHUP: reopening timeline files")
        self.writer.reopen()

    async def run(self) -> None:
        """Serve until :meth:`request_stop`, then shut down cleanly."""
        if not self._started:
            await self.start()
        await self._stop.wait()
        await self.shutdown()

    async def shutdown(self) -> None:
        loop = asyncio.get_running_loop()
        # Stop accepting without losing the accept queue: the kernel has already acknowledged those clients'
        # bytes, so take every queued connection first, then close the listeners (no await in between).
        adopted: list[socket.socket] = []
        for ls in self._listen_socks:
            while ls.fileno() >= 0:
                try:
                    conn, _ = ls.accept()
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    break
                adopted.append(conn)
        for srv in self.tcp_servers:
            srv.close()
        st = self.tcp_state
        for conn in adopted:
            conn.setblocking(False)
            try:
                await loop.connect_accepted_socket(lambda: TcpConnection(st), conn)  # type: ignore[arg-type]
            except OSError:
                conn.close()
        # Drain: established connections and UDP keep being read until input is quiet for 100 ms.
        c = self.counters
        deadline = time.monotonic() + SHUTDOWN_DRAIN
        last = -1
        while time.monotonic() < deadline:
            now_seen = c.bytes_read + c.udp_datagrams + c.conn_accepted
            if now_seen == last:
                break
            last = now_seen
            await asyncio.sleep(0.1)
        self._update_kernel_counters()
        for tr in self.udp_transports:
            tr.close()
        if self.tcp_state is not None:
            self.tcp_state.close_all()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self.pipeline is not None:
            self.pipeline.tick(time.time())
            await self.pipeline.aclose()
        await self.writer.aclose()
        for srv in self.tcp_servers:
            try:
                await asyncio.wait_for(srv.wait_closed(), 1.0)
            except (TimeoutError, Exception):
                pass
        log.info("stopped: %s", c.summary())

    # -- periodic tasks --------------------------------------------------------------------------------------------
    async def _ticker(self) -> None:
        assert self.pipeline is not None
        c = self.counters
        while True:
            t0 = time.monotonic()
            await asyncio.sleep(TICK_INTERVAL)
            lag_ms = int((time.monotonic() - t0 - TICK_INTERVAL) * 1000)
            if lag_ms > c.loop_lag_max_ms:  # how late timers run: the event loop's health under load
                c.loop_lag_max_ms = lag_ms
            self.pipeline.tick(time.time())

    async def _sweeper(self) -> None:
        st = self.tcp_state
        assert st is not None
        timeout = st.idle_timeout
        if timeout <= 0:
            return
        interval = min(1.0, max(0.05, timeout / 4))
        while True:
            await asyncio.sleep(interval)
            st.sweep_idle(time.monotonic())

    async def _stats(self) -> None:
        prev = self.counters.received
        t0 = time.monotonic()
        while True:
            await asyncio.sleep(self.cfg.stats_interval)
            self._update_kernel_counters()
            now, cur = time.monotonic(), self.counters.received
            log.info("stats %s rate=%.0f/s", self.counters.summary(), (cur - prev) / max(now - t0, 1e-9))
            prev, t0 = cur, now

    def _update_kernel_counters(self) -> None:
        if self._udp_inodes:
            self.counters.udp_kernel_drops = udp_kernel_drops(self._udp_inodes)

    # -- helpers ---------------------------------------------------------------------------------------------------
    def _make_data_dir(self) -> None:
        for d in (self.data_dir, self.data_dir / "timelines"):
            try:
                os.mkdir(d, 0o700)
            except FileExistsError:
                pass
            except FileNotFoundError:
                os.makedirs(d, 0o700, exist_ok=True)
        # Fail at start-up, not on every flush, when the timelines cannot be written (read-only, wrong owner).
        probe = self.data_dir / "timelines" / f".sylog-probe-{os.getpid()}"
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
        os.unlink(probe)


def _loop_name(loop: asyncio.AbstractEventLoop) -> str:
    mod = type(loop).__module__
    return "uvloop" if mod.startswith("uvloop") else "asyncio"


# re-exported for callers that size UDP buffers themselves
__all__ += ["set_rcvbuf"]

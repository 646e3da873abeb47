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

import msgspec

from sylog.alerts import AlertDispatcher
from sylog.config import Config
from sylog.incidents.engine import IncidentEngine
from sylog.server.allow import Access, DenyLog
from sylog.server.counters import Counters
from sylog.server.hostmap import HostMap
from sylog.server.listeners import (
    BindError, ConnGate, NetconsoleListener, TcpConnection, TcpServerState, format_address,
    make_socket, set_rcvbuf, udp_kernel_drops,
)
from sylog.server.pipeline import Observer, Pipeline
from sylog.server.udp import UdpReader
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
                                     flush_lines=max(250, min(50_000, cfg.timeline.max_pending_lines // 4)),
                                     retry_lines=cfg.timeline.retry_queue_lines,
                                     retry_bytes=cfg.timeline.retry_queue_bytes)
        self._extra_observers = observers
        self._parse = parse
        self.pipeline: Pipeline | None = None
        self.tcp_state: TcpServerState | None = None
        self.tcp_servers: list[asyncio.AbstractServer] = []
        self.udp_transports: list[UdpReader] = []
        self.tcp_addresses: list[tuple[Any, ...]] = []
        self.udp_addresses: list[tuple[Any, ...]] = []
        self.tls_state: TcpServerState | None = None
        self.tls_servers: list[asyncio.AbstractServer] = []
        self.tls_addresses: list[tuple[Any, ...]] = []
        self.netconsole_transports: list[asyncio.DatagramTransport] = []
        self.netconsole_addresses: list[tuple[Any, ...]] = []
        self.netconsole: NetconsoleListener | None = None
        self.metrics_server: asyncio.AbstractServer | None = None
        self.metrics_address: tuple[Any, ...] | None = None
        self.metrics_collector: Any = None
        self.engine: Any = None
        self.vmcore_watcher: Any = None
        self.peers: PeerRecorder | None = None
        self.access = Access()
        self.deny_log = DenyLog(log)
        self.hostmap = HostMap({})
        self.loop_lag_last = 0.0
        self.config_path: str | None = None  # set by `sylog serve --config`: SIGHUP re-reads it
        self.config_overrides: dict[str, Any] = {}  # the flags, applied again over a reloaded file
        self._listen_socks: list[socket.socket] = []
        self._udp_inodes: set[int] = set()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._started = False
        self._shut_down = False

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
        try:
            self.access = Access.from_listen_config(cfg.listen)
            self.hostmap = HostMap(cfg.hosts)
        except ValueError as e:
            raise BindError(f"configuration: {e}") from None
        tls_ctx = None
        if cfg.listen.tls:
            from sylog.server.tls import TlsSetupError, make_server_context

            if not cfg.tls.cert or not cfg.tls.key:
                raise BindError("a TLS listener needs tls.cert and tls.key (--tls-cert, --tls-key)")
            try:
                tls_ctx = make_server_context(cfg.tls.cert, cfg.tls.key, cfg.tls.client_ca,
                                              on_hello=self._tls_hello)
            except TlsSetupError as e:
                raise BindError(str(e)) from None
        socks: list[tuple[str, str, socket.socket]] = []
        try:
            for spec in cfg.listen.netconsole:
                socks.append(("netconsole", spec, make_socket("udp", spec, rcvbuf=lim.udp_rcvbuf,
                                                              reuse_port=cfg.listen.reuse_port)))
            for spec in cfg.listen.tls:
                socks.append(("tls", spec, make_socket("tcp", spec, reuse_port=cfg.listen.reuse_port)))
            if cfg.metrics.listen:
                socks.append(("metrics", cfg.metrics.listen, make_socket("tcp", cfg.metrics.listen)))
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
        for ob in observers:
            if isinstance(ob, IncidentEngine):
                self.engine = ob
            elif isinstance(ob, PeerRecorder):
                self.peers = ob
            elif isinstance(ob, VmcoreWatcher):
                self.vmcore_watcher = ob
        self.hostmap.peers = self.peers
        self.pipeline = Pipeline(self.writer, self.counters, observers, parse=self._parse)
        gate = ConnGate(max_conns, lim.max_connections_per_peer, self.counters)  # TCP and TLS share the slots
        self.tcp_state = TcpServerState(self.pipeline, self.counters, max_message_size=lim.max_message_size,
                                        max_connections=max_conns, idle_timeout=lim.tcp_idle_timeout,
                                        max_pending_lines=cfg.timeline.max_pending_lines, kind="tcp",
                                        access=self.access, deny_log=self.deny_log, gate=gate,
                                        frame_timeout=lim.frame_timeout)
        self.writer.on_flushed.append(self.tcp_state.maybe_resume)
        st = self.tcp_state
        if tls_ctx is not None:
            from sylog.server.tls import PeerCheck

            self.tls_state = TcpServerState(
                self.pipeline, self.counters, max_message_size=lim.max_message_size, max_connections=max_conns,
                idle_timeout=lim.tcp_idle_timeout, max_pending_lines=cfg.timeline.max_pending_lines, kind="tls",
                access=self.access, deny_log=self.deny_log, gate=gate, frame_timeout=lim.frame_timeout,
                peer_check=PeerCheck(cfg.tls.permitted_peers) if cfg.tls.permitted_peers else None)
            self.writer.on_flushed.append(self.tls_state.maybe_resume)
        if cfg.listen.netconsole:
            from sylog.kernel.netconsole import NetconsoleDecoder
            from sylog.server.dedup import KernelDedup

            self.pipeline.dedup = KernelDedup()
            self.netconsole = NetconsoleListener(self.pipeline, self.counters, NetconsoleDecoder(), self.hostmap,
                                                 access=self.access, deny_log=self.deny_log)
        parts = []
        for kind, spec, s in socks:
            if kind == "netconsole":
                ncl = self.netconsole
                tr, _ = await loop.create_datagram_endpoint(lambda: ncl, sock=s)  # type: ignore[arg-type,return-value]
                self.netconsole_transports.append(tr)
                self._udp_inodes.add(os.fstat(s.fileno()).st_ino)
                addr = s.getsockname()
                self.netconsole_addresses.append(addr)
                parts.append(f"netconsole={format_address(addr)}")
            elif kind == "tls":
                tst = self.tls_state
                srv = await loop.create_server(lambda: TcpConnection(tst), sock=s, backlog=4096,  # type: ignore
                                               ssl=tls_ctx, ssl_handshake_timeout=10.0)
                self.tls_servers.append(srv)
                addr = s.getsockname()
                self.tls_addresses.append(addr)
                parts.append(f"tls={format_address(addr)}"
                             f"{' (mutual TLS)' if cfg.tls.client_ca else ''}")
            elif kind == "metrics":
                from sylog.server.metrics import MAX_REQUEST, MetricsHttp, make_registry

                reg, self.metrics_collector = make_registry(self)
                if self.engine is not None:
                    self.engine.listeners.append(self.metrics_collector.on_incident)
                http = MetricsHttp(reg, self._update_kernel_counters)
                self.metrics_server = await asyncio.start_server(http.handle, sock=s, limit=MAX_REQUEST)
                self.metrics_address = s.getsockname()
                parts.append(f"metrics=http://{format_address(self.metrics_address)}/metrics")
            elif kind == "udp":
                granted = s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
                rd = UdpReader(s, self.pipeline, self.counters, lim.max_message_size, self.access, self.deny_log,
                               max_pending_lines=cfg.timeline.max_pending_lines)
                rd.start(loop)
                self.udp_transports.append(rd)
                self._udp_inodes.update(rd.inodes())  # the listening socket and its kernel-line socket
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
        log.info("listening %s data_dir=%s loop=%s max_message_size=%d max_connections=%d%s per_peer=%s "
                 "frame_timeout=%gs pid=%d",
                 " ".join(parts) or "(no listeners)", self.data_dir, _loop_name(loop), lim.max_message_size,
                 max_conns, f" (RLIMIT_NOFILE {nofile})" if max_conns < lim.max_connections else "",
                 lim.max_connections_per_peer or "off", lim.frame_timeout, os.getpid())
        if any(a is not None for a in self.access.lists.values()):
            log.info("allowlists: %s", self.access.describe())
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
        """SIGHUP: timeline files are reopened on the next flush (after logrotate moved them), and the config file
        (when there is one) is read again: see :meth:`reload`."""
        log.info("SIGHUP: reopening timeline files")
        self.writer.reopen()
        if self.config_path is not None:
            self.reload()

    # Keys applied live by reload(); every other changed key is logged as needing a restart.
    LIVE_KEYS = ("listen.allow", "listen.udp_allow", "listen.tcp_allow", "listen.tls_allow",
                 "listen.netconsole_allow", "hosts", "incidents.quiet", "stats_interval")

    def reload(self, new: Config | None = None) -> bool:
        """Apply a new configuration where that can be done live; a bad file keeps the old one (logged).

        ``new`` given (tests): used as is; else the file is read again and the command-line flags re-applied.
        Returns True when the new configuration was taken."""
        from sylog.config import ConfigError, apply_overrides, load_config

        try:
            if new is None:
                from sylog.commands.serve import validate

                new = validate(apply_overrides(load_config(self.config_path), self.config_overrides))
            access = Access.from_listen_config(new.listen)
            HostMap(new.hosts)  # validates
        except (ConfigError, ValueError) as e:
            self.counters.reload_errors += 1
            log.error("reload refused, keeping the running configuration: %s", e)
            return False
        old = self.cfg
        changed = _changed_keys(old, new)
        live = [k for k in changed if k in self.LIVE_KEYS]
        restart = [k for k in changed if k not in self.LIVE_KEYS]
        self.access.lists = access.lists  # the listeners hold this object: swap its contents
        self.hostmap.replace_hosts(new.hosts)
        if self.engine is not None:
            self.engine.corr.quiet = new.incidents.quiet
        stats_was = old.stats_interval
        # keep the running values of restart-only keys, so the running state stays what the log says
        merged = msgspec.structs.replace(old, stats_interval=new.stats_interval, hosts=new.hosts,
                                         listen=msgspec.structs.replace(
                                             old.listen, **{k.split(".")[1]: getattr(new.listen, k.split(".")[1])
                                                            for k in self.LIVE_KEYS if k.startswith("listen.")}),
                                         incidents=msgspec.structs.replace(old.incidents,
                                                                           quiet=new.incidents.quiet))
        self.cfg = merged
        if new.stats_interval > 0 and (stats_was <= 0 or not any(t.get_name() == "stats" for t in self._tasks)):
            self._tasks.append(asyncio.create_task(self._stats(), name="stats"))
        self.counters.reloads += 1
        log.info("reloaded configuration: applied %s; %s", ", ".join(live) or "nothing changed live",
                 f"changed but needing a restart (still running the old value): {', '.join(restart)}"
                 if restart else "nothing needs a restart")
        if any(a is not None for a in self.access.lists.values()):
            log.info("allowlists: %s", self.access.describe())
        return True

    def _tls_hello(self) -> None:
        self.counters.tls_handshakes += 1

    async def run(self) -> None:
        """Serve until :meth:`request_stop`, then shut down cleanly."""
        if not self._started:
            await self.start()
        await self._stop.wait()
        await self.shutdown()

    async def shutdown(self) -> None:
        if self._shut_down:  # idempotent: a test (or a second signal) may ask twice
            return
        self._shut_down = True
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
        for srv in self.tcp_servers + self.tls_servers:
            srv.close()
        if self.metrics_server is not None:
            self.metrics_server.close()
        st = self.tcp_state
        for conn in adopted:
            conn.setblocking(False)
            try:
                await loop.connect_accepted_socket(lambda: TcpConnection(st), conn)  # type: ignore[arg-type]
            except OSError:
                conn.close()
        # Drain: established connections and UDP keep being read until input is quiet for 100 ms. Quiet while
        # back-pressure holds connections is our silence, not the senders' (a slow disk): their bytes wait unread
        # in the kernel, so keep draining (the flusher still runs and resumes them), within SHUTDOWN_DRAIN.
        c = self.counters
        deadline = time.monotonic() + SHUTDOWN_DRAIN
        last = -1
        while time.monotonic() < deadline:
            now_seen = c.bytes_read + c.udp_datagrams + c.conn_accepted + c.netconsole_datagrams
            held = any(st is not None and st.paused for st in (self.tcp_state, self.tls_state))
            if now_seen == last and not held:
                break
            last = now_seen
            await asyncio.sleep(0.1)
        self._update_kernel_counters()
        for tr in self.udp_transports + self.netconsole_transports:
            tr.close()
        if self.netconsole is not None:
            self.netconsole.flush()  # unterminated lines, incomplete fragment sets: what arrived is stored
        if self.tcp_state is not None:
            self.tcp_state.close_all()
        if self.tls_state is not None:
            self.tls_state.close_all()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self.pipeline is not None:
            self.pipeline.tick(time.time())
            await self.pipeline.aclose()
        await self.writer.aclose()
        for srv in self.tcp_servers + self.tls_servers + ([self.metrics_server] if self.metrics_server else []):
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
            self.loop_lag_last = max(lag_ms, 0) / 1000.0
            if self.netconsole is not None:
                self.netconsole.tick(time.monotonic())
            self.pipeline.tick(time.time())

    async def _sweeper(self) -> None:
        st = self.tcp_state
        assert st is not None
        timeouts = [t for t in (st.idle_timeout, st.frame_timeout) if t > 0]
        if not timeouts:
            return
        interval = min(1.0, max(0.05, min(timeouts) / 4))
        while True:
            await asyncio.sleep(interval)
            st.sweep_idle(time.monotonic())
            if self.tls_state is not None:
                self.tls_state.sweep_idle(time.monotonic())

    async def _stats(self) -> None:
        prev = self.counters.received
        t0 = time.monotonic()
        while True:
            if self.cfg.stats_interval <= 0:  # switched off by a reload
                return
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


def _changed_keys(old: Config, new: Config) -> list[str]:
    """Dotted keys whose values differ (sections compared key by key; lists and maps as wholes)."""
    a, b = msgspec.to_builtins(old), msgspec.to_builtins(new)
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict) and k != "hosts":
            out += [f"{k}.{kk}" for kk in sorted(set(va) | set(vb)) if va.get(kk) != vb.get(kk)]
        elif va != vb:
            out.append(k)
    return out


def _loop_name(loop: asyncio.AbstractEventLoop) -> str:
    mod = type(loop).__module__
    return "uvloop" if mod.startswith("uvloop") else "asyncio"


# re-exported for callers that size UDP buffers themselves
__all__ += ["set_rcvbuf"]

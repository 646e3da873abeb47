"""The receivers under test, each started fresh in its own temp dir on free loopback ports.

* :class:`Sylog` - ``python -m sylog serve`` (optionally under the window profiler, bench/profserve.py, or as N
  SO_REUSEPORT processes, bench/multiserve.py);
* :class:`Rsyslog` - Debian's ``rsyslogd`` as a central receiver with its own config (``-n -f -i``, no
  imuxsock/imklog): imptcp/imudp into omfile with a per-host dynaFile and a cache sized to the hosts (capped at
  1,000: omfile's lookup is a linear scan), asyncWriting, a 64 KiB ioBufferSize, flushOnTXEnd off, a LinkedList
  main queue with ONE worker (two would reorder a host's lines); imptcp threads and the dequeue batch from a sweep
  (``bench.run rsyslog-sweep``), the rest as rsyslog's "high performance" example and the parameter reference
  recommend; the line template mirrors sylog's timeline line;
* :class:`Sink` - plain sockets that read the same bytes and discard them: the ceiling of this machine.

Every target exposes ``pid`` (for :mod:`bench.procstat`), ``tcp_port``/``udp_port`` and, for file targets,
``timelines`` (``DIR/timelines/<host>/<day>.log``).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
_CTX = mp.get_context("fork")
_SPAWN = mp.get_context("spawn")


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_bound(proto: str, port: int, count: int = 1) -> bool:
    """Are at least ``count`` sockets listening on port (TCP LISTEN, or bound UDP; SO_REUSEPORT groups count each)?"""
    want = f":{port:04X}"
    n = 0
    for path in (f"/proc/net/{proto}", f"/proc/net/{proto}6"):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if parts[1].endswith(want) and (proto == "udp" or parts[3] == "0A"):
                        n += 1
        except OSError:
            continue
    return n >= count


class Target:
    name = "?"
    writes_files = True

    def __init__(self, workdir: Path, *, tcp: bool = True, udp: bool = False) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data = self.workdir / "data"
        self.timelines = self.data / "timelines"
        self.tcp_port = free_port(socket.SOCK_STREAM) if tcp else None
        self.udp_port = free_port(socket.SOCK_DGRAM) if udp else None
        self.proc: Any = None
        self.log = self.workdir / f"{type(self).__name__.lower()}.log"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            k = getattr(self, "workers", 1)
            ok = (self.tcp_port is None or port_bound("tcp", self.tcp_port, k)) and \
                 (self.udp_port is None or port_bound("udp", self.udp_port, k))
            if ok:
                return
            if not self.alive():
                raise RuntimeError(f"{self.name} exited at start-up: {self.tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} not listening after {timeout}s: {self.tail()}")
            time.sleep(0.02)

    def on_go(self) -> None:
        """Called just before the load starts (the profiled target starts its profiler)."""

    def on_done(self) -> None:
        """Called once the last line is on disk."""

    def tail(self, n: int = 2000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self, timeout: float = 60.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


class Sylog(Target):
    name = "sylog"

    def __init__(self, workdir: Path, *, tcp: bool = True, udp: bool = False, incident_quiet: float = 600.0,
                 profile: Path | None = None, extra: list[str] | None = None, workers: int = 1) -> None:
        super().__init__(workdir, tcp=tcp, udp=udp)
        self.incident_quiet = incident_quiet
        self.profile = profile
        self.extra = extra or []
        self.split: list[int] = []  # messages received per worker (from the final counter lines)
        self.workers = workers  # > 1: bench/multiserve.py (N processes, SO_REUSEPORT) - the multi-core experiment
        if workers > 1:
            self.name = f"sylog x{workers}"

    def start(self) -> None:
        cmd = [sys.executable]
        if self.workers > 1:
            cmd += ["-m", "bench.multiserve", str(self.workers)]
        elif self.profile:
            cmd += ["-m", "bench.profserve", str(self.profile)]
        else:
            cmd += ["-m", "sylog"]
        cmd += ["serve", "--data-dir", str(self.data),
                "--tcp", f"127.0.0.1:{self.tcp_port}" if self.tcp_port else "none",
                "--udp", f"127.0.0.1:{self.udp_port}" if self.udp_port else "none",
                "--incident-quiet", str(self.incident_quiet), "--stats-interval", "0", *self.extra]
        self.cmd = cmd
        self._logf = open(self.log, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self._logf, stderr=subprocess.STDOUT, cwd=str(REPO))
        self._wait_ready()

    def _main_cpu(self) -> float:
        from bench.procstat import threads_cpu

        return next((c for t, _, c in threads_cpu(self.proc.pid) if t == self.proc.pid), 0.0)

    def on_go(self) -> None:
        if self.profile:
            os.kill(self.proc.pid, signal.SIGUSR1)
            time.sleep(0.05)
            self.window_cpu = -self._main_cpu()

    def on_done(self) -> None:
        if self.profile:
            os.kill(self.proc.pid, signal.SIGUSR2)
            self.window_cpu += self._main_cpu()

    def stop(self, timeout: float = 120.0) -> int | None:
        rc = super().stop(timeout)
        self._logf.close()
        return rc

    def final_counters(self) -> dict[str, int]:
        """The ``stopped: key=value ...`` line sylog logs at shutdown (its own count of drops, pauses, ...)."""
        out: dict[str, int] = {}
        for line in reversed(self.tail(20000).splitlines()):
            if "stopped:" in line:
                if out.get("_lines", 0) >= self.workers:
                    break
                out["_lines"] = out.get("_lines", 0) + 1
                for kv in line.split("stopped:", 1)[1].split():  # several workers: their counters add up
                    k, _, v = kv.partition("=")
                    if v.lstrip("-").isdigit():
                        out[k] = out.get(k, 0) + int(v)
                        if k == "received":
                            self.split.append(int(v))
        out.pop("_lines", None)
        return out


RSYSLOG_CONF = """\
# generated by bench/targets.py: rsyslog as a tuned central receiver, per-host files like sylog's timelines
global(workDirectory="{work}" maxMessageSize="64k" net.enableDNS="off")
main_queue(queue.type="LinkedList" queue.size="{queue_size}" queue.dequeueBatchSize="{batch}"
           queue.workerThreads="1")
{modules}
template(name="sylogLine" type="string"
         string="%timegenerated:::date-rfc3339% %HOSTNAME% %syslogfacility-text%.%syslogseverity-text% %syslogtag%: %msg:::drop-last-lf%\\n")
template(name="perHost" type="string" string="{data}/timelines/%HOSTNAME%/%$year%-%$month%-%$day%.log")
{inputs}
action(type="omfile" dynaFile="perHost" template="sylogLine" dynaFileCacheSize="{cache}"
       asyncWriting="{asyncw}" ioBufferSize="64k" flushOnTXEnd="{ftx}" flushInterval="1"
       createDirs="on" dirCreateMode="0700" fileCreateMode="0600")
"""


class Rsyslog(Target):
    name = "rsyslog"

    def __init__(self, workdir: Path, *, tcp: bool = True, udp: bool = False, hosts: int = 1000,
                 imptcp_threads: int = 1, batch: int = 1024, queue_size: int = 200_000,
                 cache: int | None = None, async_writing: bool = True) -> None:
        super().__init__(workdir, tcp=tcp, udp=udp)
        self.hosts = hosts
        # omfile looks a dynaFile up by a linear scan of its cache: a sweep at 10,000 hosts (bench/RESULTS.md)
        # found 1,000 faster than 2,000 or 10,000, so a tuned receiver caps it there
        self.cache = cache or max(10, min(hosts, 1000))
        self.async_writing = async_writing
        self.imptcp_threads = imptcp_threads
        self.batch = batch
        self.queue_size = queue_size
        self.binary = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"

    def config(self) -> str:
        mods, inputs = [], []
        if self.tcp_port:
            mods.append(f'module(load="imptcp" threads="{self.imptcp_threads}")')
            inputs.append(f'input(type="imptcp" address="127.0.0.1" port="{self.tcp_port}")')
        if self.udp_port:
            mods.append('module(load="imudp" threads="1" batchSize="128" timeRequery="8")')
            inputs.append(f'input(type="imudp" address="127.0.0.1" port="{self.udp_port}" rcvbufSize="8m")')
        return RSYSLOG_CONF.format(work=self.workdir / "spool", data=self.data, modules="\n".join(mods),
                                   inputs="\n".join(inputs), cache=self.cache, batch=self.batch,
                                   asyncw="on" if self.async_writing else "off",
                                   ftx="off" if self.async_writing else "on",
                                   queue_size=self.queue_size)

    def start(self) -> None:
        (self.workdir / "spool").mkdir(exist_ok=True)
        self.timelines.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "rsyslog.conf"
        conf.write_text(self.config())
        self.cmd = [self.binary, "-n", "-f", str(conf), "-i", str(self.workdir / "rsyslogd.pid")]
        self._logf = open(self.log, "wb")
        self.proc = subprocess.Popen(self.cmd, stdout=self._logf, stderr=subprocess.STDOUT)
        self._wait_ready()

    def stop(self, timeout: float = 60.0) -> int | None:
        rc = super().stop(timeout)
        self._logf.close()
        return rc


def _sink_main(tcp_sock: socket.socket | None, udp_sock: socket.socket | None, counters: Any) -> None:
    """Read and discard; ``counters`` = shared [tcp bytes, udp datagrams, udp bytes, last activity (monotonic)]."""
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM])  # before any thread: sigwait below takes it
    lock = threading.Lock()

    def conn_loop(c: socket.socket) -> None:
        buf = bytearray(1 << 20)
        n_local = 0
        while True:
            n = c.recv_into(buf)
            if not n:
                break
            n_local += n
            if n_local >= 1 << 20:
                with lock:
                    counters[0] += n_local
                    counters[3] = time.monotonic()
                n_local = 0
        with lock:
            counters[0] += n_local
            counters[3] = time.monotonic()
        c.close()

    def accept_loop(s: socket.socket) -> None:
        while True:
            c, _ = s.accept()
            threading.Thread(target=conn_loop, args=(c,), daemon=True).start()

    def udp_loop_flush(s: socket.socket) -> None:
        from bench import mmsg

        if mmsg.AVAILABLE:
            r = mmsg.Receiver(s, timeout=0.02)
            while True:
                k, nb = r.recv()
                if k:
                    counters[1] += k  # single writer: no lock needed for the UDP counters
                    counters[2] += nb
                    counters[3] = time.monotonic()
        buf = bytearray(65536)
        recv = s.recv_into
        k = nb = 0
        s.settimeout(0.02)
        while True:
            try:
                nb += recv(buf)
                k += 1
            except TimeoutError:
                pass
            else:
                if k < 256:
                    continue
            if k:
                with lock:
                    counters[1] += k
                    counters[2] += nb
                    counters[3] = time.monotonic()
                k = nb = 0

    ts = []
    if tcp_sock is not None:
        ts.append(threading.Thread(target=accept_loop, args=(tcp_sock,), daemon=True))
    if udp_sock is not None:
        ts.append(threading.Thread(target=udp_loop_flush, args=(udp_sock,), daemon=True))
    for t in ts:
        t.start()
    signal.sigwait([signal.SIGTERM])
    os._exit(0)


class Sink(Target):
    """Bare socket sink: threads doing ``recv_into`` and counting (no framing, no parsing, no writing)."""

    name = "sink"
    writes_files = False

    def start(self) -> None:
        self.counters = _SPAWN.Array("d", 4, lock=False)
        tcp_sock = udp_sock = None
        if self.tcp_port:
            tcp_sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            tcp_sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            tcp_sock.bind(("127.0.0.1", self.tcp_port))
            tcp_sock.listen(4096)
        if self.udp_port:
            udp_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp_sock.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_RCVBUFFORCE", 33), 8 << 20)
            udp_sock.bind(("127.0.0.1", self.udp_port))
        signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM])
        try:
            # spawn, not fork: a fresh interpreter, so its RSS is the sink's own and not the harness's heap
            self.proc = _SPAWN.Process(target=_sink_main, args=(tcp_sock, udp_sock, self.counters), daemon=True)
            self.proc.start()
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGTERM])
        for s in (tcp_sock, udp_sock):
            if s is not None:
                s.close()
        self._wait_ready()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.is_alive()

    @property
    def tcp_bytes(self) -> int:
        return int(self.counters[0])

    @property
    def udp_datagrams(self) -> int:
        return int(self.counters[1])

    @property
    def last_activity(self) -> float:
        return self.counters[3]

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.is_alive():
            os.kill(self.proc.pid, signal.SIGTERM)
            self.proc.join(timeout)
            if self.proc.is_alive():
                self.proc.kill()
                self.proc.join(5)
        return self.proc.exitcode

"""Shared pytest fixtures and helpers for every sylog test (kept generic: any engineer's tests may use them).

Why here: several engineers run tests at the same time on one machine, so everything that touches the network
picks free loopback ports (bind port 0) and everything that waits does so on a condition with a deadline.

Fixtures
  ``sylog_server``          a running ``python -m sylog serve`` on free loopback UDP+TCP ports, data dir in
                            ``tmp_path``, ``--incident-quiet 2``; a :class:`SylogServer`. Stopped with SIGTERM at
                            teardown, which must exit 0 (its output is shown otherwise).
  ``sylog_server_factory``  ``start(*extra_args, incident_quiet=2, data_dir=None) -> SylogServer`` for tests that
                            need more flags (``--vmcore-dir``, ``--allow``, ...) or several servers/restarts.
  ``inproc_server``         ``await start(**config_overrides) -> sylog.server.app.Server``: the whole server in the
                            test's own event loop (loopback UDP+TCP on port 0, 50 ms flushes, data dir in
                            ``tmp_path/data``), for tests that read its counters or inject faults; stopped at teardown.
  ``wait_for``              the :func:`wait_for` function (also importable: ``from conftest import wait_for``).
  ``require_binary``        the :func:`require_binary` function.

Helpers (module level, importable)
  ``free_port("tcp"|"udp")``                  a currently free loopback port.
  ``wait_for(predicate, timeout, ...)``       poll until ``predicate()`` is truthy; returns that value.
  ``read_timeline(data_dir, host)``           all complete timeline lines of a host, day files in order.
  ``parse_timeline_line(line)``               -> :class:`TimelineRecord` (time, host, facility, severity, tag, msg).
  ``port_in_use("tcp"|"udp", port)``          someone listens on / holds 127.0.0.1:port (readiness probes).
  ``run_cli(*args)``                          run ``python -m sylog ARGS`` -> CompletedProcess (bytes, bounded time).
  ``require_binary(name)``                    path of a program, or skip (fail when ``SYLOG_REQUIRE_REALCLIENTS=1``,
                                              as CI sets it, so real-client tests never silently skip there).

Timeline line format (public contract): ``<RFC3339 UTC µs> <host> <facility>.<severity> <tag> <msg>``.
"""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import pytest

T = TypeVar("T")

LOOPBACK = "127.0.0.1"
SERVER_START_TIMEOUT = 20.0  # seconds: a cold interpreter on a loaded 2-core CI box can be slow
SERVER_STOP_TIMEOUT = 15.0


# ---------------------------------------------------------------------------------------------------- helpers


def free_port(kind: str = "tcp") -> int:
    """A loopback port the kernel just reported free for ``kind`` ('tcp' or 'udp').

    There is an unavoidable window between closing the probe socket and the real bind; port 0 makes collisions
    with other engineers' concurrent tests very unlikely, unlike fixed port numbers.
    """
    stype = socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, stype) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def wait_for(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    interval: float = 0.05,
    what: str = "condition",
    diagnose: Callable[[], str] | None = None,
) -> T:
    """Poll ``predicate`` until it returns something truthy (returned) or ``timeout`` seconds pass.

    On timeout raises AssertionError naming ``what``, with ``diagnose()`` appended when given (e.g. the server's
    output or the timeline so far) so a failing test says why instead of only that it waited.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            extra = ""
            if diagnose is not None:
                try:
                    extra = "\n" + diagnose()
                except Exception as e:  # diagnostics must not hide the timeout itself
                    extra = f"\n(diagnose failed: {e!r})"
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what}{extra}")
        time.sleep(interval)


async def until(pred: Callable[[], T], timeout: float = 10.0, what: str = "condition", interval: float = 0.01) -> T:
    """``wait_for`` for tests running on the event loop: polls ``pred`` with ``asyncio.sleep`` so the server under
    test (in the same loop) keeps running; AssertionError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


def require_binary(name: str) -> str:
    """Path of program ``name``; skip the test when it is missing, or fail under SYLOG_REQUIRE_REALCLIENTS=1.

    Also looks in /usr/sbin and /sbin, which are often not on a non-root PATH (rsyslogd lives there).
    """
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin:/bin")
    if path:
        return path
    msg = f"{name} is not installed (Debian: rsyslog for rsyslogd, bsdutils for logger)"
    if os.environ.get("SYLOG_REQUIRE_REALCLIENTS") == "1":
        pytest.fail(f"{msg}; SYLOG_REQUIRE_REALCLIENTS=1 forbids skipping", pytrace=False)
    pytest.skip(msg)


class TimelineRecord(NamedTuple):
    """One parsed timeline line."""

    time: str
    host: str
    facility: str
    severity: str
    tag: str
    msg: str
    line: str


def parse_timeline_line(line: str) -> TimelineRecord:
    """Split ``<time> <host> <facility>.<severity> <tag> <msg>`` (msg may be empty or contain spaces)."""
    text = line.rstrip("\n")
    parts = text.split(" ", 4)
    parts += [""] * (5 - len(parts))
    facility, _, severity = parts[2].partition(".")
    tag = parts[3][:-1] if parts[3].endswith(":") else parts[3]  # the line has `app[pid]:`; the tag is `app[pid]`
    return TimelineRecord(parts[0], parts[1], facility, severity, tag, parts[4], text)


def read_timeline(data_dir: str | os.PathLike[str], host: str) -> list[str]:
    """All complete lines of ``DATA/timelines/<host>/*.log``, oldest day first (no trailing newlines).

    A last line without its newline may be mid-write by the server; it is left out so callers can poll.
    """
    hdir = Path(data_dir) / "timelines" / host
    if not hdir.is_dir():
        return []
    lines: list[str] = []
    for f in sorted(hdir.glob("*.log")):
        try:
            data = f.read_bytes()
        except FileNotFoundError:
            continue
        text = data.decode("utf-8", "replace")
        chunks = text.split("\n")
        lines.extend(chunks[:-1])  # the piece after the last \n is empty or incomplete
    return lines


def timeline_hosts(data_dir: str | os.PathLike[str]) -> list[str]:
    """Host directory names under ``DATA/timelines``."""
    tdir = Path(data_dir) / "timelines"
    return sorted(p.name for p in tdir.iterdir() if p.is_dir()) if tdir.is_dir() else []


def port_in_use(kind: str, port: int) -> bool:
    """True when someone holds ``127.0.0.1:port`` (TCP: accepts; UDP: our plain bind is refused)."""
    if kind == "tcp":
        try:
            with socket.create_connection((LOOPBACK, port), timeout=0.5):
                return True
        except OSError:
            return False
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind((LOOPBACK, port))
        except OSError as e:
            return e.errno == errno.EADDRINUSE
        return False


# ---------------------------------------------------------------------------------------------------- server


class SylogServer:
    """A ``sylog serve`` subprocess on loopback, with helpers to send to it and read what it stored."""

    def __init__(self, data_dir: Path, udp_port: int, tcp_port: int, args: list[str], workdir: Path) -> None:
        self.data_dir = data_dir
        self.udp_port = udp_port
        self.tcp_port = tcp_port
        self.host = LOOPBACK
        self.args = args
        self.workdir = workdir
        self.stdout_path = workdir / f"sylog-{tcp_port}.stdout"
        self.stderr_path = workdir / f"sylog-{tcp_port}.stderr"
        self.proc: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None

    # -- lifecycle

    def start(self, timeout: float = SERVER_START_TIMEOUT) -> "SylogServer":
        """Start and wait (bounded) until TCP accepts and the UDP port is bound."""
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with open(self.stdout_path, "ab") as out, open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen(
                self.args, stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=self.workdir, env=env
            )

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(
                    f"sylog serve exited with {self.proc.returncode} during start-up: {self.args}\n{self.output()}"
                )
            return port_in_use("tcp", self.tcp_port) and port_in_use("udp", self.udp_port)

        try:
            wait_for(ready, timeout, interval=0.05, what=f"sylog serve to listen on tcp/udp {self.tcp_port}/"
                     f"{self.udp_port}", diagnose=self.output)
        except BaseException:
            self.kill()
            raise
        return self

    def stop(self, timeout: float = SERVER_STOP_TIMEOUT, check: bool = True) -> int:
        """SIGTERM, wait up to ``timeout``; SIGKILL after that. ``check``: assert a clean exit 0."""
        if self.proc is None:
            return self.returncode or 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                if check:
                    raise AssertionError(f"sylog serve ignored SIGTERM for {timeout}s\n{self.output()}") from None
        self.returncode = self.proc.returncode
        self.proc = None
        if check and self.returncode != 0:
            raise AssertionError(f"sylog serve exited with {self.returncode} on SIGTERM (want 0)\n{self.output()}")
        return self.returncode

    def kill(self) -> None:
        """SIGKILL and reap (for crash/restart tests and failed start-ups)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        if self.proc is not None:
            self.returncode = self.proc.returncode
        self.proc = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def output(self, tail: int = 6000) -> str:
        """The server's stdout and stderr so far (tails), for failure messages."""
        parts = []
        for name, p in (("stdout", self.stdout_path), ("stderr", self.stderr_path)):
            try:
                text = p.read_bytes().decode("utf-8", "replace")
            except FileNotFoundError:
                text = ""
            parts.append(f"--- sylog {name} ---\n{text[-tail:]}")
        return "\n".join(parts)

    # -- sending

    def send_udp(self, *datagrams: bytes) -> None:
        """Each argument is one datagram to the UDP listener."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for d in datagrams:
                s.sendto(d, (LOOPBACK, self.udp_port))

    def send_tcp(self, data: bytes) -> None:
        """One connection: send ``data`` as is (caller frames it), then close."""
        with socket.create_connection((LOOPBACK, self.tcp_port), timeout=10) as s:
            s.sendall(data)

    # -- reading what was stored

    def timeline(self, host: str) -> list[str]:
        return read_timeline(self.data_dir, host)

    def records(self, host: str) -> list[TimelineRecord]:
        return [parse_timeline_line(x) for x in read_timeline(self.data_dir, host)]

    def hosts(self) -> list[str]:
        return timeline_hosts(self.data_dir)

    def dump(self, limit: int = 40) -> str:
        """Every host's last timeline lines plus server output: the diagnosis for a failed wait."""
        out = []
        for h in self.hosts():
            lines = read_timeline(self.data_dir, h)
            out.append(f"--- timeline {h} ({len(lines)} lines) ---")
            out.extend(lines[-limit:])
        if not out:
            out.append(f"--- no timelines under {self.data_dir} ---")
        return "\n".join(out) + "\n" + self.output()

    def wait_for_record(
        self, host: str, match: Callable[[TimelineRecord], bool], timeout: float = 10.0, what: str = ""
    ) -> TimelineRecord:
        """Wait until one of ``host``'s timeline records satisfies ``match``; return it."""

        def find() -> TimelineRecord | None:
            for r in self.records(host):
                if match(r):
                    return r
            return None

        return wait_for(find, timeout, what=what or f"a matching timeline line for host {host!r}",
                        diagnose=self.dump)

    def wait_for_text(self, host: str, text: str, timeout: float = 10.0) -> TimelineRecord:
        """Wait until a record of ``host`` has ``text`` in its message."""
        return self.wait_for_record(host, lambda r: text in r.msg, timeout, what=f"{text!r} in host {host!r}")

    def incidents(self) -> list[dict[str, Any]]:
        """All ``DATA/incidents/<host>/<id>.json`` files, parsed (files mid-rename are skipped)."""
        import json

        out = []
        for f in sorted((self.data_dir / "incidents").glob("*/*.json")):
            try:
                out.append(json.loads(f.read_bytes()))
            except (FileNotFoundError, ValueError):
                continue
        return out


def run_cli(*args: str, input: bytes | None = None, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    """``python -m sylog ARGS`` with this interpreter (the package under test), output captured."""
    return subprocess.run([sys.executable, "-m", "sylog", *args], input=input, capture_output=True, timeout=timeout)


def serve_command(data_dir: Path, udp_port: int, tcp_port: int, *extra: str, incident_quiet: float = 2) -> list[str]:
    """The ``sylog serve`` argv used by the fixtures (``python -m sylog`` of the running interpreter)."""
    return [
        sys.executable, "-m", "sylog", "serve",
        "--data-dir", str(data_dir),
        "--udp", f"{LOOPBACK}:{udp_port}",
        "--tcp", f"{LOOPBACK}:{tcp_port}",
        "--incident-quiet", f"{incident_quiet:g}",
        *extra,
    ]


@pytest.fixture
def sylog_server_factory(tmp_path: Path) -> Iterator[Callable[..., SylogServer]]:
    """``start(*extra_args, incident_quiet=2, data_dir=None, udp_port=None, tcp_port=None)`` -> started server.

    Every server started is stopped at teardown, and must exit 0 on SIGTERM (unless the test already stopped or
    killed it). Pass ``data_dir`` to restart on the same data; ports are fresh unless given.
    """
    servers: list[SylogServer] = []

    def start(
        *extra: str,
        incident_quiet: float = 2,
        data_dir: Path | None = None,
        udp_port: int | None = None,
        tcp_port: int | None = None,
    ) -> SylogServer:
        d = Path(data_dir) if data_dir is not None else tmp_path / f"data{len(servers) or ''}"
        up = udp_port or free_port("udp")
        tp = tcp_port or free_port("tcp")
        srv = SylogServer(d, up, tp, serve_command(d, up, tp, *extra, incident_quiet=incident_quiet), tmp_path)
        servers.append(srv)
        return srv.start()

    yield start

    errors = []
    for srv in servers:
        try:
            srv.stop()
        except AssertionError as e:
            errors.append(str(e))
    if errors:
        pytest.fail("\n\n".join(errors), pytrace=False)


@pytest.fixture
def sylog_server(sylog_server_factory: Callable[..., SylogServer]) -> SylogServer:
    """A running ``sylog serve --data-dir TMP --udp 127.0.0.1:P --tcp 127.0.0.1:Q --incident-quiet 2``."""
    return sylog_server_factory()


@pytest.fixture
async def inproc_server(tmp_path: Path) -> Any:
    """Factory of in-process servers; every one started is stopped (drained, flushed) at teardown."""
    from sylog.config import Config, apply_overrides
    from sylog.server.app import Server

    started: list[Server] = []

    async def start(**over: Any) -> Server:
        base: dict[str, Any] = {"data_dir": str(tmp_path / "data"), "listen.udp": ["127.0.0.1:0"],
                                "listen.tcp": ["127.0.0.1:0"], "stats_interval": 0.0, "timeline.flush_interval": 0.05}
        base.update(over)
        srv = Server(apply_overrides(Config(), base))
        await srv.start()
        started.append(srv)
        return srv

    yield start
    for s in started:
        if s._started:
            s.request_stop()
            await s.shutdown()


@pytest.fixture(name="wait_for")
def _wait_for_fixture() -> Callable[..., Any]:
    return wait_for


@pytest.fixture(name="require_binary")
def _require_binary_fixture() -> Callable[[str], str]:
    return require_binary

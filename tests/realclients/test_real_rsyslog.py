"""A real ``rsyslogd`` relaying to ``sylog serve`` with omfwd: the way hosts really send to sylog.

Each test starts its own rsyslogd with a config in a temp dir: inputs imtcp/imudp on free loopback ports (no
imuxsock, no imklog: it never touches /dev/log, the kernel log or system files; pid file and work directory are
in the temp dir), one omfwd action towards sylog. Messages are injected with util-linux ``logger`` pointed at
rsyslogd's input ports (and, for the kernel line, a raw RFC 3164 datagram with facility kern, which ``logger``
refuses to send). Then sylog's timelines must show host, facility.severity, tag and text.

Templates are rsyslog's built-in ones (see rsyslog's "Reserved template names"):
  RSYSLOG_TraditionalForwardFormat  ``<PRI>Mmm dd hh:mm:ss HOST tag: msg`` (omfwd's default)
  RSYSLOG_ForwardFormat             same with an RFC 3339 timestamp
  RSYSLOG_SyslogProtocol23Format    RFC 5424 (``<PRI>1 TS HOST APP PROCID MSGID SD msg``, ends in LF)
omfwd ``TCP_Framing``: "traditional" (LF-terminated) or "octet-counted" (RFC 6587).
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sylog.syslog.hostnames import fold_host

from conftest import SylogServer, TimelineRecord, port_in_use, free_port, require_binary, run_cli, wait_for

pytestmark = pytest.mark.realclient

TEMPLATES = ("RSYSLOG_TraditionalForwardFormat", "RSYSLOG_ForwardFormat", "RSYSLOG_SyslogProtocol23Format")
# (protocol, TCP_Framing or None for UDP)
TRANSPORTS = (("tcp", "octet-counted"), ("tcp", "traditional"), ("udp", None))
UTF8_TEXT = "crème brûlée — ünïcødé ✓ 日本語 ☃ 🚀"
KERNEL_BODY = "[   12.345678] BUG: kernel NULL pointer dereference, address: 0000000000000008"


class Rsyslogd:
    """An rsyslogd relay confined to a temp dir: imtcp+imudp on loopback in, one omfwd action out."""

    def __init__(self, workdir: Path, forward: str) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "spool").mkdir(exist_ok=True)
        self.tcp_port = free_port("tcp")
        self.udp_port = free_port("udp")
        self.conf = workdir / "rsyslog.conf"
        self.pidfile = workdir / "rsyslogd.pid"
        self.out = workdir / "rsyslogd.out"
        self.internal = workdir / "rsyslogd-internal.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.conf.write_text(
            f"""# written by sylog's real-client tests
global(workDirectory="{workdir / 'spool'}" net.enableDNS="off" preserveFQDN="on" maxMessageSize="64k")
module(load="imtcp")
module(load="imudp")
input(type="imtcp" address="127.0.0.1" port="{self.tcp_port}" ruleset="relay")
input(type="imudp" address="127.0.0.1" port="{self.udp_port}" ruleset="relay")
ruleset(name="relay") {{
  {forward}
}}
# rsyslogd's own messages (start, errors) go to a file for diagnosis, not to sylog.
action(type="omfile" file="{self.internal}")
"""
        )

    def start(self) -> "Rsyslogd":
        exe = require_binary("rsyslogd")
        check = subprocess.run([exe, "-N1", "-f", str(self.conf)], capture_output=True, timeout=30)
        assert check.returncode == 0, (
            f"rsyslogd -N1 rejected the config:\n{self.conf.read_text()}\n{check.stdout.decode()}{check.stderr.decode()}"
        )
        with open(self.out, "ab") as out:
            self.proc = subprocess.Popen(
                [exe, "-n", "-f", str(self.conf), "-i", str(self.pidfile)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.workdir,
            )

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"rsyslogd exited with {self.proc.returncode} at start\n{self.diagnose()}")
            return port_in_use("tcp", self.tcp_port) and port_in_use("udp", self.udp_port)

        try:
            wait_for(ready, 20, what="rsyslogd to listen", diagnose=self.diagnose)
            # Its pid file is ours (-i), not /run/rsyslogd.pid: proof it runs confined to the temp dir.
            wait_for(lambda: self.pidfile.exists() and self.pidfile.read_text().strip() == str(self.proc.pid), 10,
                     what=f"rsyslogd to write {self.pidfile}", diagnose=self.diagnose)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> int | None:
        """SIGTERM, bounded wait, then SIGKILL."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        rc = self.proc.returncode
        self.proc = None
        return rc

    def diagnose(self) -> str:
        parts = []
        for p in (self.out, self.internal):
            try:
                parts.append(f"--- {p.name} ---\n{p.read_text(errors='replace')[-4000:]}")
            except FileNotFoundError:
                pass
        return "\n".join(parts)

    def logger(self, transport: str, *args: str, input: bytes | None = None) -> None:
        """util-linux logger into this rsyslogd's input; must exit 0."""
        exe = require_binary("logger")
        port = self.tcp_port if transport == "tcp" else self.udp_port
        cmd = [exe, "-T" if transport == "tcp" else "-d", "-n", "127.0.0.1", "-P", str(port), *args]
        r = subprocess.run(cmd, input=input, capture_output=True, timeout=60)
        assert r.returncode == 0, f"{cmd} -> {r.returncode}: {r.stderr.decode(errors='replace')}"

    def send_raw_udp(self, datagram: bytes) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(datagram, ("127.0.0.1", self.udp_port))


def omfwd(server: SylogServer, protocol: str, framing: str | None, template: str) -> str:
    """An omfwd action to the server's listener for ``protocol``."""
    port = server.tcp_port if protocol == "tcp" else server.udp_port
    return omfwd_to(port, protocol, framing, template)


def omfwd_to(port: int, protocol: str, framing: str | None, template: str) -> str:
    """An omfwd action to 127.0.0.1:port; retries forever, 1 s apart, so a slow start loses nothing (in-memory
    queue; the tests' deadlines bound the wait)."""
    framing_opt = f' TCP_Framing="{framing}"' if framing else ""
    return (
        f'action(type="omfwd" target="127.0.0.1" port="{port}" protocol="{protocol}"{framing_opt}'
        f' template="{template}" action.resumeRetryCount="-1" action.resumeInterval="1"'
        f' queue.type="linkedList" queue.timeoutShutdown="5000")'
    )


@pytest.fixture
def rsyslog_relay(tmp_path: Path) -> Iterator[Callable[[str], Rsyslogd]]:
    """``start(forward_action) -> Rsyslogd``; every rsyslogd started is stopped at teardown."""
    started: list[Rsyslogd] = []

    def start(forward: str) -> Rsyslogd:
        r = Rsyslogd(tmp_path / f"rsyslog{len(started)}", forward)
        started.append(r)
        return r.start()

    yield start
    for r in started:
        r.stop()


def this_host(rfc3164: bool = False) -> str:
    """The host name logger sends (RFC 3164: up to the first dot), folded as sylog folds it."""
    name = socket.gethostname()
    return fold_host(name.split(".", 1)[0] if rfc3164 else name, "127.0.0.1")


def app(rec: TimelineRecord) -> str:
    return rec.tag.split("[", 1)[0]


def rfc3164_now() -> str:
    t = time.gmtime()
    return time.strftime("%b ", t) + f"{t.tm_mday:2d}" + time.strftime(" %H:%M:%S", t)


@pytest.mark.parametrize("template", TEMPLATES)
@pytest.mark.parametrize("protocol,framing", TRANSPORTS, ids=("tcp-octet", "tcp-lf", "udp"))
def test_rsyslog_relay(
    sylog_server: SylogServer,
    rsyslog_relay: Callable[[str], Rsyslogd],
    protocol: str,
    framing: str | None,
    template: str,
) -> None:
    """Every omfwd transport x built-in template: host, facility.severity, tag, text, UTF-8, a kernel line."""
    relay = rsyslog_relay(omfwd(sylog_server, protocol, framing, template))
    t = uuid.uuid4().hex[:12]
    host = this_host()

    relay.logger("tcp", "--rfc5424", "-p", "local3.info", "-t", "webapp", f"{t} plain via rsyslog")
    relay.logger("udp", "--rfc3164", "-i", "-p", "daemon.warning", "-t", "ntpd", f"{t} rfc3164 with pid")
    relay.logger("tcp", "--octet-count", "--rfc5424", "-p", "user.notice", "-t", "utf8", f"{t} {UTF8_TEXT}")
    # A kernel line as imklog hands it to rsyslog on a real host: facility kern, tag "kernel", printk time.
    relay.send_raw_udp(f"<2>{rfc3164_now()} db-07 kernel: {KERNEL_BODY} {t}".encode())

    rec = sylog_server.wait_for_text(host, f"{t} plain via rsyslog", timeout=15)
    assert (rec.host, rec.facility, rec.severity, app(rec)) == (host, "local3", "info", "webapp"), rec
    assert rec.msg.strip() == f"{t} plain via rsyslog", rec

    rec = sylog_server.wait_for_text(this_host(rfc3164=True), f"{t} rfc3164 with pid", timeout=15)
    assert (rec.facility, rec.severity, app(rec)) == ("daemon", "warning", "ntpd"), rec
    assert rec.tag.startswith("ntpd[") and rec.tag[5:-1].isdigit(), rec
    assert rec.msg.strip() == f"{t} rfc3164 with pid", rec

    rec = sylog_server.wait_for_text(host, f"{t} {UTF8_TEXT}", timeout=15)
    assert (rec.facility, rec.severity, app(rec)) == ("user", "notice", "utf8"), rec

    rec = sylog_server.wait_for_text("db-07", t, timeout=15)
    assert (rec.host, rec.facility, rec.severity, rec.tag) == ("db-07", "kern", "crit", "kernel"), rec
    assert rec.msg.strip() == f"{KERNEL_BODY} {t}", rec


@pytest.mark.parametrize("framing", ["octet-counted", "traditional"])
def test_rsyslog_tcp_no_loss(
    sylog_server: SylogServer, rsyslog_relay: Callable[[str], Rsyslogd], framing: str
) -> None:
    """N messages through rsyslog over TCP all arrive, each once (``logger -f``: one message per line)."""
    n = 3000
    relay = rsyslog_relay(omfwd(sylog_server, "tcp", framing, "RSYSLOG_SyslogProtocol23Format"))
    t = uuid.uuid4().hex[:12]
    body = "".join(f"{t} seq={i:05d} the quick brown fox jumps over the lazy dog\n" for i in range(n)).encode()
    relay.logger("tcp", "--octet-count", "--rfc5424", "-p", "local2.info", "-t", "bulk", input=body)
    host = this_host()
    seen: dict[str, int] = {}

    def all_arrived() -> bool:
        seen.clear()
        for r in sylog_server.records(host):
            if t in r.msg and "seq=" in r.msg:
                k = r.msg.split("seq=", 1)[1][:5]
                seen[k] = seen.get(k, 0) + 1
        return len(seen) >= n

    try:
        wait_for(all_arrived, 60, interval=0.2, what=f"{n} messages through rsyslog ({framing})")
    except AssertionError:
        missing = sorted({f"{i:05d}" for i in range(n)} - seen.keys())
        raise AssertionError(
            f"{len(missing)} of {n} lost, e.g. {missing[:10]}\n{relay.diagnose()}\n{sylog_server.output()}"
        ) from None
    dups = {k: c for k, c in seen.items() if c > 1}
    assert not dups, f"duplicated: {list(dups.items())[:10]}"


def test_rsyslog_queues_until_sylog_starts(
    sylog_server_factory: Callable[..., SylogServer], rsyslog_relay: Callable[[str], Rsyslogd]
) -> None:
    """rsyslog started before sylog (the usual boot race) retries; once sylog listens, the backlog arrives."""
    tcp_port, udp_port = free_port("tcp"), free_port("udp")
    relay = rsyslog_relay(omfwd_to(tcp_port, "tcp", "octet-counted", "RSYSLOG_SyslogProtocol23Format"))
    t = uuid.uuid4().hex[:12]
    for i in range(5):
        relay.logger("tcp", "--rfc5424", "-p", "local4.info", "-t", "early", f"{t} early {i}")
    assert not port_in_use("tcp", tcp_port)
    server = sylog_server_factory(tcp_port=tcp_port, udp_port=udp_port)
    host = this_host()
    wait_for(
        lambda: sum(1 for r in server.records(host) if t in r.msg) >= 5,
        20, interval=0.2, what="the messages rsyslog queued while sylog was down",
        diagnose=lambda: relay.diagnose() + "\n" + server.dump(),
    )


OOPS = """\
BUG: kernel NULL pointer dereference, address: 0000000000000008
#PF: supervisor read access in kernel mode
#PF: error_code(0x0000) - not-present page
PGD 0 P4D 0
Oops: 0000 [#1] PREEMPT SMP NOPTI
CPU: 3 PID: {pid} Comm: kworker/3:1 Tainted: G           O       6.1.0-18-amd64 #1  Debian 6.1.76-1
Hardware name: QEMU Standard PC (i440FX + PIIX, 1996), BIOS 1.16.2-debian-1.16.2-1 04/01/2014
Workqueue: events sylogtest_work_fn [sylogtest]
RIP: 0010:sylogtest_poll+0x2a/0x90 [sylogtest]
Code: 48 89 e5 41 54 53 48 8b 5f 10 <48> 8b 43 08 48 85 c0 74 1f 5b 41 5c 5d c3 cc cc cc cc 0f 1f 00
RSP: 0018:ffffb3a0c0dd3e60 EFLAGS: 00010246
RAX: 0000000000000000 RBX: 0000000000000000 RCX: 0000000000000000
Call Trace:
 <TASK>
 ? __die+0x23/0x70
 ? page_fault_oops+0x171/0x4e0
 ? exc_page_fault+0x77/0x170
 ? asm_exc_page_fault+0x26/0x30
 ? sylogtest_poll+0x2a/0x90 [sylogtest]
 sylogtest_work_fn+0x15/0x30 [sylogtest]
 process_one_work+0x1c7/0x380
 worker_thread+0x4d/0x380
 kthread+0xd7/0x100
 ret_from_fork+0x1f/0x30
 </TASK>
Modules linked in: sylogtest(O) nfsd auth_rpcgss nfs_acl lockd grace sunrpc
CR2: 0000000000000008
---[ end trace 0000000000000000 ]---
"""


def kernel_lines(host: str, body: str, t0: float, pid: int) -> bytes:
    """RFC 3164 lines as a host's rsyslog gets them from imklog (kern.warning, tag kernel:, printk time)."""
    out = []
    for i, line in enumerate(body.format(pid=pid).splitlines()):
        out.append(f"<4>{rfc3164_now()} {host} kernel: [{t0 + i * 0.000013:12.6f}] {line}\n")
    return "".join(out).encode()


def test_kernel_oops_through_rsyslog_becomes_incident(
    sylog_server: SylogServer, rsyslog_relay: Callable[[str], Rsyslogd]
) -> None:
    """A driver oops relayed by rsyslog (two hosts, same bug): one incident each, same signature, with context.

    The lines reach rsyslog's TCP input as imklog would hand them over; rsyslog relays them with its default
    traditional template over octet-counted TCP, as the README recommends for production.
    """
    relay = rsyslog_relay(omfwd(sylog_server, "tcp", "octet-counted", "RSYSLOG_TraditionalForwardFormat"))
    hosts = ("db-07", "db-12")
    for n, h in enumerate(hosts):
        stream = f"<30>{rfc3164_now()} {h} systemd[1]: Started nightly-backup.service - last words {h}.\n".encode()
        stream += kernel_lines(h, OOPS, 4242.5 + n, pid=1000 + n)
        with socket.create_connection(("127.0.0.1", relay.tcp_port), timeout=10) as s:
            s.sendall(stream)

    def incidents() -> list[dict]:
        return [i for i in sylog_server.incidents() if i.get("host") in hosts]

    wait_for(lambda: len({i["host"] for i in incidents()}) == 2, 15, what="an incident for each host",
             diagnose=lambda: relay.diagnose() + "\n" + sylog_server.dump())
    # --incident-quiet 2: both close once the hosts are quiet.
    wait_for(lambda: all(i["state"] == "closed" for i in incidents()) and incidents(), 15, interval=0.2,
             what="the incidents to close after --incident-quiet", diagnose=lambda: repr(incidents()))

    r = run_cli("incidents", "--data-dir", str(sylog_server.data_dir), "--json")
    assert r.returncode == 0, r.stderr.decode()
    listed = [i for i in json.loads(r.stdout) if i["host"] in hosts]
    assert sorted(i["host"] for i in listed) == sorted(hosts), listed  # one incident per host, no duplicates
    for inc in listed:
        assert inc["kind"] in ("page-fault", "oops", "bug"), inc
        assert inc["function"] == "sylogtest_poll", inc
        assert inc["module"] == "sylogtest", inc
        assert inc["kernel_release"] == "6.1.0-18-amd64", inc
        assert inc["state"] == "closed" and inc["fatal"] is False, inc
        assert inc["lines"] >= 20, inc
    assert listed[0]["signature"] and listed[0]["signature"] == listed[1]["signature"], listed

    # The incident log holds the last words before the trigger and the trace, as received.
    for inc in incidents():
        log = Path(inc["log_path"] or inc["path"].replace(".json", ".log")).read_text(errors="replace")
        assert f"last words {inc['host']}" in log
        assert "sylogtest_work_fn" in log and "---[ end trace" in log


@pytest.mark.parametrize("framing", ["octet-counted", "traditional"])
def test_rsyslog_large_message_over_tcp(
    sylog_server: SylogServer, rsyslog_relay: Callable[[str], Rsyslogd], framing: str
) -> None:
    """A 20 000-byte message (a long kernel line, a JSON blob) crosses rsyslog and sylog whole."""
    relay = rsyslog_relay(omfwd(sylog_server, "tcp", framing, "RSYSLOG_SyslogProtocol23Format"))
    t = uuid.uuid4().hex[:12]
    text = f"{t} " + "".join(f"{i:06d}," for i in range(20_000 // 7)) + " END"
    relay.logger("tcp", "--octet-count", "--rfc5424", "--size", "65536", "-p", "local5.info", "-t", "big", text)
    rec = sylog_server.wait_for_text(this_host(), t, timeout=15)
    assert rec.msg.strip() == text, (len(rec.msg), len(text))


def test_sylog_restart_while_rsyslog_is_connected(
    sylog_server_factory: Callable[..., SylogServer], rsyslog_relay: Callable[[str], Rsyslogd]
) -> None:
    """sylog restarts (SIGTERM, same ports and data) under a connected rsyslog: rsyslog reconnects by itself and
    later messages arrive in the same timeline. (rsyslog may lose the one message it writes into the dead
    connection; that is plain TCP syslog's known weakness, RELP's reason to exist, so only later ones count.)"""
    first = sylog_server_factory()
    relay = rsyslog_relay(omfwd(first, "tcp", "octet-counted", "RSYSLOG_SyslogProtocol23Format"))
    t = uuid.uuid4().hex[:12]
    host = this_host()
    relay.logger("tcp", "--rfc5424", "-p", "local6.info", "-t", "restart", f"{t} before restart")
    first.wait_for_text(host, f"{t} before restart", timeout=15)
    assert first.stop() == 0

    second = sylog_server_factory(data_dir=first.data_dir, tcp_port=first.tcp_port, udp_port=first.udp_port)
    sent = 0

    def arrived() -> bool:
        nonlocal sent
        relay.logger("tcp", "--rfc5424", "-p", "local6.info", "-t", "restart", f"{t} after restart {sent}")
        sent += 1
        return any(f"{t} after restart" in r.msg for r in second.records(host))

    wait_for(arrived, 30, interval=0.5, what="rsyslog to reconnect after sylog restarted",
             diagnose=lambda: relay.diagnose() + "\n" + second.dump())
    # Everything from then on is delivered, in order, into the same timeline as before the restart.
    for i in range(5):
        relay.logger("tcp", "--rfc5424", "-p", "local6.info", "-t", "restart", f"{t} steady {i}")
    wait_for(lambda: sum(f"{t} steady" in r.msg for r in second.records(host)) == 5, 15,
             what="messages after the reconnect", diagnose=second.dump)
    msgs = [r.msg for r in second.records(host) if t in r.msg]
    assert msgs[0].endswith("before restart")
    assert [m for m in msgs if "steady" in m] == [f"{t} steady {i}" for i in range(5)]

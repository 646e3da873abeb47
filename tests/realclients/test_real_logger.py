"""util-linux ``logger`` talking straight to ``sylog serve``: the framings and formats a real client emits.

Why a real binary: ``logger`` is what operators reach for to test a receiver, and its bytes (RFC 5424 with a
timeQuality SD element, RFC 3164 ``tag:``, RFC 6587 octet counts, LF framing) are the reference, not what we
think they are. Note: util-linux logger has no ``--hostname``; it always sends this machine's name (RFC 3164: up
to the first dot), or ``-`` with ``--rfc5424=nohost``, in which case sylog must fall back to the source address.
"""

from __future__ import annotations

import socket
import subprocess
import uuid

import pytest

from sylog.syslog.hostnames import fold_host

from conftest import SylogServer, TimelineRecord, require_binary, wait_for

pytestmark = pytest.mark.realclient

UTF8_TEXT = "héllo wörld — ünïcødé ✓ 日本語 ☃"


def this_host(rfc3164: bool = False) -> str:
    """The host name logger puts in its messages, as sylog folds it (lower case)."""
    name = socket.gethostname()
    if rfc3164:
        name = name.split(".", 1)[0]
    return fold_host(name, "127.0.0.1")


def logger(server: SylogServer, transport: str, *args: str, input: bytes | None = None) -> None:
    """Run util-linux logger against the server (``transport``: 'tcp' or 'udp'); must exit 0."""
    exe = require_binary("logger")
    port = server.tcp_port if transport == "tcp" else server.udp_port
    flag = "-T" if transport == "tcp" else "-d"
    cmd = [exe, flag, "-n", "127.0.0.1", "-P", str(port), *args]
    r = subprocess.run(cmd, input=input, capture_output=True, timeout=30)
    assert r.returncode == 0, f"{cmd} -> {r.returncode}: {r.stderr.decode(errors='replace')}"


def token() -> str:
    return uuid.uuid4().hex[:12]


def tag_name(rec: TimelineRecord) -> str:
    """The app name part of the timeline tag (``app[pid]`` -> ``app``)."""
    return rec.tag.split("[", 1)[0]


@pytest.mark.parametrize(
    "transport,fmt",
    [
        ("udp", "--rfc5424"),
        ("udp", "--rfc3164"),
        ("tcp", "--rfc5424"),
        ("tcp", "--rfc3164"),
    ],
)
def test_logger_formats_and_transports(sylog_server: SylogServer, transport: str, fmt: str) -> None:
    """Host, facility.severity, tag and text survive each format over each transport (TCP here: LF framing)."""
    t = token()
    logger(sylog_server, transport, fmt, "-p", "local3.info", "-t", "sylogtest", f"{t} plain message")
    logger(sylog_server, transport, fmt, "-p", "kern.err", "-t", "kernel", f"{t} [   12.345678] kernel-style line")
    host = this_host(rfc3164=fmt == "--rfc3164")

    rec = sylog_server.wait_for_text(host, f"{t} plain message")
    assert (rec.host, rec.facility, rec.severity, tag_name(rec)) == (host, "local3", "info", "sylogtest"), rec
    assert rec.msg.strip() == f"{t} plain message", rec
    assert rec.time.endswith("Z") and "T" in rec.time, rec

    # logger refuses facility kern for user space (it sends user instead); the tag still makes it a kernel line.
    rec = sylog_server.wait_for_text(host, f"{t} [   12.345678] kernel-style line")
    assert (rec.facility, rec.severity, tag_name(rec)) == ("user", "err", "kernel"), rec
    assert rec.msg.strip() == f"{t} [   12.345678] kernel-style line", rec


@pytest.mark.parametrize("fmt", ["--rfc5424", "--rfc3164"])
def test_logger_octet_count(sylog_server: SylogServer, fmt: str) -> None:
    """``--octet-count`` (RFC 6587 octet counting) over TCP, with a pid in the tag (``-i``)."""
    t = token()
    logger(sylog_server, "tcp", "--octet-count", fmt, "-i", "-p", "daemon.warning", "-t", "octet",
           f"{t} counted frame")
    host = this_host(rfc3164=fmt == "--rfc3164")
    rec = sylog_server.wait_for_text(host, f"{t} counted frame")
    assert (rec.facility, rec.severity, tag_name(rec)) == ("daemon", "warning", "octet"), rec
    assert rec.tag.startswith("octet[") and rec.tag.endswith("]"), rec  # -i: logger's pid is the procid
    assert rec.msg.strip() == f"{t} counted frame", rec


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_logger_utf8(sylog_server: SylogServer, transport: str) -> None:
    """Multi-byte UTF-8 arrives intact (greppable as UTF-8 in the timeline, not escaped away)."""
    t = token()
    logger(sylog_server, transport, "--rfc5424", "-p", "user.notice", "-t", "utf8", f"{t} {UTF8_TEXT}")
    rec = sylog_server.wait_for_text(this_host(), t)
    assert UTF8_TEXT in rec.msg, rec


def test_logger_nohost_falls_back_to_source_address(sylog_server: SylogServer) -> None:
    """RFC 5424 with a nil HOSTNAME (``--rfc5424=nohost``): the timeline goes under the sender's IP."""
    t = token()
    logger(sylog_server, "udp", "--rfc5424=nohost", "-p", "local0.notice", "-t", "nohost", f"{t} no hostname")
    rec = sylog_server.wait_for_text("127.0.0.1", t)
    assert (rec.host, rec.facility, rec.severity, tag_name(rec)) == ("127.0.0.1", "local0", "notice", "nohost"), rec


def test_logger_structured_data_and_msgid(sylog_server: SylogServer) -> None:
    """RFC 5424 extras (MSGID, SD element, notq) do not leak into the stored text."""
    t = token()
    logger(sylog_server, "tcp", "--rfc5424=notq", "--msgid", "ID47", "--sd-id", "test@32473",
           "--sd-param", 'k="v"', "-p", "local7.debug", "-t", "sd", f"{t} with sd")
    rec = sylog_server.wait_for_text(this_host(), t)
    assert (rec.facility, rec.severity, tag_name(rec)) == ("local7", "debug", "sd"), rec
    assert rec.msg.endswith(f"{t} with sd"), rec


@pytest.mark.parametrize("framing", ["--octet-count", "lf"])
def test_logger_tcp_many_messages_no_loss(sylog_server: SylogServer, framing: str) -> None:
    """``logger -f FILE`` streams one message per line over one TCP connection: every one must arrive."""
    n = 2000
    t = token()
    body = "".join(f"{t} seq={i:05d} lorem ipsum dolor sit amet\n" for i in range(n)).encode()
    args = ["--rfc5424", "-p", "local1.info", "-t", "bulk"]
    if framing != "lf":
        args.append(framing)
    logger(sylog_server, "tcp", *args, input=body)
    host = this_host()

    def seqs() -> set[str]:
        return {r.msg.split("seq=", 1)[1][:5] for r in sylog_server.records(host) if t in r.msg and "seq=" in r.msg}

    got: set[str] = set()

    def complete() -> bool:
        got.clear()
        got.update(seqs())
        return len(got) >= n

    try:
        wait_for(complete, 30, what=f"{n} messages over TCP")
    except AssertionError:
        missing = sorted(set(f"{i:05d}" for i in range(n)) - got)
        raise AssertionError(f"{len(missing)} of {n} lost, e.g. {missing[:10]}\n{sylog_server.output()}") from None
    assert len(got) == n
    # and nothing arrived twice
    count = sum(1 for r in sylog_server.records(host) if t in r.msg)
    assert count == n


def test_logger_kernel_tagged_oops_opens_an_incident(sylog_server: SylogServer) -> None:
    """A relay that lost the kern facility (logger cannot send it): tag ``kernel`` alone makes the lines kernel
    lines, so an oops piped through ``logger -t kernel`` still becomes an incident for this host."""
    t = token()
    oops = "\n".join([
        f"[ 4242.000001] BUG: unable to handle page fault for address: ffffffffc0badd{t[:2]}",
        "[ 4242.000002] #PF: supervisor read access in kernel mode",
        "[ 4242.000003] Oops: 0000 [#1] SMP PTI",
        "[ 4242.000004] CPU: 1 PID: 77 Comm: loggertest Tainted: G           O      6.1.0-18-amd64 #1",
        "[ 4242.000005] RIP: 0010:loggertest_read+0x11/0x40 [loggertest]",
        "[ 4242.000006] Call Trace:",
        "[ 4242.000007]  <TASK>",
        "[ 4242.000008]  loggertest_read+0x11/0x40 [loggertest]",
        "[ 4242.000009]  vfs_read+0xb0/0x2c0",
        "[ 4242.000010]  ksys_read+0x5f/0xe0",
        "[ 4242.000011]  do_syscall_64+0x3b/0x90",
        "[ 4242.000012]  </TASK>",
        "[ 4242.000013] ---[ end trace 0000000000000000 ]---",
    ]) + "\n"
    logger(sylog_server, "tcp", "--octet-count", "--rfc5424", "-p", "user.warning", "-t", "kernel",
           input=oops.encode())
    host = this_host()

    def incident() -> dict | None:
        for inc in sylog_server.incidents():
            if inc.get("host") == host and inc.get("function") == "loggertest_read":
                return inc
        return None

    inc = wait_for(incident, 15, what=f"an incident for {host} from kernel-tagged lines",
                   diagnose=lambda: repr(sylog_server.incidents()) + "\n" + sylog_server.dump())
    assert inc["kind"] in ("page-fault", "oops"), inc
    assert inc["module"] == "loggertest" and inc["kernel_release"] == "6.1.0-18-amd64", inc


def test_logger_with_plain_asyncio_loop(sylog_server_factory) -> None:  # type: ignore[no-untyped-def]
    """``--loop asyncio`` (the uvloop opt-out) serves the same real client the same way."""
    srv: SylogServer = sylog_server_factory("--loop", "asyncio")
    t = token()
    logger(srv, "tcp", "--octet-count", "--rfc5424", "-p", "local3.info", "-t", "plainloop", f"{t} tcp")
    logger(srv, "udp", "--rfc3164", "-p", "local3.info", "-t", "plainloop", f"{t} udp")
    for text, rfc3164 in ((f"{t} tcp", False), (f"{t} udp", True)):
        rec = srv.wait_for_text(this_host(rfc3164), text)
        assert (rec.facility, rec.severity, tag_name(rec)) == ("local3", "info", "plainloop"), rec

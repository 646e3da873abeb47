"""End to end: `sylog serve --config` with [[alert]] hooks; a kernel oops sent over UDP reaches a real HTTP
receiver (open, then close after the quiet period) and a real exec hook, from the running server process."""

from __future__ import annotations

import http.server
import sys
import textwrap
import threading
from pathlib import Path

import orjson
import pytest

from conftest import wait_for

pytestmark = pytest.mark.timeout(90)


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.got.append((self.headers.get("X-Sylog-Event"), body))  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *a) -> None:
        pass


@pytest.fixture
def receiver():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.got = []  # type: ignore[attr-defined]
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    t.join(5)


OOPS = [
    "BUG: kernel NULL pointer dereference, address: 0000000000000008",
    "#PF: supervisor read access in kernel mode",
    "Oops: 0000 [#1] PREEMPT SMP NOPTI",
    "CPU: 3 PID: 812 Comm: kworker/3:1 Not tainted 6.1.0-18-amd64 #1 Debian 6.1.76-1",
    "RIP: 0010:ixgbe_clean_rx_irq+0x3a1/0x1040 [ixgbe]",
    "Call Trace:",
    " <TASK>",
    " ixgbe_poll+0x103/0x2b0 [ixgbe]",
    " __napi_poll+0x28/0x160",
    " net_rx_action+0x29e/0x350",
    " </TASK>",
]


def test_server_fires_webhook_and_exec_on_open_and_close(sylog_server_factory, receiver, tmp_path: Path):
    script = tmp_path / "hook.py"
    script.write_text(textwrap.dedent("""
        import os, sys
        with open(sys.argv[1], "ab") as f:
            f.write(os.environ["SYLOG_EVENT"].encode() + b" " + sys.stdin.buffer.read() + b"\\n")
    """))
    out = tmp_path / "exec.out"
    port = receiver.server_address[1]
    cfg = tmp_path / "sylog.toml"
    cfg.write_text(textwrap.dedent(f"""
        [[alert]]
        type = "webhook"
        url = "http://127.0.0.1:{port}/sylog"
        on = ["open", "close"]
        backoff = 0.1

        [[alert]]
        type = "exec"
        command = [{orjson.dumps(sys.executable).decode()}, {orjson.dumps(str(script)).decode()},
                   {orjson.dumps(str(out)).decode()}]
        timeout = 20
    """))
    srv = sylog_server_factory("--config", str(cfg), incident_quiet=1)
    srv.send_udp(*[f"<4>Nov 25 10:00:00 alert-host kernel: {ln}".encode() for ln in OOPS])
    wait_for(lambda: any(ev == "open" for ev, _ in receiver.got), timeout=20, what="webhook open",
             diagnose=srv.output)
    wait_for(lambda: any(ev == "close" for ev, _ in receiver.got), timeout=20, what="webhook close",
             diagnose=srv.output)
    opened = orjson.loads(next(b for ev, b in receiver.got if ev == "open"))
    closed = orjson.loads(next(b for ev, b in receiver.got if ev == "close"))
    assert opened["host"] == "alert-host" and opened["id"] == closed["id"] and closed["state"] == "closed"
    wait_for(lambda: out.exists() and out.read_bytes().endswith(b"\n"), timeout=20, what="exec hook",
             diagnose=srv.output)
    ev, _, js = out.read_bytes().splitlines()[0].partition(b" ")
    assert ev == b"open" and orjson.loads(js)["id"] == opened["id"]
    assert srv.stop() == 0


def test_server_fires_vmcore_event_when_a_dump_links(sylog_server_factory, receiver, tmp_path: Path):
    import time
    from datetime import datetime

    from test_vmcore_build import RELEASE_DEB, crash_lines, make_rhel
    from test_vmcore_server import send_from

    crash = tmp_path / "crash"
    crash.mkdir()
    cfg = tmp_path / "sylog.toml"
    cfg.write_text(textwrap.dedent(f"""
        [[alert]]
        type = "webhook"
        url = "http://127.0.0.1:{receiver.server_address[1]}/sylog"
        on = ["vmcore"]
    """))
    srv = sylog_server_factory("--config", str(cfg), "--vmcore-dir", str(crash), "--vmcore-interval", "0.2",
                               incident_quiet=1)
    send_from("127.0.0.2", srv.tcp_port, crash_lines(RELEASE_DEB), "db-07")
    [oops] = wait_for(lambda: [i for i in srv.incidents() if i.get("host") == "db-07" and i["state"] == "closed"],
                      15, what="db-07 incident closed", diagnose=srv.output)
    now = time.time()
    make_rhel(crash, datetime.fromtimestamp(now), ip="127.0.0.2", crashtime=int(now) - 5, rel=RELEASE_DEB)
    wait_for(lambda: receiver.got, 15, what="vmcore webhook", diagnose=srv.output)
    ev, body = receiver.got[0]
    inc = orjson.loads(body)
    assert ev == "vmcore" and inc["id"] == oops["id"] and inc["vmcore"]["matched_by"] == "signature"
    assert inc["vmcore"]["crash_command"].startswith("crash ")
    assert srv.stop() == 0
    assert [e for e, _ in receiver.got] == ["vmcore"]  # open/close were not subscribed

"""`sylog timeline` and `sylog signatures` over what a real `sylog serve` wrote: --around lands on the trigger
line (incident first_seen and timeline receive times agree), --grep and --since on the live files."""

from __future__ import annotations

import subprocess
import sys

import orjson
import pytest

from conftest import wait_for
from sylog.commands import timeline as tl
from sylog.query.timefilter import parse_stored_time

pytestmark = pytest.mark.timeout(90)

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
    " </TASK>",
]


def sylog(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sylog", *argv], capture_output=True, timeout=60)


def test_around_and_signatures_on_server_output(sylog_server):
    srv = sylog_server
    before = [f"<30>Nov 25 10:00:00 web-1 app[7]: request {i} ok" for i in range(5)]
    oops = [f"<4>Nov 25 10:00:01 web-1 kernel: {ln}" for ln in OOPS]
    srv.send_tcp(("\n".join(before + oops) + "\n").encode())
    [inc] = wait_for(lambda: [i for i in srv.incidents() if i["host"] == "web-1" and i["state"] == "closed"], 20,
                     what="incident closed", diagnose=srv.output)
    d = str(srv.data_dir)
    p = sylog("timeline", "WEB-1", "--data-dir", d, "--around", inc["id"], "--before", "2", "--after", "3")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.decode().splitlines()
    assert len(lines) == 5
    assert lines[0].endswith("request 3 ok") and lines[1].endswith("request 4 ok")
    assert "NULL pointer dereference" in lines[2]
    # same instant (the timeline truncates to the µs, the incident may round: at most 1 µs apart)
    assert abs(tl.line_time(lines[2].encode()) - tl.to_us(parse_stored_time(inc["first_seen"]))) <= 1
    assert lines[4].endswith("Oops: 0000 [#1] PREEMPT SMP NOPTI")
    p = sylog("timeline", "web-1", "--data-dir", d, "--grep", r"kernel: (RIP|Call Trace)", "--since", "10m")
    assert p.returncode == 0 and [ln.split(" ", 4)[4] for ln in p.stdout.decode().splitlines()] == [
        "RIP: 0010:ixgbe_clean_rx_irq+0x3a1/0x1040 [ixgbe]", "Call Trace:"]
    p = sylog("timeline", "web-1", "--data-dir", d)
    assert p.stdout.decode().splitlines() == srv.timeline("web-1")
    p = sylog("signatures", "--data-dir", d, "--json")
    assert p.returncode == 0, p.stderr
    [row] = orjson.loads(p.stdout)
    assert row["signature"] == inc["signature"] and row["hosts"] == ["web-1"] and row["incidents"] == 1
    assert row["kind"] == inc["kind"] and row["kernel_releases"] == ["6.1.0-18-amd64"]

"""`sylog incidents` and `sylog show` as a user runs them (subprocess `python -m sylog ...`)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import pytest

from sylog.incidents.engine import IncidentEngine

from test_incident_support import OOPS, PANIC, FakeDetector, Feeder

CONTRACT = ("id", "host", "kind", "kinds", "fatal", "title", "function", "module", "kernel_release", "signature",
            "state", "first_seen", "last_seen", "lines", "path", "vmcore")


def sylog(*args, check=True):
    r = subprocess.run([sys.executable, "-m", "sylog", *args], capture_output=True, text=True, timeout=60)
    if check:
        assert r.returncode == 0, r.stderr
    return r


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """db-07: oops->panic 3 h ago (closed); web-1: warning 10 min ago (closed); web-2: unclean reboot now; db-08:
    page fault still open."""
    d = tmp_path_factory.mktemp("data")
    now = time.time()
    e = IncidentEngine(str(d), detector=FakeDetector(), quiet=30, clock=lambda: now)
    f = Feeder(e, t0=now - 3 * 3600)
    for i in range(5):
        f("db-07", f"db-07 normal line {i}", kernel=False)
    for ln in OOPS + PANIC:
        f("db-07", ln)
    f.t = now - 600
    f("web-1", "[ 50.0] WARNING: CPU: 1 PID: 0 at net/sched/sch_generic.c:525 dev_watchdog+0x21f/0x230")
    f("web-1", "[ 50.1] RIP: 0010:dev_watchdog+0x21f/0x230")
    f.t = now - 120
    f("web-2", "[ 900.0] eth0: up")
    f.t = now - 1
    f("web-2", "[    0.000000] Linux version 6.1.0-test")
    e.tick(now - 1)  # closes db-07 and web-1
    f.t = now
    f("db-08", OOPS[0])
    e.tick(now)
    e.flush_sync()
    return d


def test_json_contract_and_newest_first(data):
    rows = json.loads(sylog("incidents", "--data-dir", str(data), "--json").stdout)
    assert [r["host"] for r in rows] == ["db-08", "web-2", "web-1", "db-07"]
    for r in rows:
        assert all(k in r for k in CONTRACT), r
        assert r["vmcore"] is None and r["path"].endswith(r["id"] + ".json")
    db7 = rows[-1]
    assert db7["kind"] == "page-fault" and db7["kinds"] == ["page-fault", "oops", "panic"] and db7["fatal"]
    assert db7["state"] == "closed" and db7["function"] == "ext4_fill_super"
    assert rows[0]["state"] == "open"
    assert rows[1]["kind"] == "unclean-reboot"


@pytest.mark.parametrize("args,hosts", [
    (["--host", "web-*"], ["web-2", "web-1"]),
    (["--kind", "warning"], ["web-1"]),
    (["--kind", "warning,unclean-reboot"], ["web-2", "web-1"]),
    (["--state", "open"], ["db-08"]),
    (["--since", "1h"], ["db-08", "web-2", "web-1"]),
    (["--until", "2h"], ["db-07"]),
    (["--since", "2000-01-01", "--until", "5m"], ["web-1", "db-07"]),
    (["--missing-vmcore"], ["db-07"]),
    (["--limit", "1"], ["db-08"]),
])
def test_filters(data, args, hosts):
    rows = json.loads(sylog("incidents", "--data-dir", str(data), "--json", *args).stdout)
    assert [r["host"] for r in rows] == hosts


def test_table_is_aligned(data):
    out = sylog("incidents", "--data-dir", str(data)).stdout.splitlines()
    assert out[0].split()[:3] == ["ID", "HOST", "KIND"]
    col = out[0].index("HOST")
    assert all(line[col - 2:col] == "  " for line in out[1:5])
    assert out[-1] == "4 incident(s)"
    assert any("unexpected kernel reboot" in ln for ln in out)


def test_errors_are_one_line_and_non_zero(data, tmp_path):
    for args in (["incidents", "--data-dir", str(data), "--since", "yesterdayish"],
                 ["incidents", "--data-dir", str(data), "--kind", "explosion"],
                 ["incidents", "--data-dir", str(tmp_path / "nope")],
                 ["show", "20000101T000000Z-000000", "--data-dir", str(data)],
                 ["show", "../../etc/passwd", "--data-dir", str(data)],
                 ["show", "2", "--data-dir", str(data)]):  # ambiguous prefix
        r = sylog(*args, check=False)
        assert r.returncode != 0, args
        assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
        assert r.stdout == ""


def test_show_prints_header_trigger_trace_context(data):
    rows = json.loads(sylog("incidents", "--data-dir", str(data), "--json", "--host", "db-07").stdout)
    iid = rows[0]["id"]
    out = sylog("show", iid[:-2], "--data-dir", str(data)).stdout  # a unique prefix is enough
    assert out.startswith(f"Incident {iid}")
    for want in ("host:        db-07", "kind:        page-fault", "fatal:       yes", "function:    ext4_fill_super",
                 "release:     6.1.0-test", "Trigger:", "BUG: unable to handle page fault",
                 "Crash lines (13):", "Kernel panic - not syncing", "Last-gasp context (5 line(s)",
                 "db-07 normal line 4", "vmcore: none linked"):
        assert want in out, want
    assert out.index("Crash lines") < out.index("Last-gasp context") < out.index("vmcore:")
    first_crash = out.split("Crash lines (13):\n")[1].splitlines()[0]
    assert re.match(r"^\d\d:\d\d:\d\d\.\d{6} kernel: \[ *100\.000001\] BUG: unable to handle", first_crash)
    raw = sylog("show", iid, "--data-dir", str(data), "--raw", "--context", "2").stdout
    assert " db-07 kern.warning kernel: " in raw and "Last-gasp context (2 line(s)" in raw
    j = json.loads(sylog("show", iid, "--data-dir", str(data), "--json").stdout)
    assert j["id"] == iid and len(j["crash_log"]) == 13 and len(j["context_log"]) == 5


def test_show_prints_vmcore_and_crash_command(data):
    rows = json.loads(sylog("incidents", "--data-dir", str(data), "--json", "--host", "db-07").stdout)
    p = rows[0]["path"]
    inc = json.loads(open(p).read())
    inc["vmcore"] = {"path": "/var/crash/127.0.0.1-2026-11-25-10:15:00/vmcore", "size": 123, "matched": "signature",
                     "crash_command": "crash /usr/lib/debug/lib/modules/6.1.0-test/vmlinux /var/crash/x/vmcore",
                     "first_commands": ["bt", "log", "ps"]}
    open(p, "w").write(json.dumps(inc))
    out = sylog("show", rows[0]["id"], "--data-dir", str(data)).stdout
    assert "$ crash /usr/lib/debug/lib/modules/6.1.0-test/vmlinux" in out and "bt, log, ps" in out
    assert "matched:" in out
    again = json.loads(sylog("incidents", "--data-dir", str(data), "--json", "--missing-vmcore").stdout)
    assert again == []

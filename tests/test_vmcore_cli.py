"""``sylog link-vmcore PATH [--host H] [--incident ID]``: linking by hand, its output, and its errors."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from sylog.incidents.store import IncidentStore
from sylog.vmcore import scan as vscan
from test_vmcore_build import RELEASE_DEB, RELEASE_RHEL, crash_lines, make_debian, make_rhel
from test_vmcore_link import WARN, local, strip_ts, syslog_incident

T = float(int(time.time()) - 86400)


def sylog(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sylog", *args], capture_output=True, text=True, timeout=60)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    return d


def test_links_by_hand_and_prints_the_crash_command(data: Path, tmp_path: Path) -> None:
    oops = syslog_incident(data, "db-07", strip_ts(crash_lines(RELEASE_DEB)), T)
    d = make_debian(tmp_path / "crash", local(T + 60), crashtime=int(T))
    r = sylog("link-vmcore", str(d), "--host", "db-07", "--data-dir", str(data))
    assert r.returncode == 0, r.stderr
    assert f"linked to incident {oops.id}" in r.stdout and "matched by signature" in r.stdout
    assert f"$ crash /usr/lib/debug/boot/vmlinux-{RELEASE_DEB} {d}/dump.{d.name}" in r.stdout
    # again: idempotent, exit 0, says so
    r = sylog("link-vmcore", str(d), "--host", "db-07", "--data-dir", str(data))
    assert r.returncode == 0 and "already linked" in r.stdout
    # the incidents CLI shows it
    r = sylog("incidents", "--data-dir", str(data), "--json")
    assert r.returncode == 0, r.stderr
    [row] = orjson.loads(r.stdout)
    assert row["vmcore"]["matched_by"] == "signature" and row["vmcore"]["kernel_release"] == RELEASE_DEB


def test_path_may_be_the_dump_file_and_json_output(data: Path, tmp_path: Path) -> None:
    d = make_rhel(tmp_path / "crash", local(T), ip="10.0.0.7", crashtime=int(T))
    r = sylog("link-vmcore", str(d / "vmcore"), "--host", "db-07", "--data-dir", str(data), "--json")
    assert r.returncode == 0, r.stderr
    out = orjson.loads(r.stdout)
    assert out["status"] == "created" and out["host"] == "db-07"
    assert out["vmcore"]["crash_command"] == f"crash /usr/lib/debug/lib/modules/{RELEASE_RHEL}/vmlinux {d}/vmcore"


def test_manual_incident_choice(data: Path, tmp_path: Path) -> None:
    warn = syslog_incident(data, "db-07", WARN, T - 5 * 3600)  # far outside the window: only by hand
    d = make_debian(tmp_path / "crash", local(T), tag="db-07", crashtime=int(T))
    r = sylog("link-vmcore", str(d), "--incident", warn.id[:17], "--data-dir", str(data))
    assert r.returncode == 0, r.stderr
    assert f"incident {warn.id}" in r.stdout and "matched by manual" in r.stdout
    [inc] = vscan.host_incidents(IncidentStore(data), "db-07")
    assert inc.vmcore["matched_by"] == "manual"
    # a second dump cannot go to the same incident
    d2 = make_debian(tmp_path / "crash", local(T + 600), tag="db-07", crashtime=int(T) + 600)
    r = sylog("link-vmcore", str(d2), "--incident", warn.id, "--data-dir", str(data))
    assert r.returncode == 1 and "already has a vmcore" in r.stderr


@pytest.mark.parametrize("case", ["missing-path", "not-a-dump", "no-data-dir", "unknown-incident", "no-host",
                                  "pending", "bad-window"])
def test_errors_are_one_line_and_nonzero(data: Path, tmp_path: Path, case: str) -> None:
    crash = tmp_path / "crash"
    crash.mkdir()
    args: list[str]
    if case == "missing-path":
        args = [str(crash / "nope"), "--data-dir", str(data)]
        want, code = "no such file or directory", 1
    elif case == "not-a-dump":
        (crash / "photos").mkdir()
        args = [str(crash / "photos"), "--host", "h", "--data-dir", str(data)]
        want, code = "not a kdump directory", 1
    elif case == "no-data-dir":
        d = make_debian(crash, local(T), crashtime=int(T))
        args = [str(d), "--host", "h", "--data-dir", str(tmp_path / "nodata")]
        want, code = "no data directory", 1
    elif case == "unknown-incident":
        d = make_debian(crash, local(T), crashtime=int(T))
        args = [str(d), "--incident", "20990101T000000Z-abcdef", "--data-dir", str(data)]
        want, code = "no incident matches", 1
    elif case == "no-host":
        d = make_rhel(crash, local(T), ip="127.0.0.1", crashtime=int(T))
        args = [str(d), "--data-dir", str(data)]
        want, code = "--host", 1
    elif case == "pending":
        d = make_rhel(crash, local(T), ip="10.0.0.7", crashtime=int(T), incomplete=True)
        args = [str(d), "--host", "h", "--data-dir", str(data)]
        want, code = "vmcore-incomplete present", 2
    else:
        d = make_debian(crash, local(T), crashtime=int(T))
        args = [str(d), "--host", "h", "--window", "-5", "--data-dir", str(data)]
        want, code = "--window", 1
    r = sylog("link-vmcore", *args)
    assert r.returncode == code, (r.stdout, r.stderr)
    assert want in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert r.stderr.startswith("sylog link-vmcore: ")


def test_incidents_missing_vmcore_lists_the_marked_ones(data: Path, tmp_path: Path) -> None:
    crash = tmp_path / "crash"
    crash.mkdir()
    vscan.scan(str(data), [str(crash)], now=T - 10 * 3600)  # watching began
    panic = syslog_incident(data, "db-07", strip_ts(crash_lines(RELEASE_DEB)), T - 4 * 3600)
    syslog_incident(data, "db-07", WARN, T - 4 * 3600 + 100)
    assert vscan.mark_missing(str(data)) == [panic.id]
    r = sylog("incidents", "--data-dir", str(data), "--missing-vmcore", "--json")
    assert r.returncode == 0, r.stderr
    assert [i["id"] for i in orjson.loads(r.stdout)] == [panic.id]


def test_pointing_at_the_crash_dir_itself_suggests_a_dump(data: Path, tmp_path: Path) -> None:
    crash = tmp_path / "crash"
    d = make_debian(crash, local(T), tag="db-07", crashtime=int(T))
    r = sylog("link-vmcore", str(crash), "--data-dir", str(data))
    assert r.returncode == 1 and "not a kdump directory" in r.stderr and str(d) in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1

"""`sylog signatures` over generated incident JSON files: grouping, distinct hosts, ordering, JSON shape, --since."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from sylog.cli import main
from sylog.commands.signatures import group_signatures


def write_incident(data: Path, host: str, iid: str, **fields) -> dict:
    inc = {"id": iid, "host": host, "kind": "oops", "kinds": ["oops"], "fatal": False, "title": "t",
           "function": None, "module": None, "kernel_release": "6.1.0-18-amd64", "signature": "",
           "state": "closed", "first_seen": "2026-11-25T10:00:00.000000Z", "last_seen": "2026-11-25T10:00:05.000000Z",
           "lines": 3, "path": "", "vmcore": None}
    inc.update(fields)
    d = data / "incidents" / host
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{iid}.json").write_bytes(orjson.dumps(inc))
    (d / f"{iid}.log").write_bytes(b"ctx\n")
    return inc


@pytest.fixture
def fleet(tmp_path: Path) -> Path:
    # sigA: ixgbe driver bug on 3 hosts (4 incidents: db-1 twice), two kernel releases
    write_incident(tmp_path, "db-1", "a1", kind="gpf", signature="sigA", title="general protection fault in ixgbe_poll",
                   module="ixgbe", first_seen="2026-11-24T08:00:00.000000Z", last_seen="2026-11-24T08:00:02.000000Z")
    write_incident(tmp_path, "db-1", "a2", kind="gpf", signature="sigA", title="general protection fault in ixgbe_poll",
                   module="ixgbe", first_seen="2026-11-25T09:00:00.000000Z", last_seen="2026-11-25T09:00:03.000000Z")
    write_incident(tmp_path, "db-2", "a3", kind="gpf", signature="sigA", title="general protection fault in ixgbe_poll",
                   module="ixgbe", kernel_release="6.1.0-20-amd64",
                   first_seen="2026-11-25T09:30:00.000000Z", last_seen="2026-11-25T09:31:00.000000Z")
    write_incident(tmp_path, "web-9", "a4", kind="gpf", signature="sigA", title="general protection fault in ixgbe_poll",
                   module="ixgbe", first_seen="2026-11-25T07:00:00.000000Z", last_seen="2026-11-25T07:00:01.000000Z")
    # sigB: ext4 BUG on 1 host but 3 incidents
    for i in range(3):
        write_incident(tmp_path, "fs-1", f"b{i}", kind="bug", signature="sigB", title="kernel BUG at fs/ext4/inode.c:123",
                       first_seen=f"2026-11-25T0{i}:00:00.000000Z", last_seen=f"2026-11-25T0{i}:00:00.500000Z")
    # sigC: hung task on 2 hosts
    write_incident(tmp_path, "nfs-1", "c1", kind="hung-task", signature="sigC", title="INFO: task hung in nfs_wait",
                   first_seen="2026-11-20T00:00:00.000000Z", last_seen="2026-11-20T00:01:00.000000Z")
    write_incident(tmp_path, "nfs-2", "c2", kind="hung-task", signature="sigC", title="INFO: task hung in nfs_wait",
                   first_seen="2026-11-21T00:00:00.000000Z", last_seen="2026-11-21T00:01:00.000000Z")
    # junk that must be skipped: a temp file, a non-object, broken JSON
    (tmp_path / "incidents" / "db-1" / ".tmp-a9.json").write_bytes(b'{"id": "half')
    (tmp_path / "incidents" / "db-1" / "weird.json").write_bytes(b"[1, 2]")
    (tmp_path / "incidents" / "db-2" / "broken.json").write_bytes(b"{nope")
    return tmp_path


def run_json(capsysbinary, *argv) -> list[dict]:
    rc = main(["signatures", *argv, "--json"])
    cap = capsysbinary.readouterr()
    assert rc == 0, cap.err
    return orjson.loads(cap.out)


def test_grouping_hosts_and_order(fleet, capsysbinary):
    rows = run_json(capsysbinary, "--data-dir", str(fleet))
    assert [r["signature"] for r in rows] == ["sigA", "sigC", "sigB"]  # by distinct hosts: 3, 2, 1
    a = rows[0]
    assert a == {
        "signature": "sigA", "kind": "gpf", "title": "general protection fault in ixgbe_poll", "incidents": 4,
        "hosts": ["db-1", "db-2", "web-9"], "kernel_releases": ["6.1.0-18-amd64", "6.1.0-20-amd64"],
        "modules": ["ixgbe"], "first_seen": "2026-11-24T08:00:00.000000Z", "last_seen": "2026-11-25T09:31:00.000000Z",
    }
    assert rows[2]["incidents"] == 3 and rows[2]["hosts"] == ["fs-1"] and rows[2]["modules"] == []
    assert rows[1]["hosts"] == ["nfs-1", "nfs-2"]


def test_since_keeps_incidents_active_in_the_window(fleet, capsysbinary):
    rows = run_json(capsysbinary, "--data-dir", str(fleet), "--since", "2026-11-25T01:00:00Z")
    got = {r["signature"]: (r["incidents"], r["hosts"]) for r in rows}
    assert got == {"sigA": (3, ["db-1", "db-2", "web-9"]), "sigB": (2, ["fs-1"])}
    assert rows[0]["first_seen"] == "2026-11-25T07:00:00.000000Z"
    rows = run_json(capsysbinary, "--data-dir", str(fleet), "--since", "2026-11-25T09:00:00Z",
                    "--until", "2026-11-25T09:10:00Z")
    assert [(r["signature"], r["hosts"]) for r in rows] == [("sigA", ["db-1"])]


def test_ties_break_on_incidents_then_recency():
    incs = [
        {"host": "h1", "signature": "old", "kind": "oops", "first_seen": "2026-01-01T00:00:00Z"},
        {"host": "h2", "signature": "new", "kind": "oops", "first_seen": "2026-02-01T00:00:00Z"},
        {"host": "h3", "signature": "many", "kind": "oops", "first_seen": "2026-01-01T00:00:00Z"},
        {"host": "h3", "signature": "many", "kind": "oops", "first_seen": "2026-01-02T00:00:00Z"},
        # no signature (e.g. an old file): grouped by kind + title, not lost, not merged with others
        {"host": "h4", "kind": "warning", "title": "WARNING in foo", "first_seen": 1767225600.0},
        {"host": "h5", "kind": "warning", "title": "WARNING in foo", "first_seen": 1767225700.0},
    ]
    rows = group_signatures(incs)
    assert [(r.signature, r.title, len(r.hosts)) for r in rows] == [
        (None, "WARNING in foo", 2), ("many", None, 1), ("new", None, 1), ("old", None, 1)]
    assert rows[0].first_seen == 1767225600.0 and rows[0].last_seen == 1767225700.0


def test_table_for_people(fleet):
    p = subprocess.run([sys.executable, "-m", "sylog", "signatures", "--data-dir", str(fleet)],
                       capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.decode().splitlines()
    assert lines[0].split() == ["HOSTS", "INCIDENTS", "KIND", "SIGNATURE", "FIRST_SEEN", "LAST_SEEN", "RELEASES",
                                "MODULES", "TITLE"]
    assert len(lines) == 4
    assert lines[1].split()[:4] == ["3", "4", "gpf", "sigA"]
    assert lines[1].endswith("general protection fault in ixgbe_poll")
    assert "2026-11-24 08:00:00" in lines[1] and "6.1.0-18-amd64,6.1.0-20-amd64" in lines[1] and "ixgbe" in lines[1]
    # aligned: the SIGNATURE column starts at the same offset on every line
    col = lines[0].index("SIGNATURE")
    assert all(ln[col:].startswith(s) for ln, s in zip(lines[1:], ("sigA", "sigC", "sigB")))


def test_empty_and_errors(tmp_path, capsysbinary):
    assert run_json(capsysbinary, "--data-dir", str(tmp_path)) == []  # no incidents yet: empty, not an error
    rc = main(["signatures", "--data-dir", str(tmp_path / "missing")])
    err = capsysbinary.readouterr().err.decode()
    assert rc == 1 and "no data directory" in err and err.count("\n") == 1
    rc = main(["signatures", "--data-dir", str(tmp_path), "--since", "soon"])
    err = capsysbinary.readouterr().err.decode()
    assert rc == 1 and "bad time 'soon'" in err and err.count("\n") == 1

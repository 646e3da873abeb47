"""Incident store: atomic files, permissions, recovery after a kill -9 (a real SIGKILLed writer process)."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
import time

import orjson

from sylog.incidents.engine import IncidentEngine
from sylog.incidents.model import Incident, decode, encode
from sylog.incidents.store import IncidentStore, read_log, safe_host_dir

from test_incident_support import OOPS, PANIC, FakeDetector, Feeder



def test_write_is_atomic_with_private_modes(tmp_path):
    st = IncidentStore(tmp_path / "data")
    inc = Incident(id="20261125T101500Z-abcdef", host="db-07", kind="oops", kinds=["oops"])
    st.write("db-07", inc.id, encode(inc), b"ctx\n" + b"---- sylog: crash lines of incident x follow ----\nL1\n")
    jp, lp = st.paths("db-07", inc.id)
    assert decode(jp.read_bytes()).kind == "oops"
    assert stat.S_IMODE(jp.stat().st_mode) == 0o600 and stat.S_IMODE(lp.stat().st_mode) == 0o600
    assert stat.S_IMODE(jp.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "data" / "incidents").stat().st_mode) == 0o700
    assert sorted(p.name for p in jp.parent.iterdir()) == [f"{inc.id}.json", f"{inc.id}.log"]  # no temp left
    ctx, crash = read_log(lp)
    assert ctx == b"ctx\n" and crash == [b"L1\n"]


def test_hostile_host_names_stay_inside(tmp_path):
    st = IncidentStore(tmp_path)
    for h in ("../../etc", "a/b", ".", "..", "", "x\x00y", ".hidden"):
        jp, _ = st.paths(h, "20261125T101500Z-abcdef")
        assert jp.resolve().is_relative_to((tmp_path / "incidents").resolve())
        assert jp.parent.parent == tmp_path / "incidents"
        assert "/" not in safe_host_dir(h) and not safe_host_dir(h).startswith(".")


def test_write_failure_is_reported_not_raised(tmp_path):
    st = IncidentStore(tmp_path)
    (tmp_path / "incidents").mkdir()
    (tmp_path / "incidents" / "blocked").write_text("a file where a dir should be")
    inc = Incident(id="20261125T101500Z-abcdef", host="blocked", kind="oops")
    ok = Incident(id="20261125T101500Z-abcde0", host="fine", kind="oops")
    failed = st.write_batch([("blocked", inc.id, encode(inc), b""), ("fine", ok.id, encode(ok), b"")])
    assert [f[1] for f in failed] == [inc.id]
    assert st.paths("fine", ok.id)[0].is_file()


def test_publish_without_fsync_then_sync(tmp_path):
    st = IncidentStore(tmp_path)
    inc = Incident(id="20261125T101500Z-abcdef", host="db", kind="oops")
    assert st.write_batch([("db", inc.id, encode(inc), b"ctx\n")], durable=False) == []
    jp, lp = st.paths("db", inc.id)
    assert decode(jp.read_bytes()).id == inc.id and lp.read_bytes() == b"ctx\n"
    assert not [q for q in jp.parent.iterdir() if q.name.startswith(".")]
    assert st.sync_batch([("db", inc.id)]) == []
    failed = st.sync_batch([("db", "20261125T101500Z-000000")])  # never written: reported, not raised
    assert [f[1] for f in failed] == ["20261125T101500Z-000000"]


WRITER = textwrap.dedent("""
    import os, sys
    from sylog.incidents.model import Incident, encode
    from sylog.incidents.store import IncidentStore
    st = IncidentStore(sys.argv[1])
    n = 0
    while True:
        n += 1
        for h in range(4):
            inc = Incident(id=f"20261125T101500Z-00000{h}", host=f"h{h}", kind="oops", lines=n,
                           title="x" * (n % 5000))
            st.write(f"h{h}", inc.id, encode(inc), b"line\\n" * (n % 3000))
        if n == 20:
            print("ready", flush=True)
""")


def test_kill_9_mid_write_leaves_every_file_readable(tmp_path):
    for round_ in range(3):
        p = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE)
        try:
            assert p.stdout.readline().strip() == b"ready"
            time.sleep(0.05 * (round_ + 1))  # let it be in the middle of something
        finally:
            p.send_signal(signal.SIGKILL)
            p.wait(10)
        for h in range(4):
            d = tmp_path / "incidents" / f"h{h}"
            inc = decode((d / f"20261125T101500Z-00000{h}.json").read_bytes())
            assert inc.lines >= 20
        # leftover temp files are cleaned by recovery
        st = IncidentStore(tmp_path)
        st.load_open()
        assert not [q for q in (tmp_path / "incidents").rglob(".*")]


def _engine(tmp_path, clock, **kw):
    return IncidentEngine(str(tmp_path), detector=FakeDetector(), clock=clock, quiet=10, **kw)


def test_recovery_resumes_or_closes_open_incidents(tmp_path):
    now = [1_800_000_000.0]
    clock = lambda: now[0]
    e = _engine(tmp_path, clock)
    feed = Feeder(e, t0=now[0])
    for ln in OOPS:
        feed("a", ln)
        feed("b", ln)
    e.tick(feed.t)
    e.flush_sync()
    files = {p.parent.name: p for p in (tmp_path / "incidents").rglob("*.json")}
    assert {h: decode(p.read_bytes()).state for h, p in files.items()} == {"a": "open", "b": "open"}
    del e  # "kill": nothing closed, nothing flushed beyond what is on disk

    # restart 5 s later (within quiet): both resumed; host a sends more and joins, b stays silent
    now[0] = feed.t + 5
    e2 = _engine(tmp_path, clock)
    assert e2.stats()["recovered_resumed"] == 2
    feed2 = Feeder(e2, t0=now[0])
    for ln in PANIC:
        feed2("a", ln)
    now[0] = feed2.t + 11
    e2.tick(now[0])
    e2.flush_sync()
    a = decode(files["a"].read_bytes())
    b = decode(files["b"].read_bytes())
    assert a.state == "closed" and a.closed_reason == "quiet" and a.fatal and a.lines == len(OOPS) + len(PANIC)
    assert b.state == "closed" and b.closed_reason == "restart" and b.lines == len(OOPS)
    ctx, crash = read_log(files["a"].with_suffix(".log"))
    assert len(crash) == len(OOPS) + len(PANIC)
    assert len(list((tmp_path / "incidents").rglob("*.json"))) == 2


def test_recovery_long_after_closes_with_reason_restart(tmp_path):
    now = [1_800_000_000.0]
    e = _engine(tmp_path, lambda: now[0])
    feed = Feeder(e, t0=now[0])
    for ln in OOPS:
        feed("a", ln)
    e.tick(feed.t)
    e.flush_sync()
    now[0] += 3600
    e2 = _engine(tmp_path, lambda: now[0])
    assert e2.stats()["recovered_closed"] == 1 and not e2.corr.open
    (p,) = (tmp_path / "incidents").rglob("*.json")
    inc = orjson.loads(p.read_bytes())
    assert inc["state"] == "closed" and inc["closed_reason"] == "restart" and inc["lines"] == len(OOPS)


def test_enospc_mid_write_keeps_the_previous_version_whole(tmp_path, monkeypatch):
    import errno
    import sylog.incidents.store as store_mod

    st = IncidentStore(tmp_path)
    inc = Incident(id="20261125T101500Z-abcdef", host="db", kind="oops", lines=1)
    st.write("db", inc.id, encode(inc), b"v1\n")
    real_write = os.write
    calls = {"n": 0}

    def full_disk(fd, data):
        calls["n"] += 1
        if calls["n"] > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, bytes(data[: len(data) // 2]))  # a short write first, then the disk is full

    monkeypatch.setattr(store_mod.os, "write", full_disk)
    inc2 = Incident(id=inc.id, host="db", kind="oops", lines=2, title="x" * 10000)
    failed = st.write_batch([("db", inc.id, encode(inc2), b"v2\n" * 1000)])
    monkeypatch.undo()
    assert len(failed) == 1 and failed[0][2].errno == errno.ENOSPC
    jp, lp = st.paths("db", inc.id)
    assert decode(jp.read_bytes()).lines == 1 and lp.read_bytes() == b"v1\n"  # old version intact
    assert sorted(p.name for p in jp.parent.iterdir()) == [jp.name, lp.name]  # no temp file left behind

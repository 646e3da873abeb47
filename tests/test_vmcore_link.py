"""Linking real-format dump directories to incidents: by signature, by time, dump-only, incomplete dumps, rescans,
restarts, sender address -> host, per-host folders, missing-vmcore marking, and the watcher on an event loop."""

from __future__ import annotations

import asyncio
import os
import time
from datetime import datetime
from pathlib import Path

import orjson
import pytest

from sylog.incidents.engine import IncidentEngine
from sylog.incidents.model import Incident
from sylog.incidents.store import IncidentStore
from sylog.syslog.message import Message
from sylog.timeline.format import format_line
from sylog.vmcore import scan as vscan
from sylog.vmcore.linker import analyze_dmesg
from sylog.vmcore.peers import PeerRecorder
from sylog.vmcore.watcher import VmcoreWatcher
from test_vmcore_build import (OOPS_MLX5, RELEASE_DEB, RELEASE_RHEL, RELEASE_SUSE, SYSRQ_C, age, crash_lines,
                               dmesg_text, finish_debian, finish_rhel, finish_suse, make_debian, make_rhel, make_suse)

T = float(int(time.time()) - 86400)  # "the crash": yesterday, so every window has passed by now
WARN = ["------------[ cut here ]------------",
        "WARNING: CPU: 2 PID: 0 at net/sched/sch_generic.c:525 dev_watchdog+0x21f/0x230",
        "Modules linked in: mlx5_core(OE) nfsd",
        "CPU: 2 PID: 0 Comm: swapper/2 Tainted: G           OE      6.1.0-18-amd64 #1",
        "RIP: 0010:dev_watchdog+0x21f/0x230",
        "Call Trace:",
        " <IRQ>",
        " call_timer_fn+0x27/0x130",
        " __run_timers+0x221/0x2b0",
        " </IRQ>",
        "---[ end trace 0000000000000000 ]---"]


def local(t: float) -> datetime:
    """A naive local datetime, as the capture kernel writes it into a directory name."""
    return datetime.fromtimestamp(t)


def syslog_incident(data: Path, host: str, lines: list[str], t0: float) -> Incident:
    """Feed lines as syslog kernel messages through the real incident engine; return the closed incident."""
    eng = IncidentEngine(str(data), quiet=30.0, clock=lambda: t0, recover=False)
    for i, text in enumerate(lines):
        msg = Message(format="rfc3164", pri=4, facility=0, severity=4, hostname=host, app_name="kernel", msg=text)
        t = t0 + i * 0.001
        eng.feed(host, t, msg, format_line(t, host, msg))
    eng.tick(t0 + 1000.0)
    eng.flush_sync()
    incs = [i for i in vscan.host_incidents(IncidentStore(data), host) if i.first_seen]
    return max(incs, key=lambda i: i.first_seen)


def strip_ts(lines: list[str]) -> list[str]:
    """Syslog relays usually carry the kernel text without the printk time."""
    return [ln.split("] ", 1)[1] if ln.startswith("[") else ln for ln in lines]


def incidents(data: Path, host: str) -> dict[str, Incident]:
    return {i.id: i for i in vscan.host_incidents(IncidentStore(data), host)}


@pytest.fixture
def data(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    return d


@pytest.fixture
def crashdir(tmp_path: Path) -> Path:
    d = tmp_path / "crash"
    d.mkdir()
    return d


def scan(data: Path, crashdir: Path, **kw) -> list[vscan.LinkResult]:
    kw.setdefault("now", time.time())
    return vscan.scan(str(data), [str(crashdir)], **kw)


# --- matching ----------------------------------------------------------------------------------------------

def test_signature_beats_a_closer_incident(data: Path, crashdir: Path) -> None:
    oops = syslog_incident(data, "db-07", strip_ts(crash_lines(RELEASE_DEB)), T - 300)
    warn = syslog_incident(data, "db-07", WARN, T - 60)  # opened closer to the dump, but another bug
    assert oops.signature != warn.signature
    d = make_debian(crashdir, local(T + 40), tag="db-07", crashtime=int(T))
    [r] = scan(data, crashdir)
    assert (r.status, r.incident_id, r.matched_by, r.host) == ("linked", oops.id, "signature", "db-07")
    got = incidents(data, "db-07")
    vm = got[oops.id].vmcore
    assert vm is not None and got[warn.id].vmcore is None
    assert vm["path"] == str(d / f"dump.{d.name[-12:]}") and vm["size"] == os.path.getsize(vm["path"])
    assert vm["dmesg"] == str(d / f"dmesg.{d.name[-12:]}")
    assert vm["matched_by"] == "signature" and vm["layout"] == "debian" and vm["kernel_release"] == RELEASE_DEB
    assert vm["crash_command"] == f"crash /usr/lib/debug/boot/vmlinux-{RELEASE_DEB} {vm['path']}"
    assert vm["crash_hints"] == ["mod -s mlx5_core", "bt", "log", "ps", "kmem -i",
                                 "dis -l mlx5e_tx_reporter_timeout_recover"]
    assert vm["crash_time_source"] == "crashtime"


def test_dump_dmesg_signature_equals_the_live_one(data: Path) -> None:
    """The same crash seen by syslog (no printk times) and in the dump's dmesg gets one signature."""
    live = syslog_incident(data, "db-07", strip_ts(crash_lines(RELEASE_DEB)), T)
    dump = analyze_dmesg(dmesg_text(RELEASE_DEB), "db-07")
    assert dump is not None
    assert (dump.incident.kind, dump.incident.signature, dump.incident.fatal) == (live.kind, live.signature, True)


def test_time_window_links_closest_before(data: Path, crashdir: Path) -> None:
    older = syslog_incident(data, "db-07", WARN, T - 5000)
    hung = syslog_incident(data, "db-07", ["INFO: task jbd2/sda1-8:412 blocked for more than 122 seconds.",
                                           "      Not tainted 6.1.0-18-amd64 #1",
                                           "task:jbd2/sda1-8    state:D stack:0     pid:412   ppid:2      "
                                           "flags:0x00004000",
                                           "Call Trace:", " <TASK>", " __schedule+0x34d/0x9e0",
                                           " jbd2_journal_commit_transaction+0x12f/0x1a00", " </TASK>"], T - 900)
    make_rhel(crashdir, local(T + 30), ip="10.0.0.7", crashtime=int(T), crash=SYSRQ_C)
    peers = PeerRecorder(str(data))
    peers.note("10.0.0.7", "db-07")
    peers.flush()
    [r] = scan(data, crashdir)
    assert (r.status, r.incident_id, r.matched_by) == ("linked", hung.id, "time")
    assert incidents(data, "db-07")[older.id].vmcore is None
    vm = incidents(data, "db-07")[hung.id].vmcore
    assert vm["host_from"] == "peer-ip" and vm["layout"] == "rhel"
    assert vm["crash_command"].startswith(f"crash /usr/lib/debug/lib/modules/{RELEASE_RHEL}/vmlinux ")


def test_dump_only_creates_an_incident_from_its_dmesg(data: Path, crashdir: Path) -> None:
    syslog_incident(data, "web-3", WARN, T - 3 * 3600)  # outside the 2 h window, another bug
    d = make_suse(crashdir, local(T + 60), host="web-3", crashtime=int(T))
    [r] = scan(data, crashdir)
    assert (r.status, r.matched_by, r.host) == ("created", "dump-only", "web-3")
    inc = incidents(data, "web-3")[r.incident_id]
    assert inc.source == "vmcore" and inc.fatal and inc.state == "closed"
    assert inc.kind == "page-fault" and "mlx5e_tx_reporter_timeout_recover" in inc.title
    assert inc.module == "mlx5_core" and inc.kernel_release == RELEASE_SUSE
    assert inc.vmcore["matched_by"] == "dump-only" and inc.vmcore["layout"] == "suse"
    assert inc.vmcore["crash_command"] == f"crash /boot/vmlinux-{RELEASE_SUSE}.gz {d / 'vmcore'}"
    assert inc.last_seen.startswith(datetime.utcfromtimestamp(T).strftime("%Y-%m-%dT%H:%M:%S"))
    log_text = Path(inc.log_path).read_text()
    assert "BUG: kernel NULL pointer dereference" in log_text and "Kernel panic - not syncing" in log_text
    assert "Linux version" in log_text.split("---- sylog:")[0]  # dmesg before the trigger is the context


def test_unclean_reboot_after_the_dump_gets_it(data: Path, crashdir: Path) -> None:
    """The host went silent (panic never reached syslog) and came back: the unclean-reboot incident gets the dump."""
    eng = IncidentEngine(str(data), quiet=30.0, clock=lambda: T, recover=False)
    for i, (t, text) in enumerate([(T - 30, "[ 5100.000000] nfs: server fs1 not responding, still trying"),
                                   (T + 400, "[    0.000000] Linux version 6.1.0-18-amd64 (x) #1 SMP"),
                                   (T + 401, "[    0.000000] Command line: BOOT_IMAGE=/boot/vmlinuz ro")]):
        msg = Message(format="rfc3164", facility=0, severity=5, hostname="db-07", app_name="kernel", msg=text)
        eng.feed("db-07", t, msg, format_line(t, "db-07", msg))
    eng.tick(T + 2000)
    eng.flush_sync()
    [unclean] = incidents(data, "db-07").values()
    assert unclean.kind == "unclean-reboot"
    make_debian(crashdir, local(T + 60), host_folder="db-07", crashtime=int(T), crash=SYSRQ_C)
    [r] = scan(data, crashdir)
    assert (r.status, r.incident_id, r.matched_by) == ("linked", unclean.id, "time")


# --- being written, rescans, restarts ----------------------------------------------------------------------

@pytest.mark.parametrize("layout", ["rhel", "debian", "suse"])
def test_incomplete_dump_waits_until_complete(data: Path, crashdir: Path, layout: str) -> None:
    if layout == "rhel":
        d = make_rhel(crashdir, local(T), ip="10.9.9.9", crashtime=int(T), incomplete=True)
    elif layout == "debian":
        d = make_debian(crashdir, local(T), tag="db-07", crashtime=int(T), incomplete=True)
    else:
        d = make_suse(crashdir, local(T), host="web-3", crashtime=int(T), final=False)
    [r] = scan(data, crashdir)
    assert r.status == "pending" and r.message
    assert not list(data.rglob("incidents/*/*.json"))
    assert scan(data, crashdir)[0].status == "pending"  # still waiting, still not linked
    {"rhel": finish_rhel, "debian": finish_debian, "suse": finish_suse}[layout](d)
    [r] = scan(data, crashdir)
    assert r.status == "created"
    assert scan(data, crashdir) == []


def test_rescans_and_restarts_never_link_twice(data: Path, crashdir: Path) -> None:
    oops = syslog_incident(data, "db-07", strip_ts(crash_lines(RELEASE_DEB)), T)
    make_debian(crashdir, local(T + 60), host_folder="db-07", crashtime=int(T))
    make_rhel(crashdir, local(T + 60), ip="127.0.0.1", host_folder="db-08", crashtime=int(T))  # dump-only
    first = scan(data, crashdir)
    assert sorted(r.status for r in first) == ["created", "linked"]
    snap = {p: p.read_bytes() for p in (data / "incidents").rglob("*.json")}
    for _ in range(3):
        assert scan(data, crashdir) == []
    # restart with the registry lost: rebuilt from the incidents' vmcore keys, nothing linked again
    (data / "state" / "vmcores.json").unlink()
    assert scan(data, crashdir) == []
    assert {p: p.read_bytes() for p in (data / "incidents").rglob("*.json")} == snap
    assert incidents(data, "db-07")[oops.id].vmcore["matched_by"] == "signature"
    assert len(incidents(data, "db-08")) == 1
    reg = orjson.loads((data / "state" / "vmcores.json").read_bytes())
    assert len(reg["dumps"]) == 2


def test_one_dump_one_incident_and_one_incident_one_dump(data: Path, crashdir: Path) -> None:
    oops = syslog_incident(data, "db-07", strip_ts(crash_lines(RELEASE_DEB)), T)
    make_debian(crashdir, local(T + 60), tag="db-07", crashtime=int(T))
    make_debian(crashdir, local(T + 120), tag="db-07", crashtime=int(T) + 61)  # a second dump of the same bug
    res = scan(data, crashdir)
    assert sorted(r.status for r in res) == ["created", "linked"]
    linked = [r for r in res if r.status == "linked"]
    assert linked[0].incident_id == oops.id
    assert len(incidents(data, "db-07")) == 2


# --- hosts -------------------------------------------------------------------------------------------------

def test_local_dump_without_host_is_unresolved_until_told(data: Path, crashdir: Path) -> None:
    d = make_rhel(crashdir, local(T), ip="127.0.0.1", crashtime=int(T))
    [r] = scan(data, crashdir)
    assert r.status == "unresolved" and "--host" in r.message
    res = vscan.link_one(str(data), d, host="DB-07.", now=time.time())
    assert (res.status, res.host) == ("created", "db-07")
    assert scan(data, crashdir) == []


def test_host_from_dump_header_nodename(data: Path, crashdir: Path) -> None:
    make_suse(crashdir, local(T), host=None, crashtime=int(T))  # local SUSE dump, nodename 'linux'
    [r] = scan(data, crashdir)
    assert (r.status, r.host) == ("created", "linux")


def test_relay_address_maps_to_no_host(data: Path) -> None:
    p = PeerRecorder(str(data))
    p.note("10.0.0.1", "db-07")
    p.note("10.0.0.1", "db-08")  # a relay
    p.note("10.0.0.2", "web-3")
    p.note("10.0.0.2", "web-3.example.com")  # same host, FQDN
    p.note("10.0.0.3", "10.0.0.3")  # no name: nothing to learn
    p.flush()
    assert vscan.load_peers(str(data)) == {"10.0.0.2": "web-3"}
    assert PeerRecorder(str(data)).mapping() == {"10.0.0.2": "web-3"}  # survives a restart


# --- missing dumps -----------------------------------------------------------------------------------------

def test_fatal_incident_without_dump_is_marked_missing(data: Path, crashdir: Path) -> None:
    scan(data, crashdir, now=T - 10 * 3600)  # watching began before these incidents
    panic = syslog_incident(data, "db-07", strip_ts(crash_lines(RELEASE_DEB)), T - 4 * 3600)
    warn = syslog_incident(data, "db-07", WARN, T - 4 * 3600 + 100)
    recent = syslog_incident(data, "db-09", strip_ts(crash_lines(RELEASE_DEB, SYSRQ_C)), time.time() - 60)
    assert panic.fatal and recent.fatal and not warn.fatal
    marked = vscan.mark_missing(str(data), window=7200.0)
    assert marked == [panic.id]
    assert incidents(data, "db-07")[panic.id].vmcore_missing
    assert not incidents(data, "db-07")[warn.id].vmcore_missing
    assert vscan.mark_missing(str(data), window=7200.0) == []  # marked once
    # the dump turns up late after all (slow NFS): linked by signature, no longer missing
    make_debian(crashdir, local(T - 4 * 3600 + 3 * 3600), tag="db-07", crashtime=int(T - 4 * 3600))
    [r] = scan(data, crashdir)
    assert (r.incident_id, r.matched_by) == (panic.id, "signature")
    inc = incidents(data, "db-07")[panic.id]
    assert inc.vmcore and not inc.vmcore_missing


def test_incidents_before_watching_are_not_marked(data: Path) -> None:
    syslog_incident(data, "db-07", strip_ts(crash_lines(RELEASE_DEB)), T)
    assert vscan.mark_missing(str(data), window=60.0) == []  # no vmcore dir ever watched


# --- the watcher on an event loop, with the incident engine ------------------------------------------------

async def test_watcher_links_and_hands_open_incidents_to_the_engine(data: Path, crashdir: Path) -> None:
    now = time.time()
    eng = IncidentEngine(str(data), quiet=3600.0, recover=False)  # stays open for the test
    seen: list[tuple[str, str]] = []
    eng.listeners.append(lambda ev, inc: seen.append((ev, inc.id)))
    for i, text in enumerate(strip_ts(crash_lines(RELEASE_DEB))):
        msg = Message(format="rfc3164", facility=0, severity=4, hostname="db-07", app_name="kernel", msg=text)
        eng.feed("db-07", now - 100 + i * 0.001, msg, format_line(now - 100, "db-07", msg))
    eng.tick(now)
    for _ in range(100):
        if list((data / "incidents").rglob("*.json")):
            break
        await asyncio.sleep(0.02)
    [open_id] = [i for i in incidents(data, "db-07")]
    w = VmcoreWatcher(str(data), [str(crashdir)], interval=3600.0, engine=eng)
    make_debian(crashdir, local(now - 50), tag="db-07", crashtime=int(now - 100))
    age(make_suse(crashdir, local(now - 50), host="web-3", crashtime=int(now - 100), crash=SYSRQ_C), 600)
    res = await w.scan_now()
    assert sorted(r.status for r in res) == ["created", "deferred"]
    assert w.counters["vmcore_linked"] == 1 and w.counters["vmcore_created"] == 1
    assert eng.corr.open["db-07"].inc.vmcore["matched_by"] == "signature"
    eng.tick(time.time())
    await eng.aclose()
    await w.aclose()
    inc = incidents(data, "db-07")[open_id]
    assert inc.vmcore and inc.vmcore["layout"] == "debian"
    assert ("vmcore", open_id) in seen
    # the engine took it; the registry knows: a new watcher (restart) does nothing
    w2 = VmcoreWatcher(str(data), [str(crashdir)], interval=3600.0)
    assert await w2.scan_now() == []
    await w2.aclose()


def test_unlinkable_dump_is_not_reread_until_it_changes(data: Path, crashdir: Path) -> None:
    cache: dict = {}
    d = make_rhel(crashdir, local(T), ip="127.0.0.1", crashtime=int(T))
    assert [r.status for r in scan(data, crashdir, cache=cache)] == ["unresolved"]
    assert scan(data, crashdir, cache=cache) == []  # same files: not read again
    (d / "vmcore-dmesg.txt").write_text(dmesg_text(RELEASE_RHEL, SYSRQ_C))  # the operator replaced a file
    assert [r.status for r in scan(data, crashdir, cache=cache)] == ["unresolved"]


def test_dump_time_without_crashtime(data: Path, crashdir: Path) -> None:
    """No CRASHTIME: the dump header's time stamp, else the directory name (local time) places the dump."""
    hung = syslog_incident(data, "db-07", WARN, T - 600)
    make_debian(crashdir, local(T), tag="db-07", crashtime=None, cp_fallback=True, crash=SYSRQ_C)  # ELF, no time
    [r] = scan(data, crashdir)
    assert (r.incident_id, r.matched_by) == (hung.id, "time")
    assert r.vmcore["crash_time_source"] == "dirname" and r.vmcore["format"] == "elf"
    from sylog.vmcore.vmcoreinfo import build_kdump_compressed, parse_prefix
    info = parse_prefix(build_kdump_compressed("6.1.0", None, header_time=int(T)))
    from sylog.vmcore.linker import dump_time
    from sylog.vmcore.layouts import recognise
    d = recognise("202001010000", ["dump.202001010000"])
    assert dump_time(d, info) == (T, "dump-header")


def test_garbage_dump_and_dmesg_still_link_by_time(data: Path, crashdir: Path) -> None:
    """A dump whose header we cannot read and a dmesg of binary junk: linked by the folder time, never a crash."""
    warn = syslog_incident(data, "db-07", WARN, T - 600)
    d = crashdir / f"db-07-{local(T):%Y%m%d%H%M}"
    d.mkdir()
    (d / f"dmesg.{d.name[-12:]}").write_bytes(os.urandom(20000) + b"\n\xff\xfe BUG: \x00\n")
    (d / f"dump.{d.name[-12:]}").write_bytes(b"makedumpfile" + os.urandom(50000))
    [r] = scan(data, crashdir)
    assert (r.status, r.incident_id, r.matched_by) == ("linked", warn.id, "time")
    assert r.vmcore["format"] == "flattened"
    # the release comes from the live incident's report when the dump does not say
    assert r.vmcore["kernel_release"] == warn.kernel_release == "6.1.0-18-amd64"
    assert r.vmcore["crash_command"].startswith("crash /usr/lib/debug/boot/vmlinux-6.1.0-18-amd64 ")


def test_missing_marking_cache_rechecks_changed_files(data: Path, crashdir: Path) -> None:
    scan(data, crashdir, now=T - 10 * 3600)
    panic = syslog_incident(data, "db-07", strip_ts(crash_lines(RELEASE_DEB)), T - 4 * 3600)
    cache: dict = {}
    assert vscan.mark_missing(str(data), cache=cache) == [panic.id]
    assert vscan.mark_missing(str(data), cache=cache) == []
    # someone clears the mark (e.g. a relink by hand): the changed file is judged again
    vscan.update_incident_file(IncidentStore(data), "db-07", panic.id, lambda i: setattr(i, "vmcore_missing", False))
    os.utime(panic.path, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert vscan.mark_missing(str(data), cache=cache) == [panic.id]


def test_fqdn_in_dump_files_under_the_short_name_sylog_knows(data: Path, crashdir: Path) -> None:
    oops = syslog_incident(data, "db-07", strip_ts(crash_lines(RELEASE_DEB)), T)
    make_suse(crashdir, local(T + 60), host="DB-07.example.com", crashtime=int(T))
    [r] = scan(data, crashdir)
    assert (r.host, r.incident_id, r.matched_by) == ("db-07", oops.id, "signature")
    make_suse(crashdir, local(T + 120), host="web-9.example.com", crashtime=int(T) + 60)  # unknown: kept as is
    [r] = scan(data, crashdir)
    assert r.host == "web-9.example.com"


def test_linked_incident_becomes_fatal(data: Path, crashdir: Path) -> None:
    """The oops reached syslog but the panic after it did not: the dump proves the host went down."""
    lines = strip_ts(crash_lines(RELEASE_DEB))
    oops = syslog_incident(data, "db-07", [x for x in lines if "Kernel panic" not in x], T)
    assert not oops.fatal and "panic" not in oops.kinds
    make_debian(crashdir, local(T + 60), tag="db-07", crashtime=int(T))
    [r] = scan(data, crashdir)
    assert (r.incident_id, r.matched_by) == (oops.id, "signature")
    inc = incidents(data, "db-07")[oops.id]
    assert inc.fatal and inc.kinds[-1] == "panic" and inc.kind == oops.kind


def test_debian_hardware_error_dmesg_only_is_linked(data: Path, crashdir: Path) -> None:
    from test_vmcore_build import make_debian_dmesg_only

    mce = make_debian_dmesg_only(crashdir, local(T), tag="db-07")
    plain = make_debian_dmesg_only(crashdir, local(T + 300), tag="db-08", crash=OOPS_MLX5)  # dump still to come
    res = {Path(r.dir).name: r for r in scan(data, crashdir)}
    assert res[plain.name].status == "pending"
    r = res[mce.name]
    assert (r.status, r.matched_by, r.host) == ("created", "dump-only", "db-07")
    inc = incidents(data, "db-07")[r.incident_id]
    assert inc.kind == "mce" and inc.fatal
    assert inc.vmcore["path"] is None and inc.vmcore["crash_command"] is None
    assert "hardware error" in inc.vmcore["dump_skipped"]
    assert inc.vmcore["dmesg"] == str(mce / f"dmesg.{mce.name[-12:]}")


def test_suse_finished_without_vmcore_is_linked(data: Path, crashdir: Path) -> None:
    d = make_suse(crashdir, local(T), host="web-3", crashtime=int(T))
    (d / "vmcore").unlink()  # KDUMP_DUMPFORMAT=none, or deleted for KDUMP_FREE_DISK_SIZE
    (d / "README.txt").write_text((d / "README.txt").read_text().replace(
        "vmcore status: saved successfully", "vmcore status: skipped"))
    [r] = scan(data, crashdir)
    assert r.status == "created" and "vmcore status: skipped" in r.vmcore["dump_skipped"]


async def test_watcher_warns_once_about_an_unreadable_dir_and_recovers(data: Path, tmp_path: Path, caplog) -> None:
    later = tmp_path / "not-yet"
    w = VmcoreWatcher(str(data), [str(later)], interval=3600.0)
    caplog.set_level("WARNING", logger="sylog.vmcore")
    assert await w.scan_now() == []
    assert await w.scan_now() == []
    assert sum("cannot read vmcore dir" in r.message for r in caplog.records) == 1
    later.mkdir()
    age(make_debian(later, local(T), tag="db-07", crashtime=int(T)), 600)
    [r] = await w.scan_now()
    assert r.status == "created"
    await w.aclose()


def test_guesses_wait_for_late_syslog_lines_but_signatures_do_not(data: Path, crashdir: Path) -> None:
    """rsyslog often delivers a host's last lines only after it rebooted, i.e. after the dump is complete: a fresh
    dump is matched by time / made an incident of its own only once it has settled; a signature match at once."""
    now = time.time()
    d = make_debian(crashdir, local(now - 120), tag="db-07", crashtime=int(now - 120))
    [r] = scan(data, crashdir, settle=300.0, now=now)
    assert r.status == "pending" and "waiting" in r.message
    # the backlog arrives: the crash's own lines, queued on the host across its reboot
    oops = syslog_incident(data, "db-07", strip_ts(crash_lines(RELEASE_DEB)), now - 120)
    [r] = scan(data, crashdir, settle=300.0, now=now)
    assert (r.status, r.incident_id, r.matched_by) == ("linked", oops.id, "signature")
    # a dump nothing matches: created only once settled
    d2 = make_suse(crashdir, local(now - 60), host="web-3", crashtime=int(now - 60), crash=SYSRQ_C)
    assert scan(data, crashdir, settle=300.0, now=now)[0].status == "pending"
    age(d2, 400)
    assert scan(data, crashdir, settle=300.0, now=now)[0].status == "created"
    assert d.exists()


def test_crash_lines_that_arrive_after_the_dump_still_get_it(data: Path, crashdir: Path) -> None:
    """rsyslog queued the oops on the dying host and forwarded it after the reboot: sylog received it minutes after
    the crash time the dump records. Same signature: linked; a later warning of the new boot is not."""
    late = syslog_incident(data, "db-07", strip_ts(crash_lines(RELEASE_DEB)), T + 420)
    syslog_incident(data, "db-07", WARN, T + 900)  # after the reboot: another, harmless matter
    make_debian(crashdir, local(T + 60), tag="db-07", crashtime=int(T))
    [r] = scan(data, crashdir)
    assert (r.incident_id, r.matched_by) == (late.id, "signature")


def test_late_crash_of_another_signature_is_matched_by_time_but_a_warning_is_not(data: Path, crashdir: Path) -> None:
    warn = syslog_incident(data, "db-07", WARN, T + 900)
    make_debian(crashdir, local(T + 60), tag="db-07", crashtime=int(T), crash=SYSRQ_C)
    [r] = scan(data, crashdir)
    assert r.status == "created" and r.incident_id != warn.id
    late = syslog_incident(data, "db-08", strip_ts(crash_lines(RELEASE_DEB)), T + 420)  # oops, not the dump's sysrq
    make_debian(crashdir, local(T + 60), tag="db-08", crashtime=int(T), crash=SYSRQ_C)
    [r] = scan(data, crashdir)
    assert (r.incident_id, r.matched_by) == (late.id, "time")

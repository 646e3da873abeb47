"""Sans-IO decisions for tying a kdump dump to an incident.

Given what was learnt from a dump directory (its layout, the VMCOREINFO of the dump, its dmesg run through the
same per-host correlator that the server runs on live syslog), the host it belongs to and that host's incidents,
decide: link to the incident with the same signature; else to the incident opened closest before the dump within
the window; else to an ``unclean-reboot`` incident the host's return produced just after; else make a new
incident from the dump's dmesg (``source: "vmcore"``). No I/O here: the caller reads files and writes incidents.
"""

from __future__ import annotations

import calendar
import time
from datetime import datetime
from typing import Any, Iterable

import msgspec

from sylog.incidents.model import Incident, parse_rfc3339
from sylog.vmcore.layouts import DumpDir, crash_command, crash_hints, debug_vmlinux
from sylog.vmcore.vmcoreinfo import DumpInfo

CLOCK_SLACK = 300.0  # seconds an incident may start *after* the dump time (clock skew between host and us)
# kdump.sh's HOST_IP for a local target: says nothing about which host (whoever sent syslog from 127.0.0.1 to us
# is not necessarily the host whose dump this is).
LOCAL_PLACEHOLDERS = frozenset({"127.0.0.1", "::1"})
MATCH_SIGNATURE = "signature"
MATCH_TIME = "time"
MATCH_DUMP_ONLY = "dump-only"
MATCH_MANUAL = "manual"


class DmesgCrash(msgspec.Struct, kw_only=True):
    """The crash a dump's dmesg tells of, as the live correlator would have recorded it."""

    incident: Incident  # fields filled by the correlator + report (kind, kinds, fatal, title, signature, ...)
    lines: list[str]  # the crash lines (dmesg text, as in the file)
    context: list[str]  # dmesg lines before the trigger (bounded)
    others: list[str] = []  # signatures of earlier incidents in the same dmesg (warnings before the crash...)


class Decision(msgspec.Struct, kw_only=True):
    action: str  # 'link' | 'create'
    incident_id: str | None
    matched_by: str


# --- the dump's dmesg through the live correlation logic -------------------------------------------------------

def analyze_dmesg(text: str, host: str, *, quiet: float = 30.0, context_lines: int = 200, detector: Any = None,
                  max_lines: int = 200_000) -> DmesgCrash | None:
    """Run dmesg text (``[ ts] body`` lines) through :class:`sylog.incidents.correlator.Correlator`.

    The clock is the printk time, so ``quiet`` groups lines exactly as it does live. Returns the crash the dump
    was taken for — the last incident that ended fatally or is of a dying kind, else the last incident — or None
    when the detector finds nothing."""
    from sylog.incidents.correlator import DIE_KINDS, Correlator
    from sylog.kernel.printk import split_printk
    from sylog.syslog.message import FORMAT_RAW, Message

    got: list[Any] = []

    def sink(ev: str, rec: Any) -> None:
        if ev == "opened":
            got.append(rec)

    cor = Correlator(sink, quiet=quiet, context_lines=context_lines, refresh_interval=0.0, detector=detector,
                     max_open=10 ** 9, max_lines=20_000, tail_keep=2_000)
    clock = 1_000_000.0
    last_ts = None
    for i, raw in enumerate(text.splitlines()):
        if i >= max_lines:
            break
        if not raw.strip():
            continue
        ts = split_printk(raw).ts
        if ts is not None:
            if last_ts is None or ts >= last_ts:
                clock += (ts - last_ts) if last_ts is not None else 0.0
            last_ts = ts
        msg = Message(format=FORMAT_RAW, facility=0, app_name="kernel", msg=raw)
        cor.feed(host, clock, msg, (raw + "\n").encode("utf-8", "surrogateescape"))
    cor.close_all("dump")
    real = [r for r in got if r.inc.kind != "unclean-reboot"]
    if not real:
        return None
    crash = None
    for r in reversed(real):
        if r.inc.fatal or r.inc.kind in DIE_KINDS:
            crash = r
            break
    crash = crash or real[-1]
    inc = crash.inc
    inc.source = "vmcore"
    lines = [b.decode("utf-8", "surrogateescape").rstrip("\n") for b in crash.crash_lines()]
    ctx = [b.decode("utf-8", "surrogateescape").rstrip("\n") for b in crash.context.splitlines()]
    others = [r.inc.signature for r in real if r is not crash and r.inc.signature]
    return DmesgCrash(incident=inc, lines=lines, context=ctx, others=others)


# --- host and time ---------------------------------------------------------------------------------------------

def resolve_host(dump: DumpDir, info: DumpInfo | None, peers: dict[str, str], *, override: str | None = None,
                 fold: Any = None, known: set[str] | frozenset[str] = frozenset()) -> tuple[str | None, str]:
    """(host, how) — how the dump's host was learnt: 'manual', 'folder', 'dirname', 'peer-ip', 'nodename', 'ip'.

    An IP in the directory name is mapped through ``peers`` (address -> host name sylog has seen sending from it).
    127.0.0.1 (RHEL's local dumps) says nothing; the dump header's utsname.nodename is used before falling back
    to the bare IP (which is also how sylog names a sender that gives no host name).

    ``known``: host names sylog already files things under; a name from the dump (``db-07.example.com`` as
    nodename or in a directory name) that is not one of them but whose first label is (``db-07``) is filed there,
    so a host that syslogs with its short name and dumps with its FQDN stays one host."""
    fold_ = fold or (lambda name: name.strip().lower().rstrip("."))

    def f(name: str) -> str:
        h = fold_(name)
        if not known or h in known or _is_ip_like(h):
            return h
        short = h.split(".", 1)[0]
        if short in known:
            return short
        same = sorted(k for k in known if k.split(".", 1)[0] == short)
        return same[0] if len(same) == 1 else h

    if override:
        return f(override), "manual"
    if dump.folder_host and not _is_loopback(dump.folder_host):
        return f(peers.get(dump.folder_host, dump.folder_host)), "folder"
    hint = dump.host_hint
    if hint and not dump.host_hint_is_ip:
        return f(hint), "dirname"
    if hint and dump.host_hint_is_ip and hint in peers and hint not in LOCAL_PLACEHOLDERS:
        return f(peers[hint]), "peer-ip"
    if info is not None and info.nodename and info.nodename != "(none)" and not info.nodename.startswith("localhost"):
        return f(info.nodename), "nodename"
    if hint and dump.host_hint_is_ip and not _is_loopback(hint):
        return f(hint), "ip"
    return None, "unknown"


def _is_ip_like(h: str) -> bool:
    return ":" in h or h.replace(".", "").isdigit()


def _is_loopback(ip: str) -> bool:
    return ip.startswith("127.") or ip == "::1"


def name_time_epoch(dt: datetime, tz: str = "local") -> float:
    """The folder-name time (naive) as epoch seconds: local time of this machine, or 'utc'."""
    if tz == "utc":
        return float(calendar.timegm(dt.timetuple()))
    return time.mktime(dt.timetuple())


def dump_time(dump: DumpDir, info: DumpInfo | None, tz: str = "local") -> tuple[float, str]:
    """(epoch, source): CRASHTIME from VMCOREINFO when present; else the kdump-compressed header's time stamp
    (when makedumpfile ran: seconds after the crash, and an epoch, so free of the capture kernel's time zone);
    else the directory name's time (local wall time of the capture kernel, read as this machine's local time)."""
    if info is not None and info.crashtime:
        return float(info.crashtime), "crashtime"
    if info is not None and info.header_time:
        return float(info.header_time), "dump-header"
    return name_time_epoch(dump.time_from_name, tz), "dirname"


# --- the decision ----------------------------------------------------------------------------------------------

def _t(inc: Incident) -> float | None:
    return parse_rfc3339(inc.first_seen)


# Kinds that take a host down: an incident of these opened *after* the dump time can only be this crash's own lines
# arriving late (rsyslog's disk queue forwards them once the host is back), never a new crash of a host that was
# busy dumping and rebooting. Same set as the correlator's DIE_KINDS.
_DOWN_KINDS = frozenset({"panic", "oops", "bug", "page-fault", "gpf", "mce", "hard-lockup", "hw-error",
                         "unclean-reboot"})


def decide(incidents: Iterable[Incident], *, dump_key: str, t_dump: float, signature: str | None,
           window: float, slack: float = CLOCK_SLACK, sig_window: float | None = None) -> Decision:
    """Pick the incident a dump belongs to (``incidents``: the host's incidents, times are sylog's receive times).

    1. one already holding this very dump (idempotence);
    2. same signature, no dump yet, opened from ``sig_window`` (default: the larger of window and 24 h) before
       the dump to ``window`` after it (its lines may reach us only after the host rebooted) — the closest one
       before the dump (plus ``slack`` for clock skew), else the first one after;
    3. no dump yet, opened closest before the dump (plus slack) within ``window`` (any kind but unclean-reboot);
    4. no dump yet, a crash kind or an ``unclean-reboot`` (the host came back without its crash reaching us)
       opened within ``window`` after the dump — the first such;
    5. else create one from the dump's dmesg."""
    incs = list(incidents)
    for inc in incs:
        if inc.vmcore and inc.vmcore.get("key") == dump_key:
            return Decision(action="link", incident_id=inc.id, matched_by=inc.vmcore.get("matched_by", "time"))
    free = [(t, inc) for inc in incs if not inc.vmcore and (t := _t(inc)) is not None]
    sw = max(window, 86400.0) if sig_window is None else sig_window
    edge = t_dump + slack
    if signature:
        cands = [(t, i) for t, i in free if i.signature == signature and t_dump - sw <= t <= t_dump + window]
        before = [c for c in cands if c[0] <= edge]
        if before or cands:
            pick = max(before, key=lambda x: x[0]) if before else min(cands, key=lambda x: x[0])
            return Decision(action="link", incident_id=pick[1].id, matched_by=MATCH_SIGNATURE)
    cands = [(t, i) for t, i in free if i.kind != "unclean-reboot" and t_dump - window <= t <= edge]
    if cands:
        return Decision(action="link", incident_id=max(cands, key=lambda x: x[0])[1].id, matched_by=MATCH_TIME)
    cands = [(t, i) for t, i in free if (i.kind in _DOWN_KINDS or i.fatal) and t_dump - slack <= t <= t_dump + window]
    if cands:
        return Decision(action="link", incident_id=min(cands, key=lambda x: x[0])[1].id, matched_by=MATCH_TIME)
    return Decision(action="create", incident_id=None, matched_by=MATCH_DUMP_ONLY)


def vmcore_record(*, dump: DumpDir, info: DumpInfo | None, key: str, vmcore_path: str | None, size: int,
                  mtime: float,
                  dmesg_path: str | None, matched_by: str, host_how: str, t_dump: float, t_source: str,
                  release: str | None, linked_at: float, function: str | None = None,
                  module: str | None = None) -> dict:
    """The ``vmcore`` object stored in the incident (and printed by ``sylog show``). ``vmcore_path`` None: the
    tool wrote only the dmesg on purpose (``dump_skipped`` says why); there is nothing for ``crash``."""
    from sylog.incidents.model import rfc3339

    if vmcore_path is None:
        return {
            "path": None,
            "size": 0,
            "mtime": rfc3339(mtime),
            "dmesg": dmesg_path,
            "matched_by": matched_by,
            "kernel_release": release,
            "layout": dump.layout,
            "format": "none",
            "dump_skipped": dump.skipped_why or "no vmcore saved",
            "crash_time": rfc3339(t_dump),
            "crash_time_source": t_source,
            "host_from": host_how,
            "crash_command": None,
            "crash_hints": [],
            "linked_at": rfc3339(linked_at),
            "key": key,
        }
    return {
        "path": vmcore_path,
        "size": size,
        "mtime": rfc3339(mtime),
        "dmesg": dmesg_path,
        "matched_by": matched_by,
        "kernel_release": release,
        "layout": dump.layout,
        "format": info.format if info else "unknown",
        "crash_time": rfc3339(t_dump),
        "crash_time_source": t_source,
        "host_from": host_how,
        "debug_vmlinux": debug_vmlinux(dump.layout, release),
        "crash_command": crash_command(dump.layout, release, vmcore_path),
        "crash_hints": crash_hints(function, module),
        "incomplete": bool(info.incomplete) if info else False,
        "linked_at": rfc3339(linked_at),
        "key": key,
    }


def missing_vmcore(incidents: Iterable[Incident], now: float, window: float, since: float | None = None) -> list[str]:
    """IDs of fatal incidents with no dump (and not yet marked) whose window has passed.

    ``since``: only incidents opened after this time (e.g. when vmcore watching began) — an older panic may have
    had its dump cleaned away before sylog looked."""
    out = []
    for inc in incidents:
        if not inc.fatal or inc.vmcore or inc.vmcore_missing or inc.state != "closed":
            continue
        t = _t(inc)
        if t is None or now - t < window:
            continue
        if since is not None and t < since:
            continue
        out.append(inc.id)
    return out

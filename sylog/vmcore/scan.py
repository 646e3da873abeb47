"""Blocking I/O around the sans-IO linker: find dump directories, read them, apply decisions to incident files.

Used by the watcher (from an executor thread) and by ``sylog link-vmcore`` (another process, the server may run).
Both take ``DATA/state/vmcore.lock`` (flock) around each link, so two linkers never write the same incident or
link one dump twice. The registry ``DATA/state/vmcores.json`` maps each linked dump directory (real path) to its
incident; incidents also carry ``vmcore.key``, so the registry can be rebuilt from them if it is lost.

An incident still open in the running server is not written here: the result is ``deferred`` with the ``vmcore``
object, which the watcher hands to the incident engine (``IncidentEngine.update_incident``, on the loop thread):
the engine owns that record until it closes.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import msgspec
import orjson

from sylog.incidents.model import Incident, decode, encode, new_id, rfc3339
from sylog.incidents.store import IncidentStore, safe_host_dir, separator
from sylog.vmcore import layouts
from sylog.vmcore.layouts import DumpDir
from sylog.vmcore.linker import (MATCH_MANUAL, MATCH_SIGNATURE, analyze_dmesg, decide, dump_time, missing_vmcore,
                                 resolve_host, vmcore_record)
from sylog.vmcore.vmcoreinfo import DumpInfo, read_dump_info

log = logging.getLogger("sylog.vmcore")

MAX_DMESG_BYTES = 16 * 1024 * 1024  # a dmesg is a ring buffer dump (a few MB at most); read no more than this
MAX_README_BYTES = 64 * 1024
SCAN_DEPTH = 2  # DIR/<dump> or DIR/<host>/<dump>


class LinkResult(msgspec.Struct, kw_only=True):
    """What happened to one dump directory."""

    dir: str
    status: str  # linked | created | already | pending | deferred | unresolved | error
    incident_id: str | None = None
    host: str | None = None
    matched_by: str | None = None
    message: str = ""
    vmcore: dict | None = None  # the record, for the engine when the incident is held in memory (deferred)
    incident: Incident | None = None  # the incident as written (linked/created), for alert listeners


# --- state files -----------------------------------------------------------------------------------------------

def state_dir(data_dir: str | os.PathLike) -> Path:
    return Path(data_dir).absolute() / "state"


def _ensure(d: Path) -> None:
    d.mkdir(mode=0o700, parents=True, exist_ok=True)


@contextmanager
def locked(data_dir: str | os.PathLike) -> Iterator[None]:
    """Exclusive lock shared by every linker of this data dir (watcher and CLI)."""
    d = state_dir(data_dir)
    _ensure(d)
    fd = os.open(d / "vmcore.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _atomic_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_registry(data_dir: str | os.PathLike) -> dict:
    p = state_dir(data_dir) / "vmcores.json"
    try:
        reg = orjson.loads(p.read_bytes())
        if isinstance(reg, dict) and isinstance(reg.get("dumps"), dict):
            return reg
    except (OSError, orjson.JSONDecodeError):
        pass
    return {"version": 1, "dumps": {}, "watch_since": None}


def save_registry(data_dir: str | os.PathLike, reg: dict) -> None:
    d = state_dir(data_dir)
    _ensure(d)
    _atomic_json(d / "vmcores.json", reg)


def load_peers(data_dir: str | os.PathLike) -> dict[str, str]:
    """``DATA/state/peers.json``: sender address -> host name, as the server saw it (see peers.py).

    Accepts ``{"10.0.0.7": "db-07"}`` and ``{"10.0.0.7": {"host": "db-07", ...}}``."""
    p = state_dir(data_dir) / "peers.json"
    try:
        raw = orjson.loads(p.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}
    if isinstance(raw, dict) and isinstance(raw.get("peers"), dict):
        raw = raw["peers"]
    out: dict[str, str] = {}
    if isinstance(raw, dict):
        for ip, v in raw.items():
            h = v.get("host") if isinstance(v, dict) else v
            if isinstance(h, str) and h:
                out[str(ip)] = h
    return out


def known_hosts(data_dir: str | os.PathLike) -> set[str]:
    """Host names sylog files under (timeline and incident directories)."""
    out: set[str] = set()
    for sub in ("timelines", "incidents"):
        try:
            out.update(e.name for e in os.scandir(Path(data_dir) / sub) if e.is_dir() and not e.name.startswith("."))
        except OSError:
            pass
    return out


# --- incidents ---------------------------------------------------------------------------------------------------

def host_incidents(store: IncidentStore, host: str) -> list[Incident]:
    d = store.root / safe_host_dir(host)
    out = []
    if not d.is_dir():
        return out
    for p in sorted(d.glob("*.json")):
        if p.name.startswith("."):
            continue
        try:
            out.append(decode(p.read_bytes()))
        except (OSError, msgspec.DecodeError, msgspec.ValidationError):
            continue
    return out


def all_incidents(store: IncidentStore) -> Iterator[Incident]:
    for p in store.iter_json_paths():
        try:
            yield decode(p.read_bytes())
        except (OSError, msgspec.DecodeError, msgspec.ValidationError):
            continue


def update_incident_file(store: IncidentStore, host: str, iid: str, fn: Callable[[Incident], None]) -> Incident:
    """Read-modify-write one incident's JSON atomically (its .log untouched). Raises OSError/ValueError."""
    jp, _ = store.paths(host, iid)
    try:
        inc = decode(jp.read_bytes())
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise ValueError(f"{jp}: unreadable incident: {e}") from None
    fn(inc)
    store.write(host, iid, encode(inc), None)
    return inc


# --- one dump ----------------------------------------------------------------------------------------------------

def _fold(name: str) -> str:
    try:
        from sylog.syslog.hostnames import fold_name
    except ImportError:  # pragma: no cover
        return name.strip().lower().rstrip(".")
    return fold_name(name) or name.strip().lower().rstrip(".")


def _read_text(path: Path, limit: int) -> str:
    with open(path, "rb") as f:
        data = f.read(limit)
    return data.decode("utf-8", "surrogateescape")


def inspect_dir(path: Path, relpath: str) -> DumpDir | None:
    """Recognise ``path`` (a directory) from its listing; SUSE completeness from its README.txt text."""
    try:
        names = [e.name for e in os.scandir(path) if e.is_file(follow_symlinks=False)]
    except OSError:
        return None
    d = layouts.recognise(relpath, names)
    if d is None:
        return d
    if d.needs_readme:
        try:
            readme = _read_text(path / "README.txt", MAX_README_BYTES)
        except OSError:
            d.complete = False
            d.pending = "README.txt unreadable"
            return d
        final = layouts.suse_readme_final(readme)
        if d.complete and not final:
            d.complete = False
            d.pending = "README.txt is the temporary one (dump still being written)"
        elif final and d.vmcore is None and d.dmesg is not None:
            status = layouts.parse_suse_readme(readme).get("vmcore status", "not saved")
            d.complete, d.dmesg_only, d.pending = True, True, None
            d.skipped_why = f"SUSE kdump finished without a vmcore (vmcore status: {status})"
    elif d.check_dmesg_only and d.dmesg:
        try:
            why = layouts.debian_dump_skipped(_read_text(path / d.dmesg, MAX_DMESG_BYTES))
        except OSError:
            why = None
        if why:
            d.complete, d.dmesg_only, d.pending, d.skipped_why = True, True, None, why
    return d


def link_one(data_dir: str | os.PathLike, dirpath: str | os.PathLike, *, relpath: str | None = None,
             host: str | None = None, incident_id: str | None = None, window: float = 7200.0,
             quiet: float = 30.0, now: float | None = None, detector: Any = None, peers: dict | None = None,
             in_memory: Callable[[str, str], bool] | None = None, allow_open: bool = False,
             tz: str = "local", settle: float = 0.0) -> LinkResult:
    """Link the dump in ``dirpath`` (takes the lock). See :func:`_link_locked`."""
    with locked(data_dir):
        return _link_locked(data_dir, Path(dirpath), relpath=relpath, host=host, incident_id=incident_id,
                            window=window, quiet=quiet, now=now, detector=detector, peers=peers,
                            in_memory=in_memory, allow_open=allow_open, tz=tz, settle=settle)


def _link_locked(data_dir, dirpath: Path, *, relpath, host, incident_id, window, quiet, now, detector, peers,
                 in_memory, allow_open, tz, reg: dict | None = None, settle: float = 0.0) -> LinkResult:
    """Decide and write one dump's link. ``settle``: a guess (time match, dump-only) waits until the dump's files
    are this many seconds old, because the host's last syslog lines often arrive only after it has rebooted
    (rsyslog's disk queue), i.e. after the dump is complete; a signature match is certain and never waits."""
    now = time.time() if now is None else now
    key = os.path.realpath(dirpath)
    own_reg = reg is None
    reg = load_registry(data_dir) if reg is None else reg
    prior = reg["dumps"].get(key)
    if prior:
        if incident_id and incident_id != prior.get("incident"):
            return LinkResult(dir=key, status="error", incident_id=prior.get("incident"), host=prior.get("host"),
                              message=f"already linked to incident {prior.get('incident')}; one dump links to "
                                      f"one incident")
        return LinkResult(dir=key, status="already", incident_id=prior.get("incident"), host=prior.get("host"),
                          matched_by=prior.get("matched_by"))
    d = inspect_dir(dirpath, relpath if relpath is not None else dirpath.name)
    if d is None:
        return LinkResult(dir=key, status="error", message="not a kdump directory (no RHEL, Debian/Ubuntu or SUSE "
                                                           "dump layout recognised)")
    if not d.complete or (d.vmcore is None and not d.dmesg_only):
        return LinkResult(dir=key, status="pending", message=f"dump not complete: {d.pending}")
    vpath = dirpath / (d.vmcore or d.dmesg or "")
    try:
        st = os.stat(vpath)
        info: DumpInfo | None = read_dump_info(str(vpath)) if d.vmcore else None
    except OSError as e:
        return LinkResult(dir=key, status="error", message=f"cannot read {vpath}: {e.strerror or e}")
    store = IncidentStore(data_dir)
    peers = load_peers(data_dir) if peers is None else peers
    h, how = resolve_host(d, info, peers, override=host, fold=_fold, known=known_hosts(data_dir))
    if h is None:
        return LinkResult(dir=key, status="unresolved",
                          message="cannot tell which host this dump is from (local 127.0.0.1 dump, no host folder, "
                                  "no node name in the dump): link it by hand with --host")
    t_dump, t_src = dump_time(d, info, tz)
    dmesg_path = dirpath / d.dmesg if d.dmesg else None
    crash = None
    if dmesg_path is not None:
        try:
            crash = analyze_dmesg(_read_text(dmesg_path, MAX_DMESG_BYTES), h, quiet=quiet, detector=detector)
        except OSError as e:
            log.warning("vmcore: cannot read %s: %s", dmesg_path, e)
        except Exception:  # a detector bug must not stop linking by time
            log.exception("vmcore: analysing %s failed", dmesg_path)
    release = (info.osrelease if info else None) or (crash.incident.kernel_release if crash else None)
    if d.layout == layouts.LAYOUT_SUSE and not release:
        try:
            release = layouts.parse_suse_readme(_read_text(dirpath / "README.txt", MAX_README_BYTES)).get(
                "kernel version")
        except OSError:
            pass
    incs = host_incidents(store, h)
    if incident_id:
        target = next((i for i in incs if i.id == incident_id), None)
        if target is None:
            return LinkResult(dir=key, status="error", host=h, message=f"no incident {incident_id} for host {h}")
        if target.vmcore and target.vmcore.get("key") not in (None, key):
            return LinkResult(dir=key, status="error", host=h, incident_id=incident_id,
                              message=f"incident {incident_id} already has a vmcore: {target.vmcore.get('path')}")
        action, iid, matched = "link", incident_id, MATCH_MANUAL
    else:
        dec = decide(incs, dump_key=key, t_dump=t_dump, signature=crash.incident.signature if crash else None,
                     window=window)
        action, iid, matched = dec.action, dec.incident_id, dec.matched_by
    if settle > 0 and matched not in (MATCH_SIGNATURE, MATCH_MANUAL):
        age = now - max((m for _, _, m in (fingerprint(dirpath) or ())), default=0) / 1e9
        if age < settle:
            return LinkResult(dir=key, status="pending", host=h,
                              message=f"complete; waiting {settle - age:.0f}s more for the host's last lines "
                                      f"before matching it by {matched}")
    chosen = next((i for i in incs if i.id == iid), None) if action == "link" else None
    src = crash.incident if crash is not None else chosen
    if not release and chosen is not None:
        release = chosen.kernel_release  # the live report's `CPU: ... Tainted: ... <release>` line
    rec = vmcore_record(dump=d, info=info, key=key, vmcore_path=str(vpath.absolute()) if d.vmcore else None,
                        size=st.st_size if d.vmcore else 0,
                        mtime=st.st_mtime, dmesg_path=str(dmesg_path.absolute()) if dmesg_path else None,
                        matched_by=matched, host_how=how, t_dump=t_dump, t_source=t_src, release=release,
                        linked_at=now, function=src.function if src else None,
                        module=src.module if src else None)
    if action == "link":
        target = next(i for i in incs if i.id == iid)
        if target.state == "open" or (in_memory is not None and in_memory(h, iid)):
            if not allow_open:
                return LinkResult(dir=key, status="deferred", incident_id=iid, host=h, matched_by=matched,
                                  vmcore=rec, message=f"incident {iid} is still open (a running server may "
                                                      f"still be adding lines to it)")
        if target.vmcore and target.vmcore.get("key") == key:
            status = "already"
        else:
            dump_kinds = list(crash.incident.kinds) if crash is not None else ["panic"]

            def apply(inc: Incident) -> None:
                inc.vmcore = rec
                inc.vmcore_missing = False
                if not inc.kernel_release and release:
                    inc.kernel_release = release
                # kdump only runs when the kernel panics: the crash was fatal even if its last words never
                # reached syslog (an oops escalated by panic_on_oops, say)
                inc.fatal = True
                for k in dump_kinds:
                    if k == "panic" and k not in inc.kinds:
                        inc.kinds.append(k)
            try:
                written = update_incident_file(store, h, iid, apply)
            except (OSError, ValueError) as e:
                return LinkResult(dir=key, status="error", incident_id=iid, host=h,
                                  message=f"cannot update incident {iid}: {e}")
            status = "linked"
    else:
        try:
            written = _create(store, h, crash, rec, t_dump, release, incs)
        except OSError as e:
            return LinkResult(dir=key, status="error", host=h, message=f"cannot write incident: {e}")
        iid = written.id
        status = "created"
    reg["dumps"][key] = {"incident": iid, "host": h, "matched_by": rec["matched_by"], "linked_at": rfc3339(now),
                         "vmcore": rec["path"]}
    if own_reg:
        save_registry(data_dir, reg)
    return LinkResult(dir=key, status=status, incident_id=iid, host=h, matched_by=rec["matched_by"], vmcore=rec,
                      incident=written if status in ("linked", "created") else None)


def record_deferred(data_dir: str | os.PathLike, res: LinkResult, now: float | None = None) -> None:
    """After the engine took a deferred link (incident held in memory), remember the dump as linked."""
    with locked(data_dir):
        reg = load_registry(data_dir)
        reg["dumps"][res.dir] = {"incident": res.incident_id, "host": res.host, "matched_by": res.matched_by,
                                 "linked_at": rfc3339(time.time() if now is None else now),
                                 "vmcore": (res.vmcore or {}).get("path")}
        save_registry(data_dir, reg)


def _create(store: IncidentStore, host: str, crash: Any, rec: dict, t_dump: float, release: str | None,
            incs: list[Incident]) -> Incident:
    """A new incident from the dump's dmesg: the panic that never reached syslog."""
    from sylog.kernel.printk import split_printk

    taken = {i.id for i in incs}
    if crash is not None:
        inc = crash.incident
        lines, ctx = crash.lines, crash.context
        ts = [t for t in (split_printk(x).ts for x in lines) if t is not None]
        first = t_dump - (ts[-1] - ts[0]) if len(ts) >= 2 and ts[-1] >= ts[0] else t_dump
    else:
        inc = Incident(id="", host=host, kind="panic", kinds=["panic"], fatal=True,
                       title="kernel crash dump (no dmesg to tell why)", signature="")
        lines, ctx, first = [], [], t_dump
    inc.id = new_id(first, taken)
    inc.host = host
    inc.state = "closed"
    inc.closed_reason = "dump"
    inc.fatal = True  # kdump ran: the kernel went down
    inc.first_seen = rfc3339(first)
    inc.last_seen = rfc3339(t_dump)
    inc.source = "vmcore"
    inc.vmcore = rec
    inc.vmcore_missing = False
    inc.lines = len(lines)
    inc.context_lines = len(ctx)
    if not inc.kernel_release and release:
        inc.kernel_release = release
    if not inc.signature:
        import hashlib
        inc.signature = hashlib.sha1(f"{inc.kind}\n{inc.title}".encode()).hexdigest()[:16]
    jp, lp = store.paths(host, inc.id)
    inc.path, inc.log_path = str(jp), str(lp)
    enc = lambda xs: b"".join((x + "\n").encode("utf-8", "surrogateescape") for x in xs)  # noqa: E731
    log_bytes = enc(ctx) + separator(inc.id, len(ctx)) + enc(lines)
    store.write(host, inc.id, encode(inc), log_bytes)
    return inc


# --- a whole scan ------------------------------------------------------------------------------------------------

def find_dump_dirs(root: str | os.PathLike) -> Iterator[tuple[Path, str]]:
    """(path, relpath) of candidate dump directories: ``root/<d>`` and ``root/<host>/<d>``."""
    base = Path(root)
    try:
        top = sorted(os.scandir(base), key=lambda e: e.name)
    except OSError:
        return
    for e in top:
        if not e.is_dir(follow_symlinks=True) or e.name.startswith("."):
            continue
        if _looks_dated(e.name):
            yield Path(e.path), e.name
            continue
        try:
            sub = sorted(os.scandir(e.path), key=lambda x: x.name)
        except OSError:
            continue
        for s in sub:
            if s.is_dir(follow_symlinks=True) and _looks_dated(s.name):
                yield Path(s.path), f"{e.name}/{s.name}"


def _looks_dated(name: str) -> bool:
    """Cheap pre-filter: kdump directory names end in a date/time stamp."""
    return len(name) >= 12 and name[-1].isdigit() and name[-2].isdigit()


def fingerprint(path: Path) -> tuple | None:
    """Names, sizes and mtimes of a directory's files: unchanged means a retry would decide the same."""
    try:
        return tuple(sorted((e.name, e.stat().st_size, e.stat().st_mtime_ns) for e in os.scandir(path)))
    except OSError:
        return None


def scan(data_dir: str | os.PathLike, roots: list[str], *, window: float = 7200.0, quiet: float = 30.0,
         now: float | None = None, detector: Any = None,
         in_memory: Callable[[str, str], bool] | None = None, tz: str = "local",
         cache: dict | None = None, settle: float = 0.0) -> list[LinkResult]:
    """Look at every dump directory under ``roots``; link the complete, unlinked ones. Returns what changed or
    is waiting (already-linked dumps are skipped without being read). ``cache`` (kept by the caller across
    scans): dumps that could not be linked (no host, unreadable) are not read again until their files change."""
    now = time.time() if now is None else now
    out: list[LinkResult] = []
    with locked(data_dir):
        reg = load_registry(data_dir)
        changed = False
        if not reg.get("watch_since"):
            reg["watch_since"] = now
            changed = True
        if not reg.get("rebuilt"):
            _rebuild(data_dir, reg)
            reg["rebuilt"] = True
            changed = True
        peers = load_peers(data_dir)
        claimed: set[str | None] = set()
        for root in roots:
            for path, rel in find_dump_dirs(root):
                key = os.path.realpath(path)
                if key in reg["dumps"]:
                    continue
                fp = None
                if cache is not None:
                    fp = fingerprint(path)
                    if fp is not None and cache.get(key) == fp:
                        continue
                try:
                    r = _link_locked(data_dir, path, relpath=rel, host=None, incident_id=None, window=window,
                                     quiet=quiet, now=now, detector=detector, peers=peers, in_memory=in_memory,
                                     allow_open=False, tz=tz, reg=reg, settle=settle)
                except Exception as e:  # one bad dump must not stop the scan
                    log.exception("vmcore: linking %s failed", path)
                    r = LinkResult(dir=key, status="error", message=f"{type(e).__name__}: {e}")
                if r.status == "deferred":
                    if r.incident_id in claimed:  # two dumps for one open incident: one at a time
                        continue
                    claimed.add(r.incident_id)
                if r.status in ("linked", "created"):
                    changed = True
                if cache is not None and fp is not None and r.status in ("unresolved", "error"):
                    cache[key] = fp
                if r.status == "error" and "not a kdump directory" in r.message:
                    continue
                out.append(r)
        if changed:
            save_registry(data_dir, reg)
    return out


def _rebuild(data_dir, reg: dict) -> None:
    """Registry entries from incidents that carry a vmcore (registry lost or older than the incidents)."""
    for inc in all_incidents(IncidentStore(data_dir)):
        v = inc.vmcore or {}
        k = v.get("key")
        if k and k not in reg["dumps"]:
            reg["dumps"][k] = {"incident": inc.id, "host": inc.host, "matched_by": v.get("matched_by"),
                               "linked_at": v.get("linked_at"), "vmcore": v.get("path")}


def mark_missing(data_dir: str | os.PathLike, *, window: float = 7200.0, now: float | None = None,
                 in_memory: Callable[[str, str], bool] | None = None, cache: dict | None = None) -> list[str]:
    """Mark fatal incidents that got no dump within the window (since watching began) ``vmcore_missing``.

    ``cache`` (kept by the caller): incident files already judged for good (a dump, not fatal, or marked) are not
    decoded again until they change, so a scan costs a ``stat`` per settled incident."""
    now = time.time() if now is None else now
    marked: list[str] = []
    with locked(data_dir):
        reg = load_registry(data_dir)
        since = reg.get("watch_since")
        if not since:
            return marked  # not watching any vmcore dir yet: no dump could have been seen
        store = IncidentStore(data_dir)
        incs = []
        for p in store.iter_json_paths():
            try:
                mt = p.stat().st_mtime_ns
                if cache is not None and cache.get(str(p)) == mt:
                    continue
                inc = decode(p.read_bytes())
            except (OSError, msgspec.DecodeError, msgspec.ValidationError):
                continue
            incs.append(inc)
            if cache is not None and inc.state == "closed" and (inc.vmcore or not inc.fatal or inc.vmcore_missing):
                cache[str(p)] = mt
        for iid in missing_vmcore(incs, now, window, since):
            inc = next(i for i in incs if i.id == iid)
            if in_memory is not None and in_memory(inc.host, iid):
                continue

            def apply(x: Incident) -> None:
                if not x.vmcore:
                    x.vmcore_missing = True
            try:
                update_incident_file(store, inc.host, iid, apply)
                marked.append(iid)
            except (OSError, ValueError) as e:
                log.warning("vmcore: cannot mark %s as missing its dump: %s", iid, e)
    return marked

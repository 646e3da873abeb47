"""Recognise the directories kdump writes, from names alone (sans-IO).

Input: the dump directory's path relative to a watched vmcore dir, and the names of the files in it.
Output: a :class:`DumpDir` saying which tool wrote it, which host it belongs to (as far as the name tells),
when the capture kernel ran (its local time, naive), which file is the dump and which the dmesg, and whether
the writer has finished.

What each tool really writes (checked in the sources, not guessed):

* **RHEL/Fedora** — kdump-utils ``dracut/99kdumpbase/kdump.sh`` (rhkdump/kdump-utils; the same code lived in
  kexec-tools ``dracut-kdump.sh`` before): ``DATEDIR=$(date +%Y-%m-%d-%T)``, ``HOST_IP='127.0.0.1'`` unless
  the target is NFS/SSH, where ``get_host_ip`` takes the address of the NIC routing to the target;
  ``dump_fs`` and ``dump_ssh`` save to ``$KDUMP_PATH/$HOST_IP-$DATEDIR/``. ``save_vmcore_dmesg_fs`` writes
  ``vmcore-dmesg-incomplete.txt`` and renames it to ``vmcore-dmesg.txt``; the core collector writes
  ``vmcore-incomplete`` and renames it to ``vmcore`` (``vmcore.flat`` when makedumpfile streams over SSH
  with ``-F``); ``save_log`` moves ``kexec-dmesg.log`` (the capture kernel's own log) in afterwards.
  HOST_IP may be IPv6, so the date is matched at the *end* of the name.
* **Debian/Ubuntu kdump-tools** — ``debian/kdump-config.in``: ``KDUMP_STAMP=$(date +"%Y%m%d%H%M")``;
  ``define_stampdir`` gives ``$KDUMP_COREDIR/$STAMP`` locally and ``$COREDIR/$THIS_HOST-$STAMP`` for
  SSH/NFS/FTP where ``THIS_HOST`` is the last ``inet`` address (``HOSTTAG=ip``, the default) or
  ``$(hostname)`` (``HOSTTAG=hostname``). ``kdump_save_core`` writes ``dmesg.$STAMP`` first, then
  ``dump-incomplete[.gz|.bz2|.xz|.lz4]`` renamed to ``dump.$STAMP[ext]``; if makedumpfile fails it falls back
  to ``cp`` into ``vmcore-incomplete`` renamed to ``vmcore.$STAMP``. ``MAKEDUMP_ARGS`` always gets ``-F``,
  so the dump is in flattened format. ``kexec_cmd``, ``kdump_lock`` and the ``*_link`` symlinks live in the
  same ``KDUMP_COREDIR`` and are not dumps. When the saved dmesg shows a fatal hardware error (it greps
  "Fatal machine check", "[Hardware Error]: event severity: fatal", ...) it saves *no* vmcore: such a
  directory is complete with its dmesg alone (:func:`debian_dump_skipped`). FTP targets get flat files
  ``<ip>-dump.STAMP`` with no rename when done; they are not recognised (no safe completeness signal).
* **SUSE kdump** — openSUSE/kdump ``dracut/kdump-save``: ``DUMPTIME=$(date +"%Y-%m-%d-%H-%M")``,
  ``SUBDIR=$DUMPTIME`` for ``file`` and ``$HOSTNAME-$DUMPTIME`` for remote protocols; files ``README.txt``
  (a *temporary* one first, saying "This file will be overwritten when the dump is finished"), ``dmesg``,
  ``vmcore`` (makedumpfile ``-F``, flattened), then the final ``README.txt`` ("Kernel crashdump", with
  ``Kernel version:`` and ``Crash time:``). Older kdumptool (``kdumptool/savedump.cc``) used
  ``YYYY-MM-DD-HH:MM`` (its purge glob still accepts ``[-:]``), so both separators are recognised.
  Because README.txt exists from the start, completeness needs its text: see :func:`suse_readme_final`. A final
  README with no vmcore (``vmcore status: skipped`` for KDUMP_DUMPFORMAT=none, or deleted for lack of space) is
  complete with its dmesg alone.

Collectors often sort dumps per host: ``DIR/<host>/<dump dir>/``; the first path component then names the host.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime

import msgspec

LAYOUT_RHEL = "rhel"
LAYOUT_DEBIAN = "debian"
LAYOUT_SUSE = "suse"

# Names are matched with anchored regexes on *directory names only* (a handful per scan), never per message.
_RHEL_DIR = re.compile(r"^(?P<host>.+)-(?P<ts>\d{4}-\d{2}-\d{2}-\d{2}:\d{2}:\d{2})$")
_DEBIAN_DIR = re.compile(r"^(?:(?P<host>.+)-)?(?P<ts>\d{12})$")
_SUSE_DIR = re.compile(r"^(?:(?P<host>.+)-)?(?P<ts>\d{4}-\d{2}-\d{2}-\d{2}[-:]\d{2})$")
_DEBIAN_EXTS = ("", ".gz", ".bz2", ".xz", ".lz4")
_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?$")

SUSE_README_TEMP_MARK = "This file will be overwritten when the dump is finished"


class DumpDir(msgspec.Struct, kw_only=True):
    """One kdump output directory as recognised from its name and listing."""

    relpath: str  # the dump directory relative to the watched vmcore dir ('/'-separated)
    layout: str  # 'rhel' | 'debian' | 'suse'
    host_hint: str | None  # from the directory name: an IP or a host name (None for local dumps)
    host_hint_is_ip: bool = False
    folder_host: str | None = None  # the per-host folder it sits in (DIR/<host>/...), if any
    time_from_name: datetime  # capture kernel's local wall time, naive
    vmcore: str | None  # file name of the finished dump, or None
    dmesg: str | None  # file name of the finished dmesg text, or None
    complete: bool  # the writer has finished: safe to link
    pending: str | None = None  # why not complete (e.g. "vmcore-incomplete present")
    flattened: bool = False  # the tool writes makedumpfile flattened format here
    needs_readme: bool = False  # SUSE: completeness decided by README.txt text (see suse_readme_final)
    check_dmesg_only: bool = False  # Debian: no dump and nothing being written: see debian_dump_skipped
    dmesg_only: bool = False  # the tool finished on purpose without a dump (set by the I/O side)
    skipped_why: str | None = None

    def debug_vmlinux(self, release: str | None) -> str | None:
        """Where this distribution's debug package puts the vmlinux ``crash`` needs (see :func:`debug_vmlinux`)."""
        return debug_vmlinux(self.layout, release)

    def crash_command(self, release: str | None, vmcore_path: str) -> str:
        return crash_command(self.layout, release, vmcore_path)


def _valid_host(name: str) -> bool:
    if _is_ip(name):
        return True
    return bool(_HOSTNAME.match(name)) and ".." not in name


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _split(relpath: str) -> tuple[str | None, str]:
    parts = [p for p in relpath.replace("\\", "/").split("/") if p and p != "."]
    if not parts:
        return None, ""
    folder = parts[0] if len(parts) >= 2 else None
    if folder is not None and not _valid_host(folder):
        folder = None
    return folder, parts[-1]


def recognise(relpath: str, names: list[str] | set[str] | tuple[str, ...]) -> DumpDir | None:
    """Return what ``relpath`` (a directory holding ``names``) is, or None if it is no kdump directory.

    A directory whose name fits a layout but holds neither a dump nor a dump being written is not a dump
    directory (e.g. an empty stamp dir after a failed save)."""
    folder, base = _split(relpath)
    if not base or any(p == ".." for p in relpath.split("/")):
        return None
    files = set(names)
    for fn in (_rhel, _debian, _suse):
        d = fn(relpath, folder, base, files)
        if d is not None:
            return d
    return None


def _host(host: str | None) -> tuple[str | None, bool]:
    if not host:
        return None, False
    if not _valid_host(host):
        return None, False
    return host, _is_ip(host)


def _rhel(relpath: str, folder: str | None, base: str, files: set[str]) -> DumpDir | None:
    m = _RHEL_DIR.match(base)
    if not m:
        return None
    host, is_ip = _host(m.group("host"))
    if host is None and m.group("host"):
        return None
    try:
        ts = datetime.strptime(m.group("ts"), "%Y-%m-%d-%H:%M:%S")
    except ValueError:
        return None
    vmcore = "vmcore" if "vmcore" in files else ("vmcore.flat" if "vmcore.flat" in files else None)
    dmesg = "vmcore-dmesg.txt" if "vmcore-dmesg.txt" in files else None
    writing = [n for n in ("vmcore-incomplete", "vmcore-dmesg-incomplete.txt") if n in files]
    if vmcore is None and not writing and dmesg is None:
        return None
    complete = vmcore is not None and "vmcore-incomplete" not in files and "vmcore-dmesg-incomplete.txt" not in files
    pending = None
    if not complete:
        pending = f"{writing[0]} present" if writing else "no vmcore yet"
    return DumpDir(relpath=relpath, layout=LAYOUT_RHEL, host_hint=host, host_hint_is_ip=is_ip, folder_host=folder,
                   time_from_name=ts, vmcore=vmcore, dmesg=dmesg, complete=complete, pending=pending,
                   flattened=vmcore == "vmcore.flat")


def _debian(relpath: str, folder: str | None, base: str, files: set[str]) -> DumpDir | None:
    m = _DEBIAN_DIR.match(base)
    if not m:
        return None
    host, is_ip = _host(m.group("host"))
    if host is None and m.group("host"):
        return None
    stamp = m.group("ts")
    try:
        ts = datetime.strptime(stamp, "%Y%m%d%H%M")
    except ValueError:
        return None
    vmcore = None
    for ext in _DEBIAN_EXTS:
        if f"dump.{stamp}{ext}" in files:
            vmcore = f"dump.{stamp}{ext}"
            break
    flattened = vmcore is not None
    if vmcore is None and f"vmcore.{stamp}" in files:
        vmcore = f"vmcore.{stamp}"  # the plain `cp` fallback: an ELF copy of /proc/vmcore
    dmesg = f"dmesg.{stamp}" if f"dmesg.{stamp}" in files else None
    writing = [n for n in files if n.startswith("dump-incomplete") or n == "vmcore-incomplete"]
    if vmcore is None and not writing and dmesg is None:
        return None
    complete = vmcore is not None and not writing
    pending = None
    if not complete:
        pending = f"{sorted(writing)[0]} present" if writing else "no dump yet"
    return DumpDir(relpath=relpath, layout=LAYOUT_DEBIAN, host_hint=host, host_hint_is_ip=is_ip, folder_host=folder,
                   time_from_name=ts, vmcore=vmcore, dmesg=dmesg, complete=complete, pending=pending,
                   flattened=flattened, check_dmesg_only=vmcore is None and not writing and dmesg is not None)


def _suse(relpath: str, folder: str | None, base: str, files: set[str]) -> DumpDir | None:
    m = _SUSE_DIR.match(base)
    if not m:
        return None
    host, is_ip = _host(m.group("host"))
    if host is None and m.group("host"):
        return None
    raw = m.group("ts").replace(":", "-")
    try:
        ts = datetime.strptime(raw, "%Y-%m-%d-%H-%M")
    except ValueError:
        return None
    vmcore = "vmcore" if "vmcore" in files else None
    dmesg = "dmesg" if "dmesg" in files else ("dmesg.txt" if "dmesg.txt" in files else None)
    readme = "README.txt" in files
    if vmcore is None and dmesg is None and not readme:
        return None
    complete = vmcore is not None and readme
    pending = None if complete else ("README.txt not written yet" if vmcore else "no vmcore yet")
    return DumpDir(relpath=relpath, layout=LAYOUT_SUSE, host_hint=host, host_hint_is_ip=is_ip, folder_host=folder,
                   time_from_name=ts, vmcore=vmcore, dmesg=dmesg, complete=complete, pending=pending,
                   flattened=True, needs_readme=readme)


# kdump-config's kdump_save_core greps the saved dmesg for these and, on a match, saves no vmcore at all
# ("# Hardware error." branch): the dmesg is all there will ever be.
DEBIAN_HW_ERROR_MARKS = ("Fatal hardware error", "Fatal machine check", "Fatal local machine check",
                         "Fatal Machine check", "Machine check from unknown source",
                         "Fatal machine check from unknown source", "[Hardware Error]: event severity: fatal")


def debian_dump_skipped(dmesg_text: str) -> str | None:
    """Why kdump-tools deliberately wrote no dump (a fatal hardware error in the dmesg), or None."""
    for m in DEBIAN_HW_ERROR_MARKS:
        if m in dmesg_text:
            return f"hardware error ({m!r} in the dmesg): kdump-tools saves no vmcore then"
    return None


def suse_readme_final(text: str) -> bool:
    """SUSE writes a temporary README.txt before the dump and overwrites it when done; only the final one counts."""
    return SUSE_README_TEMP_MARK not in text and "Kernel crashdump" in text


def parse_suse_readme(text: str) -> dict[str, str]:
    """Fields of the final SUSE README.txt (``Kernel version``, ``Crash time``, ``Host``, ``vmcore status`` ...)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        k, sep, v = line.partition(":")
        if sep and k.strip() and v.strip():
            out.setdefault(k.strip().lower(), v.strip())
    return out


# --- which debug vmlinux and crash command the distribution implies -----------------------------------------

def debug_vmlinux(layout: str, release: str | None) -> str | None:
    """Path of the debug kernel image the distribution's debug package installs.

    Debian/Ubuntu ``linux-image-*-dbg(sym)``: ``/usr/lib/debug/boot/vmlinux-<release>`` (kdump-config's
    ``locate_debug_kernel`` looks there first); RHEL/Fedora ``kernel-debuginfo``:
    ``/usr/lib/debug/lib/modules/<release>/vmlinux``; SUSE ``kernel-<flavor>-debuginfo``:
    ``/usr/lib/debug/boot/vmlinux-<release>.debug``, found by crash through the debuglink of
    ``/boot/vmlinux-<release>.gz`` (SUSE's own guide: ``crash /boot/vmlinux-<release>.gz .../vmcore``)."""
    if not release:
        return None
    if layout == LAYOUT_DEBIAN:
        return f"/usr/lib/debug/boot/vmlinux-{release}"
    if layout == LAYOUT_RHEL:
        return f"/usr/lib/debug/lib/modules/{release}/vmlinux"
    if layout == LAYOUT_SUSE:
        return f"/usr/lib/debug/boot/vmlinux-{release}.debug"
    return None


def _shq(s: str) -> str:
    if s and re.fullmatch(r"[A-Za-z0-9_@%+=:,./-]+", s):
        return s
    return "'" + s.replace("'", "'\"'\"'") + "'"


def crash_command(layout: str, release: str | None, vmcore_path: str) -> str:
    """The ``crash`` invocation a responder runs (release unknown: a placeholder they must fill in)."""
    rel = release or "<kernel-release>"
    if layout == LAYOUT_SUSE:
        namelist = f"/boot/vmlinux-{rel}.gz"
    else:
        namelist = debug_vmlinux(layout, rel) or f"vmlinux-{rel}"
    return f"crash {_shq(namelist) if release else namelist} {_shq(vmcore_path)}"


CRASH_HINTS = ["bt", "log", "ps", "kmem -i"]


def crash_hints(function: str | None = None, module: str | None = None) -> list[str]:
    """The first commands worth typing inside ``crash``: the panic task's backtrace, the kernel log, the tasks,
    memory; the guilty function disassembled with source lines; a module's debug symbols loaded first."""
    out = list(CRASH_HINTS)
    if module and all(c.isalnum() or c in "_-" for c in module):
        out.insert(0, f"mod -s {module}")
    if function and all(c.isalnum() or c in "_." for c in function):
        out.append(f"dis -l {function}")
    return out

"""Builders for real-format kdump dump directories (used by every tests/test_vmcore_*.py), and their own checks.

Each builder lays out exactly what the distribution's tool writes (see sylog/vmcore/layouts.py for the source
references): directory name, file names, a small dump with a real header + VMCOREINFO, and a dmesg with a panic.
"""

from __future__ import annotations

import gzip
import os
import time
from datetime import datetime
from pathlib import Path

from sylog.vmcore import layouts
from sylog.vmcore.vmcoreinfo import build_elf, build_kdump_compressed, flatten, read_dump_info

RELEASE_DEB = "6.1.0-18-amd64"
RELEASE_RHEL = "5.14.0-362.8.1.el9_3.x86_64"
RELEASE_SUSE = "5.14.21-150500.55.39-default"

BOOT = """\
[    0.000000] Linux version {rel} (builder@build) (gcc (GCC) 12.2.0, GNU ld 2.40) #1 SMP PREEMPT_DYNAMIC
[    0.000000] Command line: BOOT_IMAGE=/boot/vmlinuz-{rel} root=UUID=4f1c ro quiet crashkernel=512M
[    0.004123] DMI: Dell Inc. PowerEdge R640/0W23H8, BIOS 2.19.1 06/16/2023
[    1.204511] systemd[1]: Detected architecture x86-64.
[   12.771203] mlx5_core 0000:3b:00.0: firmware version: 16.35.2000
"""

# A NULL dereference in a driver work item that escalates to a panic (panic_on_oops), as vmcore-dmesg prints it.
OOPS_MLX5 = """\
[{t:10.6f}] mlx5_core 0000:3b:00.0 ens1f0np0: TX timeout detected
[{t1:10.6f}] BUG: kernel NULL pointer dereference, address: 0000000000000008
[{t1:10.6f}] #PF: supervisor read access in kernel mode
[{t1:10.6f}] #PF: error_code(0x0000) - not-present page
[{t1:10.6f}] PGD 0 P4D 0
[{t1:10.6f}] Oops: 0000 [#1] PREEMPT SMP NOPTI
[{t1:10.6f}] CPU: 3 PID: 4242 Comm: kworker/3:1 Tainted: G           OE      {rel} #1
[{t1:10.6f}] Hardware name: Dell Inc. PowerEdge R640/0W23H8, BIOS 2.19.1 06/16/2023
[{t1:10.6f}] Workqueue: events mlx5e_tx_timeout_work [mlx5_core]
[{t1:10.6f}] RIP: 0010:mlx5e_tx_reporter_timeout_recover+0x2a/0x90 [mlx5_core]
[{t1:10.6f}] Code: 41 54 55 53 48 8b 47 08 48 89 fb <48> 8b 68 08 48 8b 45 00 4c 8b a0 c8 00 00 00
[{t1:10.6f}] RSP: 0018:ffffb1c2c1a3fe08 EFLAGS: 00010246
[{t1:10.6f}] RAX: 0000000000000000 RBX: ffff9a0b4c2e8000 RCX: 0000000000000000
[{t1:10.6f}] Call Trace:
[{t1:10.6f}]  <TASK>
[{t1:10.6f}]  ? __die+0x23/0x70
[{t1:10.6f}]  ? page_fault_oops+0x17d/0x4c0
[{t1:10.6f}]  ? exc_page_fault+0x7f/0x180
[{t1:10.6f}]  ? asm_exc_page_fault+0x26/0x30
[{t1:10.6f}]  ? mlx5e_tx_reporter_timeout_recover+0x2a/0x90 [mlx5_core]
[{t1:10.6f}]  devlink_health_reporter_recover+0x2c/0x70
[{t1:10.6f}]  mlx5e_tx_timeout_work+0xd4/0x130 [mlx5_core]
[{t1:10.6f}]  process_one_work+0x1c7/0x380
[{t1:10.6f}]  worker_thread+0x4d/0x380
[{t1:10.6f}]  kthread+0xd7/0x100
[{t1:10.6f}]  ret_from_fork+0x22/0x30
[{t1:10.6f}]  </TASK>
[{t1:10.6f}] Modules linked in: mlx5_ib(OE) mlx5_core(OE) mlxfw tls psample pci_hyperv_intf nfsd
[{t1:10.6f}] CR2: 0000000000000008
[{t1:10.6f}] ---[ end trace 0000000000000000 ]---
[{t2:10.6f}] Kernel panic - not syncing: Fatal exception
[{t2:10.6f}] Kernel Offset: 0x1a000000 from 0xffffffff81000000 (relocation range: 0xffffffff80000000-0xffffffffbfffffff)
"""

# The classic test crash: echo c > /proc/sysrq-trigger
SYSRQ_C = """\
[{t:10.6f}] sysrq: Trigger a crash
[{t1:10.6f}] Kernel panic - not syncing: sysrq triggered crash
[{t1:10.6f}] CPU: 1 PID: 5120 Comm: bash Not tainted {rel} #1
[{t1:10.6f}] Hardware name: QEMU Standard PC (Q35 + ICH9, 2009), BIOS 1.16.2-debian-1.16.2-1 04/01/2014
[{t1:10.6f}] Call Trace:
[{t1:10.6f}]  <TASK>
[{t1:10.6f}]  dump_stack_lvl+0x44/0x5c
[{t1:10.6f}]  panic+0x118/0x2ed
[{t1:10.6f}]  sysrq_handle_crash+0x16/0x20
[{t1:10.6f}]  __handle_sysrq.cold+0x43/0x11b
[{t1:10.6f}]  write_sysrq_trigger+0x24/0x40
[{t1:10.6f}]  proc_reg_write+0x53/0xa0
[{t1:10.6f}]  vfs_write+0xc5/0x3f0
[{t1:10.6f}]  ksys_write+0x5f/0xe0
[{t1:10.6f}]  do_syscall_64+0x55/0xb0
[{t1:10.6f}]  entry_SYSCALL_64_after_hwframe+0x6e/0xd8
[{t1:10.6f}]  </TASK>
[{t1:10.6f}] Kernel Offset: 0x2c00000 from 0xffffffff81000000 (relocation range: 0xffffffff80000000-0xffffffffbfffffff)
"""


def dmesg_text(rel: str, crash: str = OOPS_MLX5, at: float = 5123.456789) -> str:
    """A whole vmcore-dmesg.txt: boot banner, some boot lines, then the crash at printk time ``at``."""
    return BOOT.format(rel=rel) + crash.format(rel=rel, t=at - 2.0, t1=at, t2=at + 0.004)


def crash_lines(rel: str, crash: str = OOPS_MLX5, at: float = 5123.456789) -> list[str]:
    """The crash's lines alone (as a host would send them by syslog/netconsole)."""
    return crash.format(rel=rel, t=at - 2.0, t1=at, t2=at + 0.004).splitlines()


def age(d: Path, seconds: float) -> Path:
    """Make a dump directory's files ``seconds`` old (a dump finished a while ago)."""
    when = time.time() - seconds
    for p in d.iterdir():
        os.utime(p, (when, when))
    return d


def make_rhel(root: Path, when: datetime, *, ip: str = "10.0.0.7", crashtime: int | None = None,
              rel: str = RELEASE_RHEL, crash: str = OOPS_MLX5, flat: bool = False, elf: bool = False,
              incomplete: bool = False, host_folder: str | None = None, dmesg: str | None = None) -> Path:
    """``<ip>-YYYY-MM-DD-HH:MM:SS/`` with vmcore (or vmcore.flat), vmcore-dmesg.txt, kexec-dmesg.log."""
    base = root / host_folder if host_folder else root
    d = base / f"{ip}-{when:%Y-%m-%d-%H:%M:%S}"
    d.mkdir(parents=True)
    (d / "vmcore-dmesg.txt").write_text(dmesg if dmesg is not None else dmesg_text(rel, crash))
    raw = build_elf(rel, crashtime) if elf else build_kdump_compressed(rel, crashtime, nodename="localhost.localdomain")
    name = "vmcore-incomplete" if incomplete else ("vmcore.flat" if flat else "vmcore")
    (d / name).write_bytes(flatten(raw) if flat else raw)
    if not incomplete:
        (d / "kexec-dmesg.log").write_text("[    0.000000] Linux version (capture kernel)\nkdump: saving vmcore\n")
    return d


def finish_rhel(d: Path, flat: bool = False) -> None:
    """What kdump.sh does at the end: ``mv vmcore-incomplete vmcore``."""
    (d / "vmcore-incomplete").rename(d / ("vmcore.flat" if flat else "vmcore"))


def make_debian(root: Path, when: datetime, *, tag: str | None = None, crashtime: int | None = None,
                rel: str = RELEASE_DEB, crash: str = OOPS_MLX5, compress: str = "", incomplete: bool = False,
                cp_fallback: bool = False, host_folder: str | None = None, with_own_files: bool = True) -> Path:
    """``YYYYMMDDHHMM/`` (or ``<tag>-YYYYMMDDHHMM/`` remote) with dmesg.STAMP and dump.STAMP (flattened)."""
    stamp = f"{when:%Y%m%d%H%M}"
    base = root / host_folder if host_folder else root
    base.mkdir(parents=True, exist_ok=True)
    if with_own_files:  # kdump-config's own files in KDUMP_COREDIR, not dumps
        (base / "kexec_cmd").write_text("/sbin/kexec -p --command-line=... /var/lib/kdump/vmlinuz\n")
        (base / "kdump_lock").write_text("")
    d = base / (f"{tag}-{stamp}" if tag else stamp)
    d.mkdir()
    (d / f"dmesg.{stamp}").write_text(dmesg_text(rel, crash))
    if cp_fallback:
        (d / ("vmcore-incomplete" if incomplete else f"vmcore.{stamp}")).write_bytes(build_elf(rel, crashtime))
        return d
    data = flatten(build_kdump_compressed(rel, crashtime, nodename="ignored"))
    ext = {"": "", "gzip": ".gz"}[compress]
    if compress == "gzip":
        data = gzip.compress(data)
    (d / (f"dump-incomplete{ext}" if incomplete else f"dump.{stamp}{ext}")).write_bytes(data)
    return d


def finish_debian(d: Path, compress: str = "") -> None:
    stamp = d.name[-12:]
    ext = ".gz" if compress == "gzip" else ""
    (d / f"dump-incomplete{ext}").rename(d / f"dump.{stamp}{ext}")


SUSE_README_TEMP = ("This file will be overwritten when the dump is finished.\n"
                    "If you see this text the crash dump is likely incomplete.\n\n"
                    "Dump time: {iso}\nHost: {host}\nDump level: 31\nDump format: compressed\n")
SUSE_README_FINAL = ("Kernel crashdump\n----------------\ndmesg status: saved successfully\n"
                     "vmcore status: saved successfully\nKernel version: {rel}\nCrash time: {iso}\n"
                     "Dump time: {iso}\nHost: {host}\nDump level: 31\nDump format: compressed\n"
                     "Note: vmcore saved in makedumpfile flattened format\n")


def make_suse(root: Path, when: datetime, *, host: str | None = "web-3", crashtime: int | None = None,
              rel: str = RELEASE_SUSE, crash: str = OOPS_MLX5, final: bool = True, colon: bool = False,
              host_folder: str | None = None) -> Path:
    """``<hostname>-YYYY-MM-DD-HH-MM/`` (``YYYY-MM-DD-HH-MM/`` locally): README.txt, dmesg, vmcore (flattened)."""
    stamp = f"{when:%Y-%m-%d-%H:%M}" if colon else f"{when:%Y-%m-%d-%H-%M}"
    base = root / host_folder if host_folder else root
    d = base / (f"{host}-{stamp}" if host else stamp)
    d.mkdir(parents=True)
    iso = f"{when:%Y-%m-%dT%H:%M:%S}"
    (d / "README.txt").write_text(SUSE_README_TEMP.format(iso=iso, host=host or "localhost"))
    (d / "dmesg").write_text(dmesg_text(rel, crash))
    (d / "vmcore").write_bytes(flatten(build_kdump_compressed(rel, crashtime, nodename=host or "linux")))
    if final:
        finish_suse(d, rel)
    return d


def finish_suse(d: Path, rel: str = RELEASE_SUSE) -> None:
    (d / "README.txt").write_text(SUSE_README_FINAL.format(rel=rel, iso="2026-11-25T10:15:00", host="web-3"))


# --- checks of the builders themselves ------------------------------------------------------------------------

def _rec(d: Path, root: Path):
    names = [p.name for p in d.iterdir() if p.is_file()]
    return layouts.recognise(d.relative_to(root).as_posix(), names)


def test_builders_make_recognisable_complete_dumps(tmp_path: Path) -> None:
    when = datetime(2026, 11, 25, 10, 15, 2)
    ct = int(time.time())
    for d, layout in ((make_rhel(tmp_path, when, crashtime=ct), "rhel"),
                      (make_debian(tmp_path / "deb", when, crashtime=ct), "debian"),
                      (make_suse(tmp_path / "suse", when, crashtime=ct), "suse")):
        root = d.parent
        r = _rec(d, root)
        assert r is not None and r.layout == layout and r.complete, (d, r)
        info = read_dump_info(str(d / r.vmcore))
        assert info.crashtime == ct
        assert info.osrelease in (RELEASE_RHEL, RELEASE_DEB, RELEASE_SUSE)


# A fatal machine check: kdump-tools greps "Fatal machine check" in the dmesg and then saves no vmcore at all.
MCE_FATAL = """\
[{t:10.6f}] mce: [Hardware Error]: Machine check events logged
[{t1:10.6f}] mce: [Hardware Error]: CPU 7: Machine Check Exception: 5 Bank 4: be00000000800400
[{t1:10.6f}] mce: [Hardware Error]: RIP !INEXACT! 10:<ffffffff8102f2a5> {{intel_idle+0x75/0x120}}
[{t1:10.6f}] mce: [Hardware Error]: TSC 2f3b7a0c3e1d ADDR 1f2e3d4000 MISC 86
[{t1:10.6f}] mce: [Hardware Error]: PROCESSOR 0:50654 TIME 1764065702 SOCKET 1 APIC 27 microcode 2007006
[{t1:10.6f}] mce: [Hardware Error]: Run the above through 'mcelog --ascii'
[{t1:10.6f}] mce: [Hardware Error]: Machine check: Processor context corrupt
[{t2:10.6f}] Kernel panic - not syncing: Fatal machine check
[{t2:10.6f}] Kernel Offset: 0x1a000000 from 0xffffffff81000000 (relocation range: 0xffffffff80000000-0xffffffffbfffffff)
"""


def make_debian_dmesg_only(root: Path, when: datetime, *, tag: str | None = None, rel: str = RELEASE_DEB,
                           crash: str = MCE_FATAL) -> Path:
    """What kdump-config leaves after a fatal hardware error: the stamp dir with dmesg.STAMP and no dump."""
    stamp = f"{when:%Y%m%d%H%M}"
    d = root / (f"{tag}-{stamp}" if tag else stamp)
    d.mkdir(parents=True)
    (d / f"dmesg.{stamp}").write_text(dmesg_text(rel, crash))
    return d

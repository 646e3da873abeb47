"""Kernel detector: printk prefixes, trigger classification, boot/shutdown markers, continuation lines.

Logs are written inline from real kernel output shapes (x86-64 and arm64, production hosts rather than fuzzers).
"""

from __future__ import annotations

import time

import pytest

from sylog.kernel.detect import (
    classify,
    ends_report,
    is_boot_marker,
    is_clean_shutdown,
    is_crash_continuation,
    trigger_body,
)
from sylog.kernel.printk import split_printk
from sylog.syslog.message import Message

# --- printk prefixes -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, level, ts, caller, body",
    [
        ("<4>[  123.456789] foo: bar", 4, 123.456789, None, "foo: bar"),
        ("[    0.000000] Linux version 6.1.0-18-amd64", None, 0.0, None, "Linux version 6.1.0-18-amd64"),
        ("[   49.650190][  T126] wlan1: Created IBSS", None, 49.65019, "T126", "wlan1: Created IBSS"),
        ("[   63.198470][    C2] net_ratelimit: 3", None, 63.19847, "C2", "net_ratelimit: 3"),
        ("[  12.3] [T42] x", None, 12.3, "T42", "x"),
        ("[T123] only caller", None, None, "T123", "only caller"),
        ("<12>plain with level", 4, None, None, "plain with level"),  # facility bits dropped
        ("no prefix at all", None, None, None, "no prefix at all"),
        ("[  926.142419]  __schedule+0x86c/0x1ed0", None, 926.142419, None, " __schedule+0x86c/0x1ed0"),
        ("syzkaller login: [   36.85][ T3615] traps: x", None, 36.85, "T3615", "traps: x"),
        (" [<ffffffff81234>] func+0x1/0x2", None, None, None, " [<ffffffff81234>] func+0x1/0x2"),
        ("[<ffffffff81234>] func+0x1/0x2", None, None, None, "[<ffffffff81234>] func+0x1/0x2"),
        ("", None, None, None, ""),
    ],
)
def test_split_printk(text, level, ts, caller, body):
    p = split_printk(text)
    assert (p.level, p.caller, p.body) == (level, caller, body)
    assert p.ts == pytest.approx(ts) if ts is not None else p.ts is None


# --- triggers --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line, kind, fatal",
    [
        # x86-64 faults
        ("BUG: kernel NULL pointer dereference, address: 0000000000000008", "page-fault", False),
        ("BUG: unable to handle page fault for address: ffffc90000a3c000", "page-fault", False),
        ("BUG: unable to handle kernel NULL pointer dereference at 0000000000000010", "page-fault", False),
        ("general protection fault, probably for non-canonical address 0xdffffc0000000001: 0000 [#1] PREEMPT SMP KASAN",
         "gpf", False),
        ("Oops: general protection fault, probably for non-canonical address 0x6b6b6b6b6b6b6b6b: 0000 [#1] SMP NOPTI",
         "gpf", False),
        ("kernel BUG at fs/ext4/inode.c:123!", "bug", False),
        ("Oops: 0002 [#1] SMP PTI", "oops", False),
        ("invalid opcode: 0000 [#1] SMP PTI", "oops", False),
        ("divide error: 0000 [#1] PREEMPT SMP KASAN", "oops", False),
        # arm64
        ("Unable to handle kernel NULL pointer dereference at virtual address 0000000000000010", "page-fault", False),
        ("Unable to handle kernel paging request at virtual address ffff800012345678", "page-fault", False),
        ("Internal error: Oops: 0000000096000006 [#1] PREEMPT SMP", "oops", False),
        # lockups, stalls, hangs
        ("watchdog: BUG: soft lockup - CPU#5 stuck for 26s! [kworker/5:1:1234]", "soft-lockup", False),
        ("NMI watchdog: Watchdog detected hard LOCKUP on cpu 3", "hard-lockup", False),
        ("Watchdog detected hard LOCKUP on cpu 12", "hard-lockup", False),
        ("INFO: task nfsd:1817 blocked for more than 122 seconds.", "hung-task", False),
        ("INFO: task jbd2/sda1-8:412 blocked for more than 120 seconds.", "hung-task", False),
        ("rcu: INFO: rcu_preempt self-detected stall on CPU", "rcu-stall", False),
        ("INFO: rcu_sched detected stalls on CPUs/tasks:", "rcu-stall", False),
        ("rcu: INFO: rcu_preempt detected expedited stalls on CPUs/tasks: {", "rcu-stall", False),
        # sanitizers
        ("BUG: KASAN: use-after-free in tcp_retransmit_timer+0x1a/0x2b0", "sanitizer", False),
        ("BUG: KCSAN: data-race in generic_fillattr / inode_set_ctime_current", "sanitizer", False),
        ("BUG: KMSAN: uninit-value in ext4_evict_inode+0x3a/0x100", "sanitizer", False),
        ("BUG: KFENCE: use-after-free read in test_use_after_free_read+0xb3/0x143", "sanitizer", False),
        ("UBSAN: array-index-out-of-bounds in drivers/net/foo.c:123:45", "sanitizer", False),
        ("kmemleak: 3 new suspected memory leaks (see /sys/kernel/debug/kmemleak)", "sanitizer", False),
        # warnings and lockdep
        ("WARNING: CPU: 2 PID: 0 at net/sched/sch_generic.c:525 dev_watchdog+0x21f/0x230", "warning", False),
        ("WARNING: possible circular locking dependency detected", "warning", False),
        ("WARNING: inconsistent lock state", "warning", False),
        ("WARNING: suspicious RCU usage", "warning", False),
        ("INFO: trying to register non-static key.", "warning", False),
        ("ODEBUG: free active (active state 0) object type: timer_list hint: foo_timer+0x0/0x10", "warning", False),
        # panics
        ("Kernel panic - not syncing: Fatal exception", "panic", True),
        ("Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)", "panic", True),
        ("VFS: Unable to mount root fs on unknown-block(0,0)", "panic", True),
        ("sysrq: Trigger a crash", "panic", True),
        ("SysRq : Trigger a crash", "panic", True),
        ("Kernel panic - not syncing: Out of memory: system-wide panic_on_oom is enabled", "panic", True),
        ("PANIC: double fault, error_code: 0x0", "panic", True),
        # hardware
        ("mce: [Hardware Error]: CPU 7: Machine Check Exception: 5 Bank 4: b200000000070f0f", "mce", True),
        ("mce: [Hardware Error]: Machine check events logged", "mce", False),
        ("mce: [Hardware Error]: CPU 3: Machine Check: 0 Bank 7: cc00008000010090", "mce", False),
        ("EDAC MC0: 1 UE memory read error on CPU_SrcID#0_Ha#0_Chan#1_DIMM#0 (channel:1 slot:0 page:0x12345)",
         "hw-error", False),
        ("{1}[Hardware Error]: Hardware error from APEI Generic Hardware Error Source: 0", "hw-error", False),
        ("{2}[Hardware Error]: event severity: fatal", "hw-error", False),
        ("thermal thermal_zone0: critical temperature reached (105 C), shutting down", "hw-error", False),
        ("pcieport 0000:00:1c.0: AER: Uncorrected (Fatal) error received: 0000:03:00.0", "hw-error", False),
        ("pcieport 0000:00:03.0: PCIe Bus Error: severity=Uncorrected (Non-Fatal), type=Transaction Layer, (Requester ID)",
         "hw-error", False),
        # memory
        ("postgres invoked oom-killer: gfp_mask=0x140cca(GFP_HIGHUSER_MOVABLE|__GFP_COMP), order=0, oom_score_adj=0",
         "oom", False),
        ("Out of memory: Killed process 4242 (java) total-vm:12345kB, anon-rss:9999kB, file-rss:0kB", "oom", False),
        ("Memory cgroup out of memory: Killed process 77 (stress) total-vm:1kB", "oom", False),
    ],
)
def test_classify_triggers(line, kind, fatal):
    hit = classify(line)
    assert hit is not None, line
    assert (hit.kind, hit.fatal) == (kind, fatal)


@pytest.mark.parametrize(
    "line",
    [
        "e1000e: eth0 NIC Link is Up 1000 Mbps Full Duplex, Flow Control: Rx/Tx",
        # user-space faults the kernel merely reports
        "traps: syz-executor229[3615] general protection fault ip:7feb96eb56a1 sp:20000fd0 error:0 in a.out[400000+84000]",
        "python3[2231]: segfault at 0 ip 00007f0c1a2b3c4d sp 00007ffd3e4f5a60 error 4 in libc.so.6[7f0c1a200000+195000]",
        "traps: node[991] trap divide error ip:55d0c1 sp:7ffc2a error:0 in node[400000+2a4b000]",
        # informational lines that merely contain the words
        "INFO: lockdep is turned off.",
        "WARNING: the mand mount option is being deprecated and",
        "Spectre V2 : WARNING: Unprivileged eBPF is enabled with eIBRS on, data leaks possible",
        "ODEBUG: Out of memory. ODEBUG disabled",
        "VFS: some message that is not an error",
        "mce: CPU0: Core temperature above threshold, cpu clock throttled (total events = 1)",
        "EDAC MC0: 1 CE memory read error on CPU_SrcID#0_Ha#0_Chan#0_DIMM#1 (channel:0 slot:1 page:0x4d2)",
        "pcieport 0000:00:1c.0: AER: Corrected error received: 0000:00:1c.0",
        "{1}[Hardware Error]: event severity: corrected",
        "audit: type=1400 audit(1.2:3): apparmor=\"DENIED\" operation=\"open\" name=\"/BUG: x\"",
        "my-app: Kernel panic - not syncing is what my test prints",
        "sshd[123]: WARNING: /etc/ssh/moduli does not exist, using fixed modulus",
        "INFO: NMI handler (perf_event_nmi_handler) took too long to run: 1.356 msecs",
        "Out of memory and no killable processes...",  # the panic line after it carries the verdict
        "",
    ],
)
def test_classify_ignores(line):
    assert classify(line) is None, line


def test_trigger_glued_after_other_text():
    """Console lines that lost their newline: the trigger follows an embedded printk prefix."""
    line = "syz-executor7: vmalloc: allocation failure: 34359738352 bytes[   76.471107] BUG: unable to handle kernel paging request at ffffffffa449"
    assert classify(line).kind == "page-fault"
    assert trigger_body(line).startswith("BUG: unable to handle")


def test_classify_is_cheap_on_ordinary_lines():
    """Every kernel line of a fleet goes through classify: the common case must stay well under 1 µs."""
    line = "e1000e: eth0 NIC Link is Up 1000 Mbps Full Duplex, Flow Control: Rx/Tx"
    n = 20000
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n):
            classify(line)
        best = min(best, (time.perf_counter() - t0) / n)
    assert best < 2e-6, f"{best * 1e9:.0f} ns per line"  # generous for loaded CI; ~0.4 µs measured


# --- boot, shutdown, continuation ------------------------------------------------------------------------------


@pytest.mark.parametrize("line, want", [
    ("Linux version 6.1.0-18-amd64 (debian-kernel@lists.debian.org) (gcc-12 (Debian 12.2.0-14) 12.2.0) #1 SMP", True),
    ("Command line: BOOT_IMAGE=/boot/vmlinuz-6.1.0-18-amd64 root=UUID=1234 ro quiet", True),
    ("Booting Linux on physical CPU 0x0000000000 [0x410fd083]", True),
    ("fuse: Unknown parameter 'Booting the kernel.'", False),
    ("e1000e: eth0 NIC Link is Up", False),
    ("", False),
])
def test_boot_marker(line, want):
    assert is_boot_marker(line) is want


def _msg(app: str | None, text: str, facility: int = 3) -> Message:
    return Message(format="rfc5424", facility=facility, severity=6, app_name=app, msg=text)


@pytest.mark.parametrize("msg, want", [
    (_msg("kernel", "[ 5123.000001] reboot: Restarting system", 0), True),
    (_msg("kernel", "reboot: Power down", 0), True),
    (_msg("kernel", "reboot: System halted", 0), True),
    (_msg("systemd-shutdown", "Syncing filesystems and block devices."), True),
    (_msg("systemd", "Reached target System Reboot."), True),
    (_msg("systemd", "Reached target System Power Off."), True),
    (_msg("rsyslogd", '[origin software="rsyslogd" swVersion="8.2302.0" x-pid="612"] exiting on signal 15.'), True),
    (_msg("systemd-logind", "System is rebooting."), True),
    (_msg("kernel", "e1000e: eth0 NIC Link is Down", 0), False),
    (_msg("rsyslogd", '[origin software="rsyslogd"] rsyslogd was HUPed'), False),
    (_msg("myapp", "reboot: Restarting system"), False),  # not the kernel saying it
])
def test_clean_shutdown(msg, want):
    assert is_clean_shutdown(msg) is want


@pytest.mark.parametrize("line", [
    "RIP: 0010:dev_watchdog+0x21f/0x230",
    "RSP: 0018:ffffc90000003e38 EFLAGS: 00010286",
    "Call Trace:", " <TASK>", " </TASK>", " <IRQ>",
    " ? __warn+0x81/0x130",
    " call_timer_fn+0x27/0x130",
    " nfs_page_group_lock+0x37/0x90 [nfs]",
    "Modules linked in: nfsv3 nfs lockd grace fscache netfs sunrpc ext4 mbcache jbd2",
    "---[ end trace 0000000000000000 ]---",
    "CPU: 2 PID: 0 Comm: swapper/2 Tainted: G        W          6.1.0-18-amd64 #1  Debian 6.1.76-1",
    "Hardware name: Dell Inc. PowerEdge R640/0H28RR, BIOS 2.17.1 11/15/2022",
    "Code: 8b 45 08 48 85 c0 <0f> 0b",
    "Kernel panic - not syncing: Fatal exception",
    "Rebooting in 10 seconds..",
    "Kernel Offset: 0x1c000000 from 0xffffffff81000000 (relocation range: 0xffffffff80000000-0xffffffffbfffffff)",
    "---[ end Kernel panic - not syncing: Fatal exception ]---",
    "pc : mydrv_probe+0x1c/0x40 [mydrv]",
    "lr : platform_probe+0x70/0xf0",
    "x29: ffff80000a0bb9d0 x28: 0000000000000000 x27: ffff0000c0a1b0c0",
    "Read of size 8 at addr ffff888012345678 by task kworker/0:1/12",
    "The buggy address belongs to the object at ffff888012345600",
    "==================================================================",
])
def test_continuation(line):
    assert is_crash_continuation(line), line


def test_not_continuation():
    assert not is_crash_continuation("e1000e: eth0 NIC Link is Up 1000 Mbps")
    assert not is_crash_continuation("")


def test_ends_report():
    assert ends_report("---[ end trace 0000000000000000 ]---")
    assert ends_report("---[ end Kernel panic - not syncing: Fatal exception ]---")
    assert ends_report("Rebooting in 10 seconds..")
    assert not ends_report("Call Trace:")


def test_split_printk_relay_tag_and_other_arches():
    p = split_printk("kernel: [  12.500000] BUG: kernel NULL pointer dereference, address: 0000000000000000")
    assert (p.ts, p.body) == (12.5, "BUG: kernel NULL pointer dereference, address: 0000000000000000")
    assert split_printk("kernel: not a printk line").body == "kernel: not a printk line"
    for line, kind in [
        ("CPU 0 Unable to handle kernel paging request at virtual address 00000000, epc == 80123456", "page-fault"),
        ("Unable to handle kernel pointer dereference in virtual kernel address space", "page-fault"),  # s390
        ("Oops [#1]", "oops"),  # riscv
        ("Kernel BUG [#1]", "bug"),  # riscv
        ("BUG: Unable to handle kernel data access on read at 0x00000008", "page-fault"),  # powerpc
        ("Oops: Kernel access of bad area, sig: 11 [#1]", "oops"),  # powerpc
        ("[Hardware Error]: CPU 3: Machine Check Exception: 4 Bank 0: b200000000000000", "mce"),
        ("unregister_netdevice: waiting for lo to become free. Usage count = 1", "hung-task"),
    ]:
        hit = classify(line)
        assert hit is not None and hit.kind == kind, line
    assert classify("CPU: 0 PID: 1 Comm: swapper/0 Not tainted 6.1.0 #1") is None

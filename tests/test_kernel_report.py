"""Crash report analysis on production-style crashes that fuzzing corpora lack: titles, guilty function, module,
host facts and signature stability. Logs are inline, in the shapes real kernels print."""

from __future__ import annotations

import re

from sylog.kernel.detect import classify
from sylog.kernel.printk import split_printk
from sylog.kernel.report import analyze


def lines(text: str) -> list[str]:
    return [ln for ln in text.strip("\n").split("\n")]


def first_kind(log: list[str]) -> str:
    return next(h.kind for ln in log if (h := classify(split_printk(ln).body)))


def run(text: str):
    log = lines(text)
    kind = first_kind(log)
    return kind, analyze(kind, log)


MCE_FATAL = """
mce: [Hardware Error]: CPU 7: Machine Check Exception: 5 Bank 4: b200000000070f0f
mce: [Hardware Error]: TSC 0
mce: [Hardware Error]: PROCESSOR 0:50654 TIME 1700000000 SOCKET 0 APIC 7 microcode 2006e05
mce: [Hardware Error]: Run the above through 'mcelog --ascii'
mce: [Hardware Error]: Machine check: Processor context corrupt
Kernel panic - not syncing: Fatal machine check
Kernel Offset: disabled
"""


def test_mce_fatal_and_corrected():
    kind, r = run(MCE_FATAL)
    assert kind == "mce"
    assert classify("mce: [Hardware Error]: CPU 7: Machine Check Exception: 5 Bank 4: b200000000070f0f").fatal
    assert "Machine Check Exception" in r.title
    kind2, r2 = run("mce: [Hardware Error]: Machine check events logged\n")
    assert kind2 == "mce" and not classify("mce: [Hardware Error]: Machine check events logged").fatal
    assert r2.title != r.title and r2.signature != r.signature


def test_edac_and_ghes_are_hw_errors():
    kind, r = run("EDAC MC0: 1 UE memory read error on CPU_SrcID#0_Ha#0_Chan#1_DIMM#0 (channel:1 slot:0 page:0x1b2f3)\n"
                  "EDAC MC0: 1 UE memory read error on CPU_SrcID#0_Ha#0_Chan#1_DIMM#0 (channel:1 slot:0 page:0x1b2f4)\n")
    assert kind == "hw-error" and "EDAC" in r.title
    kind, r = run("""
{1}[Hardware Error]: Hardware error from APEI Generic Hardware Error Source: 0
{1}[Hardware Error]: event severity: fatal
{1}[Hardware Error]:  Error 0, type: fatal
{1}[Hardware Error]:   section_type: PCIe error
Kernel panic - not syncing: Fatal hardware error!
""")
    assert kind == "hw-error" and r.title.startswith("GHES")


JBD2_HUNG = """
[ 1450.123456] INFO: task jbd2/sda1-8:412 blocked for more than 120 seconds.
[ 1450.123470]       Tainted: G            E     5.15.0-91-generic #101-Ubuntu
[ 1450.123480] "echo 0 > /proc/sys/kernel/hung_task_timeout_secs" disables this message.
[ 1450.123490] task:jbd2/sda1-8     state:D stack:    0 pid:  412 ppid:     2 flags:0x00004000
[ 1450.123500] Call Trace:
[ 1450.123505]  <TASK>
[ 1450.123510]  __schedule+0x24e/0x590
[ 1450.123520]  schedule+0x69/0x110
[ 1450.123530]  io_schedule+0x46/0x80
[ 1450.123540]  bit_wait_io+0x11/0x70
[ 1450.123550]  __wait_on_bit+0x31/0xa0
[ 1450.123560]  out_of_line_wait_on_bit+0x94/0xb0
[ 1450.123570]  ? var_wake_function+0x30/0x30
[ 1450.123580]  jbd2_journal_commit_transaction+0x16d8/0x1a90 [jbd2]
[ 1450.123590]  kjournald2+0xab/0x270 [jbd2]
[ 1450.123600]  kthread+0x127/0x150
[ 1450.123610]  ret_from_fork+0x1f/0x30
[ 1450.123620]  </TASK>
"""

NFS_HUNG = """
INFO: task cp:4182 blocked for more than 122 seconds.
      Not tainted 6.1.0-18-amd64 #1 Debian 6.1.76-1
"echo 0 > /proc/sys/kernel/hung_task_timeout_secs" disables this message.
task:cp              state:D stack:0     pid:4182  ppid:4101   flags:0x00004002
Call Trace:
 <TASK>
 __schedule+0x351/0xa20
 schedule+0x5d/0xe0
 io_schedule+0x42/0x70
 folio_wait_bit_common+0x12d/0x370
 ? filemap_invalidate_unlock_two+0x50/0x50
 folio_wait_writeback+0x28/0x80
 __filemap_fdatawait_range+0x90/0x100
 filemap_write_and_wait_range+0x81/0xa0
 nfs_file_fsync+0x9b/0x210 [nfs]
 __x64_sys_fsync+0x37/0x60
 do_syscall_64+0x58/0xc0
 entry_SYSCALL_64_after_hwframe+0x64/0xce
 </TASK>
"""


def test_hung_tasks_name_the_filesystem_not_the_scheduler():
    kind, r = run(JBD2_HUNG)
    assert kind == "hung-task"
    assert r.title == "INFO: task hung in jbd2_journal_commit_transaction"
    assert (r.function, r.module) == ("jbd2_journal_commit_transaction", "jbd2")
    assert r.frames[:3] == ["__schedule", "schedule", "io_schedule"]  # questionable `? ` frames left out
    assert "var_wake_function" not in r.frames
    kind, r = run(NFS_HUNG)
    assert kind == "hung-task"
    assert (r.title, r.function, r.module) == ("INFO: task hung in nfs_file_fsync", "nfs_file_fsync", "nfs")
    assert (r.kernel_release, r.taint) == ("6.1.0-18-amd64", "")


SOFT_LOCKUP = """
watchdog: BUG: soft lockup - CPU#5 stuck for 26s! [kworker/5:1:1234]
Modules linked in: mlx5_ib ib_uverbs mlx5_core mlxfw psample tls pci_hyperv_intf
CPU: 5 PID: 1234 Comm: kworker/5:1 Tainted: G             L     5.15.0-91-generic #101-Ubuntu
Hardware name: Supermicro SYS-1029P-WTR/X11DDW-L, BIOS 3.4 11/02/2020
Workqueue: events mlx5e_tx_timeout_work [mlx5_core]
RIP: 0010:mlx5_cmd_exec_poll+0x5a/0x120 [mlx5_core]
Code: 48 8b 45 d0 48 8b 40 08 48 85 c0 74 0c <f3> 90 48 8b 45 d0
RSP: 0018:ffffb1c2c3e7bd68 EFLAGS: 00000246
RAX: 0000000000000000 RBX: ffff9a0d4b8c0000 RCX: 0000000000000000
Call Trace:
 <TASK>
 mlx5_cmd_exec+0x2b/0x40 [mlx5_core]
 mlx5e_tx_timeout_work+0x8a/0x120 [mlx5_core]
 process_one_work+0x228/0x3d0
 worker_thread+0x53/0x420
 kthread+0x127/0x150
 ret_from_fork+0x1f/0x30
 </TASK>
"""

HARD_LOCKUP = """
NMI watchdog: Watchdog detected hard LOCKUP on cpu 3
Modules linked in: ixgbe mdio dca xfs libcrc32c
CPU: 3 PID: 0 Comm: swapper/3 Kdump: loaded Tainted: G           OE    --------- -  - 4.18.0-425.3.1.el8.x86_64 #1
Hardware name: HPE ProLiant DL380 Gen10/ProLiant DL380 Gen10, BIOS U30 05/21/2019
RIP: 0010:native_queued_spin_lock_slowpath+0x20a/0x270
Code: c1 e9 12 83 e0 03 83 e9 01 48 c1 e0 05 48 63 c9 48 05 c0 87 02 00 <48> 03 04 cd
Call Trace:
 <IRQ>
 _raw_spin_lock_irqsave+0x3d/0x40
 ixgbe_service_timer+0x2c/0x90 [ixgbe]
 call_timer_fn+0x2d/0x130
 run_timer_softirq+0x1dc/0x420
 __do_softirq+0xd7/0x2c8
 irq_exit+0xf7/0x100
 smp_apic_timer_interrupt+0x74/0x140
 apic_timer_interrupt+0xf/0x20
 </IRQ>
"""


def test_lockups_in_drivers():
    kind, r = run(SOFT_LOCKUP)
    assert kind == "soft-lockup"
    assert r.title == "BUG: soft lockup in mlx5e_tx_timeout_work"
    assert (r.function, r.module) == ("mlx5e_tx_timeout_work", "mlx5_core")
    assert (r.kernel_release, r.taint, r.cpu, r.pid, r.comm) == ("5.15.0-91-generic", "GL", 5, 1234, "kworker/5:1")
    assert r.hardware == "Supermicro SYS-1029P-WTR/X11DDW-L, BIOS 3.4 11/02/2020"
    kind, r = run(HARD_LOCKUP)
    assert kind == "hard-lockup"
    assert (r.function, r.module) == ("ixgbe_service_timer", "ixgbe")
    assert "hard LOCKUP" in r.title and "ixgbe_service_timer" in r.title
    assert (r.kernel_release, r.taint, r.comm) == ("4.18.0-425.3.1.el8.x86_64", "GOE", "swapper/3")


PANIC_ON_OOM = """
stress invoked oom-killer: gfp_mask=0x100cca(GFP_HIGHUSER_MOVABLE), order=0, oom_score_adj=0
CPU: 1 PID: 3141 Comm: stress Not tainted 6.1.0-18-amd64 #1 Debian 6.1.76-1
Hardware name: QEMU Standard PC (Q35 + ICH9, 2009), BIOS 1.16.2-debian-1.16.2-1 04/01/2014
Call Trace:
 <TASK>
 dump_stack_lvl+0x44/0x5c
 dump_header+0x4a/0x211
 out_of_memory.cold+0xa/0x7e
 __alloc_pages_slowpath.constprop.0+0xd12/0xe10
 __alloc_pages+0x305/0x330
 do_anonymous_page+0x1a4/0x5c0
 __handle_mm_fault+0x5ca/0x640
 handle_mm_fault+0xdb/0x2d0
 do_user_addr_fault+0x191/0x550
 exc_page_fault+0x70/0x170
 asm_exc_page_fault+0x22/0x30
 </TASK>
Mem-Info:
active_anon:1970 inactive_anon:482330 isolated_anon:0
Tasks state (memory values in pages):
Kernel panic - not syncing: Out of memory: system-wide panic_on_oom is enabled
CPU: 1 PID: 3141 Comm: stress Not tainted 6.1.0-18-amd64 #1 Debian 6.1.76-1
Kernel Offset: 0x1c000000 from 0xffffffff81000000 (relocation range: 0xffffffff80000000-0xffffffffbfffffff)
---[ end Kernel panic - not syncing: Out of memory: system-wide panic_on_oom is enabled ]---
"""


def test_panic_on_oom():
    log = lines(PANIC_ON_OOM)
    kinds = [h.kind for ln in log if (h := classify(ln))]
    assert kinds[0] == "oom" and "panic" in kinds
    assert any(h.fatal for ln in log if (h := classify(ln)))
    r = analyze("oom", log)
    assert "panic_on_oom" in r.title
    assert r.kernel_release == "6.1.0-18-amd64"


ARM64_OOPS = """
[   12.345678] Unable to handle kernel NULL pointer dereference at virtual address 0000000000000010
[   12.345700] Mem abort info:
[   12.345710]   ESR = 0x0000000096000006
[   12.345720]   EC = 0x25: DABT (current EL), IL = 32 bits
[   12.345730]   SET = 0, FnV = 0
[   12.345740]   EA = 0, S1PTW = 0
[   12.345750]   FSC = 0x06: level 2 translation fault
[   12.345760] Data abort info:
[   12.345770]   ISV = 0, ISS = 0x00000006
[   12.345780]   CM = 0, WnR = 0
[   12.345790] user pgtable: 4k pages, 48-bit VAs, pgdp=0000000041c2b000
[   12.345800] [0000000000000010] pgd=0800000041c3c003, p4d=0800000041c3c003, pud=0800000041c3d003, pmd=0000000000000000
[   12.345810] Internal error: Oops: 0000000096000006 [#1] PREEMPT SMP
[   12.345820] Modules linked in: mydrv(O) nls_iso8859_1
[   12.345830] CPU: 1 PID: 245 Comm: modprobe Tainted: G           O       6.6.0-rc3 #1
[   12.345840] Hardware name: linux,dummy-virt (DT)
[   12.345850] pstate: 60400005 (nZCv daif +PAN -UAO -TCO -DIT -SSBS BTYPE=--)
[   12.345860] pc : mydrv_probe+0x1c/0x40 [mydrv]
[   12.345870] lr : platform_probe+0x70/0xf0
[   12.345880] sp : ffff80008239b9f0
[   12.345890] x29: ffff80008239b9f0 x28: 0000000000000000 x27: ffff0000c0a1b0c0
[   12.345900] Call trace:
[   12.345910]  mydrv_probe+0x1c/0x40 [mydrv]
[   12.345920]  platform_probe+0x70/0xf0
[   12.345930]  really_probe+0x150/0x2c0
[   12.345940]  __driver_probe_device+0x78/0x130
[   12.345950]  driver_probe_device+0x40/0x100
[   12.345960] Code: a9be7bfd 910003fd f9000bf3 aa0003f3 (f9400800)
[   12.345970] ---[ end trace 0000000000000000 ]---
"""


def test_arm64_oops_in_module():
    kind, r = run(ARM64_OOPS)
    assert kind == "page-fault"
    assert r.title == "BUG: unable to handle kernel NULL pointer dereference in mydrv_probe"
    assert (r.function, r.module) == ("mydrv_probe", "mydrv")
    assert (r.kernel_release, r.taint, r.hardware) == ("6.6.0-rc3", "GO", "linux,dummy-virt (DT)")
    assert r.frames[:3] == ["mydrv_probe", "platform_probe", "really_probe"]
    # `Internal error: Oops` alone (no preceding fault line) is an oops with the pc's function
    log = lines(ARM64_OOPS)[12:]
    assert first_kind(log) == "oops"
    assert analyze("oops", log).function == "mydrv_probe"


VFS_ROOT = """
VFS: Cannot open root device "sda1" or unknown-block(0,0): error -6
Please append a correct "root=" boot option; here are the available partitions:
Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)
CPU: 0 PID: 1 Comm: swapper/0 Not tainted 6.1.0-18-amd64 #1 Debian 6.1.76-1
Hardware name: QEMU Standard PC (i440FX + PIIX, 1996), BIOS 1.16.2-debian-1.16.2-1 04/01/2014
Call Trace:
 <TASK>
 dump_stack_lvl+0x44/0x5c
 panic+0x118/0x2ed
 mount_block_root+0x1d3/0x1e6
 prepare_namespace+0x136/0x165
 kernel_init_freeable+0x25c/0x286
 ? rest_init+0xd0/0xd0
 kernel_init+0x16/0x130
 ret_from_fork+0x22/0x30
 </TASK>
---[ end Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0) ]---
"""


def test_vfs_unable_to_mount_root():
    kind, r = run(VFS_ROOT)
    assert kind == "panic"
    assert r.title.startswith("kernel panic: VFS: Unable to mount root fs")
    assert r.function == "mount_block_root"  # dump_stack and panic are reporting frames


SYSRQ_OLD = """
[  101.000001] sysrq: Trigger a crash
[  101.000100] BUG: kernel NULL pointer dereference, address: 0000000000000000
[  101.000200] #PF: supervisor write access in kernel mode
[  101.000300] #PF: error_code(0x0002) - not-present page
[  101.000400] PGD 0 P4D 0
[  101.000500] Oops: 0002 [#1] SMP PTI
[  101.000600] CPU: 0 PID: 1530 Comm: bash Not tainted 5.10.0-28-amd64 #1 Debian 5.10.209-2
[  101.000700] Hardware name: QEMU Standard PC (Q35 + ICH9, 2009), BIOS 1.16.2-debian-1.16.2-1 04/01/2014
[  101.000800] RIP: 0010:sysrq_handle_crash+0x16/0x20
[  101.000900] Code: 34 e8 7d 75 ff ff 48 c7 c7 ca 2b 5e ab e8 4b 11 b0 ff 0f 0b c3 0f 1f 44 00 00 c7 05 e9 <c6> 04 25
[  101.001000] RSP: 0018:ffffb4c6c0a1fe68 EFLAGS: 00010246
[  101.001100] Call Trace:
[  101.001200]  __handle_sysrq.cold+0x48/0x11f
[  101.001300]  write_sysrq_trigger+0x2b/0x40
[  101.001400]  proc_reg_write+0x51/0x90
[  101.001500]  vfs_write+0xc0/0x260
[  101.001600]  ksys_write+0x5f/0xe0
[  101.001700]  do_syscall_64+0x33/0x80
[  101.001800]  entry_SYSCALL_64_after_hwframe+0x61/0xc6
[  101.001900] Kernel panic - not syncing: Fatal exception
[  101.002000] Kernel Offset: 0x29e00000 from 0xffffffff81000000
"""

SYSRQ_NEW = """
sysrq: Trigger a crash
Kernel panic - not syncing: sysrq triggered crash
CPU: 3 PID: 2817 Comm: bash Not tainted 6.1.0-18-amd64 #1 Debian 6.1.76-1
Hardware name: QEMU Standard PC (Q35 + ICH9, 2009), BIOS 1.16.2-debian-1.16.2-1 04/01/2014
Call Trace:
 <TASK>
 dump_stack_lvl+0x44/0x5c
 panic+0x118/0x2ed
 sysrq_handle_crash+0x16/0x20
 __handle_sysrq.cold+0x43/0x11b
 write_sysrq_trigger+0x24/0x40
 proc_reg_write+0x55/0xa0
 vfs_write+0xc7/0x3e0
 ksys_write+0x5f/0xe0
 do_syscall_64+0x5b/0xc0
 entry_SYSCALL_64_after_hwframe+0x64/0xce
 </TASK>
Kernel Offset: 0x1c000000 from 0xffffffff81000000 (relocation range: 0xffffffff80000000-0xffffffffbfffffff)
---[ end Kernel panic - not syncing: sysrq triggered crash ]---
"""


def test_sysrq_trigger_crash():
    for text in (SYSRQ_OLD, SYSRQ_NEW):
        log = lines(text)
        hit = classify(split_printk(log[0]).body)
        assert hit is not None and hit.kind == "panic" and hit.fatal
        r = analyze("panic", log)
        assert r.function == "sysrq_handle_crash", text
        assert "sysrq" in r.title.lower()


NETDEV_WARNING = """
------------[ cut here ]------------
NETDEV WATCHDOG: eno1 (igb): transmit queue 2 timed out 5124 ms
WARNING: CPU: 2 PID: 0 at net/sched/sch_generic.c:525 dev_watchdog+0x21f/0x230
Modules linked in: igb i2c_algo_bit dca nft_chain_nat
CPU: 2 PID: 0 Comm: swapper/2 Tainted: G        W          6.1.0-18-amd64 #1  Debian 6.1.76-1
Hardware name: Dell Inc. PowerEdge R640/0H28RR, BIOS 2.17.1 11/15/2022
RIP: 0010:dev_watchdog+0x21f/0x230
Code: 00 e9 31 ff ff ff 4c 89 e7 c6 05 0c 86 29 01 01 e8 a3 0d fb ff 44 89 e9 4c 89 e6 <0f> 0b e9 0e ff ff ff
RSP: 0018:ffffb1c2c0190e78 EFLAGS: 00010286
Call Trace:
 <IRQ>
 ? __warn+0x7d/0xc0
 ? dev_watchdog+0x21f/0x230
 ? report_bug+0xe2/0x150
 ? handle_bug+0x41/0x70
 ? exc_invalid_op+0x13/0x60
 ? asm_exc_invalid_op+0x16/0x20
 ? dev_watchdog+0x21f/0x230
 call_timer_fn+0x27/0x130
 __run_timers+0x221/0x2b0
 run_timer_softirq+0x3b/0x80
 __do_softirq+0xf0/0x2fe
 </IRQ>
---[ end trace 0000000000000000 ]---
"""

I915_WARNING = """
WARNING: CPU: 5 PID: 811 at drivers/gpu/drm/i915/display/intel_display.c:1234 intel_atomic_commit_tail+0x5c1/0x1690 [i915]
Modules linked in: i915 drm_buddy ttm drm_display_helper
CPU: 5 PID: 811 Comm: kworker/u16:7 Tainted: G        W          6.5.0-14-generic #14~22.04.1-Ubuntu
RIP: 0010:intel_atomic_commit_tail+0x5c1/0x1690 [i915]
Call Trace:
 <TASK>
 ? __warn+0x81/0x130
 intel_atomic_commit_work+0x12/0x20 [i915]
 process_one_work+0x223/0x440
 worker_thread+0x4d/0x3f0
 kthread+0xf2/0x120
 ret_from_fork+0x34/0x50
 </TASK>
---[ end trace 0000000000000000 ]---
"""


def test_warning_function_and_module_and_not_fatal():
    kind, r = run(NETDEV_WARNING)
    assert kind == "warning"
    assert not any(h.fatal for ln in lines(NETDEV_WARNING) if (h := classify(ln)))
    assert (r.title, r.function, r.module) == ("WARNING in dev_watchdog", "dev_watchdog", None)
    assert r.frames[:2] == ["call_timer_fn", "__run_timers"]
    kind, r = run(I915_WARNING)
    assert (r.title, r.function, r.module) == ("WARNING in intel_atomic_commit_tail", "intel_atomic_commit_tail", "i915")


ZFS_NULL = """
[ 8012.551234] BUG: kernel NULL pointer dereference, address: 0000000000000008
[ 8012.551240] #PF: supervisor read access in kernel mode
[ 8012.551245] #PF: error_code(0x0000) - not-present page
[ 8012.551250] PGD 0 P4D 0
[ 8012.551255] Oops: 0000 [#1] PREEMPT SMP NOPTI
[ 8012.551260] CPU: 6 PID: 20431 Comm: z_wr_int_1 Tainted: G           OE      6.5.0-14-generic #14~22.04.1-Ubuntu
[ 8012.551265] Hardware name: LENOVO 20XW0055US/20XW0055US, BIOS N32ET86W (1.62 ) 04/27/2023
[ 8012.551270] RIP: 0010:zio_done+0x3a/0x1040 [zfs]
[ 8012.551275] Code: 41 56 41 55 41 54 53 48 89 fb 48 83 ec 30 <48> 8b 47 08 48 85 c0
[ 8012.551280] RSP: 0018:ffffa1b2c3d4fd88 EFLAGS: 00010246
[ 8012.551285] Call Trace:
[ 8012.551290]  <TASK>
[ 8012.551295]  ? show_regs+0x6d/0x80
[ 8012.551300]  ? __die+0x24/0x80
[ 8012.551305]  ? page_fault_oops+0x99/0x1b0
[ 8012.551310]  ? do_user_addr_fault+0x31d/0x6b0
[ 8012.551315]  ? exc_page_fault+0x83/0x1b0
[ 8012.551320]  ? asm_exc_page_fault+0x27/0x30
[ 8012.551325]  ? zio_done+0x3a/0x1040 [zfs]
[ 8012.551330]  zio_execute+0x94/0x170 [zfs]
[ 8012.551335]  taskq_thread+0x2ba/0x4f0 [spl]
[ 8012.551340]  kthread+0xf2/0x120
[ 8012.551345]  ret_from_fork+0x34/0x50
[ 8012.551350]  </TASK>
[ 8012.551355] ---[ end trace 0000000000000000 ]---
"""


def test_x86_null_deref_in_module():
    kind, r = run(ZFS_NULL)
    assert kind == "page-fault"
    assert r.title == "BUG: unable to handle kernel NULL pointer dereference in zio_done"
    assert (r.function, r.module) == ("zio_done", "zfs")
    assert (r.cpu, r.pid, r.comm, r.taint) == (6, 20431, "z_wr_int_1", "GOE")
    assert r.frames == ["zio_execute", "taskq_thread", "kthread", "ret_from_fork"]


def _other_host(text: str) -> str:
    """The same crash as another host prints it: other timestamps, addresses, PIDs, CPU and caller ids."""
    t = re.sub(r"\[ *\d+\.\d+\]", "[77777.123456]", text)
    t = re.sub(r"\b[0-9a-f]{16}\b", "ffff888076543210", t)
    t = re.sub(r"CPU: \d+ PID: \d+", "CPU: 11 PID: 99", t)
    t = re.sub(r"\+0x[0-9a-f]+/", "+0x10/", t)  # another build: other offsets
    return t


def test_signature_stable_across_hosts_and_distinct_across_bugs():
    for text in (ZFS_NULL, SOFT_LOCKUP, JBD2_HUNG, NETDEV_WARNING, ARM64_OOPS, MCE_FATAL):
        k1, r1 = run(text)
        k2, r2 = run(_other_host(text))
        assert (k1, r1.title, r1.signature) == (k2, r2.title, r2.signature), text
        assert re.fullmatch(r"[0-9a-f]{16}", r1.signature)
    sigs = {run(t)[1].signature for t in (ZFS_NULL, SOFT_LOCKUP, JBD2_HUNG, NETDEV_WARNING, I915_WARNING,
                                          ARM64_OOPS, MCE_FATAL, VFS_ROOT, SYSRQ_NEW)}
    assert len(sigs) == 9


def test_kernel_bug_title_keeps_file_and_finds_caller():
    text = """
kernel BUG at fs/ext4/inode.c:1234!
invalid opcode: 0000 [#1] PREEMPT SMP NOPTI
CPU: 0 PID: 77 Comm: kworker/u8:3 Not tainted 6.1.0-18-amd64 #1 Debian 6.1.76-1
RIP: 0010:ext4_writepages+0x10a5/0x1100 [ext4]
Call Trace:
 <TASK>
 do_writepages+0xcf/0x1e0
 __writeback_single_inode+0x41/0x350
 </TASK>
"""
    kind, r = run(text)
    assert kind == "bug"
    assert r.title == "kernel BUG at fs/ext4/inode.c:1234"
    assert (r.function, r.module) == ("ext4_writepages", "ext4")


def test_kasan_and_lockdep_reports_open_with_a_separator():
    kasan = """
==================================================================
BUG: KASAN: slab-use-after-free in tcp_retransmit_timer+0x1a/0x2b0
Read of size 8 at addr ffff88801f3c2a10 by task swapper/0/0

CPU: 0 PID: 0 Comm: swapper/0 Not tainted 6.6.0 #1
Call Trace:
 <IRQ>
 dump_stack_lvl+0xd9/0x1b0
 print_report+0xc4/0x620
 kasan_report+0xda/0x110
 tcp_retransmit_timer+0x1a/0x2b0
 tcp_write_timer_handler+0x2f6/0x4b0
 </IRQ>
==================================================================
"""
    kind, r = run(kasan)
    assert kind == "sanitizer"
    assert r.title == "KASAN: slab-use-after-free Read in tcp_retransmit_timer"
    lockdep = """
======================================================
WARNING: possible circular locking dependency detected
6.1.0-rc1 #1 Not tainted
------------------------------------------------------
kworker/0:1/12 is trying to acquire lock:
ffff888012345678 (&dev->mutex){+.+.}-{3:3}, at: mydev_reset+0x3a/0x100 [mydev]

but task is already holding lock:
ffffffff8a1b2c3d (rtnl_mutex){+.+.}-{3:3}, at: rtnl_lock+0x17/0x20
"""
    kind, r = run(lockdep)
    assert kind == "warning"
    assert (r.title, r.function) == ("possible deadlock in mydev_reset", "mydev_reset")


def test_caller_ids_keep_interleaved_tasks_out():
    text = """
[  100.000001][ T4182] BUG: kernel NULL pointer dereference, address: 0000000000000008
[  100.000002][ T4182] Oops: 0000 [#1] PREEMPT SMP NOPTI
[  100.000003][ T4182] CPU: 1 PID: 4182 Comm: worker Not tainted 6.1.0 #1
[  100.000004][   T99] RIP: 0010:unrelated_func+0x1/0x2
[  100.000005][ T4182] RIP: 0010:real_culprit+0x3a/0x100 [mymod]
[  100.000006][ T4182] Call Trace:
[  100.000007][   T99]  noise_frame+0x1/0x2
[  100.000008][ T4182]  caller_one+0x10/0x20
"""
    kind, r = run(text)
    assert (r.function, r.module) == ("real_culprit", "mymod")
    assert r.frames == ["caller_one"]


def test_analyze_never_raises_on_garbage():
    for log in ([], [""], ["BUG:"], ["WARNING: CPU: x"], ["Kernel panic - not syncing"], ["\x00\xff"]):
        r = analyze("bug", log)
        assert isinstance(r.title, str) and r.signature


ARM32_STALL = """
rcu: INFO: rcu_sched self-detected stall on CPU
rcu: 	0-...!: (2099 ticks this GP) idle=4c6/1/0x40000002 softirq=6646/6646 fqs=126
NMI backtrace for cpu 0
CPU: 0 PID: 1760 Comm: myd Not tainted 5.10.2 #10
Hardware name: ARM-Versatile Express
[<80118054>] (unwind_backtrace) from [<80110ce4>] (show_stack+0x20/0x24)
[<80110ce4>] (show_stack) from [<80c16564>] (dump_stack+0x104/0x138)
[<801d1124>] (update_process_times) from [<801e8104>] (tick_periodic+0x58/0xfc)
[<806ab444>] (gic_handle_irq) from [<80100b6c>] (__irq_svc+0x6c/0x90)
Exception stack(0x91883f00 to 0x91883f48)
3f00: 20b35644 7effffff 00040000 00000055 00000000 1f4cabd4 20000100 20000118
[<80100b6c>] (__irq_svc) from [<80616f94>] (check_zeroed_user+0x140/0x1dc)
[<80616f94>] (check_zeroed_user) from [<80321578>] (sys_openat2+0x124/0x170)
[<80321578>] (sys_openat2) from [<80100080>] (ret_fast_syscall+0x0/0x54)
"""


def test_arm32_stall_reads_both_sides_of_from_frames():
    kind, r = run(ARM32_STALL)
    assert kind == "rcu-stall"
    assert (r.title, r.function) == ("INFO: rcu detected stall in sys_openat2", "sys_openat2")
    assert r.frames[-2:] == ["sys_openat2", "ret_fast_syscall"]


def test_stall_signature_ignores_the_victim_stack_below_the_anchor():
    """Hangs and lockups hash the title: the same stuck journal thread reached from another path is one bug."""
    other = JBD2_HUNG.replace("kjournald2+0xab/0x270 [jbd2]", "jbd2_journal_force_commit+0x2f/0x50 [jbd2]")
    assert run(other)[1].signature == run(JBD2_HUNG)[1].signature
    # while for a fault the callers of the guilty function are part of the identity
    other = ZFS_NULL.replace("zio_execute+0x94/0x170 [zfs]", "zio_nowait+0x94/0x170 [zfs]")
    assert run(other)[1].signature != run(ZFS_NULL)[1].signature


def test_more_report_shapes():
    cases = [
        ("warning", "WARNING: kernel/foo.c:12 at 0x0, CPU#1: syz.0.1/1234\nRIP: 0010:foo_check+0x12/0x34\n"
                    "Call Trace:\n <TASK>\n foo_ioctl+0x55/0x90\n </TASK>", "WARNING in foo_check", "foo_check"),
        ("warning", "WARNING: fs/ext4/inode.c:123 at ext4_foo+0x12/0x34, CPU#0: kworker/0:1/12",
         "WARNING in ext4_foo", "ext4_foo"),
        ("warning", "WARNING: bad unlock balance detected!\n6.1.0 #1 Not tainted\n-----\n"
                    "app/1234 is trying to release lock (&sb->s_type->i_mutex_key) at:\n foo_release+0x12/0x34\n"
                    "but there are no more locks to release!", "WARNING: bad unlock balance in foo_release",
         "foo_release"),
        ("bug", "BUG: workqueue lockup - pool cpus=0 node=0 flags=0x0 nice=0 stuck for 140s!",
         "BUG: workqueue lockup", None),
        ("sanitizer", "UBSAN: shift-out-of-bounds in net/sched/sch_api.c:123:45\n"
                      "shift exponent 32 is too large for 32-bit type 'int'\nCall Trace:\n <TASK>\n"
                      " dump_stack_lvl+0x1/0x2\n ubsan_epilogue+0x1/0x2\n __ubsan_handle_shift_out_of_bounds+0x1/0x2\n"
                      " qdisc_get_rtab+0x1/0x2\n tc_modify_qdisc+0x1/0x2", "UBSAN: shift-out-of-bounds in qdisc_get_rtab",
         "qdisc_get_rtab"),
        ("sanitizer", "BUG: KCSAN: data-race in generic_fillattr / inode_set_ctime_current",
         "KCSAN: data-race in generic_fillattr / inode_set_ctime_current", "generic_fillattr"),
        ("sanitizer", "BUG: KMSAN: kernel-infoleak in instrument_copy_to_user include/linux/instrumented.h:114 [inline]\n"
                      " instrument_copy_to_user include/linux/instrumented.h:114 [inline]\n"
                      " _copy_to_user+0xbc/0x110 lib/usercopy.c:40\n"
                      " sctp_getsockopt_assoc_stats+0x3a1/0x4c0 net/sctp/socket.c:6930",
         "KMSAN: kernel-infoleak in sctp_getsockopt_assoc_stats", "sctp_getsockopt_assoc_stats"),
    ]
    for kind, text, title, func in cases:
        r = analyze(kind, text.split("\n"))
        assert (r.title, r.function) == (title, func), text


def test_a_report_without_text_still_has_a_title():
    # found by hypothesis (tests/test_fuzz_kernel.py): an `mce` incident whose only line was a bare printk level
    r = analyze("mce", ["<0>"])
    assert r.title == "mce" and r.signature

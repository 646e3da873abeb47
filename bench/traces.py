"""Realistic kernel crash traces (x86-64 and arm64) to inject into a workload, and kernel/daemon chatter pools.

A trace is a list of ``(severity, printk body)``; the first line is the trigger the detector must recognise.
Placeholders (``{cpu}``, ``{pid}``, ``{comm}``, ``{rel}``) are filled per injection so hosts differ the way real
hosts do while the signature (function, frames) stays the same for the same bug.
"""

from __future__ import annotations

TRACES: dict[str, tuple[str, list[tuple[int, str]]]] = {
    # name: (expected incident kind, lines)
    "null-deref": ("page-fault", [
        (1, "BUG: kernel NULL pointer dereference, address: 0000000000000008"),
        (1, "#PF: supervisor read access in kernel mode"),
        (1, "#PF: error_code(0x0000) - not-present page"),
        (6, "PGD 0 P4D 0 "),
        (4, "Oops: 0000 [#1] PREEMPT SMP NOPTI"),
        (4, "CPU: {cpu} PID: {pid} Comm: {comm} Tainted: G           OE      {rel} #1  Debian 6.1.76-1"),
        (4, "Hardware name: Dell Inc. PowerEdge R640/0W23H8, BIOS 2.19.1 06/07/2023"),
        (4, "Workqueue: events_unbound nfs4_run_state_manager [nfsv4]"),
        (4, "RIP: 0010:nfs4_do_reclaim+0x1a4/0x880 [nfsv4]"),
        (4, "Code: 48 8b 45 00 48 85 c0 74 0b 48 8b 50 08 48 89 54 24 10 <48> 8b 40 08 48 85 c0 0f 84 be 02 00 00"),
        (4, "RSP: 0018:ffffb1c2c3a7fd98 EFLAGS: 00010246"),
        (4, "RAX: 0000000000000000 RBX: ffff9a4f8b2e6000 RCX: 0000000000000000"),
        (4, "RDX: 0000000000000001 RSI: ffff9a4f8b2e6000 RDI: ffff9a4f81c2a800"),
        (4, "RBP: ffff9a4f8b2e6000 R08: 0000000000000000 R09: ffff9a4f8aa1c000"),
        (4, "R10: 0000000000000000 R11: 0000000000000000 R12: ffff9a4f81c2a800"),
        (4, "R13: 0000000000000000 R14: ffff9a4f8b2e6050 R15: 0000000000000000"),
        (4, "FS:  0000000000000000(0000) GS:ffff9a56bfcc0000(0000) knlGS:0000000000000000"),
        (4, "CS:  0010 DS: 0000 ES: 0000 CR0: 0000000080050033"),
        (4, "CR2: 0000000000000008 CR3: 000000010a810005 CR4: 00000000007706e0"),
        (4, "Call Trace:"),
        (4, " <TASK>"),
        (4, " ? __die+0x23/0x70"),
        (4, " ? page_fault_oops+0x171/0x4e0"),
        (4, " ? exc_page_fault+0x7f/0x180"),
        (4, " ? asm_exc_page_fault+0x26/0x30"),
        (4, " ? nfs4_do_reclaim+0x1a4/0x880 [nfsv4]"),
        (4, " nfs4_state_manager+0x6a5/0x8e0 [nfsv4]"),
        (4, " nfs4_run_state_manager+0x20/0x40 [nfsv4]"),
        (4, " kthread+0xe8/0x120"),
        (4, " ret_from_fork+0x2c/0x50"),
        (4, " </TASK>"),
        (4, "Modules linked in: nfsv4 dns_resolver nfs lockd grace fscache netfs sunrpc intel_rapl_msr ipmi_ssif "
            "mgag200 drm_shmem_helper ext4 crc16 mbcache jbd2 sd_mod megaraid_sas tg3"),
        (4, "CR2: 0000000000000008"),
        (4, "---[ end trace 0000000000000000 ]---"),
        (0, "Kernel panic - not syncing: Fatal exception"),
        (0, "Kernel Offset: 0x1a000000 from 0xffffffff81000000 (relocation range: 0xffffffff80000000-0xffffffffbfffffff)"),
        (0, "---[ end Kernel panic - not syncing: Fatal exception ]---"),
    ]),
    "gpf": ("gpf", [
        (4, "general protection fault, probably for non-canonical address 0xdead000000000122: 0000 [#1] SMP PTI"),
        (4, "CPU: {cpu} PID: 0 Comm: swapper/{cpu} Not tainted {rel} #1 Debian 6.1.76-1"),
        (4, "Hardware name: Supermicro SYS-1029P-WTR/X11DDW-L, BIOS 3.4 10/25/2022"),
        (4, "RIP: 0010:tcp_retransmit_timer+0x2b5/0xa40"),
        (4, "Code: 00 00 48 8b 83 f8 00 00 00 48 8b 93 00 01 00 00 <48> 89 50 08 48 89 02 48 b8 00 01 00 00 00"),
        (4, "RSP: 0018:ffffb4c980003e60 EFLAGS: 00010246"),
        (4, "RAX: dead000000000122 RBX: ffff8f3a4c1e3600 RCX: 0000000000000000"),
        (4, "RDX: dead000000000100 RSI: 0000000000000000 RDI: ffff8f3a4c1e3600"),
        (4, "Call Trace:"),
        (4, " <IRQ>"),
        (4, " ? die_addr+0x32/0x80"),
        (4, " ? exc_general_protection+0x1b5/0x420"),
        (4, " ? asm_exc_general_protection+0x22/0x30"),
        (4, " tcp_write_timer_handler+0xb1/0x230"),
        (4, " tcp_write_timer+0x96/0xb0"),
        (4, " call_timer_fn+0x24/0x130"),
        (4, " __run_timers.part.0+0x1ee/0x280"),
        (4, " run_timer_softirq+0x26/0x50"),
        (4, " __do_softirq+0xc7/0x2ab"),
        (4, " </IRQ>"),
        (4, "Modules linked in: xt_conntrack nft_chain_nat xt_MASQUERADE nf_nat bridge stp llc ixgbe mdio"),
        (4, "---[ end trace 0000000000000000 ]---"),
        (0, "Kernel panic - not syncing: Fatal exception in interrupt"),
    ]),
    "ext4-bug": ("bug", [
        (2, "kernel BUG at fs/ext4/inode.c:3245!"),
        (4, "invalid opcode: 0000 [#1] PREEMPT SMP NOPTI"),
        (4, "CPU: {cpu} PID: {pid} Comm: {comm} Not tainted {rel} #1 Debian 6.1.76-1"),
        (4, "Hardware name: QEMU Standard PC (Q35 + ICH9, 2009), BIOS 1.16.2-debian-1.16.2-1 04/01/2014"),
        (4, "RIP: 0010:ext4_writepages+0xd5e/0xe10 [ext4]"),
        (4, "Code: 89 ef e8 64 5e 07 00 e9 94 f8 ff ff 0f 0b 48 8b 7c 24 08 <0f> 0b 4c 89 ff e8 0e 8d 00 00 e9"),
        (4, "RSP: 0018:ffffa7f0c0b1fb30 EFLAGS: 00010246"),
        (4, "Call Trace:"),
        (4, " <TASK>"),
        (4, " do_writepages+0xc4/0x1c0"),
        (4, " filemap_fdatawrite_wbc+0x66/0x90"),
        (4, " __filemap_fdatawrite_range+0x54/0x80"),
        (4, " file_write_and_wait_range+0x49/0xa0"),
        (4, " ext4_sync_file+0x7c/0x370 [ext4]"),
        (4, " __x64_sys_fsync+0x3b/0x70"),
        (4, " do_syscall_64+0x58/0xc0"),
        (4, " entry_SYSCALL_64_after_hwframe+0x64/0xce"),
        (4, " </TASK>"),
        (4, "Modules linked in: ext4 crc16 mbcache jbd2 virtio_net virtio_blk"),
        (4, "---[ end trace 0000000000000000 ]---"),
    ]),
    "soft-lockup": ("soft-lockup", [
        (0, "watchdog: BUG: soft lockup - CPU#{cpu} stuck for 26s! [{comm}:{pid}]"),
        (4, "Modules linked in: xfs libcrc32c dm_mod mlx5_core mlxfw tls psample"),
        (4, "CPU: {cpu} PID: {pid} Comm: {comm} Tainted: G             L     {rel} #1 Debian 6.1.76-1"),
        (4, "Hardware name: HPE ProLiant DL380 Gen10/ProLiant DL380 Gen10, BIOS U30 11/24/2023"),
        (4, "RIP: 0010:native_queued_spin_lock_slowpath+0x6e/0x2e0"),
        (4, "Call Trace:"),
        (4, " <TASK>"),
        (4, " _raw_spin_lock+0x29/0x30"),
        (4, " xfs_log_force_seq+0x9b/0x1e0 [xfs]"),
        (4, " xfs_file_fsync+0x1a4/0x210 [xfs]"),
        (4, " __x64_sys_fdatasync+0x4b/0x90"),
        (4, " do_syscall_64+0x58/0xc0"),
        (4, " entry_SYSCALL_64_after_hwframe+0x64/0xce"),
        (4, " </TASK>"),
    ]),
    "arm64-null": ("page-fault", [
        (1, "Unable to handle kernel NULL pointer dereference at virtual address 0000000000000010"),
        (1, "Mem abort info:"),
        (1, "  ESR = 0x0000000096000005"),
        (1, "  EC = 0x25: DABT (current EL), IL = 32 bits"),
        (1, "Data abort info:"),
        (1, "  ISV = 0, ISS = 0x00000005"),
        (1, "user pgtable: 4k pages, 48-bit VAs, pgdp=0000000104b2a000"),
        (0, "Internal error: Oops: 0000000096000005 [#1] PREEMPT SMP"),
        (4, "Modules linked in: brcmfmac brcmutil cfg80211 vc4 snd_soc_hdmi_codec"),
        (4, "CPU: {cpu} PID: {pid} Comm: {comm} Not tainted {rel} #1 Debian 6.1.76-1"),
        (4, "Hardware name: Raspberry Pi 4 Model B Rev 1.4 (DT)"),
        (4, "pc : brcmf_cfg80211_escan_handler+0x1c8/0x4f0 [brcmfmac]"),
        (4, "lr : brcmf_fweh_event_worker+0x1a4/0x3b0 [brcmfmac]"),
        (4, "sp : ffff80000a2bbd20"),
        (4, "Call trace:"),
        (4, " brcmf_cfg80211_escan_handler+0x1c8/0x4f0 [brcmfmac]"),
        (4, " brcmf_fweh_event_worker+0x1a4/0x3b0 [brcmfmac]"),
        (4, " process_one_work+0x1f4/0x480"),
        (4, " worker_thread+0x78/0x430"),
        (4, " kthread+0x108/0x110"),
        (4, " ret_from_fork+0x10/0x20"),
        (0, "Code: f9400a60 b4000060 f9400800 b4000020 (f9400800) "),
        (4, "---[ end trace 0000000000000000 ]---"),
    ]),
}

TRACE_NAMES = tuple(TRACES)

# Ordinary kernel chatter: must NOT open incidents (user-space faults included on purpose).
KERNEL_CHATTER: list[tuple[int, str]] = [
    (6, "e1000e 0000:00:1f.6 eno1: NIC Link is Up 1000 Mbps Full Duplex, Flow Control: None"),
    (6, "IPv6: ADDRCONF(NETDEV_CHANGE): eno1: link becomes ready"),
    (6, "EXT4-fs (sda1): mounted filesystem with ordered data mode. Quota mode: none."),
    (5, "audit: type=1400 audit({sec}.{ms}:{n}): apparmor=\"DENIED\" operation=\"open\" profile=\"snap.lxd\" "
        "name=\"/proc/{pid}/mounts\" pid={pid} comm=\"lxd\" requested_mask=\"r\" denied_mask=\"r\""),
    (6, "usb 1-1.{n}: new high-speed USB device number {n} using xhci_hcd"),
    (6, "{comm}[{pid}]: segfault at 7f3a2c000010 ip 00007f3a3b4e2f2d sp 00007ffd8c2b1e40 error 4 in "
        "libc.so.6[7f3a3b46b000+155000] likely on CPU {cpu} (core {cpu}, socket 0)"),
    (6, "traps: {comm}[{pid}] general protection fault ip:55d0c2a1b3c4 sp:7ffe1c2d3e40 error:0 in "
        "{comm}[55d0c2a00000+2b000]"),
    (4, "nf_conntrack: nf_conntrack: table full, dropping packet"),
    (6, "device veth{n}a entered promiscuous mode"),
    (6, "br0: port {n}(veth{n}a) entered forwarding state"),
    (5, "kauditd_printk_skb: {n} callbacks suppressed"),
    (6, "xfs filesystem being remounted at /var supports timestamps until 2038 (0x7fffffff)"),
    (4, "TCP: request_sock_TCP: Possible SYN flooding on port 443. Sending cookies.  Check SNMP counters."),
    (6, "perf: interrupt took too long (2504 > 2500), lowering kernel.perf_event_max_sample_rate to 79750"),
]

# Ordinary daemon chatter: (app, facility, severity, text)
DAEMON_CHATTER: list[tuple[str, int, int, str]] = [
    ("sshd", 10, 6, "Accepted publickey for deploy from 10.{a}.{b}.{c} port {port} ssh2: ED25519 "
                    "SHA256:q3Vx9yS0mQ1bLk2y7T7ZC4pPZ2sXc1rR0Zb3t6Zl8mE"),
    ("sshd", 10, 6, "pam_unix(sshd:session): session opened for user deploy(uid=1000) by (uid=0)"),
    ("sshd", 10, 6, "Disconnected from user deploy 10.{a}.{b}.{c} port {port}"),
    ("sshd", 10, 5, "Invalid user admin from 203.0.{b}.{c} port {port}"),
    ("systemd", 3, 6, "Started Session {n} of User deploy."),
    ("systemd", 3, 6, "Starting Daily apt download activities..."),
    ("systemd", 3, 6, "logrotate.service: Deactivated successfully."),
    ("systemd", 3, 6, "Finished Clean php session files."),
    ("CRON", 9, 6, "(root) CMD (   test -x /etc/cron.daily/popularity-contest && /etc/cron.daily/popularity-contest "
                   "--crond)"),
    ("CRON", 10, 6, "pam_unix(cron:session): session closed for user root"),
    ("nginx", 16, 6, "10.{a}.{b}.{c} - - [25/Nov/2026:10:00:{s2}] \"GET /api/v1/items/{n}?page={b} HTTP/1.1\" 200 "
                     "{port} \"-\" \"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36\""),
    ("nginx", 16, 3, "*{n} upstream timed out (110: Connection timed out) while reading response header from "
                     "upstream, client: 10.{a}.{b}.{c}, server: api.example.com"),
    ("postfix/smtpd", 2, 6, "connect from mail-{n}.example.net[198.51.{b}.{c}]"),
    ("postfix/qmgr", 2, 6, "4B2C{n}: from=<alerts@example.com>, size={port}, nrcpt=1 (queue active)"),
    ("dockerd", 3, 6, "time=\"2026-11-25T10:00:{s2}.{n}Z\" level=info msg=\"ignoring event\" "
                      "container={hex} module=libcontainerd namespace=moby topic=/tasks/delete"),
    ("kubelet", 3, 6, "I1125 10:00:{s2}.{n} {pid} kubelet.go:2470] \"SyncLoop (PLEG): event for pod\" "
                      "pod=\"default/web-{hex}\" event={{ID:{hex} Type:ContainerStarted}}"),
    ("chronyd", 3, 6, "Selected source 192.0.2.{c} (2.debian.pool.ntp.org)"),
    ("rsyslogd", 5, 6, "action 'action-0-builtin:omfwd' resumed (module 'builtin:omfwd') [v8.2302.0 try "
                       "https://www.rsyslog.com/e/2359 ]"),
    ("haproxy", 16, 6, "10.{a}.{b}.{c}:{port} [25/Nov/2026:10:00:{s2}.{n}] fe_https~ be_app/app{c} 0/0/1/{b}/{port} "
                       "200 {n} - - ---- {c}/{c}/0/0/0 0/0 \"GET /health HTTP/1.1\""),
    ("systemd-logind", 4, 6, "New session {n} of user deploy."),
]

"""What a crash report says: a syzkaller-style title, the guilty function, the call trace, and a stable signature.

`analyze(kind, lines)` takes the report's lines from the trigger on (context before it is allowed and ignored
until the trigger). Lines may be printk-stripped bodies or raw console lines; with raw lines that carry caller ids
(`[ T123]`), only the trigger's own task/CPU is read, so other tasks' output interleaved on the console does not
leak into the report — the same rule syzkaller uses.

The guilty function is where the report points (RIP/pc, the report line's own `in func`, lockdep's `at: func`),
skipping frames that only *report* or *carry* the bug (dump_stack, panic, __warn, sanitizer runtime, string and
copy helpers, lock slowpaths, scheduler and wait plumbing, fault entry) when a more telling frame exists.
Stalls and lockups use syzkaller's anchor rule (the frame just above the dispatcher: syscall entry, workqueue,
timer, softirq...), because the looping code is spread over many functions.
"""

from __future__ import annotations

import hashlib
import itertools
import re

import msgspec

from sylog.kernel.detect import classify, trigger_body
from sylog.kernel.printk import split_printk


class Report(msgspec.Struct, kw_only=True):
    """The facts a responder needs from one crash report (all optional but title/signature)."""

    title: str
    function: str | None = None
    module: str | None = None
    kernel_release: str | None = None
    taint: str | None = None
    cpu: int | None = None
    pid: int | None = None
    comm: str | None = None
    hardware: str | None = None
    frames: list[str] = []
    signature: str = ""


# --- line shapes ----------------------------------------------------------------------------------------------

_FUNC = r"([A-Za-z_$][\w.$]*)"
# ` func+0x1/0x2 [mod]`, ` [<ffffffff81234>] func+0x..`, ` ? func+0x..` (questionable), powerpc `[c0..] [c0..] f+0x`
_FRAME = re.compile(r"^\s*\(?(?:\[<?[0-9a-fx]+>?\]\s*){0,2}(\?\s+)?" + _FUNC + r"\+0x[0-9a-f]+/0x[0-9a-f]+"
                    r"(?:\s+\[([\w-]+)\])?")
# syzkaller-symbolized inline frame: ` __dump_stack lib/dump_stack.c:77 [inline]`
_INLINE = re.compile(r"^\s+" + _FUNC + r" [\w./-]+\.[chS]:\d+(?::\d+)? \[inline\]")
# arm32: `[<80b10c70>] (memset) from [<8062eec8>] (n_tty_set_termios+0x..)`
_ARM_FRAME = re.compile(r"^\s*\[<[0-9a-f]+>\] \(" + _FUNC + r"(?:\+0x[0-9a-f]+/0x[0-9a-f]+)?(?: \[([\w-]+)\])?\) from")
_ARM_FROM = re.compile(r"\) from \[<[0-9a-f]+>\] \(" + _FUNC + r"(\+0x[0-9a-f]+/0x[0-9a-f]+)?(?: \[([\w-]+)\])?\)")


def _expand_arm(bodies: list[str]) -> list[str]:
    """arm32 prints `[<pc>] (callee) from [<lr>] (caller+0x..)`: the caller of the last line appears only on
    the `from` side, so add it as a frame line of its own (the two-frame reading syzkaller uses)."""
    out: list[str] = []
    n = len(bodies)
    for i, b in enumerate(bodies):
        out.append(b)
        if "from [<" not in b:
            continue
        m = _ARM_FROM.search(b)
        if not m or not _ARM_FRAME.match(b):
            continue
        nxt = bodies[i + 1] if i + 1 < n else ""
        if not _ARM_FRAME.match(nxt):
            out.append(f" {m.group(1)}{m.group(2) or '+0x0/0x0'}" + (f" [{m.group(3)}]" if m.group(3) else ""))
    return out
_RIP = re.compile(
    r"^\s*(?:RIP: (?:[0-9a-f]{4}:)?|IP: |EIP: (?:[0-9a-f]{4}:)?|NIP:? *(?:\[[0-9a-f]+\] )?|pc : |PC is at |"
    r"epc\s*: |pc\s*: |Krnl PSW : [0-9a-f]+ [0-9a-f]+ \()(?:\[<[0-9a-f]+>\]\s*)*" + _FUNC + r"\+0x[0-9a-f]+/0x[0-9a-f]+(?:\s+\[([\w-]+)\])?")
_TRACE_START = re.compile(r"^\s*(?:Call [Tt]race:|backtrace(?: \(crc [0-9a-f]+\))?:|Backtrace:)")
_TRACE_STOP = re.compile(
    r"^\s*(?:Allocated by task|Freed by task|The buggy address|Last potentially|Second to last|Memory state|"
    r"irq event stamp|={10,}|---\[ end|Modules linked in|Kernel Offset|Kernel panic|NMI backtrace|Sending NMI|"
    r"Showing|INFO: |BUG: |WARNING: |Mem-Info|\d+ locks? held|Object 0x|Allocated:|Freed:|"
    r"unreferenced object|The task|Task dump|rcu: |Dumping ftrace)")
_CPU_LINE = re.compile(r"CPU: (\d+) (?:UID: \d+ )?PID: (-?\d+) Comm: (\S+)")
# `Not tainted 6.1.0-18-amd64 #1`, `Tainted: G   OE  --------- -  - 4.18.0-425.el8.x86_64 #1` (RHEL pads with dashes)
_TAINT = re.compile(r"(?:Not tainted|Tainted: ([A-Z ]*?))\s+(?:[-\s]+)?(\d[\w.+~-]*) #")
_LINUX_VERSION = re.compile(r"Linux version (\S+)")
_HW = re.compile(r"^Hardware name: (.*?)\s*$")
_SUFFIX = re.compile(r"(?:\.(?:part|isra|constprop|cold|llvm|lto_priv|[0-9]+)(?:\.[0-9]+)?)+$")


def _clean(f: str) -> str:
    """`foo.isra.3` -> `foo`: compiler clones are the same source function."""
    return _SUFFIX.sub("", f)


def _rx(*names: str) -> re.Pattern[str]:
    return re.compile(r"^(?:" + "|".join(names) + r")$")


# Frames that report or carry a bug rather than cause it. Matched as substrings (`re.search`) like syzkaller's
# skip lists, so `__lock_acquire`, `kmalloc_trace`, `__kasan_check_read` are all covered; `^`/`$` pin a name.
_GENERIC_SKIP = re.compile("|".join((
    # sanitizer runtimes and report printing
    r"__sanitizer", r"__asan", r"kasan", r"hwasan", r"__msan", r"kmsan", r"kcsan_setup_watchpoint", r"__tsan_",
    r"check_memory_region", r"check_heap_object", r"check_object", r"read_word_at_a_time", r"(?:read|write)_once_.*nocheck",
    r"print_address_description", r"print_report", r"print_usage_bug", r"print_tainted", r"^get_taint$",
    r"ubsan", r"__fortify_report", r"instrument_",
    # oops/panic/WARN machinery and traps
    r"panic", r"invalid_op", r"report_bug", r"fixup_bug", r"do_error", r"_trap$", r"do_trap", r"show_stack",
    r"dump_stack", r"walk_stack", r"dump_backtrace", r"show_regs", r"warn_slowpath", r"warn_alloc", r"warn_bogus",
    r"__warn", r"^handle_bug$", r"^exc_", r"^asm_exc_", r"^die$", r"^__die", r"^oops_", r"program_check_exception",
    r"program_check_common", r"assertfail",
    # allocators (the allocation site is the bug, not the allocator)
    r"alloc_page", r"k?v?(?:m|z|c)alloc", r"krealloc", r"kmem_cache", r"allocate_slab", r"__alloc_frozen_pages",
    r"folio_(?:alloc|unlock)", r"filemap_alloc_folio", r"__filemap_get_folio", r"find_or_create_page",
    r"do_read_cache_folio", r"read_cache_page", r"pagecache_get_page", r"grab_cache_page_write_begin", r"slab_",
    r"^kv?free$", r"kfree_skb", r"memdup", r"strn?dup",
    # debug objects, lockdep, locks
    r"debug_object", r"timer_is_static_object", r"work_is_static_object", r"print_unlock", r"imbalance_bug",
    r"lockdep", r"bh_enable", r"bh_disable", r"perf_trace", r"lock_acquire", r"lock_release", r"lock_class",
    r"mark_lock", r"(?:reacquire|mark)_held_locks", r"raw_spin_rq", r"spin_lock", r"spin_trylock", r"spin_unlock",
    r"read_lock", r"read_trylock", r"write_lock", r"write_trylock", r"read_unlock", r"write_unlock", r"^down$",
    r"down_read", r"down_write", r"down_trylock", r"up_read", r"up_write", r"^mutex_", r"^__mutex_", r"^rt_mutex_",
    r"owner_on_cpu", r"osq_lock", r"osq_unlock", r"queued_spin_lock_slowpath", r"_raw_",
    # atomics, bitops, refcounts, lists, trees
    r"atomic(?:64)?_(?:dec|inc|read|set|or|xor|and|add|sub|fetch|xchg|cmpxchg|try)", r"(?:set|clear|change|test)_bit",
    r"__wake_up", r"^refcount_", r"^__refcount_", r"^kref_", r"ref_tracker", r"seqprop_assert",
    r"list_add", r"list_del", r"list_replace", r"list_move", r"list_splice", r"^rb_", r"^__rb_", r"^klist_",
    r"xas_(?:start|load|find)", r"rhashtable_lookup",
    # string, memory and user-copy helpers
    r"memcpy", r"memcmp", r"memset", r"memchr", r"memmove", r"strcmp", r"strncmp", r"strcpy", r"strlcpy",
    r"strncpy", r"strscpy", r"strlen", r"strstr", r"strnstr", r"strnlen", r"strchr", r"copy_to_user",
    r"copy_from_user", r"copy_to_iter", r"copy_from_iter", r"copy_page_to_iter", r"copy_page_from_iter",
    r"copy_folio_to_iter", r"^copyin$", r"^copyout$", r"put_user", r"get_user", r"might_fault", r"might_sleep",
    r"__might_resched", r"_indirect_thunk_", r"__x86_return_thunk", r"string", r"pointer", r"snprintf",
    r"scnprintf", r"kasprintf", r"kvasprintf", r"printk", r"va_format", r"dev_info", r"dev_notice", r"dev_warn",
    r"dev_err", r"dev_alert", r"dev_crit", r"dev_emerg", r"hex_dump_to_buffer", r"print_hex_dump", r"^crc\d+",
    r"crc_itu_t", r"readb$", r"readw$", r"readl$", r"readq$", r"writeb$", r"writew$", r"writel$", r"writeq$",
    r"logic_in", r"logic_out", r"stack_trace_consume_entry", r"arch_stack_walk", r"stack_trace_save",
    r"__phys_addr", r"extract_(?:user|iter)_to_sg",
    # timers, work, waiting, teardown helpers that only pass a bad object along
    r"del_timer", r"lock_timer_base", r"__timer_delete_sync", r"sk_stop_timer_sync", r"__mod_timer", r"flush_work",
    r"__cancel_work_timer", r"cancel_work_sync", r"try_to_grab_pending", r"flush_workqueue", r"drain_workqueue",
    r"destroy_workqueue", r"queue_work", r"insert_work", r"__queue_delayed_work", r"queue_delayed_work_on",
    r"finish_wait", r"kthread_stop", r"^complete$", r"wait_for_completion", r"cleanup_srcu_struct",
    r"kobject_", r"add_uevent_var", r"get_device_parent", r"device_add", r"device_del", r"device_unregister",
    r"device_destroy", r"device_release", r"devres_release_all", r"^put_device$", r"hwrng_unregister",
    r"i2c_del_adapter", r"__unregister_client", r"device_for_each_child", r"rollback_registered",
    r"unregister_netdev", r"sysfs_remove", r"device_remove_file", r"tty_unregister_device", r"dummy_urb_enqueue",
    r"usb_kill_urb", r"usb_kill_anchored_urbs", r"usb_control_msg", r"usb_hcd_submit_urb", r"usb_submit_urb",
    r"^iput$", r"^iput_final$", r"^ihold$", r"(?:trace|lockdep)_(?:hard|soft)irq", r"^(?:un)?lock_page",
    r"ida_free", r"find_lock_entries", r"truncate_inode_pages_range", r"drop_nlink", r"fast_dput", r"dput",
    # fault entry plumbing (x86 and arm64)
    r"^page_fault$", r"do_page_fault", r"do_user_addr_fault", r"do_kern_addr_fault", r"bad_area", r"^no_context$",
    r"kernelmode_fixup_or_oops", r"page_fault_oops", r"spurious_kernel_fault", r"do_(?:kernel|translation)_fault",
    r"do_mem_abort", r"el1_abort", r"el1h_64_sync", r"^el1_da$", r"die_kernel_fault", r"fixup_exception",
    r"tag_check", r"kernel_fault", r"mem_abort", r"^el1_", r"^el1h_",
)))
# scheduler and waiting: where a task sleeps, not why
_SCHED_SKIP = _rx(r"\w*schedule\w*", r"__schedule\w*", r"context_switch", r"__switch_to\w*", r"\w*wait_for_\w+",
                  r"do_wait_for_common", r"__wait_for_common", r"\w*_completion\w*", r"finish_task_switch\w*",
                  r"preempt_\w+", r"\w*_sleep\w*", r"do_nanosleep", r"kthread", r"ret_from_fork\w*",
                  r"_{0,2}wait_event\w*", r"prepare_to_wait\w*", r"finish_wait", r"bit_wait\w*", r"__wait_on_bit\w*",
                  r"out_of_line_wait_on_bit\w*", r"wait_on_page_bit\w*", r"folio_wait\w*", r"io_schedule\w*")
_STALL_ANCHORS = re.compile("|".join((
    # dispatchers: the frame above one of these names the looping work (searched as substrings)
    r"process_one_work", r"do_syscall_", r"do_fast_syscall_", r"sysenter_dispatch", r"tracesys_phase2",
    r"el0_svc_handler", r"invoke_syscall", r"ret_fast_syscall", r"netif_receive_skb", r"do_softirq",
    r"call_timer_fn", r"_run_timers", r"run_timer_softirq", r"hrtimer_run", r"run_ksoftirqd", r"smpboot_thread_fn",
    r"^kthread$", r"start_secondary", r"cpu_startup_entry", r"ret_from_fork",
    # discriminating file and socket operations
    r"vfs_write", r"vfs_read", r"vfs_iter_read", r"vfs_iter_write", r"do_iter_read", r"do_iter_write",
    r"call_read_iter", r"call_write_iter", r"new_sync_read", r"new_sync_write", r"vfs_ioctl", r"ksys_ioctl",
    r"compat_ioctl", r"compat_sys_ioctl", r"blkdev_driver_ioctl", r"blkdev_ioctl", r"do_iter_readv_writev",
    r"^call_mmap", r"mmap_region", r"do_mmap", r"do_dentry_open", r"vfs_open", r"^sock_sendmsg", r"^sock_recvmsg",
    r"^sock_release", r"^__sock_release", r"^setsockopt$", r"kernel_setsockopt", r"sock_common_setsockopt",
    r"^listen$", r"kernel_listen", r"sk_common_release", r"^sock_mmap", r"^accept$", r"kernel_accept",
    r"^sock_do_ioctl", r"^sock_ioctl", r"^compat_sock_ioctl", r"^nfnetlink_rcv_msg", r"^rtnetlink_rcv_msg",
    r"^netlink_dump", r"^(?:sys_)?(?:socketpair|connect|ioctl)",
    # fault entry and return-to-user work
    r"__do_fault", r"do_page_fault", r"^page_fault$", r"__fput", r"task_work_run", r"exit_to_usermode",
    r"smp_call_function", r"tasklet_action", r"tasklet_hi_action",
)))

class _Ctx:
    """The report's lines (bodies) from the trigger on, with the trace parsed once."""

    def __init__(self, bodies: list[str]):
        self.bodies = bodies
        self.rips: list[tuple[int, str, str | None]] = []  # (line index, func, module) of kernel RIP/pc lines
        self.frames: list[tuple[int, str, str | None]] = []  # all non-questionable frames (line index, func, module)
        self.trace_start = -1
        self._trace: list[tuple[str, str | None]] | None = None
        for i, b in enumerate(bodies):
            m = _RIP.match(b)
            if m:
                self.rips.append((i, _clean(m.group(1)), m.group(2)))
                continue
            if self.trace_start < 0 and _TRACE_START.match(b):
                self.trace_start = i
            f = _frame(b)
            if f:
                self.frames.append((i, f[0], f[1]))

    def main_trace(self) -> list[tuple[str, str | None]]:
        """Frames of the first call trace (from `Call Trace:` to the next section), or of all frames."""
        if self._trace is None:
            self._trace = self._main_trace()
        return list(self._trace)

    def _main_trace(self) -> list[tuple[str, str | None]]:
        if self.trace_start < 0:
            return [(f, m) for _, f, m in self.frames]
        out: list[tuple[str, str | None]] = []
        for b in self.bodies[self.trace_start + 1:]:
            f = _frame(b)
            if f:
                out.append(f)
            elif _TRACE_STOP.match(b):
                if out:
                    break
            else:
                m = _RIP.match(b)
                if m and out:  # interrupted context inside the trace (stalls): its pc is a frame too
                    out.append((_clean(m.group(1)), m.group(2)))
        return out

    def find(self, rx: re.Pattern[str], start: int = 0, limit: int | None = None) -> re.Match[str] | None:
        end = len(self.bodies) if limit is None else min(len(self.bodies), start + limit)
        for b in self.bodies[start:end]:
            m = rx.search(b)
            if m:
                return m
        return None


def _frame(b: str) -> tuple[str, str | None] | None:
    if not b or b[0] not in " \t[" and "+0x" not in b:
        return None
    m = _FRAME.match(b)
    if m:
        if m.group(1):  # `? func`: a stale stack word, not a real frame
            return None
        return _clean(m.group(2)), m.group(3)
    m = _INLINE.match(b)
    if m:
        return _clean(m.group(1)), None
    m = _ARM_FRAME.match(b)
    if m:
        return _clean(m.group(1)), m.group(2)
    return None


def _pick(cands: list[tuple[str, str | None]], *skips: re.Pattern[str]) -> tuple[str | None, str | None]:
    """First candidate no skip list matches; the first candidate if all are skipped."""
    for f, mod in cands:
        if not any(s.search(f) for s in skips):
            return f, mod
    if len(skips) > 1:  # a report-specific list ate everything: the generic one alone still beats dump_stack
        for f, mod in cands:
            if not skips[0].search(f):
                return f, mod
    return (cands[0] if cands else (None, None))


_SYS_PREFIXES = ("SYSC_", "SyS_", "sys_", "__x64_", "__ia32_", "__arm64_", "____sys_", "___sys_", "__sys_", "__se_",
                 "__se_sys_", "__do_sys_", "compat_SYSC_", "compat_SyS_", "ksys_")


def _strip_sys(name: str) -> str:
    """One pass over the wrapper prefixes, in order: `__x64_sys_rmdir` -> `sys_rmdir`, `__sys_setsockopt` ->
    `setsockopt`, `ksys_ioctl` -> `ioctl` (what the anchor list is written against)."""
    for p in _SYS_PREFIXES:
        name = name.removeprefix(p)
    return name


def _unskipped(frames: list[tuple[str, str | None]], *skips: re.Pattern[str]) -> list[tuple[str, str | None]]:
    return [f for f in frames if not any(s.search(f[0]) for s in (_GENERIC_SKIP, *skips))]


def _stall(frames: list[tuple[str, str | None]], *skips: re.Pattern[str]) -> tuple[str | None, str | None]:
    """syzkaller's stall rule: over the frames left after the skip lists, the frame just above the first
    dispatcher/anchor frame (syscall entry, workqueue, timer, softirq, a discriminating file/socket op)."""
    frames = _unskipped(frames, *skips)
    if not frames:
        return None, None
    prev = frames[0]
    for f in frames:
        name = _strip_sys(f[0])
        if _STALL_ANCHORS.search(name):
            if "smp_call_function" in name:
                return "smp_call_function", None
            return prev
        prev = f
    return None, None


def _hang(frames: list[tuple[str, str | None]]) -> tuple[str | None, str | None]:
    """syzkaller's hung-task rule: group hangs on synchronize_rcu / rtnl_lock, else first non-waiting frame."""
    frames = _unskipped(frames)
    for f, mod in frames:
        if f.startswith("rtnl_lock"):
            return f, mod
        if f.startswith(("synchronize_rcu", "synchronize_srcu", "synchronize_net", "synchronize_sched",
                         "__synchronize_srcu")):
            return "synchronize_rcu", None
    for f, mod in frames:
        if any(s in f for s in ("sched", "_lock", "_slowlock", "down", "rwsem", "completion", "kthread", "wait",
                                "synchronize", "context_switch", "__switch_to", "cancel_delayed_work", "rcu_barrier")):
            continue
        return f, mod
    return (None, None)


# --- title rules ----------------------------------------------------------------------------------------------

_KASAN = re.compile(r"KASAN: ([\w-]+(?: or [\w-]+)?) (?:in|on address) " + _FUNC + r"?")
_ACCESS = re.compile(r"^\s*(Read|Write) (?:of size|at addr)")
_KMSAN = re.compile(r"KMSAN: ([\w-]+) in " + _FUNC)
_KCSAN = re.compile(r"KCSAN: (.*)")
_KFENCE = re.compile(r"KFENCE: (.*?) in " + _FUNC)
_UBSAN = re.compile(r"UBSAN: (.*?) in (\S+)")
_WARN = re.compile(r"^WARNING: (?:CPU: \d+ PID: -?\d+ at |at )?(?:(\S+?):\d+ )?(?:at )?" + _FUNC + r"(?:\+0x|\(| \S+\.[ch]:| ?$)")
_WARN_NEW = re.compile(r"^WARNING: (\S+?):\d+ at " + _FUNC)  # 6.16+: `WARNING: fs/x.c:12 at func+0x.., CPU#0: comm/1`
_AT = re.compile(r"\bat: (?:\[<[0-9a-f]+>\]\s*)?" + _FUNC + r"(?:\+0x| )")
_KBUG = re.compile(r"^(?:kernel|Kernel) BUG at ([^\s!]+?)!?\s*$|^(?:kernel|Kernel) BUG at (\S+?)!")
_LOCKDEP = (
    (re.compile(r"possible circular locking dependency"), "possible deadlock", re.compile(r"is trying to acquire lock")),
    (re.compile(r"possible recursive locking"), "possible deadlock", re.compile(r"is trying to acquire lock")),
    (re.compile(r"possible irq lock inversion"), "possible deadlock", re.compile(r"just changed the state of lock")),
    (re.compile(r"(?:SOFT|HARD)IRQ-(?:safe|READ-safe) -> (?:SOFT|HARD)IRQ-(?:unsafe|READ-unsafe)"), "possible deadlock",
     re.compile(r"is trying to acquire")),
    (re.compile(r"inconsistent lock state"), "inconsistent lock state", re.compile(r"\btakes")),
    (re.compile(r"held lock freed"), "{W}: held lock freed", None),
    (re.compile(r"bad unlock balance"), "{W}: bad unlock balance", re.compile(r"is trying to release lock")),
    (re.compile(r"lock held when returning to user space"), "{W}: lock held when returning to user space",
     re.compile(r"leaving the kernel with locks still held")),
    (re.compile(r"still has locks held"), "{W}: still has locks held", None),
    (re.compile(r"[Nn]ested lock was not taken"), "{W}: nested lock was not taken", None),
    # lockdep's wait-context check: amd64 prints it as a WARNING locking bug, arm as `BUG: Invalid wait context`
    (re.compile(r"Invalid wait context"), "WARNING: locking bug", re.compile(r"is trying to lock")),
)
_NORM_NUM = re.compile(r"0x[0-9a-fA-F]+|\b[0-9a-f]{8,16}\b|\d+")


def _first_after(ctx: _Ctx, rx: re.Pattern[str] | None, limit: int = 40,
                 n_at: int = 2) -> list[tuple[str, str | None]]:
    """Functions named on the `at: func` / frame lines after a lockdep phrase (or after the header): the lock
    site lockdep complains about, then the one it conflicts with."""
    start = 1
    if rx is not None:
        for i, b in enumerate(ctx.bodies[:limit]):
            if rx.search(b):
                start = i
                break
        else:
            return []
    out: list[tuple[str, str | None]] = []
    after_at = False
    for b in ctx.bodies[start:start + 40]:
        m = _AT.search(b)
        f = (_clean(m.group(1)), None) if m else None
        if f is None:
            fr = _frame(b)
            if fr and (after_at or b.lstrip().startswith("[<")):
                f = fr
        after_at = b.rstrip().endswith(" at:")
        if f:
            out.append(f)
            if len(out) >= n_at:
                break
    return out


def _rip_then_trace(ctx: _Ctx, *skips: re.Pattern[str]) -> tuple[str | None, str | None]:
    cands = [(f, m) for _, f, m in ctx.rips[:1]] + ctx.main_trace()
    return _pick(cands, _GENERIC_SKIP, *skips)


def _title_and_function(kind: str, ctx: _Ctx) -> tuple[str, str | None, str | None]:
    """(title, function, module) from the header line and the report body."""
    head = ctx.bodies[0].strip() if ctx.bodies else ""
    trace = ctx.main_trace
    h = head.removeprefix("[ ").rstrip(" ]")
    for p in ("watchdog: ", "NMI watchdog: ", "rcu: ", "mce: "):
        h = h.removeprefix(p)

    def with_fn(prefix: str, fm: tuple[str | None, str | None]) -> tuple[str, str | None, str | None]:
        f, mod = fm
        return (f"{prefix} in {f}" if f else prefix), f, mod

    # sanitizers
    m = _KASAN.search(h)
    if m and h.startswith(("BUG: KASAN", "KASAN")):
        typ, fn = m.group(1), m.group(2)
        if "double-free" in h or "invalid-free" in typ:
            skip = _rx(r"kmem_\w+", r"slab_\w+", r"\w*kfree\w*", r"vunmap", r"vfree", r"_{0,2}slab_free\w*",
                       r"kmem_cache_free\w*", r"__cache_free", r"____kasan_slab_free", r"free_\w+", r"\w*_free_hook")
            return with_fn("KASAN: invalid-free", _pick([(fn, None)] * bool(fn) + trace(), _GENERIC_SKIP, skip))
        acc = next((a.group(1) for b in ctx.bodies[1:15] if (a := _ACCESS.match(b))), None)
        prefix = f"KASAN: {typ} {acc}" if acc else f"KASAN: {typ}"
        return with_fn(prefix, _pick([(_clean(fn), None)] * bool(fn) + trace(), _GENERIC_SKIP))
    m = _KMSAN.search(h)
    if m and "KMSAN" in h[:12]:
        skip = _rx(r"\w*copy\w*_user\w*", r"\w*copy_to_iter\w*", r"copyout\w*", r"copy_page_to_iter\w*",
                   r"\w*_copy_to_iter", r"simple_copy_to_iter", r"kmsan_\w+", r"usb_submit_urb", r"usb_start_wait_urb",
                   r"usb_bulk_msg", r"usb_interrupt_msg", r"usb_control_msg", r"\w*iterate_\w+", r"skb_copy_datagram_iter",
                   r"copy_to_user_iter", r"iov_iter_\w+")
        return with_fn(f"KMSAN: {m.group(1)}", _pick([(_clean(m.group(2)), None)] + trace(), _GENERIC_SKIP, skip))
    m = _KCSAN.search(h)
    if m and "KCSAN" in h[:12]:
        t = m.group(1).strip()
        fn = re.search(r" in " + _FUNC, t)
        return f"KCSAN: {t}", (_clean(fn.group(1)) if fn else None), None
    m = _KFENCE.search(h)
    if m and "KFENCE" in h[:12]:
        return with_fn(f"KFENCE: {m.group(1)}", _pick([(_clean(m.group(2)), None)] + trace(), _GENERIC_SKIP))
    if h.startswith("UBSAN:"):
        m = _UBSAN.search(h)
        typ = (m.group(1) if m else h[6:].strip()).strip()
        if typ.lower().startswith("undefined behaviour"):
            typ = "undefined-behaviour"
        skip = _rx(r"\w*ubsan\w*", r"\w*overflow\w*", r"handle_\w+", r"__ubsan_\w+")
        return with_fn(f"UBSAN: {typ}", _pick(trace(), _GENERIC_SKIP, skip))
    if h.startswith(("BUG: memory leak", "kmemleak:", "unreferenced object")):
        skip = re.compile(r"^.*(?:kmemleak|kmalloc|kcalloc|kzalloc|vmalloc|mmap|kmem|slab|alloc|create_object|"
                          r"idr_get|list_lru_init|kasprintf|kvasprintf|pcpu_create|strdup|strndup|memdup).*$")
        return with_fn("memory leak", _pick(trace(), _GENERIC_SKIP, skip))
    # faults
    if "general protection fault" in h[:40] or h.startswith("kasan: GPF"):
        return with_fn("general protection fault", _rip_then_trace(ctx))
    if kind == "page-fault" or h.startswith(("BUG: unable to handle", "BUG: kernel NULL", "BUG: Kernel NULL",
                                             "Unable to handle kernel", "Unhandled fault", "BUG: Unable to handle")):
        low = h.lower()
        if h.startswith("Unhandled fault"):
            prefix = "Unhandled fault"
        elif "null pointer" in low or "at (null)" in low:
            prefix = "BUG: unable to handle kernel NULL pointer dereference"
        else:
            prefix = "BUG: unable to handle kernel paging request"
        return with_fn(prefix, _rip_then_trace(ctx))
    # lockups and stalls
    if h.startswith("unregister_netdevice: waiting for"):
        return "unregister_netdevice: waiting for DEV to become free", None, None
    if kind == "soft-lockup" or h.startswith("BUG: soft lockup"):
        fm = _stall([(f, m) for _, f, m in ctx.rips[:1]] + trace())
        return with_fn("BUG: soft lockup", fm if fm[0] else _rip_then_trace(ctx))
    if kind == "hard-lockup" or "hard LOCKUP" in h:
        fm = _stall([(f, m) for _, f, m in ctx.rips[:1]] + trace())
        if fm[0] is None:
            fm = _rip_then_trace(ctx)
        return with_fn("watchdog: hard LOCKUP", fm)
    if kind == "rcu-stall" or re.match(r"INFO: rcu\w* (?:self-)?detected", h):
        return with_fn("INFO: rcu detected stall", _rcu_stall_fn(ctx))
    if kind == "hung-task" or h.startswith("INFO: task "):
        return with_fn("INFO: task hung", _hang(trace()))
    # panics
    if h.startswith("Kernel panic - not syncing"):
        return _panic_title(h, ctx)
    if h.startswith("PANIC: double fault"):
        return with_fn("PANIC: double fault", _rip_then_trace(ctx))
    if h.startswith("Bad mode in"):
        return "kernel panic: bad mode", None, None
    if h.startswith("Insufficient stack space"):
        fm = _stall(trace(), re.compile(r"bad_stack"))
        return with_fn("kernel stack overflow", fm if fm[0] else _pick(trace(), _GENERIC_SKIP, re.compile(r"bad_stack")))
    if h.startswith("VFS: Unable to mount root fs"):
        return "kernel panic: VFS: Unable to mount root fs", None, None
    if re.match(r"(?:sysrq: |SysRq ?: )+Trigger a crash", h):
        # the deliberate crash that follows (NULL store, or panic() on newer kernels) points at the handler
        fm = _rip_then_trace(ctx)
        return with_fn("sysrq: Trigger a crash", fm if fm[0] else ("sysrq_handle_crash", None))
    if h.startswith("VFS: "):  # `Busy inodes after unmount`, `Close: file count is 0`: use-after-free symptoms
        return re.sub(r" of \S+$", "", _norm_text(h.split(". ", 1)[0].rstrip("."))), None, None
    if h.startswith("Alignment trap"):
        return with_fn("Alignment trap", _rip_then_trace(ctx))
    # BUG()/die()
    m = _KBUG.match(h)
    if m:
        where = m.group(1) or m.group(2) or ""
        if where.startswith("lib/list_debug.c"):
            return with_fn("BUG: corrupted list", _rip_then_trace(ctx, _rx(r"__list_\w+", r"list_\w+")))
        if where.startswith("mm/usercopy.c"):
            return with_fn("BUG: bad usercopy", _rip_then_trace(ctx, _rx(r"\w*usercopy\w*", r"__check\w*",
                                                                          r"check_\w+")))
        f, mod = _rip_then_trace(ctx, re.compile(r"^skb_"))  # skb helpers BUG_ON for their caller's mistake
        return f"kernel BUG at {where}", f, mod
    if h.startswith("rust_kernel: panicked at"):
        msg = ctx.bodies[1].strip() if len(ctx.bodies) > 1 else "panic"
        return with_fn(msg, _rip_then_trace(ctx, _rx(r"rust_\w+", r"\w*rust_helper\w*", r"_R\w+", r"\w*panic\w*")))
    m = re.match(r"(?:Oops: )?(divide[ _]error|invalid opcode|int3|stack segment)", h)
    if m:
        name = {"stack segment": "stack segment fault", "divide_error": "divide error"}.get(m.group(1), m.group(1))
        return with_fn(name, _rip_then_trace(ctx))
    if h.startswith(("Internal error", "Oops")):
        return with_fn("Internal error" if h.startswith("Internal") else "Oops", _rip_then_trace(ctx))
    # hardware
    if kind in ("mce", "hw-error"):
        return _hw_title(kind, h), None, None
    if kind == "oom":
        return _oom_title(ctx)
    # lockdep and other WARNING-class reports
    for rx, prefix, after in _LOCKDEP:
        if rx.search(h):
            prefix = prefix.replace("{W}", "BUG" if h.startswith("BUG") else "WARNING")
            wq = re.compile(r"process_one_work|flush_workqueue|drain_workqueue|destroy_workqueue|lock_sock|release_sock")
            if prefix == "inconsistent lock state" or "Invalid wait context" in h:
                # the trace shows who took the lock the wrong way; the `at:` lines show older history
                cands = trace() + _first_after(ctx, after)
            elif "-safe -> " in h or "-READ-safe -> " in h:
                cands = _after_marker(ctx, re.compile(r"which became \S+ at:")) + _first_after(ctx, after) + trace()
            elif "nested lock" in prefix:
                cands = [(f, m) for _, f, m in ctx.rips[:1]] + trace() + _first_after(ctx, after)
            else:
                cands = _first_after(ctx, after) + trace()
            return with_fn(prefix, _pick(cands, _GENERIC_SKIP, wq))
    if "suspicious RCU usage" in h:
        skip = re.compile(r"^.*(?:rcu|kmem|slab|kmalloc|vmalloc|kcalloc|kzalloc).*$")
        word = "INFO" if h.startswith("INFO") else "WARNING"
        return with_fn(f"{word}: suspicious RCU usage", _pick(trace(), _GENERIC_SKIP, skip))
    if "trying to register non-static key" in h:
        skip = re.compile(r"^.*(?:stack|lock|IRQ).*$")
        return with_fn("INFO: trying to register non-static key", _pick(trace(), _GENERIC_SKIP, skip))
    if h.startswith("ODEBUG:"):
        return _warning_title(ctx, h, odebug=True)
    if h.startswith("WARNING:"):
        return _warning_title(ctx, h)
    if h.startswith("BUG") or kind == "bug":
        return _bug_title(ctx, h)
    return _norm_text(h)[:120] or kind, None, None


def _rcu_stall_fn(ctx: _Ctx) -> tuple[str | None, str | None]:
    """The interrupted context of the stall: from the RIP that follows the timer interrupt (x86), else the frames
    after the interrupt / exception-stack marker (arm), then the anchor rule."""
    bodies = ctx.bodies

    def frames_from(i: int) -> list[tuple[str, str | None]]:
        out: list[tuple[str, str | None]] = []
        for b in bodies[i:]:
            m = _RIP.match(b)
            if m:
                out.append((_clean(m.group(1)), m.group(2)))
                continue
            f = _frame(b)
            if f:
                out.append(f)
            elif out and _TRACE_STOP.match(b):
                break
        return out

    cands: list[tuple[str, str | None]] = []
    irq = next((i for i, b in enumerate(bodies) if "apic_timer_interrupt" in b), None)
    if irq is not None:
        rip = next((i for i in range(irq + 1, len(bodies)) if _RIP.match(bodies[i])), None)
        if rip is not None:
            cands = frames_from(rip)
    if not cands:
        mark = next((i for i, b in enumerate(bodies)
                     if re.search(r"apic_timer_interrupt|Exception stack|el1h_64_irq", b)), None)
        if mark is not None:
            cands = frames_from(mark + 1)
    skip = re.compile(r"apic_timer_interrupt|rcu")
    fm = _stall(cands, skip)
    if fm[0] is None and cands:
        fm = _pick(cands, _GENERIC_SKIP, skip)
    return fm


def _panic_title(h: str, ctx: _Ctx) -> tuple[str, str | None, str | None]:
    reason = h.split(":", 1)[1].strip() if ":" in h else ""
    m = re.match(r"stack-protector: Kernel stack is corrupted in: " + _FUNC + r"?", reason)
    if m:
        if m.group(1) and not re.fullmatch(r"[0-9a-f]+", m.group(1)):
            f = _clean(m.group(1))
            return f"kernel panic: stack is corrupted in {f}", f, None
        f, mod = _pick(ctx.main_trace(), _GENERIC_SKIP, _rx(r"\w*stack_chk\w*"))
        return f"kernel panic: stack is corrupted in {f}", f, mod
    if reason.startswith("corrupted stack end"):
        f, mod = _stall(ctx.main_trace(), re.compile(r"schedule|retint_kernel"))
        if f is None:
            f, mod = _pick(ctx.main_trace(), _GENERIC_SKIP, _SCHED_SKIP)
        return f"kernel panic: corrupted stack end in {f}", f, mod
    reason = re.sub(r"\s+", " ", reason).rstrip(" .!")
    f, mod = _rip_then_trace(ctx)
    if reason.startswith("kernel stack overflow"):
        f, mod = _stall(ctx.main_trace(), re.compile(r"bad_stack"))
        if f is None:
            f, mod = _pick(ctx.main_trace(), _GENERIC_SKIP, re.compile(r"bad_stack"))
        return f"kernel stack overflow in {f}", f, mod
    return f"kernel panic: {_norm_text(reason)}", f, mod


def _hw_title(kind: str, h: str) -> str:
    if "Machine Check Exception" in h or "Machine check: " in h:
        return "mce: Machine Check Exception"
    if "Machine check events logged" in h:
        return "mce: Machine check events logged"
    if "Machine Check:" in h:
        return "mce: Machine Check"
    if h.startswith("{"):
        return "GHES: " + _norm_text(h.split("]: ", 1)[-1])
    if h.startswith("EDAC"):
        return "EDAC: uncorrected error"
    if "temperature" in h.lower():
        return "thermal: critical temperature reached"
    if "AER" in h or "PCIe" in h:
        return "PCIe AER: uncorrected error"
    return _norm_text(h)


def _oom_title(ctx: _Ctx) -> tuple[str, str | None, str | None]:
    for b in ctx.bodies:
        if b.startswith("Kernel panic - not syncing: "):  # panic_on_oom: the panic says why the host died
            return "kernel panic: " + _norm_text(b.split(": ", 1)[1]), None, None
    for b in ctx.bodies:
        m = re.search(r"(?:Out of memory|out of memory): Kill(?:ed)? process \d+ \((.*?)\)", b)
        if m:
            return f"Out of memory: Killed process ({m.group(1)})", None, None
    m = re.match(r"(\S+) invoked oom-killer", ctx.bodies[0].strip())
    return (f"OOM: {m.group(1)} invoked oom-killer" if m else "Out of memory"), None, None


_WARN_CLASSES = (
    # (file or function test, title prefix, frames to skip before the culprit)
    (lambda fl, fn: fl.startswith("lib/debugobjects.c") or fn.startswith("debug_print_object"), "WARNING: ODEBUG bug",
     re.compile(r"^(?:debug_\w+|\w*rcu\w*|hrtimer_\w+|\w*timer_\w+|\w*work_\w+|percpu_\w+|kmem_\w+|slab_\w+|\w*kfree\w*|"
                r"vunmap|vfree|__free_\w+|kobject_\w+|\w*free_\w*|_{0,2}debug_\w+|\w*_destroy\w*|"
                r"_{0,2}cancel_\w+|_{0,2}flush_\w+|\w*_timer\w*)$")),
    (lambda fl, fn: fl.startswith("mm/usercopy.c") or fn.startswith("usercopy_"), "WARNING: bad usercopy",
     re.compile(r"^(?:\w*usercopy\w*|__check\w*|check_\w+)$")),
    (lambda fl, fn: fl.startswith("lib/kobject.c") or fn.startswith("kobject_"), "WARNING: kobject bug",
     re.compile(r"^kobject_\w+$")),
    (lambda fl, fn: fl.startswith("fs/proc/generic.c") and fn.startswith("proc_"), "WARNING: proc registration bug",
     re.compile(r"^proc_\w+$")),
    (lambda fl, fn: fl.startswith("lib/refcount.c") or fn.startswith("refcount_"), "WARNING: refcount bug",
     re.compile(r"^(?:\w*refcount\w*|kobject_\w+)$")),
    (lambda fl, fn: fl.startswith("kernel/locking/lockdep.c"), "WARNING: locking bug",
     re.compile(r"^(?:lock_sock\w*|release_sock)$")),
    (lambda fl, fn: fl.startswith("mm/") and re.match(r"^(?:__)?k.?.?malloc|kmalloc_\w+", fn) is not None,
     "WARNING: kmalloc bug",
     re.compile(r"^.*(?:kmalloc|kcalloc|kzalloc|krealloc|kvmalloc|kvzalloc|vmalloc|slab|kmem|alloc_pages|"
                r"__alloc_\w+|kvcalloc).*$")),
    (lambda fl, fn: fl.startswith("mm/vmalloc.c") or fn.startswith(("__vmalloc", "vmalloc")),
     "WARNING: zero-size vmalloc",
     re.compile(r"^.*(?:vmalloc|vzalloc|kvmalloc|kvzalloc|kvcalloc|bpf_map_area_alloc|__bpf_map_area_alloc).*$")),
    (lambda fl, fn: fl.startswith("mm/page_alloc.c") or fn.startswith(("__alloc_pages", "alloc_pages")),
     "WARNING in",
     re.compile(r"^.*(?:alloc_pages|__get_free_pages|kmalloc|kmem|slab|kvmalloc|kzalloc|vmalloc|__alloc_\w+|"
                r"alloc_\w+_pages|get_free_pages|warn_alloc).*$")),
    (lambda fl, fn: fn.startswith("usb_submit_urb"), "usb_submit_urb",
     re.compile(r"^(?:usb_submit_urb|usb_start_wait_urb|usb_bulk_msg|usb_interrupt_msg|usb_control_msg)$")),
)


def _warning_title(ctx: _Ctx, h: str, odebug: bool = False) -> tuple[str, str | None, str | None]:
    if odebug:
        cls = _WARN_CLASSES[0]
        f, mod = _pick(_warn_cands(ctx), _GENERIC_SKIP, cls[2])
        return f"{cls[1]} in {f}" if f else cls[1], f, mod
    m = _WARN_NEW.match(h) or _WARN.match(h)
    nosym = None if m else re.match(r"WARNING: (?:CPU: \d+ PID: -?\d+ at )?(\S+\.[chS]):\d+ at ", h)
    if nosym:
        # a WARN site without a symbol (`WARNING: kernel/foo.c:12 at 0x0, CPU#1: ...`): RIP and trace say where
        fl = nosym.group(1)
        for test, prefix, skip in _WARN_CLASSES:
            if test(fl, ""):
                f, mod = _pick(_warn_cands(ctx), _GENERIC_SKIP, skip)
                if prefix in ("usb_submit_urb", "WARNING in"):
                    return f"WARNING in {f}", f, mod
                return f"{prefix} in {f}" if f else prefix, f, mod
        f, mod = _rip_then_trace(ctx)
        return (f"WARNING in {f}" if f else "WARNING"), f, mod
    if not m:
        # a WARNING: whose text is its identity (`WARNING: kernel stack regs at ... has bad 'bp' value`)
        t = re.sub(r" at (?:[0-9a-f]+|\s*\(ptrval\)) in \S+", "", h)
        t = re.sub(r"\s+\(?ptrval\)?|\s+[0-9a-f]{8,16}", "", t).strip()
        if "kernel stack frame pointer" in t:
            t = re.sub(r" has bad .*", " has bad value", t)
        return _norm_text(t), None, None
    fl, fn = (m.group(1) or ""), _clean(m.group(2))
    for test, prefix, skip in _WARN_CLASSES:
        if test(fl, fn):
            f, mod = _pick(_warn_cands(ctx), _GENERIC_SKIP, skip)
            if prefix == "usb_submit_urb":
                return f"WARNING in {f}/usb_submit_urb", f, mod
            if prefix == "WARNING in":
                return f"WARNING in {f}", f, mod
            return f"{prefix} in {f}" if f else prefix, f, mod
    # the WARN site unless it is a helper (then its caller): RIP first, else the trace after __warn & co
    cands = [(fn, _module_on(h))] + _warn_cands(ctx)
    f, mod = _pick(cands, _GENERIC_SKIP)
    return f"WARNING in {f}", f, mod


def _module_on(line: str) -> str | None:
    m = re.search(r"\+0x[0-9a-f]+/0x[0-9a-f]+ \[([\w-]+)\]", line)
    return m.group(1) if m else None


def _warn_cands(ctx: _Ctx) -> list[tuple[str, str | None]]:
    return [(f, m) for _, f, m in ctx.rips[:1]] + ctx.main_trace()


_BUG_SKIPS = (
    ("scheduling while atomic", _SCHED_SKIP),
    ("sleeping function called from invalid context", re.compile(
        r"^(?:\w*might_sleep\w*|\w*might_fault\w*|might_alloc|\w*slab_pre_alloc_hook\w*|\w*slab_alloc\w*|"
        r"kmem_cache_alloc\w*|__kmalloc\w*|kmalloc\w*|__alloc_pages\w*|alloc_pages\w*|prepare_alloc_pages\w*|"
        r"fs_reclaim_\w+|__fs_reclaim\w*|down_\w+|mutex_lock\w*|__cond_resched\w*|_cond_resched|"
        r"__kmem_cache_alloc\w*|kmalloc_\w+|kmalloc_reserve|__kmalloc_node_track_caller)$")),
    ("spinlock", re.compile(r"spin_|_lock|_unlock")),
    ("rwlock", re.compile(r"spin_|_lock|_unlock|rwlock")),
    ("using __this_cpu", re.compile(r"^.*(?:dump_stack|preemption|preempt|check_preemption_disabled|"
                                    r"debug_smp_processor_id|__this_cpu_preempt_check).*$")),
    ("using smp_processor_id", re.compile(r"^.*(?:dump_stack|preemption|preempt|check_preemption_disabled|"
                                          r"debug_smp_processor_id).*$")),
    ("Bad page", re.compile(r"(?:free|put|get|update|release)_page|free_unref|^_*folio|truncate_inode_pages|"
                            r"page_frag_free|alloc|vmap|page_owner|^(?:bad_page|free_pages\w*|__free_pages\w*|free_unref_page\w*|__free_one_page|"
                            r"free_pcp\w*|free_page\w*|__put_page|put_page\w*|release_pages|\w*free_pages_prepare\w*|"
                            r"print_bad_pte|vm_normal_page|zap_\w+|unmap_\w+|__folio_put\w*|folio_put\w*|"
                            r"page_frag_free|skb_free_frag|__page_frag_cache_drain|\w*free_folio\w*|"
                            r"free_unref_folio\w*|folios_put\w*|__folio_batch\w*|check_new_page\w*|"
                            r"__rmqueue\w*|rmqueue\w*|get_page_from_freelist|__alloc_pages\w*|alloc_pages\w*|"
                            r"prep_new_page|page_pool_\w+|page_frag_alloc\w*|__page_frag_alloc\w*|"
                            r"__netdev_alloc_frag\w*|napi_alloc_frag\w*|page_frag_\w+|__napi_alloc_frag\w*|"
                            r"alloc_\w+_pages?\w*)$")),
    ("Bad rss-counter", None), ("MAX_STACK_TRACE_ENTRIES", None), ("non-zero nr_", None),
)


def _bug_title(ctx: _Ctx, h: str) -> tuple[str, str | None, str | None]:
    h = h.strip()
    if h in ("BUG:", "INFO:", "WARNING:"):
        return f"{h[:-1]}: corrupted", None, None
    if h.startswith("INFO: ") and ("Freed in" in h or "Allocated in" in h):
        m = re.search(r"(Freed|Allocated) in " + _FUNC, h)
        if m:
            return f"INFO: {m.group(1)} in {_clean(m.group(2))}", _clean(m.group(2)), None
    m = re.match(r"BUG [^\s:]+ \(.*?\): (.*)", h)
    if m:  # SLUB debug: `BUG kmalloc-64 (Not tainted): Object already free`
        return f"BUG: {_norm_text(m.group(1))}", None, None
    text = h[4:].strip() if h.startswith("BUG:") else h
    if text.startswith("workqueue leaked lock or atomic"):
        m = ctx.find(re.compile(r"last function: " + _FUNC), 0, 6)
        f = _clean(m.group(1)) if m else None
        return ("BUG: workqueue leaked lock or atomic" + (f" in {f}" if f else "")), f, None
    if "stack guard page was hit" in text:
        f, mod = _stall([(f, m) for _, f, m in ctx.rips[:1]] + ctx.main_trace())
        if f is None:
            f, mod = _rip_then_trace(ctx)
        return f"BUG: stack guard page was hit in {f}", f, mod
    if re.match(r"Dentry .* still in use", text):
        # block device and fs type in the message only split one bug into many: keep the operation
        return "BUG: Dentry still in use in unmount", None, None
    # description: drop `at file:line`, `: comm/pid`, `on CPU#n, comm/pid`, `[00000000]`, addresses
    desc = re.split(r"(?: at [\w./-]+:\d+| at [0-9a-f]+|: |, | on CPU#?\d+| on address|!| - )", text, maxsplit=1)[0]
    desc = re.sub(r"\s*\[[0-9a-f]+\]|\s*\b(?:0x)?[0-9a-f]{8,16}\b", "", desc)  # addresses differ per host
    desc = re.sub(r"^Bad page (state|map) in process.*", r"Bad page \1", desc)
    desc = re.sub(r"\s+", " ", desc).strip()
    if desc.startswith(("using __this_cpu", "using smp_processor_id")):
        desc = re.sub(r"\) in preemptible.*", ") in preemptible code", desc)
    for key, skip in _BUG_SKIPS:
        if key in desc:
            if skip is None:
                return f"BUG: {desc}", None, None
            if key == "Bad page":
                cands = _after_marker(ctx, re.compile(r"page last allocated|page_owner tracks")) or ctx.main_trace()
            else:
                cands = ([(f, m) for _, f, m in ctx.rips[:1]] if key not in ("spinlock", "rwlock") else []) \
                    + ctx.main_trace()
            f, mod = _pick(cands, _GENERIC_SKIP, skip)
            return (f"BUG: {desc} in {f}" if f else f"BUG: {desc}"), f, mod
    f, mod = _rip_then_trace(ctx)
    return (f"BUG: {desc} in {f}" if f else f"BUG: {desc}"), f, mod


def _after_marker(ctx: _Ctx, rx: re.Pattern[str]) -> list[tuple[str, str | None]]:
    """Frames following a marker line (e.g. `page last allocated via order 0 ...`)."""
    out: list[tuple[str, str | None]] = []
    on = False
    for b in ctx.bodies:
        if not on:
            on = rx.search(b) is not None
            continue
        f = _frame(b)
        if f:
            out.append(f)
        elif out and (not b.strip() or _TRACE_STOP.match(b) or "stack trace:" in b or b.rstrip().endswith(":")):
            break
    return out


def _norm_text(t: str) -> str:
    return re.sub(r"\s+", " ", t).strip()


# --- context selection ----------------------------------------------------------------------------------------

# kinds that do not end the report they appear in: escalation (panic, die) and side events the kernel prints
# while a report is in flight (an allocation in the reporting path can invoke the OOM killer, an MCE can land)
_SECOND_REPORT_OK = ("panic", "oops", "oom", "mce", "hw-error")


def _report_lines(kind: str, lines: list[str]) -> tuple[list[str], list[str]]:
    """(report bodies from the trigger to the end of its report, all bodies) using caller ids when present."""
    parts = [split_printk(ln) for ln in lines]
    trig = next((i for i, p in enumerate(parts) if (h := classify(p.body)) is not None and h.kind == kind), None)
    if trig is None:
        trig = next((i for i, p in enumerate(parts) if classify(p.body) is not None), 0)
    caller = parts[trig].caller if parts else None
    if parts:
        parts[trig] = parts[trig]._replace(body=trigger_body(parts[trig].body))
    out: list[str] = []
    nmi = False
    first_kind = kind
    for i, p in enumerate(parts[trig:]):
        if caller and p.caller != caller and not (nmi and p.caller and p.caller.startswith("C")):
            continue  # another task/CPU, or text that is not printk output at all (console noise)
        b = p.body
        if i and out and caller is None:  # with caller ids the context filter already keeps other reports out
            h = classify(b)
            if h is not None and h.kind not in _SECOND_REPORT_OK and h.kind != first_kind and len(out) > 3:
                # a second, different report: ours ended (syzkaller cuts here too)
                if not (first_kind == "page-fault" and h.kind in ("bug",) and b.startswith("BUG: unable")):
                    break
        if "Sending NMI from CPU" in b or b.startswith("NMI backtrace for cpu"):
            nmi = True
        if not b.strip() and caller is None:
            continue
        out.append(b)
    return out, [p.body for p in parts]


# --- facts ----------------------------------------------------------------------------------------------------

MAX_LINES = 3000  # a report is read from its head; longer incidents are panics looping or log floods
FACT_LINES = 400


def analyze(kind: str, bodies: list[str]) -> Report:
    """Title, guilty function, module, host facts, frames and signature of one crash report.

    `bodies`: the incident's lines from the first trigger on (context before it is skipped), printk-stripped
    or raw; raw lines let the caller ids keep interleaved tasks apart. Pure and cheap (~1 ms for 100 lines),
    so the correlator may call it again as lines arrive."""
    rep, all_bodies = _report_lines(kind, list(itertools.islice(bodies, MAX_LINES)))
    rep = _expand_arm(rep)
    ctx = _Ctx(rep or [""])
    try:
        title, function, module = _title_and_function(kind, ctx)
    except Exception:  # noqa: BLE001 - a malformed report must still give an incident
        title, function, module = (rep[0].strip()[:120] if rep else kind), None, None
    if not title.strip():  # a report with no text to name it (e.g. a bare `<0>` line): the kind still says what
        title = kind
    r = Report(title=title, function=function, module=module)
    for b in rep[:FACT_LINES] + all_bodies[:FACT_LINES]:
        # substring tests first: this loop may see thousands of lines per refresh of a long incident
        if r.cpu is None and "PID: " in b:
            m = _CPU_LINE.search(b)
            if m:
                r.cpu, r.pid, r.comm = int(m.group(1)), int(m.group(2)), m.group(3)
        if r.taint is None and ("tainted" in b or "Tainted:" in b):
            m = _TAINT.search(b)
            if m:
                r.taint = re.sub(r"\s+", "", m.group(1)) if m.group(1) is not None else ""
                r.kernel_release = r.kernel_release or m.group(2)
        if r.hardware is None and "Hardware name: " in b:
            m = _HW.match(b.strip())
            if m:
                r.hardware = m.group(1)
        if r.kernel_release is None and "Linux version " in b:
            m = _LINUX_VERSION.search(b)
            if m:
                r.kernel_release = m.group(1)
        if r.cpu is not None and r.hardware is not None and r.taint is not None:
            break
    trace = [f for f, _ in ctx.main_trace()]
    r.frames = trace
    if r.module is None and function:
        r.module = next((m for f, m in ctx.main_trace() + [(f, m) for _, f, m in ctx.rips] if f == function and m),
                        None)
    r.signature = signature(kind, title, trace, function)
    return r


def normalize_title(title: str) -> str:
    """Title without the parts that differ between hosts and builds: numbers, addresses, line numbers."""
    t = re.sub(r"\.(?:part|isra|constprop|cold)\.\d+", "", title)
    return _NORM_NUM.sub("N", t)


# Kinds whose stack is a random victim or a random point inside a loop: the title's anchor frame is the identity,
# the rest of the stack differs from one occurrence to the next.
_STACKLESS_KINDS = frozenset(("rcu-stall", "soft-lockup", "hard-lockup", "hung-task", "mce", "hw-error", "oom",
                              "unclean-reboot"))


def signature(kind: str, title: str, frames: list[str], function: str | None = None, top: int = 3) -> str:
    """16 hex of sha1 over kind, normalised title and up to `top` meaningful frames from the guilty function on
    (it and its nearest callers: stable for one bug on one kernel, free of addresses, PIDs, CPUs and times).
    Stalls, hangs and lockups hash the title alone: their stacks vary between occurrences of the same bug."""
    picked: list[str] = []
    if function and kind not in _STACKLESS_KINDS:
        names = [_clean(f) for f in frames]
        start = names.index(function) if function in names else None
        keep = [f for f in names[start or 0:] if not _GENERIC_SKIP.search(f) and not _SCHED_SKIP.match(f)]
        # the guilty frame may come from RIP/pc only (the trace then starts at its caller)
        picked = keep[:top] if start is not None else [function, *keep[:top - 1]]
    key = "\x1f".join([kind, normalize_title(title), *picked])
    return hashlib.sha1(key.encode("utf-8", "surrogatepass")).hexdigest()[:16]

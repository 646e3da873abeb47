"""Which kernel lines start a crash report (triggers), which belong to one, and which mark a boot or shutdown.

Every kernel line of a fleet passes through `classify`, so it is built as a cheap gate plus exact rules:
the gate looks only at the first few whitespace-separated words of the line (one `str.split` and a set test,
a few hundred ns); only lines whose head holds a trigger word reach the anchored regexes. Rules are anchored at
the start of the printk body on purpose: a user-space program that logs "general protection fault" or "BUG:"
mid-line is not the kernel dying, and `traps: foo[1] general protection fault ip:...` / `segfault at` are
user-space faults the kernel merely reports.

Kinds (fixed vocabulary): panic oops bug page-fault gpf mce hw-error soft-lockup hard-lockup hung-task rcu-stall
sanitizer warning oom (unclean-reboot is the correlator's, from is_boot_marker / is_clean_shutdown).
"""

from __future__ import annotations

import re
from typing import NamedTuple

from sylog.kernel.printk import strip_printk
from sylog.syslog.message import Message

KINDS = ("panic", "oops", "bug", "page-fault", "gpf", "mce", "hw-error", "soft-lockup", "hard-lockup",
         "hung-task", "rcu-stall", "sanitizer", "warning", "oom", "unclean-reboot")


class Hit(NamedTuple):
    """A trigger line: the kind of report it opens, and whether the line itself means the kernel is going down."""

    kind: str
    fatal: bool


# --- the gate ----------------------------------------------------------------------------------------------

# Words that can appear among the first four words of a trigger line (after the printk prefix).
_GATE = frozenset((
    "BUG:", "BUG", "WARNING:", "INFO:", "Oops:", "Oops", "Internal", "general", "Unable", "Unhandled",
    "kernel", "Kernel", "PANIC:", "Bad", "divide", "invalid", "int3:", "stack", "UBSAN:", "KASAN:", "ODEBUG:",
    "watchdog:", "Watchdog", "rcu:", "mce:", "[Hardware", "Machine", "EDAC", "AER:", "PCIe", "critical",
    "Critical", "invoked", "Out", "Memory", "sysrq:", "SysRq", "SysRq:", "VFS:", "rust_kernel:", "kmemleak:",
    "Insufficient", "kasan:", "trusty:", "CPU", "unregister_netdevice:", "Alignment", "unreferenced", "segment-related", "divide_error:",
))


def _gate(body: str) -> bool:
    if not body:
        return False
    if body[0] == "{":  # GHES: `{1}[Hardware Error]: ...`
        return True
    return not _GATE.isdisjoint(body.split(None, 4))  # the 5th item is the rest of the line: never a gate word


# --- exact rules (ordered; first match wins) ----------------------------------------------------------------

# Messages that look like triggers but are informational (known pr_warn/pr_info texts, tool output).
_BENIGN = re.compile(
    r"^(?:WARNING: (?:[Tt]he mand mount option|/etc/ssh/moduli|workqueue cpumask|Unprivileged eBPF|"
    r"Unsupported flag value|fbcon: Driver .* missed to adjust|See https|kernel not compiled with)"
    r"|INFO: (?:lockdep is turned off|NMI handler|Stall ended before|recovery required)"
    r"|BUG: no syscalls can create resource"
    r"|INFO: (?:sys_|no syscalls))"
)

_W = r"(?:(?:NMI )?watchdog: )?"  # soft/hard lockup lines carry this on newer kernels
_RULES: tuple[tuple[re.Pattern[str], str, bool], ...] = tuple((re.compile(rx), kind, fatal) for rx, kind, fatal in (
    # sanitizers (KASAN etc. open with a `====` line; the BUG: line is the trigger)
    (r"^(?:BUG: )?(?:KASAN|KMSAN|KCSAN|KFENCE): ", "sanitizer", False),
    (r"^UBSAN: ", "sanitizer", False),
    (r"^BUG: memory leak", "sanitizer", False),
    (r"^kmemleak: \d+ new suspected memory leaks", "sanitizer", False),
    (r"^unreferenced object 0x[0-9a-f]+ \(size \d+\):", "sanitizer", False),  # a kmemleak report
    # faults
    (r"^(?:Oops: )?(?:segment-related )?general protection fault(?:,| ?:|$| for)", "gpf", False),
    (r"^kasan: GPF could be caused by", "gpf", False),  # old KASAN die notifier, printed on a kernel GPF only
    (r"^BUG: (?:unable to handle|Unable to handle|kernel NULL pointer dereference|Kernel NULL pointer)", "page-fault", False),
    # arm/arm64/riscv/s390 (`pointer dereference in virtual kernel address space`), mips prints `CPU 0 ` first
    (r"^(?:CPU \d+ )?Unable to handle kernel (?:NULL pointer|paging request|access|execute|read|write|pointer|"
     r"instruction|data)", "page-fault", False),
    (r"^Unhandled fault: ", "page-fault", False),
    # lockups and stalls
    (_W + r"BUG: soft lockup", "soft-lockup", False),
    (_W + r"Watchdog detected hard LOCKUP", "hard-lockup", False),
    (r"^(?:rcu: )?INFO: rcu[_ ]?\w* (?:self-)?detected(?: expedited)? stall", "rcu-stall", False),
    (r"^INFO: task .+ blocked for more than \d+ seconds", "hung-task", False),
    (r"^INFO: task .+ can't die for more than", "hung-task", False),
    # panics
    (r"^Kernel panic - not syncing", "panic", True),
    (r"^PANIC: double fault", "panic", True),
    (r"^Bad mode in .* handler detected", "panic", True),  # arm64 bad_mode() always panics next
    (r"^Insufficient stack space to handle exception", "panic", True),  # arm64 overflow -> panic
    (r"^VFS: Unable to mount root fs on", "panic", True),
    (r"^(?:sysrq: |SysRq ?: )+Trigger a crash", "panic", True),
    # BUG()/die()
    (r"^(?:kernel|Kernel) BUG(?: at |\s*\[#)", "bug", False),  # riscv: `Kernel BUG [#1]`
    (r"^rust_kernel: panicked at", "bug", False),
    (r"^(?:Oops(?:\[#\d+\])?: |Oops - |Oops \[#\d+\])", "oops", False),  # x86/arm/mips/riscv die() banners
    (r"^Internal error: ", "oops", False),
    (r"^(?:Oops: )?(?:divide error|divide_error|invalid opcode|int3|stack segment|double fault)(?::| \[#)", "oops", False),
    # machine checks and other hardware
    (r"^(?:mce: )?(?:\[Hardware Error\]: )?(?:CPU \d+: )?Machine Check Exception", "mce", True),
    (r"^(?:mce: )?\[Hardware Error\]: (?:Machine check: |Fatal machine check)", "mce", True),
    (r"^(?:mce: )?(?:\[Hardware Error\]: )?Machine check events logged", "mce", False),
    (r"^(?:mce: )?\[Hardware Error\]: CPU \d+: Machine Check: ", "mce", False),
    (r"^\{\d+\}\[Hardware Error\]: (?:Hardware error from APEI|event severity: (?:fatal|recoverable))", "hw-error", False),
    (r"^EDAC\b.*(?:\bUE\b|[Uu]ncorrect)", "hw-error", False),
    (r"(?i:^(?:\S+ ){0,2}critical temperature reached)", "hw-error", False),
    (r"^(?:\S+ ){0,2}AER: (?:Multiple )?Uncorrected \((?:Non-)?Fatal\)", "hw-error", False),
    (r"^(?:\S+ ){0,2}PCIe Bus Error: severity=Uncorrected", "hw-error", False),
    # memory
    (r"^\S.* invoked oom-killer:", "oom", False),
    (r"^(?:Memory cgroup )?[Oo]ut of memory: Kill", "oom", False),
    # lockdep, debugobjects, WARN()
    (r"^WARNING: ", "warning", False),
    (r"^\[ (?:INFO|WARNING): ", "warning", False),  # old lockdep banner `[ INFO: possible ... ]`
    (r"^\[ BUG: ", "warning", False),  # old lockdep banner `[ BUG: bad unlock balance detected! ]`: lockdep
    (r"^INFO: (?:possible|inconsistent lock|suspicious RCU|trying to register|(?:SOFT|HARD)IRQ-|lockdep)", "warning", False),
    (r"^ODEBUG: .*object", "warning", False),
    # remaining BUG: reports (spinlock, scheduling while atomic, bad page state, ...) and SLUB debug
    (r"^BUG: ", "bug", False),
    (r"^BUG [^\s:]+ \((?:Not t|T)ainted", "bug", False),
    (r"^INFO: (?:Freed|Allocated) in ", "bug", False),
    (r"^VFS: (?:Busy inodes after unmount|Close: file count is 0)", "bug", False),  # use-after-free symptoms
    (r"^trusty: panic", "panic", False),  # the Android trusted OS died (the kernel reports it)
    (r"^Alignment trap: not handling instruction", "oops", False),  # arm32 kernel-mode misaligned access
    # a leaked netdev reference: namespace teardown hangs, the kernel repeats this every 10 s
    (r"^unregister_netdevice: waiting for \S+ to become free", "hung-task", False),  # old SLUB/KASAN object history heading a report
    (r"^(?:BUG|WARNING|INFO):\s*$", "bug", False),  # a report header whose text was lost
))


def _classify1(body: str) -> Hit | None:
    if not _gate(body) or _BENIGN.match(body):
        return None
    for rx, kind, fatal in _RULES:
        if rx.match(body):
            return Hit(kind, fatal)
    return None


# A printk prefix in the middle of a line: the console lost a newline and two messages share one line.
_TS_BEFORE = re.compile(r"\[ *\d+\.\d{3,9}$")
_CALLER_AFTER = re.compile(r"\[ *[TC]\d+\] ?")


def _embedded_tails(body: str):
    """Texts that follow a `[  12.345678]` prefix found after the start of the line (cheap str.find scan)."""
    i = body.find("] ", 1)
    while i > 0:
        if body[i - 1].isdigit() and _TS_BEFORE.search(body, max(0, i - 24), i):
            j = i + 2
            m = _CALLER_AFTER.match(body, i + 1)
            if m:
                j = m.end()
            yield body[j:]
        i = body.find("] ", i + 2)


def trigger_body(body: str) -> str:
    """The part of a line a trigger starts at: the line itself, or what follows a printk prefix embedded in it
    (`foo: vmalloc: allocation failure[   76.47] BUG: unable to handle ...`)."""
    if _classify1(body) is None and "] " in body:
        for rest in _embedded_tails(body):
            if _classify1(rest) is not None:
                return rest
    return body


_disjoint = _GATE.isdisjoint  # bound once: classify runs for every kernel line


def classify(body: str) -> Hit | None:
    """The Hit for a line that starts (or escalates) a kernel crash report; None for every other line."""
    # inlined gate (see _gate): one split and one set test for the ordinary line, no function calls
    if body and (body[0] == "{" or not _disjoint(body.split(None, 4))):
        if not _BENIGN.match(body):
            for rx, kind, fatal in _RULES:
                if rx.match(body):
                    return Hit(kind, fatal)
    i = body.find("] ", 1)
    while i > 0 and not body[i - 1].isdigit():  # `[drm] `, `[sda] `: not a printk time
        i = body.find("] ", i + 2)
    if i > 0:
        # rare: a message glued after another one's text; only lines holding `<digit>] ` pay for this scan
        for rest in _embedded_tails(body):
            hit = _classify1(rest)
            if hit is not None:
                return hit
    return None


# --- boot and shutdown ---------------------------------------------------------------------------------------

_BOOT = re.compile(r"^(?:Linux version \d|Command line: |Booting Linux on physical CPU|Booting the kernel\.)")


def is_boot_marker(body: str) -> bool:
    """A new kernel is starting (`Linux version ...`, `Command line: ...`)."""
    return body[:1] in "LCB" and _BOOT.match(body) is not None if body else False


_KERNEL_SHUTDOWN = ("reboot: Restarting system", "reboot: Power down", "reboot: System halted",
                    "Restarting system", "Power down", "System halted", "kexec_core: Starting new kernel",
                    "Starting new kernel")
_SYSTEMD_SHUTDOWN = ("Reached target System Reboot", "Reached target System Power Off", "Reached target System Halt",
                     "Reached target Reboot", "Reached target Power-Off", "Reached target Halt",
                     "Reached target reboot.target", "Reached target poweroff.target", "Reached target halt.target",
                     "Reached target shutdown.target", "Reached target System Shutdown", "Reached target Shutdown",
                     "Reached target Final Step", "Shutting down.")


# For callers that hold the raw bytes of an ordinary message (sylog.server.digest): a message of one of these apps
# can only announce a clean shutdown when it contains one of these byte strings (None: any message of that app may).
# Keep in step with is_clean_shutdown below (tests/test_digest.py checks the two agree).
CLEAN_SHUTDOWN_HINTS: dict[str, tuple[bytes, ...] | None] = {
    "systemd-shutdown": None,
    "rsyslogd": (b"exiting on signal 15",),
    "systemd": (b"Reached target ", b"Shutting down."),
    "systemd-logind": (b"System is ",),
}


def is_clean_shutdown(msg: Message) -> bool:
    """The host says it is going down on purpose (so a following boot is not an unclean reboot)."""
    text = msg.msg
    if msg.is_kernel:
        # asked for every kernel line: substring tests first, the printk split only for the few candidates
        if not ("Restarting system" in text or "Power down" in text or "System halted" in text
                or "Starting new kernel" in text):
            return False
        return strip_printk(text).startswith(_KERNEL_SHUTDOWN)
    app = msg.app_name or ""
    if app == "systemd-shutdown":
        return True
    if app == "rsyslogd":
        return "exiting on signal 15" in text
    if app == "systemd":
        return text.startswith(_SYSTEMD_SHUTDOWN)
    if app == "systemd-logind":
        return text.startswith(("System is rebooting", "System is powering down", "System is halting"))
    return False


# --- lines inside a report ------------------------------------------------------------------------------------

_CONT = re.compile(
    r"^\s*(?:"
    # registers (x86-64, i386, arm64, arm, powerpc, generic)
    r"(?:RIP|RSP|RAX|RBX|RCX|RDX|RSI|RDI|RBP|R\d{1,2}|FS|GS|CS|DS|ES|CR\d|DR\d|EIP|EAX|EBX|ECX|EDX|ESI|EDI|EBP"
    r"|ESP|EFLAGS|ORIG_RAX|IP|NIP|LR|CTR|MSR|XER|CCR|TRAP|DAR|DSISR|pc|lr|sp|ip|fp|psr|pstate|x\d{1,2}|r\d{1,2}"
    r"|epc|ra|Status|Cause|BadVA)\s*: "
    r"|Call [Tt]race:|<(?:/?TASK|/?IRQ|/?NMI|EOI|/?SOFTIRQ)>|Modules linked in:|---\[ end |CPU: \d+ |"
    r"Hardware name: |Code: |Kernel panic - not syncing|Rebooting in \d+ seconds|Kernel Offset: |Workqueue: |"
    r"Stack: |Process .* \(pid: |PC is at |LR is at |#PF: |PGD |P4D |PUD |PMD |PTE |Oops|Internal error|"
    r"Dumping ftrace|Shutting down cpus with NMI|Sending NMI from CPU|NMI backtrace for cpu|Mem abort info:|"
    r"ESR = |EC = |SET = |FAR = |EA = |S1PTW = |FSC = |Data abort info:|ISV = |CM = |user pgtable:|"
    r"(?:swapper|user) pgtable:|\[[0-9a-f]+\] pgd=|irq event stamp:|hardirqs last|softirqs last|"
    r"stack backtrace:|other info that might help|Possible unsafe locking scenario|\*\*\* DEADLOCK|"
    r"\d+ locks? held by|#\d+: |-> #\d+|the existing dependency chain|which lock already depends|"
    r"(?:Read|Write) of size|The buggy address|Allocated by task|Freed by task|Last potentially related|"
    r"Second to last potentially|Memory state around the buggy|[0-9a-f]{8,16}: (?:[0-9a-f]{2} )|>[0-9a-f]{8,16}: |"
    r"\^|page:|flags: |raw: |page dumped because|page_owner|={20,}|-{20,}|Disabling lock debugging|"
    r"\? |\[<[0-9a-f]+>\]|[A-Za-z_.][\w.]*\+0x[0-9a-f]+/0x[0-9a-f]+|entry_SYSCALL|task:\S+ +state:|"
    r"\"echo 0 > /proc/sys/kernel/hung_task_timeout_secs\"|rcu: |\t|\(detected by|rcu_\w+ kthread|"
    r"Unless rcu_\w+ kthread|RCU grace-period kthread|Showing all locks held|Showing busy workqueues|"
    r"oom-kill:|Mem-Info:|active_anon:|Node \d+ |Tasks state|\[ *pid *\]|oom_reaper:|lowmem_reserve|"
    r"Free swap|Total swap|\d+ pages |mce: |\[Hardware Error\]: |\{\d+\}\[Hardware Error\]|EDAC |"
    r"unreferenced object|comm \"|hex dump|backtrace:|BUG: |WARNING: |INFO: |Kernel BUG|kernel BUG|"
    r"------------\[ cut here \]|CPU\d*: stopping|SMP: stopping|Unable to handle|Insufficient stack|"
    r"Task dump for CPU|Object 0x|Redzone|Padding|Slab 0x|Bytes b4|FIX |Freed in |Allocated in |"
    r"Tainted: |\[ end trace|Kernel stack is corrupted|Uhhuh|softirq: |NOHZ|"
    # hex stack/memory dumps and other-arch registers, KASAN/KMSAN/lockdep/page_owner narrative
    r"(?:[0-9a-f]{4,16}:? )+[0-9a-f]{4,16}\s*$|(?:r\d{1,2}|GPR\d\d|ip|fp|sp|lr|pc)\s*: ?[0-9a-f]|\(ftrace buffer|"
    r".*\bNot tainted\b|Exception stack\(|Uninit was (?:stored|created)|Local variable .* created at|"
    r"which belongs to the cache|\d+-byte region|task: [0-9a-f]+ task\.stack|but task is already holding|"
    r"Chain exists of|Backtrace:|Stack:|page last (?:allocated|free)|CPU\d+ +CPU\d+|-{4,}|PID = |"
    r"\d+\*\d+kB|Bytes b4|Object [0-9a-f]|Redzone [0-9a-f]|Padding [0-9a-f]|Memory state|addr [0-9a-f]"
    r")"
)

_END = re.compile(r"^\s*(?:---\[ end (?:trace|Kernel panic)|Rebooting in \d+ seconds|Kernel Offset: |"
                  r"={60,}$|kmemleak: \d+ new suspected)")


def is_crash_continuation(body: str) -> bool:
    """A line that belongs to a crash report after its trigger: registers, traces, lockdep/KASAN/oom bodies,
    `Modules linked in:`, `---[ end trace`, `Kernel panic - not syncing`, `Rebooting in N seconds..`, ..."""
    return bool(body) and _CONT.match(body) is not None


def ends_report(body: str) -> bool:
    """The report is complete after this line (`---[ end trace`, `---[ end Kernel panic`, `Rebooting in`,
    `Kernel Offset:`, the closing `====` of a KASAN/KCSAN report); more lines may still follow a panic."""
    return bool(body) and _END.match(body) is not None

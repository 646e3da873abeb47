"""Helpers for the incident tests (no tests here): a small fake detector with the DETECTOR interface, so the
correlator's behaviour is tested on its own, and message/line builders."""

from __future__ import annotations

import hashlib
from types import SimpleNamespace

from sylog.kernel.printk import split_printk
from sylog.syslog.message import Message
from sylog.timeline.format import format_line

TRIGGERS = (
    ("Kernel panic - not syncing", "panic", True),
    ("Oops:", "oops", False),
    ("BUG: unable to handle", "page-fault", False),
    ("general protection fault", "gpf", False),
    ("WARNING:", "warning", False),
    ("INFO: task ", "hung-task", False),
)


class FakeDetector:
    """Substring rules only; counts analyze calls so tests can check the refresh bound."""

    def __init__(self, continuation: bool = False) -> None:
        self.analyze_calls = 0
        if continuation:
            self.is_crash_continuation = lambda body: body.startswith((" ", "RIP", "Call Trace", "---[", "Code:"))
        else:
            self.is_crash_continuation = None

    split_printk = staticmethod(split_printk)

    @staticmethod
    def classify(body: str):
        for prefix, kind, fatal in TRIGGERS:
            if body.startswith(prefix):
                return SimpleNamespace(kind=kind, fatal=fatal)
        return None

    @staticmethod
    def is_boot_marker(body: str) -> bool:
        return body.startswith(("Linux version ", "Command line:"))

    @staticmethod
    def is_clean_shutdown(msg: Message) -> bool:
        t = msg.msg
        return "reboot: Restarting system" in t or "reboot: Power down" in t or (
            msg.app_name == "rsyslogd" and "exiting on signal 15" in t)

    def analyze(self, kind: str, bodies: list[str]):
        self.analyze_calls += 1
        bodies = [split_printk(b).body for b in bodies]  # like the real one: raw or stripped lines
        title = bodies[0].strip() if bodies else ""
        fn = None
        for b in bodies:
            if b.startswith("RIP: "):
                fn = b.split()[-1].split("+")[0].split(":")[-1]
        return SimpleNamespace(title=title, function=fn, module=None, kernel_release="6.1.0-test", taint="G D",
                               cpu="3", pid=42, comm="bash", hardware=None, frames=[fn] if fn else [],
                               signature=hashlib.sha1(f"{kind}{fn}".encode()).hexdigest()[:16])


def kmsg(text: str, host: str = "h") -> Message:
    return Message(format="rfc5424", pri=4, facility=0, severity=4, hostname=host, app_name="kernel", msg=text)


def umsg(text: str, host: str = "h", app: str = "sshd") -> Message:
    return Message(format="rfc5424", pri=30, facility=3, severity=6, hostname=host, app_name=app, msg=text)


class Feeder:
    """Feeds a correlator-like object with a fake clock that advances 1 ms per line."""

    def __init__(self, target, t0: float = 1_800_000_000.0) -> None:
        self.target = target
        self.t = t0

    def __call__(self, host: str, text: str, kernel: bool = True, app: str = "sshd", dt: float = 0.001) -> bytes:
        self.t += dt
        m = kmsg(text, host) if kernel else umsg(text, host, app)
        line = format_line(self.t, host, m)
        self.target.feed(host, self.t, m, line)
        return line

    def advance(self, seconds: float) -> float:
        self.t += seconds
        return self.t


OOPS = [
    "[  100.000001] BUG: unable to handle page fault for address: ffff888000000000",
    "[  100.000002] #PF: supervisor read access in kernel mode",
    "[  100.000003] Oops: 0000 [#1] SMP PTI",
    "[  100.000004] CPU: 3 PID: 42 Comm: bash Tainted: G D 6.1.0-test #1",
    "[  100.000005] RIP: 0010:ext4_fill_super+0x12/0x340",
    "[  100.000006] Call Trace:",
    "[  100.000007]  <TASK>",
    "[  100.000008]  mount_bdev+0x1/0x2",
    "[  100.000009]  </TASK>",
    "[  100.000010] ---[ end trace 0000000000000000 ]---",
]
PANIC = [
    "[  100.000011] Kernel panic - not syncing: Fatal exception",
    "[  100.000012] Kernel Offset: disabled",
    "[  100.000013] Rebooting in 10 seconds..",
]

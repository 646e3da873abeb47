"""One kernel line that arrives twice - by netconsole and by syslog - is one line to the incident engine.

A crash is often sent by both paths at once (netconsole from inside the dying kernel, rsyslog's imklog while user
space still runs). Both copies are stored in the timeline (it records what arrived), but the observers (incident
engine) get each line once, so an incident's line count and report are not doubled.

Matching is by host and the printk body (time stamp / caller prefix stripped: syslog copies often lack them), and
only ACROSS sources: a copy from the other path within ``window`` seconds cancels one pending occurrence; a line a
kernel really printed twice by one path is kept twice. Bounded per host and in hosts. Active only when a
netconsole listener is configured, and then only for kernel lines.
"""

from __future__ import annotations

from collections.abc import Callable

from sylog.kernel.printk import split_printk

WINDOW = 60.0
MAX_PER_HOST = 4096
MAX_HOSTS = 10000


class KernelDedup:
    def __init__(self, *, window: float = WINDOW, max_per_host: int = MAX_PER_HOST,
                 split: Callable[[str], object] = split_printk) -> None:
        self.window = window
        self.max_per_host = max_per_host
        self.split = split
        # host -> body -> [source, last time, pending count]
        self.hosts: dict[str, dict[str, list]] = {}
        self.dups = 0

    def duplicate(self, host: str, text: str, source: str, now: float) -> bool:
        """True when ``text`` (a kernel line of ``host`` from ``source``) is the other path's copy of a line."""
        body = self.split(text).body  # type: ignore[attr-defined]
        if not body.strip():
            return False
        recent = self.hosts.get(host)
        if recent is None:
            if len(self.hosts) >= MAX_HOSTS:
                self.hosts.pop(next(iter(self.hosts)))
            recent = self.hosts[host] = {}
        ent = recent.get(body)
        if ent is not None:
            if now - ent[1] > self.window:
                ent = None
                del recent[body]
            elif ent[0] != source:
                ent[2] -= 1
                if ent[2] <= 0:
                    del recent[body]
                self.dups += 1
                return True
            else:
                ent[1] = now
                ent[2] += 1
                return False
        if len(recent) >= self.max_per_host:
            recent.pop(next(iter(recent)))
        recent[body] = [source, now, 1]
        return False

"""Process accounting from /proc, psutil-free: CPU seconds, peak RSS and bytes written of a process tree.

The receiver may be one process today and several tomorrow (SO_REUSEPORT workers), so every figure is the sum over
the process and its live descendants (threads are already inside a process's own counters); CPU of reaped children
is in the parent's ``cutime``/``cstime``.
"""

from __future__ import annotations

import os
from pathlib import Path

_TCK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for d in os.scandir("/proc"):
        if not d.name.isdigit():
            continue
        try:
            ppid = int(_stat_fields(int(d.name))[1])
        except (OSError, IndexError, ValueError):
            continue
        kids.setdefault(ppid, []).append(int(d.name))
    return kids


def tree(pid: int) -> list[int]:
    """``pid`` and its live descendants."""
    kids = children_map()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, ()))
    return out


def cpu_seconds(pid: int, *, with_children: bool = True, pids: list[int] | None = None) -> float:
    """utime+stime (+cutime+cstime of reaped children) summed over the tree."""
    total = 0.0
    for p in pids if pids is not None else (tree(pid) if with_children else [pid]):
        try:
            f = _stat_fields(p)
        except OSError:
            continue
        total += int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
    return total / _TCK


def status_kb(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def peak_rss_mb(pid: int) -> float:
    """Sum of VmHWM over the tree (an upper bound of the tree's simultaneous peak)."""
    return sum(status_kb(p, "VmHWM") for p in tree(pid)) / 1024


def rss_mb(pid: int) -> float:
    return sum(status_kb(p, "VmRSS") for p in tree(pid)) / 1024


def wchar(pids: list[int]) -> int:
    """Bytes the processes handed to write-like syscalls (files, pipes, sockets): a cheap activity probe."""
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/io", "rb") as f:
                for line in f:
                    if line.startswith(b"wchar:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            continue
    return total


def threads_cpu(pid: int) -> list[tuple[int, str, float]]:
    """``(tid, comm, cpu seconds)`` of every thread of ``pid`` (the writer thread shows up here, not in cProfile)."""
    out = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for t in tids:
        try:
            f = Path(f"/proc/{pid}/task/{t}/stat").read_text()
            comm = f[f.index("(") + 1:f.rindex(")")]
            x = f.rsplit(")", 1)[1].split()
            out.append((int(t), comm, (int(x[11]) + int(x[12])) / _TCK))
        except (OSError, ValueError):
            continue
    return out


def snmp_udp() -> dict[str, int]:
    """The ``Udp:`` counters of /proc/net/snmp (RcvbufErrors, InErrors, InDatagrams, ...); system-wide."""
    lines = [ln.split() for ln in Path("/proc/net/snmp").read_text().splitlines() if ln.startswith("Udp:")]
    if len(lines) < 2:
        return {}
    return {k: int(v) for k, v in zip(lines[0][1:], lines[1][1:])}


def machine() -> dict[str, str]:
    """nproc, CPU model, Python, kernel, memory, load average: what RESULTS.md records with every figure."""
    import platform

    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = status = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) // 1024} MiB"
                break
        status = Path("/proc/loadavg").read_text().split()[:3]
    except OSError:
        pass
    return {"nproc": str(os.cpu_count()), "cpu": model, "python": platform.python_version(),
            "kernel": platform.release(), "mem": mem, "loadavg": " ".join(status)}

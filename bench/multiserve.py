"""What would both cores buy? Run N unmodified ``sylog serve`` processes on the same ports with SO_REUSEPORT.

    python -m bench.multiserve N serve --data-dir D --tcp 127.0.0.1:P --udp none ...

An experiment, not a design: each child is today's single-process sylog with ``make_socket`` patched to set
SO_REUSEPORT, so the kernel spreads TCP connections (and UDP senders) over the children by flow hash. All children
share the data dir: timeline writes are whole lines on O_APPEND descriptors, and in the benchmark workloads a host
never spans two connections, so per-host order and incident correlation hold. (In production a host that
reconnects may land on another worker - the real change needs host affinity; this only measures the ceiling.)
The parent forwards SIGTERM/SIGINT and exits with the worst child status; the harness measures CPU and RSS over
the whole process tree.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys


def _child(argv: list[str]) -> int:
    import sylog.server.listeners as listeners

    orig = listeners.make_socket

    def make_socket(kind: str, spec: str, *, rcvbuf: int = 0, reuse_port: bool = False):  # noqa: ANN202
        return orig(kind, spec, rcvbuf=rcvbuf, reuse_port=True)

    listeners.make_socket = make_socket  # before sylog.server.app imports the name
    from sylog.cli import main as sylog_main

    return int(sylog_main(argv) or 0)


def main() -> int:
    if sys.argv[1] == "--child":
        return _child(sys.argv[2:])
    n = int(sys.argv[1])
    argv = sys.argv[2:]
    kids = [subprocess.Popen([sys.executable, "-m", "bench.multiserve", "--child", *argv]) for _ in range(n)]

    def forward(sig: int, _frame: object) -> None:
        for k in kids:
            if k.poll() is None:
                os.kill(k.pid, sig)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    rcs = [k.wait() for k in kids]
    return max(rcs, key=abs) if rcs else 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Run ``sylog`` under cProfile, profiling only between SIGUSR1 (start) and SIGUSR2 (stop).

    python -m bench.profserve OUT.prof serve --data-dir ... (any sylog arguments)

Why not ``python -m cProfile``: that profiles start-up, imports, regex compilation and the idle loop before and
after the load, and times with the wall clock, so an idle ``epoll_wait`` looks like work. Here the timer is the
main thread's CPU clock (``time.thread_time``) and the window is exactly the load, which the harness brackets
with the two signals. Threads started by the server (the timeline writer's executor, the incident engine's
workers) are profiled too, each with its own profiler over its whole life (CPU clock, so idle costs nothing),
dumped next to OUT as ``OUT.thread<N>``.
"""

from __future__ import annotations

import cProfile
import signal
import sys
import threading
import time


def _profile_threads(profs: list[cProfile.Profile]) -> None:
    """Every thread started from now on (timeline writer, incident workers) runs under its own CPU-time profiler."""
    orig = threading.Thread.run

    def run(self: threading.Thread) -> None:
        p = cProfile.Profile(time.thread_time)
        profs.append(p)
        p.enable()
        try:
            orig(self)
        finally:
            p.disable()

    threading.Thread.run = run  # type: ignore[method-assign]


def main() -> int:
    out = sys.argv[1]
    argv = sys.argv[2:]
    prof = cProfile.Profile(time.thread_time)
    threads: list[cProfile.Profile] = []
    _profile_threads(threads)
    signal.signal(signal.SIGUSR1, lambda *_: prof.enable())
    signal.signal(signal.SIGUSR2, lambda *_: prof.disable())
    from sylog.cli import main as sylog_main

    try:
        rc = sylog_main(argv)
    finally:
        prof.disable()
        prof.dump_stats(out)
        for i, p in enumerate(threads):  # worker threads: whole life (they idle outside the load: CPU clock)
            try:
                p.dump_stats(f"{out}.thread{i}")
            except Exception:
                pass
    return int(rc or 0)


if __name__ == "__main__":
    raise SystemExit(main())

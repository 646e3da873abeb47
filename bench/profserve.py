"""Run ``sylog`` under cProfile, profiling only between SIGUSR1 (start) and SIGUSR2 (stop).

    python -m bench.profserve OUT.prof serve --data-dir ... (any sylog arguments)

Why not ``python -m cProfile``: that profiles start-up, imports, regex compilation and the idle loop before and
after the load, and times with the wall clock, so an idle ``epoll_wait`` looks like work. Here the timer is the
main thread's CPU clock (``time.thread_time``) and the window is exactly the load, which the harness brackets
with the two signals.
"""

from __future__ import annotations

import cProfile
import signal
import sys
import time


def main() -> int:
    out = sys.argv[1]
    argv = sys.argv[2:]
    prof = cProfile.Profile(time.thread_time)
    signal.signal(signal.SIGUSR1, lambda *_: prof.enable())
    signal.signal(signal.SIGUSR2, lambda *_: prof.disable())
    from sylog.cli import main as sylog_main

    try:
        rc = sylog_main(argv)
    finally:
        prof.disable()
        prof.dump_stats(out)
    return int(rc or 0)


if __name__ == "__main__":
    raise SystemExit(main())

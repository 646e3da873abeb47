"""Cost of the vmcore side: ``python -m sylog.vmcore.bench [--dumps N] [--dmesg-lines N]``.

Builds N Debian-layout dump directories (flattened kdump-compressed dumps with VMCOREINFO, dmesg with a panic) in a
temporary directory, then measures: the first scan (every dump read and linked: dump-only incidents), a rescan
(nothing to do), the missing-vmcore pass over the resulting incidents, reading a 64 GiB sparse dump's header, and
the dmesg analysis of a long dmesg.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from datetime import datetime
from pathlib import Path

from sylog.vmcore import scan as vscan
from sylog.vmcore.linker import analyze_dmesg
from sylog.vmcore.vmcoreinfo import build_elf, build_kdump_compressed, flatten, read_dump_info

REL = "6.1.0-18-amd64"
PANIC = """[{t:12.6f}] BUG: kernel NULL pointer dereference, address: 0000000000000008
[{t:12.6f}] Oops: 0000 [#1] PREEMPT SMP NOPTI
[{t:12.6f}] CPU: 3 PID: 4242 Comm: kworker/3:1 Tainted: G           OE      {rel} #1
[{t:12.6f}] RIP: 0010:mlx5e_tx_reporter_timeout_recover+0x2a/0x90 [mlx5_core]
[{t:12.6f}] Call Trace:
[{t:12.6f}]  <TASK>
[{t:12.6f}]  devlink_health_reporter_recover+0x2c/0x70
[{t:12.6f}]  mlx5e_tx_timeout_work+0xd4/0x130 [mlx5_core]
[{t:12.6f}]  process_one_work+0x1c7/0x380
[{t:12.6f}]  </TASK>
[{t:12.6f}] Kernel panic - not syncing: Fatal exception
"""


def dmesg(lines: int) -> str:
    head = f"[    0.000000] Linux version {REL} (builder@build) #1 SMP PREEMPT_DYNAMIC\n"
    body = "".join(f"[{10 + i * 0.001:12.6f}] eth0: ordinary driver chatter line {i}\n" for i in range(lines))
    return head + body + PANIC.format(t=10 + lines * 0.001 + 5, rel=REL)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sylog.vmcore.bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--dumps", type=int, default=500)
    ap.add_argument("--dmesg-lines", type=int, default=100_000)
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="sylog-vmbench-") as tmp:
        root = Path(tmp)
        data, crash = root / "data", root / "crash"
        data.mkdir()
        t0 = time.time() - 86400
        small = dmesg(200)
        for i in range(a.dumps):
            when = t0 - i * 600
            d = crash / f"h{i:05d}" / f"{datetime.fromtimestamp(when):%Y%m%d%H%M}"
            d.mkdir(parents=True)
            stamp = d.name
            (d / f"dmesg.{stamp}").write_text(small)
            (d / f"dump.{stamp}").write_bytes(flatten(build_kdump_compressed(REL, int(when))))
        c = time.perf_counter()
        res = vscan.scan(str(data), [str(crash)])
        first = time.perf_counter() - c
        c = time.perf_counter()
        again = vscan.scan(str(data), [str(crash)])
        rescan = time.perf_counter() - c
        settled: dict = {}
        vscan.mark_missing(str(data), cache=settled)
        c = time.perf_counter()
        vscan.mark_missing(str(data), cache=settled)
        missing = time.perf_counter() - c
        big = root / "vmcore"
        with open(big, "wb") as f:
            f.write(build_elf(REL, int(t0)))
            f.truncate(64 << 30)
        c = time.perf_counter()
        info = read_dump_info(str(big))
        header = time.perf_counter() - c
        text = dmesg(a.dmesg_lines)
        c = time.perf_counter()
        cr = analyze_dmesg(text, "x")
        analyze = time.perf_counter() - c
        os.remove(big)
    created = sum(r.status == "created" for r in res)
    per = first / max(1, a.dumps) * 1000
    print(f"first scan: {created}/{a.dumps} dumps linked in {first:.2f} s ({per:.1f} ms/dump)")
    print(f"rescan of {a.dumps} linked dumps: {rescan * 1000:.0f} ms ({len(again)} results)")
    print(f"missing-vmcore pass over {a.dumps} settled incidents: {missing * 1000:.0f} ms")
    print(f"64 GiB ELF dump header: {header * 1000:.1f} ms (CRASHTIME {info.crashtime})")
    print(f"dmesg analysis, {len(text) / 1e6:.1f} MB / {text.count(chr(10))} lines: {analyze * 1000:.0f} ms "
          f"-> {cr.incident.kind if cr else None}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

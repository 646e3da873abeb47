"""Loopback TCP ingest benchmark of the whole server: ``python -m sylog.server.bench [--messages N] ...``.

Starts ``python -m sylog serve`` on free loopback ports with a fresh data dir, pre-renders octet-counted RFC 5424
messages from H hosts, sends them over C connections (one thread each, ``sendall`` of big pre-built buffers, so
the client is not the bottleneck), and waits until every timeline byte is on disk (the expected size is known
exactly: every line has the same fixed-width time stamp). Reports msg/s (first byte sent -> the server's counters say all written)
and the server's CPU seconds per million messages (from /proc/<pid>/stat). ``--profile FILE`` runs the server
under cProfile (slower; for where the time goes).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _render(n: int, hosts: int, conns: int) -> tuple[list[bytes], int]:
    """Per-connection payloads; the expected total timeline bytes."""
    parts: list[list[bytes]] = [[] for _ in range(conns)]
    expect = 0
    stamp_len = len("2026-11-25T10:00:00.000000Z")
    for i in range(n):
        h = f"bench-host-{i % hosts:04d}"
        text = f"pid {i} session opened for user bench{i % 17} by (uid=0) seq={i}"
        m = f"<86>1 2026-11-25T10:00:00.000000Z {h} sshd 4242 - - {text}".encode()
        parts[(i % hosts) % conns].append(b"%d %s" % (len(m), m))
        expect += stamp_len + len(f" {h} authpriv.info sshd[4242]: {text}\n")
    return [b"".join(p) for p in parts], expect


def _written(tdir: Path) -> int:
    total = 0
    try:
        for d in os.scandir(tdir):
            for f in os.scandir(d.path):
                total += f.stat().st_size
    except FileNotFoundError:
        pass
    return total


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=200_000)
    ap.add_argument("--hosts", type=int, default=100)
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--loop", default="uvloop")
    ap.add_argument("--profile", metavar="FILE", help="run the server under cProfile, stats to FILE")
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--workers", type=int, default=1,
                    help="run N server processes sharing the port (listen.reuse_port; an experiment for multi-core)")
    ap.add_argument("--udp-rate", type=float, metavar="MSG/S",
                    help="instead: offer the messages over UDP at this rate; report the fraction received")
    a = ap.parse_args(argv)
    if a.udp_rate:
        return _udp(a)

    payloads, expect = _render(a.messages, a.hosts, a.connections)
    with tempfile.TemporaryDirectory(prefix="sylog-bench-") as tmp:
        data = Path(tmp) / "data"
        tcp = _free_port(socket.SOCK_STREAM)
        cmd = [sys.executable]
        if a.profile:
            cmd += ["-m", "cProfile", "-o", a.profile]
        cmd += ["-m", "sylog", "serve", "--data-dir", str(data), "--udp", "none", "--tcp", f"127.0.0.1:{tcp}",
                "--loop", a.loop, "--stats-interval", "0.05"]
        if a.workers > 1:
            conf = Path(tmp) / "reuse.toml"
            conf.write_text("[listen]\nreuse_port = true\n")
            cmd += ["--config", str(conf)]
        procs = [subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True) for _ in range(a.workers)]
        proc = procs[0]
        # Completion is read from the servers' own 50 ms stats lines ("written=N"): polling thousands of
        # timeline files would steal a core from the server on a 2-core box.
        per = [0] * len(procs)
        written = [0]
        err_lines: list[str] = []
        done = threading.Event()

        def reader(k: int, p: subprocess.Popen[str]) -> None:
            assert p.stderr is not None
            for line in p.stderr:
                err_lines.append(line)
                j = line.find(" written=")
                if j >= 0:
                    per[k] = int(line[j + 9:].split()[0])
                    written[0] = sum(per)
                    if written[0] >= a.messages:
                        done.set()
            if p.poll() is not None and k == 0:
                done.set()

        for k, p in enumerate(procs):
            threading.Thread(target=reader, args=(k, p), daemon=True).start()
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    socket.create_connection(("127.0.0.1", tcp), timeout=1).close()
                    break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit(f"server did not start: {''.join(err_lines)}")
                    time.sleep(0.05)
            if a.workers > 1:
                time.sleep(1.0)  # every worker bound (each logs its start-up line)
            cpu0 = sum(_cpu_seconds(p.pid) for p in procs)
            t0 = time.monotonic()

            def send(buf: bytes) -> None:
                with socket.create_connection(("127.0.0.1", tcp)) as s:
                    s.sendall(buf)

            threads = [threading.Thread(target=send, args=(p,)) for p in payloads]
            for t in threads:
                t.start()
            if not done.wait(a.timeout) or written[0] < a.messages:
                raise SystemExit(f"timed out or server died: {written[0]} of {a.messages} written")
            elapsed = time.monotonic() - t0
            cpu = sum(_cpu_seconds(p.pid) for p in procs) - cpu0
            for t in threads:
                t.join()
        finally:
            for p in procs:
                p.send_signal(signal.SIGTERM)
            for p in procs:
                p.wait(60)
        got = _written(data / "timelines")
        time.sleep(0.2)  # let the reader thread see the final line
        last = [ln.rstrip() for ln in err_lines if "stopped:" in ln]
        print(f"messages={a.messages} hosts={a.hosts} connections={a.connections} loop={a.loop} workers={a.workers}"
              f"{' (profiled)' if a.profile else ''}")
        print(f"elapsed={elapsed:.3f}s rate={a.messages / elapsed:,.0f} msg/s "
              f"server_cpu={cpu:.2f}s cpu_per_million={cpu * 1e6 / a.messages:.2f}s exit={proc.returncode}")
        print(f"timeline bytes on disk {got} (expected {expect}): {'OK' if got == expect else 'MISMATCH'}")
        for ln in err_lines:
            if "WARNING" in ln or "ERROR" in ln:
                print("server:", ln.rstrip())
        if last:
            print(last[-1].split("INFO ", 1)[-1])
    return 0


def _udp(a: argparse.Namespace) -> int:
    """Paced UDP offer (one sender thread, 1 ms ticks); received = the server's final ``received=`` count."""
    msgs = []
    for i in range(a.messages):
        h = f"bench-host-{i % a.hosts:04d}"
        msgs.append(f"<86>1 2026-11-25T10:00:00.000000Z {h} sshd 4242 - - pid {i} session opened seq={i}".encode())
    with tempfile.TemporaryDirectory(prefix="sylog-bench-") as tmp:
        udp = _free_port(socket.SOCK_DGRAM)
        tcp = _free_port(socket.SOCK_STREAM)
        proc = subprocess.Popen([sys.executable, "-m", "sylog", "serve", "--data-dir", f"{tmp}/data", "--udp",
                                 f"127.0.0.1:{udp}", "--tcp", f"127.0.0.1:{tcp}", "--loop", a.loop,
                                 "--stats-interval", "0"], stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    socket.create_connection(("127.0.0.1", tcp), timeout=1).close()
                    break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit("server did not start")
                    time.sleep(0.05)
            cpu0 = _cpu_seconds(proc.pid)
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
            dst = ("127.0.0.1", udp)
            t0 = time.monotonic()
            sent = 0
            while sent < len(msgs):
                due = min(len(msgs), int((time.monotonic() - t0) * a.udp_rate) + 1)
                for m in msgs[sent:due]:
                    s.sendto(m, dst)
                sent = due
                if sent < len(msgs):
                    time.sleep(0.001)
            offered = len(msgs) / (time.monotonic() - t0)
            time.sleep(0.5)
            cpu = _cpu_seconds(proc.pid) - cpu0
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=60)
        last = [ln for ln in err.splitlines() if "stopped:" in ln][-1]
        got = int(last.split(" received=")[1].split()[0])
        kdrops = int(last.split(" udp_kernel_drops=")[1].split()[0]) if " udp_kernel_drops=" in last else 0
        print(f"udp messages={a.messages} offered={offered:,.0f} msg/s received={got} "
              f"fraction={got / a.messages:.4f} kernel_drops={kdrops} server_cpu={cpu:.2f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

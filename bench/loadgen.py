"""Load generator: send a deterministic workload to a loopback receiver from several processes.

    python -m bench.loadgen --target 127.0.0.1:5514 --transport tcp --framing octet \\
        --hosts 1000 --messages 2000000 --senders 4 [--rate 100000] [--crashes 10] --manifest m.json

Each sender is a process (``fork``) that renders its own share of the workload (hosts ``h % senders``) BEFORE the
start signal, so the timed part is only ``sendall``/``sendto`` of pre-built bytes. TCP: one connection per sender
(per-host order is defined). UDP: one socket per sender, paced in batches to the target rate; the achieved rate
is measured. Without ``--rate`` TCP sends as fast as the receiver reads (back-pressure); UDP needs a rate.

Bounded: every sender stops after its share (or ``--duration`` when ``--cycle`` repeats a share for background
load) and at the ``--timeout`` deadline. Only loopback targets are accepted (127.0.0.0/8, ::1).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import multiprocessing as mp
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from bench import mmsg
from bench.workload import FRAMINGS, Manifest, Workload, WorkloadSpec

_CTX = mp.get_context("fork")


class NotLoopback(ValueError):
    """The benchmark only ever talks to this machine."""


def parse_target(spec: str) -> tuple[str, int]:
    """``127.0.0.1:5514`` / ``[::1]:5514`` -> (host, port); refuses anything that is not a loopback address."""
    s = spec.strip()
    if s.startswith("["):
        host, _, port = s[1:].partition("]:")
    else:
        host, _, port = s.rpartition(":")
    if host == "localhost":
        host = "127.0.0.1"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise NotLoopback(f"{spec!r}: target must be a literal loopback address (127.x.x.x or ::1)") from None
    if not ip.is_loopback:
        raise NotLoopback(f"{spec!r}: refusing a non-loopback target ({host})")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{spec!r}: bad port")
    return host, int(port)


@dataclass
class SenderResult:
    sender: int
    messages: int = 0
    bytes: int = 0
    t_first: float = 0.0  # time.monotonic() just before the first byte went out
    t_last: float = 0.0  # after the last send returned
    crash_times: dict[int, tuple[float, float]] = field(default_factory=dict)  # host -> (wall, mono)
    cycles: int = 0
    error: str | None = None


@dataclass
class LoadResult:
    manifest: Manifest
    senders: list[SenderResult]
    t_first: float
    t_last: float
    messages: int
    bytes: int

    @property
    def seconds(self) -> float:
        return max(1e-9, self.t_last - self.t_first)

    @property
    def achieved_rate(self) -> float:
        return self.messages / self.seconds

    def summary(self) -> dict[str, Any]:
        errs = [s.error for s in self.senders if s.error]
        return {"messages": self.messages, "bytes": self.bytes, "send_seconds": round(self.seconds, 4),
                "achieved_rate": round(self.achieved_rate), "errors": errs}


def _pace(sent: int, rate: float | None, t0: float) -> None:
    if rate:
        ahead = t0 + sent / rate - time.monotonic()
        if ahead > 0.0005:
            time.sleep(ahead)


def _sender_main(spec: WorkloadSpec, sender: int, framing: str, transport: str, target: tuple[str, int],
                 rate: float | None, cycle: bool, duration: float | None, timeout: float,
                 chunk_bytes: int, ready: Any, go: Any, results: Any) -> None:
    res = SenderResult(sender)
    try:
        w = Workload(spec)
        rendered = w.render(sender, framing, chunk_bytes=chunk_bytes)
        fam = socket.AF_INET6 if ":" in target[0] else socket.AF_INET
        if transport == "tcp":
            sock = socket.socket(fam, socket.SOCK_STREAM)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.connect(target)
        else:
            sock = socket.socket(fam, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
            sock.connect(target)
        ready.put(sender)
        if not go.wait(timeout):
            raise TimeoutError("no start signal")
        deadline = time.monotonic() + timeout
        stop_at = time.monotonic() + duration if duration else None
        chunks, counts, marks = rendered.chunks, rendered.counts, rendered.marks
        sent = nbytes = 0
        t0 = res.t_first = time.monotonic()
        while True:
            if transport == "tcp":
                send = sock.sendall
                for i, buf in enumerate(chunks):
                    if i in marks and res.cycles == 0:
                        res.crash_times[marks[i]] = (time.time(), time.monotonic())
                    send(buf)
                    sent += counts[i]
                    nbytes += len(buf)
                    if rate:
                        _pace(sent, rate, t0)
                        if time.monotonic() > deadline or (stop_at and time.monotonic() > stop_at):
                            break
            else:
                batch = max(1, int((rate or 1e9) / 2000))  # ~0.5 ms of traffic between clock checks
                n = len(chunks)
                mm = mmsg.Batch(chunks) if mmsg.AVAILABLE else None
                i = 0
                while i < n:
                    j = min(n, i + batch)
                    cm = [k for k in marks if i <= k < j] if marks else ()
                    for k in cm:
                        if res.cycles == 0:
                            res.crash_times[marks[k]] = (time.time(), time.monotonic())
                    if mm is not None:
                        mm.send(sock, i, j - i)
                        nbytes += sum(map(len, chunks[i:j]))
                    else:
                        for k in range(i, j):
                            d = chunks[k]
                            try:
                                sock.send(d)
                            except (BlockingIOError, ConnectionRefusedError):
                                pass  # receiver gone or ICMP error: the datagram counts as sent (and lost)
                            nbytes += len(d)
                    sent += j - i
                    i = j
                    _pace(sent, rate, t0)
                    if time.monotonic() > deadline or (stop_at and time.monotonic() > stop_at):
                        break
            res.cycles += 1
            now = time.monotonic()
            if not cycle or now > deadline or (stop_at is None) or now > stop_at:
                break
        res.t_last = time.monotonic()
        res.messages, res.bytes = sent, nbytes
        if transport == "tcp":
            sock.shutdown(socket.SHUT_WR)
        sock.close()
    except Exception as e:  # reported, never hangs the harness
        res.error = f"{type(e).__name__}: {e}"
        res.t_last = res.t_last or time.monotonic()
        try:
            ready.put(sender)
        except Exception:
            pass
    results.put(res)


class LoadRun:
    """Start senders (they render), then :meth:`go`, then :meth:`wait` for the :class:`LoadResult`.

    Split in three so a harness can read the receiver's CPU counters between "everything rendered" and "go".
    """

    def __init__(self, spec: WorkloadSpec, *, target: str, transport: str = "tcp", framing: str = "octet",
                 rate: float | None = None, cycle: bool = False, duration: float | None = None,
                 timeout: float = 600.0, chunk_bytes: int | None = None) -> None:
        if transport not in ("tcp", "udp"):
            raise ValueError("transport must be tcp or udp")
        if transport == "udp":
            framing = "udp"
            if not rate:
                raise ValueError("UDP needs a target rate (--rate)")
        elif framing not in FRAMINGS or framing == "udp":
            raise ValueError("TCP framing must be octet or lf")
        if cycle and not duration:
            raise ValueError("--cycle needs --duration")
        self.spec, self.target, self.transport, self.framing = spec, parse_target(target), transport, framing
        self.rate, self.cycle, self.duration, self.timeout = rate, cycle, duration, timeout
        if chunk_bytes is None:  # paced TCP: small chunks (about 1 ms of traffic per sender); else 1 MiB
            chunk_bytes = max(4096, int(rate / spec.senders * 150 / 1000)) if rate else 1 << 20
        self.chunk_bytes = chunk_bytes
        self._ready = _CTX.Queue()
        self._results = _CTX.Queue()
        self._go = _CTX.Event()
        self._procs: list[Any] = []

    def start(self, ready_timeout: float = 300.0) -> None:
        per_rate = self.rate / self.spec.senders if self.rate else None
        for s in range(self.spec.senders):
            p = _CTX.Process(target=_sender_main, daemon=True, name=f"loadgen-{s}",
                             args=(self.spec, s, self.framing, self.transport, self.target, per_rate, self.cycle,
                                   self.duration, self.timeout, self.chunk_bytes, self._ready, self._go,
                                   self._results))
            p.start()
            self._procs.append(p)
        for _ in self._procs:
            self._ready.get(timeout=ready_timeout)

    def go(self) -> None:
        self._go.set()

    def wait(self, timeout: float | None = None) -> LoadResult:
        deadline = time.monotonic() + (timeout or self.timeout + 60)
        res: list[SenderResult] = []
        for _ in self._procs:
            res.append(self._results.get(timeout=max(1.0, deadline - time.monotonic())))
        for p in self._procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
        res.sort(key=lambda r: r.sender)
        w = Workload(self.spec)
        man = w.manifest(self.framing)
        for c in man.crashes:
            for r in res:
                h = int(c.host.rsplit("-", 1)[1])
                if h in r.crash_times:
                    c.sent_wall, c.sent_mono = r.crash_times[h]
        man.total_bytes = sum(r.bytes for r in res)
        if self.cycle:  # background load: counts are what was sent, per-host counts are not exact
            man.total_messages = sum(r.messages for r in res)
            man.per_host = {}
        ok = [r for r in res if r.t_first]
        return LoadResult(man, res, min((r.t_first for r in ok), default=0.0),
                          max((r.t_last for r in ok), default=0.0), sum(r.messages for r in res),
                          sum(r.bytes for r in res))

    def close(self) -> None:
        for p in self._procs:
            if p.is_alive():
                p.kill()
                p.join(timeout=5)

    def run(self) -> LoadResult:
        try:
            self.start()
            self.go()
            return self.wait()
        finally:
            self.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", required=True, help="loopback ADDR:PORT")
    ap.add_argument("--transport", choices=("tcp", "udp"), default="tcp")
    ap.add_argument("--framing", choices=("octet", "lf"), default="octet", help="TCP framing")
    ap.add_argument("--hosts", type=int, default=1000)
    ap.add_argument("--messages", type=int, default=200_000)
    ap.add_argument("--senders", "--connections", type=int, default=4, dest="senders")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--crashes", type=int, default=0)
    ap.add_argument("--kernel-share", type=float, default=0.08)
    ap.add_argument("--rate", type=float, help="target msg/s over all senders (required for UDP)")
    ap.add_argument("--cycle", action="store_true", help="repeat the workload until --duration (background load)")
    ap.add_argument("--duration", type=float)
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--manifest", metavar="FILE", help="write the manifest (JSON) here")
    a = ap.parse_args(argv)
    try:
        spec = WorkloadSpec(hosts=a.hosts, messages=a.messages, seed=a.seed, crashes=a.crashes,
                            kernel_share=a.kernel_share, senders=a.senders)
        run = LoadRun(spec, target=a.target, transport=a.transport, framing=a.framing, rate=a.rate,
                      cycle=a.cycle, duration=a.duration, timeout=a.timeout)
    except ValueError as e:
        print(f"loadgen: {e}", file=sys.stderr)
        return 2
    r = run.run()
    out = {"summary": r.summary(), "manifest": r.manifest.to_json()}
    if a.manifest:
        with open(a.manifest, "w") as f:
            json.dump(out, f, indent=1)
    print(json.dumps(r.summary()))
    return 1 if r.summary()["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())

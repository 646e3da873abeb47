"""Deterministic workloads: which host says what, in which order, and where crashes are injected.

A workload is fully defined by ``WorkloadSpec`` (seed, hosts, messages, crashes, ...): two renders of the same spec
give the same bytes, so runs against sylog, rsyslog and the socket sink see identical input.

Shape: hosts speak in rounds (host ``h`` sends its ``r``-th message as global message ``r * hosts + h``), so every
host gets the same count (``messages / hosts``, the first ``messages % hosts`` hosts one more) and a host's order is
its round order. Hosts are partitioned over senders (``h % senders``), so per-host order is defined on every TCP
connection. About ``kernel_share`` of the messages are ordinary kernel chatter, the rest daemon chatter (sshd,
systemd, cron, nginx, ...). ``crashes`` hosts each get one realistic multi-line kernel crash trace injected after a
known round; the trace lines are extra messages (counted in the manifest). Every ordinary message ends in
`` seq=<round>``, so a reader can check that each host's lines are on disk in the order they were sent.

Rendering is pre-computed bytes: a pool of message bodies is built once (seeded), and each message is a cheap
``%`` format of the pool entry with the round's time stamp. Framing: ``octet`` (RFC 6587 octet counting), ``lf``
(newline-terminated), ``udp`` (one message per datagram).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone

from bench.traces import DAEMON_CHATTER, KERNEL_CHATTER, TRACE_NAMES, TRACES

FRAMINGS = ("octet", "lf", "udp")
BASE_TIME = datetime(2026, 11, 25, 10, 0, 0, tzinfo=timezone.utc)
POOL_SIZE = 4096
_COMMS = ("kworker/2:1", "nginx", "postgres", "java", "python3", "containerd", "rsync", "fio")


@dataclass(frozen=True)
class WorkloadSpec:
    """Everything that defines a workload's bytes (the manifest records it)."""

    hosts: int = 1000
    messages: int = 2_000_000
    seed: int = 1
    crashes: int = 0
    kernel_share: float = 0.08
    prefix: str = "node"
    senders: int = 4  # TCP connections / UDP sender processes; hosts are partitioned h % senders

    def __post_init__(self) -> None:
        if self.hosts < 1 or self.messages < 0 or self.senders < 1:
            raise ValueError("hosts and senders must be >= 1, messages >= 0")
        if self.crashes > self.hosts:
            raise ValueError("at most one crash per host")
        if not self.prefix.replace("-", "").isalnum():
            raise ValueError("prefix must be alphanumeric (with '-')")


@dataclass
class CrashInjection:
    host: str
    trace: str  # name in bench.traces.TRACES
    kind: str  # the incident kind expected
    after_round: int  # injected right after the host's message of this round
    lines: int  # trace lines sent
    trigger: str  # the trigger line's printk body
    sender: int  # which sender (TCP connection / UDP process) carries it
    sent_wall: float | None = None  # time.time() just before its first byte was handed to the socket
    sent_mono: float | None = None  # time.monotonic() at the same moment (system-wide clock, comparable)


@dataclass
class Manifest:
    """What a workload sends: per-host message counts and crash injections (times filled in by the sender)."""

    spec: dict
    framing: str
    total_messages: int = 0
    total_bytes: int = 0
    per_host: dict[str, int] = field(default_factory=dict)
    crashes: list[CrashInjection] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)


class Workload:
    """Renders a :class:`WorkloadSpec` into framed bytes per sender."""

    def __init__(self, spec: WorkloadSpec) -> None:
        self.spec = spec
        rng = random.Random(spec.seed)
        self._pool = [self._body(rng) for _ in range(POOL_SIZE)]
        self._kpool = [self._kbody(rng) for _ in range(POOL_SIZE // 4)]
        rounds = self.rounds
        # crash hosts and rounds: spread over the run, never in the first 5 rounds (so there is context)
        self.crashes: dict[int, CrashInjection] = {}
        if spec.crashes:
            chosen = rng.sample(range(spec.hosts), spec.crashes)
            for k, h in enumerate(chosen):
                name = TRACE_NAMES[k % len(TRACE_NAMES)]
                kind, lines = TRACES[name]
                hmax = self.host_messages(h)
                lo = min(5, max(0, hmax - 1))
                r = rng.randint(lo, max(lo, hmax - 1)) if hmax else 0
                self.crashes[h] = CrashInjection(host=self.host_name(h), trace=name, kind=kind, after_round=r,
                                                 lines=len(lines), trigger=lines[0][1].format(**self._fill(h)),
                                                 sender=h % spec.senders)

    # -- shape -----------------------------------------------------------------------------------------------------
    @property
    def rounds(self) -> int:
        s = self.spec
        return -(-s.messages // s.hosts)

    def host_name(self, h: int) -> str:
        return f"{self.spec.prefix}-{h:05d}"

    def host_messages(self, h: int) -> int:
        """Ordinary messages of host ``h`` (crash lines not included)."""
        s = self.spec
        return s.messages // s.hosts + (1 if h < s.messages % s.hosts else 0)

    def sender_hosts(self, sender: int) -> list[int]:
        s = self.spec
        return list(range(sender, s.hosts, s.senders))

    def manifest(self, framing: str) -> Manifest:
        """Counts without rendering (bytes are filled in by :meth:`render`)."""
        s = self.spec
        m = Manifest(spec=asdict(s), framing=framing)
        for h in range(s.hosts):
            n = self.host_messages(h)
            c = self.crashes.get(h)
            if c is not None:
                n += c.lines
            m.per_host[self.host_name(h)] = n
        m.total_messages = sum(m.per_host.values())
        m.crashes = [self.crashes[h] for h in sorted(self.crashes)]
        return m

    # -- content ---------------------------------------------------------------------------------------------------
    @staticmethod
    def _vals(rng: random.Random) -> dict:
        return {"a": rng.randint(0, 255), "b": rng.randint(0, 255), "c": rng.randint(1, 254),
                "port": rng.randint(1024, 65535), "n": rng.randint(1, 99999), "pid": rng.randint(300, 4_000_000),
                "s2": f"{rng.randint(0, 59):02d}", "hex": f"{rng.getrandbits(48):012x}",
                "comm": rng.choice(_COMMS), "cpu": rng.randint(0, 63), "sec": 1764064800 + rng.randint(0, 86400),
                "ms": f"{rng.randint(0, 999):03d}"}

    def _body(self, rng: random.Random) -> tuple[bytes, bytes]:
        """(prefix before the time stamp, rest after it) of a daemon message: ``<PRI>1 `` / `` HOST APP ...``."""
        app, fac, sev, text = rng.choice(DAEMON_CHATTER)
        v = self._vals(rng)
        procid = str(rng.randint(300, 4_000_000)) if app not in ("CRON",) else str(rng.randint(1000, 99999))
        msgid = "-"
        return (b"<%d>1 " % (fac * 8 + sev), f" {app} {procid} {msgid} - {text.format(**v)}".encode())

    def _kbody(self, rng: random.Random) -> tuple[int, str]:
        sev, text = rng.choice(KERNEL_CHATTER)
        return sev, text.format(**self._vals(rng))

    def _fill(self, h: int) -> dict:
        r = random.Random(self.spec.seed * 1_000_003 + h)
        return {"cpu": r.randint(0, 31), "pid": r.randint(300, 4_000_000), "comm": r.choice(_COMMS),
                "rel": "6.1.0-18-amd64"}

    @staticmethod
    def _stamp(r: int) -> bytes:
        return (BASE_TIME + timedelta(seconds=r)).strftime("%Y-%m-%dT%H:%M:%S.000000Z").encode()

    # -- rendering -------------------------------------------------------------------------------------------------
    def messages(self, sender: int | None = None) -> Iterator[tuple[int, bytes, int | None]]:
        """``(host index, unframed message, crash host index if this message starts a crash trace)`` in send order
        for one sender (or every sender, in global order, with ``None``)."""
        s = self.spec
        hosts = self.sender_hosts(sender) if sender is not None else list(range(s.hosts))
        names = [self.host_name(h).encode() for h in range(s.hosts)]
        pool, kpool = self._pool, self._kpool
        np_, nk = len(pool), len(kpool)
        kshare = int(s.kernel_share * 1000)
        crash_hosts = {h for h in self.crashes if h in set(hosts)}
        for r in range(self.rounds):
            stamp = self._stamp(r)
            base = r * s.hosts
            for h in hosts:
                i = base + h
                if i >= s.messages:
                    break
                x = (i * 2654435761 + s.seed) & 0xFFFFFFFF
                if (x >> 8) % 1000 < kshare:
                    sev, body = kpool[x % nk]
                    ts = 200 + r + h * 1e-6
                    yield h, b"<%d>1 %s %s kernel - - - [%12.6f] %s seq=%d" % (sev, stamp, names[h], ts, body.encode(),
                                                                                  r), None
                else:
                    pre, rest = pool[x % np_]
                    yield h, b"%s%s %s%s seq=%d" % (pre, stamp, names[h], rest, r), None
                if h in crash_hosts and self.crashes[h].after_round == r:
                    yield from self._trace(h, r, stamp, names[h])

    def _trace(self, h: int, r: int, stamp: bytes, name: bytes) -> Iterator[tuple[int, bytes, int | None]]:
        c = self.crashes[h]
        fill = self._fill(h)
        for k, (sev, text) in enumerate(TRACES[c.trace][1]):
            ts = 200 + r + 0.5 + k * 1e-5
            m = b"<%d>1 %s %s kernel - - - [%12.6f] %s" % (sev, stamp, name, ts, text.format(**fill).encode())
            yield h, m, (h if k == 0 else None)

    def render(self, sender: int, framing: str, chunk_bytes: int = 1 << 20) -> "Rendered":
        """Framed bytes for one sender, cut into chunks of about ``chunk_bytes`` (UDP: one datagram each).

        A crash trace always starts a new chunk (``marks``: chunk index -> crash host) so the sender can time-stamp
        the moment its trigger goes out.
        """
        if framing not in FRAMINGS:
            raise ValueError(f"framing must be one of {FRAMINGS}")
        out = Rendered()
        chunks, counts, marks = out.chunks, out.counts, out.marks
        if framing == "udp":
            for _h, m, crash in self.messages(sender):
                if crash is not None:
                    marks[len(chunks)] = crash
                chunks.append(m)
            out.counts = [1] * len(chunks)
            return out
        cur: list[bytes] = []
        size = 0
        octet = framing == "octet"
        for _h, m, crash in self.messages(sender):
            if crash is not None and cur:
                chunks.append(b"".join(cur))
                counts.append(len(cur))
                cur, size = [], 0
            if crash is not None:
                marks[len(chunks)] = crash
            f = b"%d %s" % (len(m), m) if octet else m + b"\n"
            cur.append(f)
            size += len(f)
            if size >= chunk_bytes:
                chunks.append(b"".join(cur))
                counts.append(len(cur))
                cur, size = [], 0
        if cur:
            chunks.append(b"".join(cur))
            counts.append(len(cur))
        return out


@dataclass
class Rendered:
    """One sender's pre-rendered input: byte chunks, messages per chunk, crash marks (chunk index -> host index)."""

    chunks: list[bytes] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)
    marks: dict[int, int] = field(default_factory=dict)

    @property
    def messages(self) -> int:
        return sum(self.counts)

    @property
    def nbytes(self) -> int:
        return sum(map(len, self.chunks))


def frame(m: bytes, framing: str) -> bytes:
    """One message framed for a stream (``octet``/``lf``) or as a datagram (``udp``)."""
    if framing == "octet":
        return b"%d %s" % (len(m), m)
    if framing == "lf":
        return m + b"\n"
    if framing == "udp":
        return m
    raise ValueError(f"framing must be one of {FRAMINGS}")

"""netconsole datagrams -> kernel lines (sans-IO: bytes, a source key and a clock in; records out).

Two shapes arrive on the netconsole port (Documentation/networking/netconsole.rst):

* **plain**: console text, one or more LF-terminated lines per datagram; a line longer than the kernel's chunk
  (~1000 bytes) spans datagrams, so an unterminated tail waits (per source, bounded, with a timeout) for the rest.
* **extended** (``+`` in the parameter, or configfs ``extended=1``): the /dev/kmsg record format,
  ``[<release>,]<level>,<seq>,<µs since boot>,<flag>[,ncfrag=<off>/<len>][,caller=T<pid>|C<cpu>];<text>``
  where the text's first line is the message (non-printable bytes escaped as ``\\xNN``) and the following lines,
  each starting with a space, are ``KEY=value`` dictionary lines (the device dict, and newer kernels' userdata and
  ``release=``/``taskname=``/``cpu=``/``msgid=`` sysdata). Records over ~1000 bytes are sent as fragments carrying
  ``ncfrag``; they are reassembled per (source, seq[, release]) with a bound on open sets and bytes, and a timeout
  after which what arrived is emitted (counted). Flag ``c`` starts a continued line that later ``+`` records extend
  (older kernels); ``-`` is a whole line.

Each record becomes a :class:`KernelRecord`; :func:`to_message` makes the pipeline's ``Message`` (facility kern,
app ``kernel``, msgid ``netconsole``) whose text is console-shaped (``[  12.345678] [T123] body``) so the printk
splitter recovers the boot time stamp and caller id exactly as for a serial console line.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import msgspec

from sylog.syslog.message import Message

MAX_FRAG_SETS = 1024  # fragment sets open at once (all sources); beyond this the oldest is emitted as is
MAX_RECORD = 64 * 1024  # bytes a reassembled record (or a plain line) may reach; longer: cut, counted
FRAG_TIMEOUT = 5.0  # seconds an incomplete fragment set / unterminated plain line / open continuation waits
MAX_PARTIALS = 4096  # sources with an unterminated plain line or an open continuation, at once

_ESC = re.compile(rb"\\x([0-9a-fA-F]{2})")
FORMAT_NETCONSOLE = "netconsole"


class KernelRecord(msgspec.Struct, kw_only=True):
    """One kernel log line as netconsole delivered it."""

    source: str  # the sender key (source IP)
    text: str  # the message (escapes decoded; undecodable bytes as surrogate escapes)
    level: int | None = None  # syslog severity 0..7 (None: plain netconsole does not say)
    facility: int = 0
    seq: int | None = None
    ts_us: int | None = None  # microseconds since boot
    caller: str | None = None  # T<pid> / C<cpu>
    extended: bool = False
    fields: dict[str, str] = {}  # dictionary lines, userdata, sysdata (release=, taskname=, cpu=, msgid=)
    release: str | None = None  # from the prepended release or a release= line
    incomplete: bool = False  # a fragment set that timed out: parts are missing


def _unescape(b: bytes) -> bytes:
    if b"\\x" not in b:
        return b
    return _ESC.sub(lambda m: bytes((int(m.group(1), 16),)), b)


def _text(b: bytes) -> str:
    return _unescape(b).decode("utf-8", "surrogateescape")


class _Frags:
    __slots__ = ("header", "total", "parts", "size", "first")

    def __init__(self, header: dict[str, Any], total: int, now: float) -> None:
        self.header = header
        self.total = total
        self.parts: dict[int, bytes] = {}
        self.size = 0
        self.first = now


class NetconsoleDecoder:
    """Feed datagrams with :meth:`feed`; call :meth:`expire` now and then (the server does on each tick)."""

    def __init__(self, *, frag_timeout: float = FRAG_TIMEOUT, max_frag_sets: int = MAX_FRAG_SETS,
                 max_record: int = MAX_RECORD, clock: Callable[[], float] | None = None) -> None:
        self.frag_timeout = frag_timeout
        self.max_frag_sets = max_frag_sets
        self.max_record = max_record
        self.clock = clock
        self._frags: dict[tuple[str, int, str | None], _Frags] = {}  # insertion order = age
        self._plain: dict[str, tuple[bytes, float]] = {}  # source -> unterminated plain tail, since
        self._cont: dict[str, tuple[KernelRecord, float]] = {}  # source -> open 'c' record, since
        self.counters = {"datagrams": 0, "extended": 0, "plain": 0, "lines": 0, "fragments": 0,
                         "reassembled": 0, "frag_expired": 0, "frag_evicted": 0, "frag_bad": 0, "truncated": 0,
                         "malformed": 0, "continued": 0}

    # -- input --------------------------------------------------------------------------------------------------
    def feed(self, data: bytes, source: str, now: float) -> list[KernelRecord]:
        """Records completed by this datagram (possibly none: a fragment, an unterminated line)."""
        self.counters["datagrams"] += 1
        if not data:
            return []
        hdr = _header(data)
        if hdr is None:
            self.counters["plain"] += 1
            return self._feed_plain(data, source, now)
        self.counters["extended"] += 1
        header, body = hdr
        out: list[KernelRecord] = []
        tail = self._plain.pop(source, None)  # a sender switched shape: deliver what it left unterminated
        if tail is not None:
            out.append(KernelRecord(source=source, text=_text(tail[0])))
        frag = header.pop("ncfrag", None)
        if frag is not None:
            body = self._fragment(source, header, frag, body, now)
            if body is None:
                return out
        out.extend(self._record(source, header, body, now))
        self.counters["lines"] += len(out)
        return out

    def _feed_plain(self, data: bytes, source: str, now: float) -> list[KernelRecord]:
        prev = self._plain.pop(source, None)
        if prev is not None:
            data = prev[0] + data
        parts = data.split(b"\n")
        rest = parts.pop()  # b"" when the datagram ended a line
        out = [KernelRecord(source=source, text=_text(p.rstrip(b"\r"))) for p in parts if p.strip(b"\r")]
        if rest:
            if len(rest) >= self.max_record:
                self.counters["truncated"] += 1
                out.append(KernelRecord(source=source, text=_text(rest[: self.max_record])))
            else:
                if len(self._plain) >= MAX_PARTIALS:
                    self._flush_oldest_plain(out)
                self._plain[source] = (rest, prev[1] if prev is not None else now)
        self.counters["lines"] += len(out)
        return out

    def _flush_oldest_plain(self, out: list[KernelRecord]) -> None:
        src = next(iter(self._plain))
        tail, _ = self._plain.pop(src)
        out.append(KernelRecord(source=src, text=_text(tail)))

    def _fragment(self, source: str, header: dict[str, Any], frag: tuple[int, int], chunk: bytes,
                  now: float) -> bytes | None:
        """Store one fragment; the whole body once every byte arrived, else None."""
        c = self.counters
        c["fragments"] += 1
        off, total = frag
        if total > self.max_record * 4 or off >= total or off + len(chunk) > total:
            c["frag_bad"] += 1
            return None
        key = (source, header["seq"], header.get("release"))
        fs = self._frags.get(key)
        if fs is None:
            if len(self._frags) >= self.max_frag_sets:
                self._evict_one()
            fs = self._frags[key] = _Frags(header, total, now)
        elif fs.total != total:
            c["frag_bad"] += 1
            return None
        if off not in fs.parts:
            fs.parts[off] = chunk
            fs.size += len(chunk)
        if fs.size < total:
            return None
        del self._frags[key]
        data = b"".join(fs.parts[k] for k in sorted(fs.parts))
        if len(data) != total:  # overlapping parts (a resend with other boundaries): take it as it is
            c["frag_bad"] += 1
        c["reassembled"] += 1
        return data

    def _evict_one(self) -> None:
        key = next(iter(self._frags))
        self._frags.pop(key)
        self.counters["frag_evicted"] += 1

    def _record(self, source: str, header: dict[str, Any], body: bytes, now: float) -> list[KernelRecord]:
        text_b, _, rest = body.partition(b"\n")
        fields: dict[str, str] = {}
        if rest:
            for ln in rest.split(b"\n"):
                k, eq, v = ln.strip().partition(b"=")
                if eq and k:
                    fields[_text(k)] = _text(v)
        if len(text_b) > self.max_record:
            self.counters["truncated"] += 1
            text_b = text_b[: self.max_record]
        release = header.get("release") or fields.get("release")
        rec = KernelRecord(source=source, text=_text(text_b).rstrip("\r"), level=header["level"] & 7,
                           facility=header["level"] >> 3, seq=header["seq"], ts_us=header["ts"],
                           caller=header.get("caller"), extended=True, fields=fields, release=release)
        flag = header["flag"]
        out: list[KernelRecord] = []
        open_ = self._cont.pop(source, None)
        if flag == "+":  # continues the open 'c' line
            if open_ is not None:
                prev = open_[0]
                prev.text += rec.text
                prev.fields.update(fields)
                if len(prev.text) < self.max_record:
                    self._cont[source] = (prev, open_[1])
                    self.counters["continued"] += 1
                    return out
                out.append(prev)
                return out
            return [rec]
        if open_ is not None:
            out.append(open_[0])
        if flag == "c":
            if len(self._cont) >= MAX_PARTIALS:
                src = next(iter(self._cont))
                out.append(self._cont.pop(src)[0])
            self._cont[source] = (rec, now)
            return out
        out.append(rec)
        return out

    # -- time ---------------------------------------------------------------------------------------------------
    def expire(self, now: float) -> list[KernelRecord]:
        """Records whose wait is over: incomplete fragment sets (what arrived, marked incomplete), unterminated
        plain lines, open continuations."""
        out: list[KernelRecord] = []
        limit = now - self.frag_timeout
        if self._frags:
            for key in [k for k, fs in self._frags.items() if fs.first <= limit]:
                fs = self._frags.pop(key)
                self.counters["frag_expired"] += 1
                data = b"".join(fs.parts[k] for k in sorted(fs.parts))
                for r in self._record(key[0], fs.header, data, now):
                    r.incomplete = True
                    out.append(r)
        if self._plain:
            for src in [s for s, (_, t) in self._plain.items() if t <= limit]:
                tail, _ = self._plain.pop(src)
                out.append(KernelRecord(source=src, text=_text(tail)))
        if self._cont:
            for src in [s for s, (_, t) in self._cont.items() if t <= limit]:
                out.append(self._cont.pop(src)[0])
        self.counters["lines"] += len(out)
        return out

    def flush(self) -> list[KernelRecord]:
        """Shutdown: everything still waiting."""
        return self.expire(float("inf"))

    @property
    def waiting(self) -> int:
        return len(self._frags) + len(self._plain) + len(self._cont)


def _header(data: bytes) -> tuple[dict[str, Any], bytes] | None:
    """Split an extended record's header; None for plain console text."""
    semi = data.find(b";", 0, 512)
    if semi < 5 or not data[:1].isalnum():
        return None
    head = data[:semi]
    if b" " in head or b"\n" in head:
        return None
    f = head.split(b",")
    release = None
    if len(f) >= 5 and not f[0].isdigit() and f[1].isdigit():  # "6.4.0,6,444,..." (release prepended)
        release = f[0].decode("ascii", "replace")
        f = f[1:]
    if len(f) < 4 or not (f[0].isdigit() and f[1].isdigit() and f[2].isdigit()) or f[3] not in (b"-", b"c", b"+"):
        return None
    h: dict[str, Any] = {"level": int(f[0]), "seq": int(f[1]), "ts": int(f[2]), "flag": f[3].decode()}
    if release is not None:
        h["release"] = release
    for extra in f[4:]:
        k, _, v = extra.partition(b"=")
        if k == b"ncfrag":
            off, _, tot = v.partition(b"/")
            if off.isdigit() and tot.isdigit():
                h["ncfrag"] = (int(off), int(tot))
            else:
                return None
        elif k == b"caller":
            h["caller"] = v.decode("ascii", "replace")
    return h, data[semi + 1:]


def console_text(rec: KernelRecord) -> str:
    """``[  12.345678] [T123] text``: the console shape (time stamp and caller as a serial console shows them)."""
    if rec.ts_us is None:
        return rec.text
    s, us = divmod(rec.ts_us, 1_000_000)
    if rec.caller:
        return f"[{s:5d}.{us:06d}] [{rec.caller}] {rec.text}"
    return f"[{s:5d}.{us:06d}] {rec.text}"


def to_message(rec: KernelRecord, host: str) -> Message:
    """The pipeline's Message for a netconsole record (severity: the record's level; plain text says none,
    taken as 6/info)."""
    sev = rec.level if rec.level is not None else 6
    fac = rec.facility if rec.facility < 24 else 0
    sd = None
    if rec.fields or rec.release or rec.seq is not None:
        p = dict(rec.fields)
        if rec.seq is not None:
            p["seq"] = str(rec.seq)
        if rec.release and "release" not in p:
            p["release"] = rec.release
        if rec.incomplete:
            p["incomplete"] = "1"
        sd = {"netconsole": p}
    return Message(format=FORMAT_NETCONSOLE, pri=(fac << 3) | sev, facility=fac, severity=sev, hostname=host,
                   app_name="kernel", msgid="netconsole", structured_data=sd, msg=console_text(rec),
                   missing=["timestamp"] if rec.level is not None else ["timestamp", "pri"])

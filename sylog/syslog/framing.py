"""Syslog transport framing, sans-IO: bytes in, complete frames out.

TCP (RFC 6587) framing is auto-detected *per frame*, as rsyslog does it:

* a frame that starts with a digit is octet-counted: ``LEN SP MSG`` (``LEN`` at most 10 digits); trailing
  LF/CR/NUL inside the count are dropped, as rsyslog does by default (``DropTrailingLFOnReception``): rsyslog's
  own forwarding templates end in LF even when octet-counting;
* anything else is non-transparent framing, terminated by LF.  A trailing CR is stripped (CRLF senders), and NUL
  also ends a frame (senders that terminate with NUL); empty frames (``\\n\\n``, an LF after an octet frame) vanish.

Like some other receivers (and unlike rsyslog) we trust a count only when a plausible ``<`` (the start of a PRI)
follows ``LEN SP``: a non-transparent line that merely starts with ``"12 "`` is then read as a line instead of
swallowing the next 12 bytes of the stream. Digits followed by anything but SP, or more than 10 digits, or a count
above :data:`MAX_OCTET_COUNT`, can only be a broken or hostile peer: that is a framing error, reported through
:attr:`TcpDeframer.error` (frames already complete in the same chunk are still returned), after which the
deframer returns nothing more and the shell closes that one connection.

Oversized messages are never fatal: the first ``max_size`` bytes are delivered as a :class:`Truncated` frame
(counted in :attr:`TcpDeframer.truncated`) and the rest of that message is discarded (up to the next terminator
for LF framing, the rest of the count for octet counting); the connection lives on.

Buffering is linear in the bytes received: a partial frame is kept as a list of chunks and each new chunk is only
searched once, so a slow sender (a byte a second) or a 10 MB line costs no quadratic copying. The common path is a
``bytes.find`` and a slice per frame; there is no per-byte Python loop except over the (at most 11) digits of a
count.
"""

from __future__ import annotations

__all__ = ["MAX_OCTET_COUNT", "DEFAULT_MAX_SIZE", "Truncated", "TcpDeframer", "udp_frame"]

DEFAULT_MAX_SIZE = 64 * 1024
#: An octet count above this is not a message size but a broken or hostile peer.
MAX_OCTET_COUNT = 1 << 30

_START, _LF, _OCTET, _SKIP_LF, _SKIP_N = range(5)
_TRAIL = (b"\n", b"\r", b"\0")


class Truncated(bytes):
    """A frame cut to the maximum message size (the flag travels with the frame; ``bytes`` otherwise)."""

    __slots__ = ()


class TcpDeframer:
    """Per-connection TCP deframer. ``feed(chunk)`` returns the frames completed by that chunk; ``eof()`` the
    final unterminated frame, if any (a client that sends and closes loses nothing)."""

    __slots__ = ("max_size", "error", "truncated", "fallbacks", "_state", "_head", "_parts", "_plen", "_remain",
                 "_skip", "_cut")

    def __init__(self, max_size: int = DEFAULT_MAX_SIZE) -> None:
        if max_size < 1:
            raise ValueError("max_size must be >= 1")
        self.max_size = max_size
        #: Why the stream cannot be framed any more (set once; the shell counts it and closes the connection).
        self.error: str | None = None
        #: Frames delivered cut to ``max_size``.
        self.truncated = 0
        #: Frames that started with a digit but had no ``<`` after the count: read as LF-terminated lines.
        self.fallbacks = 0
        self._state = _START
        self._head = b""  # a partial octet-count header (<= 12 bytes) waiting for more data
        self._parts: list[bytes] = []  # chunks of a partial frame (states _LF and _OCTET)
        self._plen = 0
        self._remain = 0  # _OCTET: bytes still needed for the part we keep
        self._skip = 0  # bytes to discard after it (_OCTET) or now (_SKIP_N)
        self._cut = False  # _OCTET: the frame being collected is cut short

    # -- helpers -------------------------------------------------------------------------------------------------
    def _deliver(self, out: list[bytes], frame: bytes) -> None:
        """Deliver an LF-framed frame: strip one trailing CR, cut to max_size, drop empties."""
        if frame[-1:] == b"\r":
            frame = frame[:-1]
        if len(frame) > self.max_size:
            self.truncated += 1
            out.append(Truncated(frame[: self.max_size]))
        elif frame:
            out.append(frame)

    def _fail(self, why: str) -> None:
        self.error = why
        self._state = _START
        self._head = b""
        self._parts = []
        self._plen = 0

    # -- API -----------------------------------------------------------------------------------------------------
    def feed(self, data: bytes) -> list[bytes]:
        """Consume one chunk of the stream (any size, split anywhere); return the frames it completes."""
        if self.error is not None or not data:
            return []
        out: list[bytes] = []
        if self._head:
            data = self._head + data
            self._head = b""
        # NUL as a terminator costs a second search; pay it only for chunks that contain one.
        has_nul = b"\0" in data
        n = len(data)
        i = 0
        maxsz = self.max_size
        st = self._state
        lim = maxsz if maxsz < MAX_OCTET_COUNT else MAX_OCTET_COUNT
        find = data.find
        append = out.append
        while i < n:
            if st == _START:
                # Fast loop over well-formed octet-counted frames back to back (what rsyslog/syslog-ng send): the
                # same result as the general code below, which handles everything else from where this stops.
                while True:
                    j = find(b" ", i + 1, i + 11)
                    if j < 0:
                        break
                    lenb = data[i:j]
                    if not lenb.isdigit() or data[j + 1:j + 2] != b"<":
                        break
                    count = int(lenb)
                    end = j + 1 + count
                    if not count or count > lim or end > n or data[end - 1] <= 13:
                        break
                    append(data[j + 1:end])
                    i = end
                    if i >= n:
                        break
                if i >= n:
                    break
                c = data[i]
                if 48 <= c <= 57:  # a digit: octet counting, if the header is plausible
                    # fast path: "LEN SP" found by one C-level search; the byte loop only for odd cases
                    j = data.find(b" ", i + 1, i + 11)
                    if j < 0 or not data[i:j].isdigit():
                        j = i + 1
                        while j < n and j - i <= 10 and 48 <= data[j] <= 57:
                            j += 1
                    if j - i > 10:
                        self._fail("octet count longer than 10 digits")
                        return out
                    if j + 1 >= n:  # need the byte after the digits, and the one after SP
                        if j < n and data[j] != 32:
                            self._fail(f"octet count not followed by SP (byte 0x{data[j]:02x})")
                            return out
                        self._head = data[i:]
                        break
                    if data[j] != 32:
                        self._fail(f"octet count not followed by SP (byte 0x{data[j]:02x})")
                        return out
                    if data[j + 1] == 60:  # '<': trust the count
                        count = int(data[i:j])
                        if count > MAX_OCTET_COUNT:
                            self._fail(f"octet count {count} is absurdly large")
                            return out
                        start = j + 1
                        if count <= maxsz:
                            end = start + count
                            if end <= n:
                                if end > start and data[end - 1] > 13:  # common: no trailing LF/CR/NUL to drop
                                    out.append(data[start:end])
                                else:
                                    frame = data[start:end].rstrip(b"\r\n\0")
                                    if frame:
                                        out.append(frame)
                                i = end
                                continue
                            self._cut = False
                            self._skip = 0
                            keep = count
                        else:
                            self.truncated += 1
                            self._cut = True
                            self._skip = count - maxsz
                            keep = maxsz
                            if start + keep <= n:
                                out.append(Truncated(data[start:start + keep].rstrip(b"\r\n\0")))
                                i = start + keep
                                st = _SKIP_N
                                continue
                        self._parts = [data[start:]]
                        self._plen = n - start
                        self._remain = keep - (n - start)
                        st = _OCTET
                        i = n
                        break
                    self.fallbacks += 1  # "12 foo": a line that starts with digits
                # LF framing
                j = data.find(b"\n", i)
                if has_nul:
                    k = data.find(b"\0", i, j if j >= 0 else n)
                    if k >= 0:
                        j = k
                if j >= 0:
                    if j > i:
                        self._deliver(out, data[i:j])
                    i = j + 1
                    continue
                if n - i > maxsz + 1:  # no terminator within max_size (+ a CR): cut, discard to the terminator
                    self.truncated += 1
                    out.append(Truncated(data[i:i + maxsz]))
                    st = _SKIP_LF
                    i = n
                    break
                self._parts = [data[i:]]
                self._plen = n - i
                st = _LF
                break
            elif st == _LF:  # continuing a partial LF frame (only ever at i == 0)
                j = data.find(b"\n", i)
                if has_nul:
                    k = data.find(b"\0", i, j if j >= 0 else n)
                    if k >= 0:
                        j = k
                if j >= 0:
                    self._parts.append(data[i:j])
                    frame = b"".join(self._parts)
                    self._parts = []
                    self._plen = 0
                    self._deliver(out, frame)
                    i = j + 1
                    st = _START
                    continue
                self._parts.append(data[i:])
                self._plen += n - i
                i = n
                if self._plen > maxsz + 1:
                    frame = b"".join(self._parts)
                    self._parts = []
                    self._plen = 0
                    self.truncated += 1
                    out.append(Truncated(frame[:maxsz]))
                    st = _SKIP_LF
                break
            elif st == _OCTET:
                need = self._remain
                if n - i >= need:
                    self._parts.append(data[i:i + need])
                    frame = b"".join(self._parts)
                    self._parts = []
                    self._plen = 0
                    if frame[-1:] in _TRAIL:
                        frame = frame.rstrip(b"\r\n\0")
                    if self._cut:
                        out.append(Truncated(frame))
                    elif frame:
                        out.append(frame)
                    i += need
                    st = _SKIP_N if self._skip else _START
                    continue
                self._parts.append(data[i:])
                self._plen += n - i
                self._remain -= n - i
                i = n
                break
            elif st == _SKIP_N:
                k = min(self._skip, n - i)
                i += k
                self._skip -= k
                if not self._skip:
                    st = _START
            else:  # _SKIP_LF
                j = data.find(b"\n", i)
                if has_nul:
                    k = data.find(b"\0", i, j if j >= 0 else n)
                    if k >= 0:
                        j = k
                if j < 0:
                    break
                i = j + 1
                st = _START
        self._state = st
        return out

    def eof(self) -> list[bytes]:
        """The peer closed: deliver what is left (an unterminated line, a partial octet frame marked truncated)."""
        if self.error is not None:
            return []
        out: list[bytes] = []
        st = self._state
        if self._head:  # digits and maybe SP, never completed: keep the bytes as a line
            self._deliver(out, self._head)
        elif st == _LF and self._parts:
            self._deliver(out, b"".join(self._parts))
        elif st == _OCTET and self._plen:
            self.truncated += 1
            frame = b"".join(self._parts).rstrip(b"\r\n\0")
            if frame:
                out.append(Truncated(frame))
        self._state = _START
        self._head = b""
        self._parts = []
        self._plen = 0
        return out

    @property
    def in_frame(self) -> bool:
        """A frame is begun but not complete: bytes held, or the rest of a cut message still being skipped."""
        return self._state != _START or bool(self._head)

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete frame (bounded by max_size + 12)."""
        return self._plen + len(self._head)


def udp_frame(datagram: bytes, max_size: int = DEFAULT_MAX_SIZE) -> bytes | None:
    """One UDP datagram is one message: strip trailing LF/CR/NUL, cut to ``max_size`` (as :class:`Truncated`).
    ``None`` for a datagram with nothing in it."""
    last = datagram[-1:]
    if last == b"\n" or last == b"\0" or last == b"\r":
        datagram = datagram.rstrip(b"\r\n\0")
    if len(datagram) > max_size:
        return Truncated(datagram[:max_size])
    return datagram or None

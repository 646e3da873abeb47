"""Per-host last-gasp ring: the host's last N timeline lines, kept compactly.

Why not a ``deque(maxlen=N)`` of bytes: 10,000 hosts x 200 lines x ~160 bytes is ~330 MB of Python objects. Here
only the newest lines are kept raw, copied into one ``bytearray`` per host (the hot path is one memcpy; keeping
references to the server's line objects instead would be cheaper per call but pins half-empty allocator pools all
over the heap), and every ``BLOCK_LINES`` lines (or at once for a line of ``BIG_LINE`` bytes or more) that tail is
sealed into a block. A sealed block is handed out to be deflated (the engine batches that onto a worker thread once
per tick — zlib releases the GIL — so the event loop never pays for it; without an engine the correlator deflates
inline) and then appended to ONE bytes object per host holding every deflated block back to back (their line counts
and sizes in a small ``array``): a handful of objects per host however many blocks, so 10,000 rings do not
fragment the heap. Old blocks are dropped once the newer lines still number N, or while the deflated bytes exceed
the ring's byte cap. Reading (only when an incident opens) inflates the blocks and takes the last N lines.

A sealed-but-not-yet-deflated block is a small list ``[line count, data, state]``; state is RAW, PACKED or DROPPED.
"""

from __future__ import annotations

import zlib
from array import array

BLOCK_LINES = 16
BIG_LINE = 2048  # a line this long seals the tail at once, so a tail stays small whatever hosts send
DEFAULT_MAX_BYTES = 64 * 1024  # deflated bytes kept per ring at most (~200 typical lines use 6-10 KiB)
LEVEL = 1  # zlib level: ~3.5-4x on syslog lines; higher levels buy ~5% for twice the CPU

RAW, PACKED, DROPPED = 0, 1, 2
_EMPTY = b""


def pack(data: bytes | bytearray) -> bytes:
    return zlib.compress(data, LEVEL)


class ContextRing:
    """Lines should end in ``\\n`` (timeline lines do; one is added otherwise) and contain no other newline."""

    __slots__ = ("_tail", "_tail_n", "_z", "_zmeta", "_raw", "_block_n")

    def __init__(self) -> None:
        self._tail = bytearray()
        self._tail_n = 0
        self._z = _EMPTY  # deflated blocks, oldest first, back to back
        self._zmeta: array | None = None  # per deflated block: line count, size (flattened pairs)
        self._raw: list[list] | None = None  # sealed blocks waiting to be deflated (all newer than _z's)
        self._block_n = 0  # lines in blocks (deflated + raw)

    def append(self, line: bytes, maxlen: int, max_bytes: int = DEFAULT_MAX_BYTES) -> list | None:
        """Add a line; returns the block just sealed (RAW, to be packed with :meth:`packed`) or None."""
        if line[-1:] != b"\n":
            line += b"\n"  # keep the ring line-structured whatever a caller passes
        self._tail += line
        n = self._tail_n = self._tail_n + 1
        if n >= BLOCK_LINES or len(line) >= BIG_LINE:
            return self._seal(maxlen, max_bytes)
        return None

    def _seal(self, maxlen: int, max_bytes: int) -> list:
        block = [self._tail_n, bytes(self._tail), RAW]
        if self._raw is None:
            self._raw = [block]
        else:
            self._raw.append(block)
        self._block_n += self._tail_n
        self._tail_n = 0
        del self._tail[:]
        self._trim(maxlen, max_bytes)
        return block

    def _nblocks(self) -> int:
        return (len(self._zmeta) // 2 if self._zmeta else 0) + (len(self._raw) if self._raw else 0)

    def _trim(self, maxlen: int, max_bytes: int) -> None:
        keep = maxlen - self._tail_n  # lines the blocks must still cover
        while self._nblocks() > 1:
            meta = self._zmeta
            if meta:
                n, size = meta[0], meta[1]
                if self._block_n - n < keep and len(self._z) <= max_bytes:
                    return
                self._z = self._z[size:]
                del meta[:2]
            else:
                raw = self._raw
                n = raw[0][0]
                if self._block_n - n < keep:
                    return
                raw.pop(0)[2] = DROPPED
            self._block_n -= n

    def packed(self, block: list, data: bytes, maxlen: int, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        """Install the deflated form of a block this ring sealed (no-op if it was dropped meanwhile). Blocks are
        packed in the order they were sealed (one FIFO worker), so ``block`` is the oldest raw one."""
        if block[2] != RAW:
            return
        raw = self._raw
        i = 0
        if raw[0] is not block:  # out of order after all: pack inline whatever is older, keep the order
            i = next(j for j, b in enumerate(raw) if b is block)
            for older in raw[:i]:
                self.packed(older, pack(older[1]), maxlen, max_bytes)
            raw = self._raw
        raw.pop(0)
        if not raw:
            self._raw = None
        block[2] = PACKED
        self._z += data
        if self._zmeta is None:
            self._zmeta = array("I")
        self._zmeta.extend((block[0], len(data)))
        block[1] = _EMPTY
        if len(self._z) > max_bytes:
            self._trim(maxlen, max_bytes)

    def lines(self, maxlen: int) -> list[bytes]:
        """The last ``maxlen`` lines, oldest first, each ending in ``\\n``."""
        if maxlen <= 0:
            return []
        parts = []
        z, meta, off = self._z, self._zmeta or (), 0
        for k in range(0, len(meta), 2):
            size = meta[k + 1]
            parts.append(zlib.decompress(z[off:off + size]))
            off += size
        parts.extend(b[1] for b in self._raw or ())
        parts.append(bytes(self._tail))
        raw = b"".join(parts)
        if not raw:
            return []
        out = raw.split(b"\n")
        out.pop()  # the empty piece after the final newline
        return [ln + b"\n" for ln in out[-maxlen:]]

    def __len__(self) -> int:
        return self._block_n + self._tail_n

    def nbytes(self) -> int:
        """Payload bytes held (raw tail + blocks), for memory accounting."""
        return len(self._tail) + len(self._z) + sum(len(b[1]) for b in self._raw or ())

    def clear(self) -> None:
        for b in self._raw or ():
            b[2] = DROPPED
        self._tail = bytearray()
        self._tail_n = 0
        self._z = _EMPTY
        self._zmeta = None
        self._raw = None
        self._block_n = 0

"""Per-host last-gasp ring: the host's last N timeline lines, kept compactly.

Why not a ``deque(maxlen=N)`` of bytes: 10,000 hosts x 200 lines x ~150 bytes is ~300 MB of Python objects. Here the
newest lines live in one raw ``bytearray`` (an append is a memcpy), and every ``BLOCK_LINES`` lines (or
``BLOCK_BYTES``) the raw tail is sealed into a zlib block (level 1: ~10 us per 4 KiB, amortised well under 1 us per
line). Old blocks are dropped once the newer ones still hold N lines, or when the compressed bytes exceed a cap.
Reading (only when an incident opens) inflates the blocks and takes the last N lines.
"""

from __future__ import annotations

import zlib

BLOCK_LINES = 64
BLOCK_BYTES = 8192
DEFAULT_MAX_BYTES = 64 * 1024  # compressed bytes kept per ring (~200 typical lines use 6-12 KiB)


class ContextRing:
    """Lines must end in ``\\n`` (timeline lines do) and contain no other newline."""

    __slots__ = ("_tail", "_tail_n", "_blocks", "_block_n", "_block_bytes")

    def __init__(self) -> None:
        self._tail = bytearray()
        self._tail_n = 0
        self._blocks: list[tuple[int, bytes]] | None = None  # oldest first: (line count, zlib data)
        self._block_n = 0
        self._block_bytes = 0

    def append(self, line: bytes, maxlen: int, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        tail = self._tail
        tail += line
        if line[-1:] != b"\n":
            tail += b"\n"  # keep the ring line-structured whatever a caller passes
        self._tail_n += 1
        if self._tail_n >= BLOCK_LINES or len(tail) >= BLOCK_BYTES:
            self._seal(maxlen, max_bytes)

    def _seal(self, maxlen: int, max_bytes: int) -> None:
        data = zlib.compress(self._tail, 1)
        if self._blocks is None:
            self._blocks = []
        self._blocks.append((self._tail_n, data))
        self._block_n += self._tail_n
        self._block_bytes += len(data)
        self._tail = bytearray()
        self._tail_n = 0
        blocks = self._blocks
        # Drop the oldest block while the rest still covers maxlen lines, or while over the byte cap.
        while len(blocks) > 1 and (self._block_n - blocks[0][0] >= maxlen or self._block_bytes > max_bytes):
            n, d = blocks.pop(0)
            self._block_n -= n
            self._block_bytes -= len(d)

    def lines(self, maxlen: int) -> list[bytes]:
        """The last ``maxlen`` lines, oldest first, each ending in ``\\n``."""
        if maxlen <= 0:
            return []
        parts = [zlib.decompress(d) for _, d in self._blocks or ()]
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
        """Payload bytes held (raw tail + compressed blocks), for memory accounting."""
        return len(self._tail) + self._block_bytes

    def clear(self) -> None:
        self._tail = bytearray()
        self._tail_n = 0
        self._blocks = None
        self._block_n = 0
        self._block_bytes = 0

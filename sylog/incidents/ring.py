"""Per-host last-gasp ring: the host's last N timeline lines, kept compactly.

Why not a ``deque(maxlen=N)`` of bytes: 10,000 hosts x 200 lines x ~160 bytes is ~330 MB of Python objects. Here
only the newest lines are kept as they came (a list of the line objects the server made anyway: the hot path is one
``list.append``, ~3x cheaper than growing a bytearray), and every ``BLOCK_LINES`` lines (or at once for a line of
``BIG_LINE`` bytes or more) that tail is joined and sealed into a block. A sealed block is handed out to be
deflated (the engine batches that onto a worker thread once per tick — zlib releases the GIL — so the event loop
never pays for it; without an engine the correlator deflates inline). Old blocks are dropped once the newer lines
still number N, or while the deflated bytes exceed the ring's byte cap. Reading (only when an incident opens)
inflates the blocks and takes the last N lines.

A block is a small list ``[line count, data, state]``; state is RAW, PACKED or DROPPED.
"""

from __future__ import annotations

import zlib

BLOCK_LINES = 16
BIG_LINE = 2048  # a line this long seals the tail at once, so a tail stays small whatever hosts send
DEFAULT_MAX_BYTES = 64 * 1024  # deflated bytes kept per ring at most (~200 typical lines use 6-10 KiB)
LEVEL = 1  # zlib level: ~3.5-4x on syslog lines; higher levels buy ~5% for twice the CPU

RAW, PACKED, DROPPED = 0, 1, 2


def pack(data: bytes | bytearray) -> bytes:
    return zlib.compress(data, LEVEL)


class ContextRing:
    """Lines should end in ``\\n`` (timeline lines do; one is added otherwise) and contain no other newline."""

    __slots__ = ("_tail", "_blocks", "_block_n", "_block_bytes")

    def __init__(self) -> None:
        self._tail: list[bytes] = []
        self._blocks: list[list] | None = None  # oldest first
        self._block_n = 0  # lines in blocks
        self._block_bytes = 0  # deflated bytes in PACKED blocks (RAW ones are in flight, short-lived)

    def append(self, line: bytes, maxlen: int, max_bytes: int = DEFAULT_MAX_BYTES) -> list | None:
        """Add a line; returns the block just sealed (RAW, to be packed with :meth:`packed`) or None."""
        if line[-1:] != b"\n":
            line += b"\n"  # keep the ring line-structured whatever a caller passes
        tail = self._tail
        tail.append(line)
        if len(tail) >= BLOCK_LINES or len(line) >= BIG_LINE:
            return self._seal(maxlen, max_bytes)
        return None

    def _seal(self, maxlen: int, max_bytes: int) -> list:
        tail = self._tail
        block = [len(tail), b"".join(tail), RAW]
        if self._blocks is None:
            self._blocks = []
        self._blocks.append(block)
        self._block_n += len(tail)
        self._tail = []
        self._trim(maxlen, max_bytes)
        return block

    def _trim(self, maxlen: int, max_bytes: int) -> None:
        blocks = self._blocks
        if not blocks:
            return
        keep = maxlen - len(self._tail)  # lines the blocks must still cover
        while len(blocks) > 1 and (self._block_n - blocks[0][0] >= keep or self._block_bytes > max_bytes):
            old = blocks.pop(0)
            self._block_n -= old[0]
            if old[2] == PACKED:
                self._block_bytes -= len(old[1])
            old[2] = DROPPED

    def packed(self, block: list, data: bytes, maxlen: int, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        """Install the deflated form of a block this ring sealed (no-op if it was dropped meanwhile)."""
        if block[2] != RAW:
            return
        block[1] = data
        block[2] = PACKED
        self._block_bytes += len(data)
        if self._block_bytes > max_bytes:
            self._trim(maxlen, max_bytes)

    def lines(self, maxlen: int) -> list[bytes]:
        """The last ``maxlen`` lines, oldest first, each ending in ``\\n``."""
        if maxlen <= 0:
            return []
        parts = [zlib.decompress(b[1]) if b[2] == PACKED else bytes(b[1]) for b in self._blocks or ()]
        parts.extend(self._tail)
        raw = b"".join(parts)
        if not raw:
            return []
        out = raw.split(b"\n")
        out.pop()  # the empty piece after the final newline
        return [ln + b"\n" for ln in out[-maxlen:]]

    def __len__(self) -> int:
        return self._block_n + len(self._tail)

    def nbytes(self) -> int:
        """Payload bytes held (raw tail + blocks), for memory accounting."""
        raw = sum(len(b[1]) for b in self._blocks or () if b[2] == RAW)
        return sum(map(len, self._tail)) + self._block_bytes + raw

    def clear(self) -> None:
        for b in self._blocks or ():
            b[2] = DROPPED
        self._tail = []
        self._blocks = None
        self._block_n = 0
        self._block_bytes = 0

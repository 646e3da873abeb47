"""The octet-counting fast loop in TcpDeframer.feed gives the same frames however the stream is cut (one byte at a
time goes through the general code)."""

from __future__ import annotations

import random

from sylog.syslog.framing import TcpDeframer


def _frames(stream: bytes, cuts: list[int], max_size: int = 64) -> tuple[list[bytes], int, str | None]:
    d = TcpDeframer(max_size=max_size)
    out: list[bytes] = []
    prev = 0
    for c in cuts + [len(stream)]:
        out += d.feed(stream[prev:c])
        prev = c
    out += d.eof()
    return [bytes(f) for f in out], d.truncated, d.error


def test_chunking_does_not_change_frames():
    rng = random.Random(3)
    pieces = [b"5 <1>ab", b"0 ", b"3 <1>\n", b"4 <1>a\n", b"70 <1>" + b"x" * 67, b"plain line\n", b"12 not counted\n",
              b"2 <1", b"\n\n", b"7 <13>hi\r", b"1 <", b"6 <1>a\x00b", b"9 <1>\xff\xfe\xfdz", b"<1>zz\n"]
    for _ in range(400):
        stream = b"".join(rng.choice(pieces) for _ in range(rng.randint(1, 30)))
        whole = _frames(stream, [])
        bytewise = _frames(stream, list(range(1, len(stream))))
        cuts = sorted(rng.sample(range(1, len(stream)), min(len(stream) - 1, 3))) if len(stream) > 1 else []
        assert whole == bytewise == _frames(stream, cuts), stream


def test_zero_count_delivers_nothing():
    assert b"" not in TcpDeframer().feed(b"0 <1>x\n5 <1>ab")

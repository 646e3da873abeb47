"""The lenient RFC 5424 fast path in ``parse()`` must give exactly what the general field-by-field reader gives."""

from __future__ import annotations

import random

import pytest

from sylog.syslog.parse import parse
from sylog.syslog.rfc5424 import _parse_5424_general

CASES = [
    b"<86>1 2026-11-25T10:00:00.000000Z node-00042 sshd 4242 - - pid 1 session opened",
    b"<0>1 2026-11-25T10:00:00Z db-07 kernel - - - [   12.345678] BUG: unable to handle page fault",
    b"<13>1 - - - - - -",
    b"<13>1 - - - - - - ",
    b"<13>1 - - - - - -  two spaces kept",
    b"<13>1 2026-02-29T10:00:00Z h app 1 m - leap day 2026 does not exist",
    b"<13>1 2024-02-29T10:00:00Z h app 1 m - leap day 2024 exists",
    b"<13>1 2026-04-31T10:00:00+02:00 h app 1 m - no April 31",
    b"<13>1 2026-12-31T23:59:59.123456-05:00 h app 1 m - new year's eve",
    b"<13>1 2026-11-25t10:00:00z h app 1 m - lower case t",
    b"<13>1 2026-11-25T10:00:00.1234567Z h app 1 m - 7 fraction digits",
    b"<13>1 2026-11-25T10:00:00Z h app 1 m \xef\xbb\xbfBOM then text",
    b"<13>1 2026-11-25T10:00:00Z h\xff app 1 m - not utf-8 \xfe\xff",
    b"<13>1 2026-11-25T10:00:00Z h app 1 m [x@1 a=\"b\"] with SD",
    b"<13>1 2026-11-25T10:00:00Z h app 1 m -x not a NIL SD",
    b"<13>1 2026-11-25T10:00:00Z h  app 1 m - empty host field",
    b"<13>1 2026-11-25T10:00:00Z h app 1 m",
    b"<13>1 2026-11-25T10:00:00Z h app 1 m -",
    b"<191>1 2026-11-25T10:00:00Z h app 1 m - tail\tand\x00controls",
    b"<13>1 2026-11-25 10:00:00 h app 1 m - space in stamp",
]


def _general(raw: bytes):
    gt = raw.index(b">")
    return _parse_5424_general(raw, gt, int(raw[1:gt]), False)


@pytest.mark.parametrize("raw", CASES)
def test_fast_path_equals_general_reader(raw):
    assert parse(raw) == _general(raw)
    assert parse(raw) == parse(raw)  # second time: stamp cache hit


def test_fast_path_equals_general_reader_random():
    rng = random.Random(5)
    atoms = [b"-", b"a", b"host-1", b"2026-11-25T10:00:00Z", b"2026-02-30T10:00:00Z", b"", b"\xef\xbb\xbf", b"[", b"1"]
    for _ in range(3000):
        parts = [rng.choice(atoms) for _ in range(rng.randint(1, 9))]
        raw = b"<%d>1 " % rng.randint(0, 191) + b" ".join(parts)
        assert parse(raw) == _general(raw), raw

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


def _general_road(raw: bytes, now: float):
    """parse()'s lenient road without the fast paths (what it did before them)."""
    from sylog.syslog.parse import _PRI, _looks_5424
    from sylog.syslog.rfc3164 import parse_3164
    from sylog.syslog.rfc5424 import Rfc5424Error, parse_5424
    gt = raw.find(b">", 1, 5)
    pri = _PRI.get(raw[1:gt]) if gt > 1 else None
    assert pri is not None
    p = gt + 1
    c = raw[p:p + 1]
    if c.isdigit() and (raw[p + 1:p + 2] == b" " or _looks_5424(raw, p)):
        try:
            return parse_5424(raw, gt, pri, False)
        except Rfc5424Error:
            pass
    return parse_3164(raw, p, pri, False, now)


SHORTCUT_CASES = [
    b"<30>Nov 25 10:00:01 node-1 sshd[42]: Accepted publickey",
    b"<30>Nov  5 10:00:01 node-1 sshd[42]: day space-padded",
    b"<30>Nov 25 2026 10:00:01 node-1 cisco: year inside",
    b"<30>Nov 25 10:00:01 2026 node-1 linksys: year after",
    b"<30>Nov 25 10:00:01.123 node-1 frac: x",
    b"<30>Nov 99 10:00:01 node-1 bad day",
    b"<30>Nov",
    b"<30>Nov 25",
    b"<191>Dec 31 23:59:59 h kernel: [ 1.0] x",
    b"<13>1 2026-11-25T10:00:00Z h app 1 m [a@1 x=\"y\"] SD then text",
    b"<13>1 2026-11-25T10:00:00Z h app 1 m [a@1 x=\"y\"][b@2 z=\"w\"]",
    b"<13>1 2026-11-25T10:00:00Z h app 1 m [broken",
    b"<13>1 short",
    b"<13>1",
]


@pytest.mark.parametrize("raw", SHORTCUT_CASES)
def test_shortcuts_equal_general_road(raw):
    now = 1_764_064_800.0
    assert parse(raw, now=now) == _general_road(raw, now)

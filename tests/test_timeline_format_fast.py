"""format_with_stamp's cached fast path must give byte for byte what the reference formatting gives."""

from __future__ import annotations

import random

from sylog.syslog.message import Message
from sylog.syslog.parse import parse
from sylog.timeline.format import _format_slow, format_with_stamp


def test_fast_path_equals_reference_formatting():
    rng = random.Random(7)
    texts = ["plain text", "", "tab\there", "nl\nin", "del\x7f", "nul\x00", "ünïcödé", "\udcff\udcfe raw bytes",
             "lone \ud800 surrogate", "#012 literal", "a" * 300, "\u2028 line sep", "nbsp\xa0"]
    apps = [None, "", "sshd", "kernel", "we ird", "tab\tapp", "ü", "\ud800"]
    procids = [None, "", "42", "x y"]
    hosts = ["node-1", "db-07", "10.0.0.1", "ü-host", "\ud800h"]
    for i in range(4000):
        fmt = rng.choice(["rfc5424", "rfc3164", "raw"])
        fac = rng.choice([None, 0, 3, 23, 24, 31, 40, -1])
        sev = rng.choice([None, 0, 6, 7, 8])
        m = Message(format=fmt, facility=fac, severity=sev, app_name=rng.choice(apps), procid=rng.choice(procids),
                    msg=rng.choice(texts))
        stamp = rng.choice(["2026-11-25T10:00:00.000001Z", "2026-11-25T10:00:01.500000Z", "x\ud800"])
        host = rng.choice(hosts)
        assert format_with_stamp(stamp, host, m) == _format_slow(stamp, host, m), (stamp, host, m)
        assert format_with_stamp(stamp, host, m) == _format_slow(stamp, host, m), (stamp, host, m)  # cached


def test_parsed_messages_format_like_reference():
    for raw in [b"<86>1 2026-11-25T10:00:00Z h sshd 42 - - hello", b"<13>Nov 25 10:00:00 h cron[1]: tab\there",
                b"junk \xff\xfe", b"<0>1 - h kernel - - - [ 1.0] x\x1b[0m"]:
        m = parse(raw, now=1_764_064_800.0)
        assert format_with_stamp("S", "h", m) == _format_slow("S", "h", m)

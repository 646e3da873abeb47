"""Host folding: whatever a sender claims, the result is one safe directory name."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings, strategies as st

from sylog.syslog.hostnames import MAX_LEN, fold_host


@pytest.mark.parametrize(
    "name,want",
    [
        ("db-07", "db-07"),
        ("DB-07.Example.COM", "db-07.example.com"),
        ("host.example.com.", "host.example.com"),
        ("2001:DB8::1", "2001:db8::1"),
        ("fe80::1%eth0", "fe80::1_eth0"),
        ("web_01", "web_01"),
        ("a*b@c", "a_b_c"),
        ("10.1.2.3", "10.1.2.3"),
    ],
)
def test_plausible_names_are_folded(name, want):
    assert fold_host(name, "192.0.2.1") == want


@pytest.mark.parametrize(
    "name",
    [None, "", "-", ".", "..", "../../etc", "a/b", "/etc", "a\\b", ".hidden", "-x", "a\0b", "a\nb", "a b",
     "h\u00e9llo", "\u0430dmin", "...", "x\x7f"],
)
def test_absent_or_hostile_names_fall_back_to_peer(name):
    assert fold_host(name, "192.0.2.1") == "192.0.2.1"


def test_long_names_are_bounded_and_distinct():
    a = fold_host("a" * 300, "192.0.2.1")
    b = fold_host("a" * 299 + "b", "192.0.2.1")
    assert len(a) <= MAX_LEN and len(b) <= MAX_LEN and a != b
    assert a.startswith("a" * 200)
    assert fold_host("a" * MAX_LEN, "p") == "a" * MAX_LEN


def test_peer_forms():
    assert fold_host(None, "::ffff:10.0.0.1") == "10.0.0.1"
    assert fold_host(None, "::1") == "::1"
    assert fold_host(None, "") == "unknown"
    assert fold_host("../x", "../y") == "unknown"


def _safe(d: str) -> bool:
    return (
        bool(d) and "/" not in d and "\0" not in d and not d.startswith(".") and d not in (".", "..")
        and len(d) <= MAX_LEN and d == d.lower() and all(0x20 < ord(c) < 0x7F for c in d)
        and os.path.basename(d) == d
    )


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.none(), st.text(max_size=400), st.binary(max_size=300).map(
    lambda b: b.decode("utf-8", "surrogateescape"))), st.sampled_from(["192.0.2.1", "::1", "", "a/../b"]))
def test_any_name_is_safe(name, peer):
    d = fold_host(name, peer)
    assert _safe(d), d
    base = "/data/timelines"
    assert os.path.normpath(os.path.join(base, d)).startswith(base + "/")

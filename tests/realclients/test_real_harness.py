"""The real-client harness itself: a missing client skips locally but fails CI (SYLOG_REQUIRE_REALCLIENTS=1)."""

from __future__ import annotations

import pytest

from conftest import parse_timeline_line, require_binary


def test_missing_binary_skips_without_the_ci_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SYLOG_REQUIRE_REALCLIENTS", raising=False)
    with pytest.raises(pytest.skip.Exception, match="not installed"):
        require_binary("sylog-no-such-client")


def test_missing_binary_fails_under_the_ci_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYLOG_REQUIRE_REALCLIENTS", "1")
    with pytest.raises(pytest.fail.Exception, match="forbids skipping"):
        require_binary("sylog-no-such-client")


def test_present_binary_is_found() -> None:
    assert require_binary("sh").endswith("/sh")


def test_parse_timeline_line() -> None:
    r = parse_timeline_line("2026-11-25T10:15:04.001210Z web-01 daemon.warning ntpd[812]: time  reset\n")
    assert (r.time, r.host, r.facility, r.severity, r.tag, r.msg) == (
        "2026-11-25T10:15:04.001210Z", "web-01", "daemon", "warning", "ntpd[812]", "time  reset")
    r = parse_timeline_line("2026-11-25T10:15:04.001210Z 10.0.0.1 -.raw - ")
    assert (r.facility, r.severity, r.tag, r.msg) == ("-", "raw", "-", "")

"""Sender allowlists: the sans-IO matcher (CIDRs, IPv4-mapped IPv6, cache, rate-limited log) and the listeners
(UDP/netconsole datagrams dropped and counted, TCP connections closed at once and counted), config and flags."""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path
from typing import Any

import pytest

from sylog.config import Config, ConfigError, apply_overrides
from sylog.server.allow import Access, Allowlist, DenyLog, parse_networks
from sylog.server.app import Server
from conftest import read_timeline, until


def test_networks_and_mapped_addresses() -> None:
    a = Allowlist(parse_networks(["10.0.0.0/8", "192.0.2.7", "2001:db8::/32"]))
    assert a.allowed("10.1.2.3") and a.allowed("192.0.2.7") and a.allowed("2001:db8::1")
    assert a.allowed("::ffff:10.9.9.9")  # what a dual-stack socket reports for an IPv4 sender
    assert a.allowed("fe80::1%eth0") is False and a.allowed("2001:db9::1") is False
    assert not a.allowed("192.0.2.8") and not a.allowed("unknown") and not a.allowed("")
    assert a._cache["10.1.2.3"] is True  # the second check is a dict lookup


def test_bad_entries_name_the_key() -> None:
    with pytest.raises(ValueError, match=r"listen.tcp_allow\[1\]: '10.0.0.300' is not an address or CIDR"):
        parse_networks(["10.0.0.0/8", "10.0.0.300"], "listen.tcp_allow")


def test_per_listener_list_replaces_the_common_one() -> None:
    cfg = apply_overrides(Config(), {"listen.allow": ["10.0.0.0/8"], "listen.udp_allow": ["127.0.0.1"]})
    acc = Access.from_listen_config(cfg.listen)
    assert acc.get("udp").allowed("127.0.0.1") and not acc.get("udp").allowed("10.0.0.1")
    assert acc.get("tcp").allowed("10.0.0.1") and not acc.get("tcp").allowed("127.0.0.1")
    assert Access.from_listen_config(Config().listen).get("tls") is None  # nothing configured: everyone


def test_deny_log_is_rate_limited_with_a_count(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    dl = DenyLog(logging.getLogger("sylog.test"), interval=10.0, clock=lambda: now[0])
    with caplog.at_level("WARNING", logger="sylog.test"):
        assert dl.denied("udp", "192.0.2.1")
        for _ in range(500):
            assert not dl.denied("udp", "192.0.2.1")
        now[0] += 10.5
        assert dl.denied("tcp", "192.0.2.2")
    assert len(caplog.records) == 2
    assert "(501 denials since the last such line)" in caplog.records[1].getMessage()


def test_serve_flag_and_config_errors(tmp_path: Path) -> None:
    from sylog.cli import main

    p = tmp_path / "c.toml"
    p.write_text('[listen]\nnetconsole_allow = ["not-a-net"]\n')
    from sylog.commands.serve import validate

    with pytest.raises(ConfigError, match=r"listen.netconsole_allow\[0\]"):
        validate(apply_overrides(Config(), {"listen.netconsole_allow": ["not-a-net"]}))
    assert main(["serve", "--config", str(p), "--data-dir", str(tmp_path / "d"), "--udp", "none",
                 "--tcp", "none"]) == 2
    assert main(["serve", "--allow", "300.1.1.1/8", "--data-dir", str(tmp_path / "d"), "--udp", "none",
                 "--tcp", "none"]) == 2


# ---- listeners ------------------------------------------------------------------------------------------------

@pytest.fixture
def server(inproc_server: Any) -> Any:
    async def start(**over: Any) -> Server:
        return await inproc_server(**{"listen.netconsole": ["127.0.0.1:0"], **over})

    return start


def msg(host: str, text: str) -> bytes:
    return f"<13>1 2026-11-25T10:00:00Z {host} app 1 - - {text}".encode()


async def test_denied_datagrams_and_connections_are_counted_and_dropped(server, tmp_path: Path) -> None:
    srv = await server(**{"listen.allow": ["10.0.0.0/8"]})
    data = tmp_path / "data"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for i in range(5):
            s.sendto(msg("udp-denied", f"d{i}"), srv.udp_addresses[0][:2])
        s.sendto(b"6,1,1,-;kernel says hi\n", srv.netconsole_addresses[0][:2])
    await until(lambda: srv.counters.denied_datagrams == 6, what="6 denied datagrams")
    r, w = await asyncio.open_connection(*srv.tcp_addresses[0][:2])
    w.write(b"%d %s" % (len(msg("tcp-denied", "x")), msg("tcp-denied", "x")))
    assert await asyncio.wait_for(r.read(), 5) == b""  # closed by the server at once
    w.close()
    await until(lambda: srv.counters.denied_connections == 1, what="denied connection counted")
    assert srv.counters.received == 0 and srv.counters.conn_accepted == 0
    assert not (data / "timelines").exists() or not any((data / "timelines").iterdir())


async def test_allowed_sender_passes_and_per_listener_list_applies(server, tmp_path: Path) -> None:
    srv = await server(**{"listen.allow": ["10.0.0.0/8"], "listen.udp_allow": ["127.0.0.0/8"]})
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(msg("udp-ok", "allowed by udp_allow"), srv.udp_addresses[0][:2])
    await until(lambda: read_timeline(tmp_path / "data", "udp-ok"), what="udp line")
    r, w = await asyncio.open_connection(*srv.tcp_addresses[0][:2])
    assert await asyncio.wait_for(r.read(), 5) == b""  # tcp still follows `allow`
    w.close()
    assert srv.counters.denied_connections == 1


async def test_ipv6_listener_with_ipv6_allowlist(server, tmp_path: Path) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        srv = await server(**{"listen.udp": ["[::1]:0"], "listen.tcp": ["[::1]:0"], "listen.netconsole": [],
                              "listen.allow": ["::1/128"]})
    except Exception as e:  # pragma: no cover - a machine without ::1
        pytest.skip(f"no ::1: {e}")
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
        s.sendto(msg("v6-ok", "hello"), srv.udp_addresses[0][:2])
    await until(lambda: read_timeline(tmp_path / "data", "v6-ok"), what="v6 line")
    assert srv.counters.denied_datagrams == 0

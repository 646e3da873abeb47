"""Prometheus endpoint: counters read at scrape time, parsed back with prometheus_client's own text parser."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from sylog.config import Config, apply_overrides
from sylog.server.app import Server
from conftest import until


async def http_get(addr: tuple[Any, ...], path: str = "/metrics") -> tuple[int, bytes, bytes]:
    r, w = await asyncio.open_connection(*addr[:2])
    w.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await w.drain()
    data = await asyncio.wait_for(r.read(), 10)
    w.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), head, body


def samples(body: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(body.decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


@pytest.fixture
def server(inproc_server: Any) -> Any:
    async def start(**over: Any) -> Server:
        base = {"listen.netconsole": ["127.0.0.1:0"], "metrics.listen": "127.0.0.1:0", "incidents.quiet": 1.0}
        base.update(over)
        return await inproc_server(**base)

    return start


def msg(host: str, text: str, app: str = "app", pri: int = 13) -> bytes:
    return f"<{pri}>1 2026-11-25T10:00:00Z {host} {app} 1 - - {text}".encode()


async def test_metrics_reflect_traffic_by_listener_and_incidents(server) -> None:
    srv = await server(**{"listen.allow": ["127.0.0.0/8"], "listen.netconsole_allow": ["10.0.0.0/8"]})
    assert srv.metrics_address is not None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for i in range(3):
            s.sendto(msg("m-host", f"u{i}"), srv.udp_addresses[0][:2])
        s.sendto(b"6,1,1,-;denied netconsole\n", srv.netconsole_addresses[0][:2])
    r, w = await asyncio.open_connection(*srv.tcp_addresses[0][:2])
    crash = [msg("m-host", "BUG: kernel NULL pointer dereference, address: 0000000000000008", "kernel", 4),
             msg("m-host", "Oops: 0000 [#1] PREEMPT SMP NOPTI", "kernel", 4), b"not syslog at all"]
    w.write(b"".join(b"%d %s" % (len(m), m) for m in crash[:2]) + crash[2] + b"\n")
    await w.drain()
    w.close()
    await until(lambda: srv.counters.received == 6 and srv.counters.denied_datagrams == 1, what="traffic")
    await until(lambda: srv.metrics_collector.incidents_by_kind, what="incident event")
    status, head, body = await http_get(srv.metrics_address)
    assert status == 200 and b"text/plain" in head
    m = samples(body)
    assert m[("sylog_messages_received_total", (("listener", "udp"),))] == 3
    assert m[("sylog_messages_received_total", (("listener", "tcp"),))] == 3
    assert m[("sylog_messages_received_total", (("listener", "netconsole"),))] == 0
    assert m[("sylog_messages_dropped_total", (("reason", "denied"),))] == 1
    assert m[("sylog_messages_malformed_total", ())] == 1
    assert m[("sylog_messages_parsed_total", (("format", "rfc5424"),))] == 5
    assert m[("sylog_connections_accepted_total", ())] == 1
    assert m[("sylog_incidents_opened_total", (("kind", "page-fault"),))] == 1
    for name in ("sylog_queue_depth", "sylog_loop_lag_max_seconds", "sylog_bytes_received_total",
                 "sylog_timeline_write_errors_total", "sylog_vmcores_linked_total", "sylog_connections_open"):
        assert any(k[0] == name for k in m), name


async def test_metrics_http_edges(server) -> None:
    srv = await server()
    assert (await http_get(srv.metrics_address, "/nope"))[0] == 404
    r, w = await asyncio.open_connection(*srv.metrics_address[:2])
    w.write(b"POST /metrics HTTP/1.0\r\n\r\n")
    assert (await asyncio.wait_for(r.read(), 5)).startswith(b"HTTP/1.0 405")
    w.close()
    r, w = await asyncio.open_connection(*srv.metrics_address[:2])  # an endless header line: cut off, no reply
    w.write(b"GET /" + b"a" * 20000)
    assert await asyncio.wait_for(r.read(), 5) == b""
    w.close()
    assert (await http_get(srv.metrics_address))[0] == 200  # still serving


async def test_metrics_off_by_default(tmp_path: Path) -> None:
    srv = Server(apply_overrides(Config(), {"data_dir": str(tmp_path / "d"), "listen.udp": [], "listen.tcp": [],
                                            "stats_interval": 0.0}))
    await srv.start()
    try:
        assert srv.metrics_server is None and srv.metrics_address is None
    finally:
        srv.request_stop()
        await srv.shutdown()


async def test_metrics_show_disk_fault_accounting(server) -> None:
    """The retry queue's figures (held kernel lines, lines lost to write errors) reach the scrape."""
    srv = await server()
    c = srv.counters
    c.write_failed, c.write_retry_queued, c.write_retry_written, c.write_retry_dropped = 7, 5, 3, 1
    c.write_retry_held = 1
    m = samples((await http_get(srv.metrics_address))[2])
    assert m[("sylog_timeline_lines_lost_total", ())] == 7
    assert m[("sylog_timeline_retry_lines_total", (("outcome", "queued"),))] == 5
    assert m[("sylog_timeline_retry_lines_total", (("outcome", "written"),))] == 3
    assert m[("sylog_timeline_retry_lines_total", (("outcome", "dropped"),))] == 1
    assert m[("sylog_timeline_retry_held", ())] == 1

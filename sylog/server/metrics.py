"""Prometheus metrics: the server's existing counters, read at scrape time (no per-message metrics call).

A custom collector turns :class:`~sylog.server.counters.Counters`, the incident engine's, the vmcore watcher's
and the netconsole decoder's figures into metric families when scraped; ``prometheus_client`` writes the text
format. The endpoint is a tiny HTTP/1.0 handler on the server's own event loop (a scrape is a few hundred
attribute reads: no thread needed), bounded in request size and time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

log = logging.getLogger("sylog.server")

MAX_REQUEST = 8192
REQUEST_TIMEOUT = 5.0

class SylogCollector:
    """Reads the server's figures when Prometheus scrapes."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.incidents_by_kind: dict[tuple[str, str], int] = {}  # (event, kind) -> count, from engine events

    def on_incident(self, event: str, incident: Any) -> None:
        """IncidentEngine listener (per incident event, not per message)."""
        kind = getattr(incident, "kind", None) or "unknown"
        key = (event, kind)
        self.incidents_by_kind[key] = self.incidents_by_kind.get(key, 0) + 1

    def describe(self) -> list[Metric]:
        return []  # unchecked collector: families are built at scrape time

    def collect(self) -> Iterator[Metric]:
        s = self.server
        c = s.counters
        d = c.as_dict()

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            return CounterMetricFamily(name, doc, value=value)

        m = CounterMetricFamily("sylog_messages_received", "messages accepted into the pipeline, by listener",
                                labels=["listener"])
        for lst, field in (("udp", "udp_messages"), ("tcp", "tcp_messages"), ("tls", "tls_messages"),
                           ("netconsole", "netconsole_messages")):
            m.add_metric([lst], d[field])
        yield m
        m = CounterMetricFamily("sylog_messages_parsed", "messages by the format they parsed as",
                                labels=["format"])
        for f in ("rfc5424", "rfc3164", "raw"):
            m.add_metric([f], d[f])
        yield m
        yield counter("sylog_messages_malformed", "messages that were not syslog (stored raw)", d["raw"])
        yield counter("sylog_messages_truncated", "messages cut to limits.max_message_size", d["truncated"])
        m = CounterMetricFamily("sylog_messages_dropped", "messages dropped, by reason", labels=["reason"])
        m.add_metric(["denied"], d["denied_datagrams"])
        m.add_metric(["udp_kernel"], d["udp_kernel_drops"])
        m.add_metric(["internal_error"], d["internal_errors"])
        m.add_metric(["shed"], d["dropped"] + d["shed_ordinary"])
        yield m
        yield counter("sylog_bytes_received", "bytes of accepted messages", d["bytes"])
        yield counter("sylog_tcp_bytes_read", "raw bytes read from TCP/TLS connections", d["bytes_read"])
        yield counter("sylog_framing_errors", "TCP connections closed on a framing error", d["framing_errors"])
        yield counter("sylog_udp_datagrams", "UDP datagrams received (syslog port)", d["udp_datagrams"])
        yield counter("sylog_netconsole_datagrams", "netconsole datagrams received", d["netconsole_datagrams"])
        yield counter("sylog_netconsole_fragments", "extended netconsole fragments", d["netconsole_fragments"])
        yield counter("sylog_netconsole_incomplete", "netconsole fragment sets emitted incomplete",
                      d["netconsole_incomplete"])
        yield counter("sylog_connections_accepted", "TCP/TLS connections accepted", d["conn_accepted"])
        m = CounterMetricFamily("sylog_connections_refused", "TCP/TLS connections refused or closed by sylog",
                                labels=["reason"])
        m.add_metric(["max_connections"], d["conn_refused"])
        m.add_metric(["max_connections_per_peer"], d["conn_refused_per_peer"])
        m.add_metric(["frame_timeout"], d["conn_frame_timeouts"])
        m.add_metric(["denied"], d["denied_connections"])
        m.add_metric(["idle"], d["conn_idle_closed"])
        m.add_metric(["tls_peer"], d["tls_peer_rejected"])
        yield m
        yield GaugeMetricFamily("sylog_connections_open", "TCP/TLS connections open", value=d["conn_open"])
        yield counter("sylog_tls_handshakes", "TLS handshakes begun", d["tls_handshakes"])
        yield counter("sylog_tls_sessions", "TLS sessions accepted (handshake done, peer permitted)",
                      d["tls_sessions"])
        yield counter("sylog_timeline_lines_written", "timeline lines written", d["written"])
        yield counter("sylog_timeline_write_errors", "timeline write errors", d["write_errors"])
        yield counter("sylog_timeline_lines_lost", "timeline lines a write error lost (ordinary lines, and kernel "
                      "lines pushed out of a full retry queue)", d["write_failed"])
        m = CounterMetricFamily("sylog_timeline_retry_lines", "kernel lines held after a failed write, by outcome",
                                labels=["outcome"])
        m.add_metric(["queued"], d["write_retry_queued"])
        m.add_metric(["written"], d["write_retry_written"])
        m.add_metric(["dropped"], d["write_retry_dropped"])
        yield m
        yield GaugeMetricFamily("sylog_timeline_retry_held", "kernel lines held in memory until writes work again",
                                value=d["write_retry_held"])
        yield counter("sylog_observer_errors", "observer (incident engine, ...) failures", d["observer_errors"])
        yield counter("sylog_reloads", "configuration reloads (SIGHUP) applied", d["reloads"])
        yield counter("sylog_reload_errors", "configuration reloads refused (old config kept)", d["reload_errors"])
        yield GaugeMetricFamily("sylog_queue_depth", "timeline lines waiting to be written",
                                value=s.writer.pending_lines)
        yield GaugeMetricFamily("sylog_loop_lag_max_seconds", "worst lateness of the 100 ms tick so far",
                                value=d["loop_lag_max_ms"] / 1000.0)
        yield GaugeMetricFamily("sylog_loop_lag_seconds", "lateness of the last 100 ms tick",
                                value=getattr(s, "loop_lag_last", 0.0))
        eng = getattr(s, "engine", None)
        est: dict[str, int] = {}
        if eng is not None:
            try:
                est = eng.stats()
            except Exception:
                est = {}
        m = CounterMetricFamily("sylog_incidents_opened", "incidents opened, by kind", labels=["kind"])
        opened = {k: v for (ev, k), v in self.incidents_by_kind.items() if ev in ("opened", "open")}
        for kind, v in sorted(opened.items()):
            m.add_metric([kind], v)
        yield m
        yield counter("sylog_incident_engine_opened", "incidents opened (the engine's own count, all kinds)",
                      est.get("incidents_opened", 0))
        yield counter("sylog_incident_write_errors", "incident file write errors", est.get("write_errors", 0))
        vm = getattr(s, "vmcore_watcher", None)
        vst = vm.stats() if vm is not None and hasattr(vm, "stats") else {}
        yield counter("sylog_vmcores_linked", "kernel dumps linked to an incident", vst.get("vmcore_linked", 0))
        yield counter("sylog_vmcores_created", "dump-only incidents created", vst.get("vmcore_created", 0))


def make_registry(server: Any) -> tuple[CollectorRegistry, SylogCollector]:
    reg = CollectorRegistry(auto_describe=False)
    col = SylogCollector(server)
    reg.register(col)  # type: ignore[arg-type]
    return reg, col


class MetricsHttp:
    """``GET /metrics`` on the event loop; anything else 404. One small request per connection."""

    def __init__(self, registry: CollectorRegistry, counters_cb: Callable[[], None] | None = None) -> None:
        self.registry = registry
        self.before_scrape = counters_cb
        self.scrapes = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
                return
            line = head.split(b"\r\n", 1)[0].split()
            if len(line) < 2 or line[0] not in (b"GET", b"HEAD"):
                await self._reply(writer, b"405 Method Not Allowed", b"text/plain", b"GET /metrics\n")
                return
            path = line[1].split(b"?", 1)[0]
            if path not in (b"/metrics", b"/"):
                await self._reply(writer, b"404 Not Found", b"text/plain", b"see /metrics\n")
                return
            if self.before_scrape is not None:
                self.before_scrape()
            body = generate_latest(self.registry)
            self.scrapes += 1
            await self._reply(writer, b"200 OK", CONTENT_TYPE_LATEST.encode(), body, head_only=line[0] == b"HEAD")
        except (ConnectionError, OSError):
            pass
        except Exception:
            log.exception("metrics request failed")
        finally:
            writer.close()

    @staticmethod
    async def _reply(writer: asyncio.StreamWriter, status: bytes, ctype: bytes, body: bytes,
                     head_only: bool = False) -> None:
        writer.write(b"HTTP/1.0 " + status + b"\r\nContent-Type: " + ctype + b"\r\nContent-Length: "
                     + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + (b"" if head_only else body))
        await asyncio.wait_for(writer.drain(), REQUEST_TIMEOUT)

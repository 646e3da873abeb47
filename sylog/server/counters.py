"""All server counters in one place (later exposed as Prometheus metrics and by ``sylog stats``).

Plain integer attributes: the event loop thread increments most of them, the timeline writer thread only its own
(``written*``, ``write_*``); under the GIL a reader sees a consistent-enough snapshot for monitoring.
"""

from __future__ import annotations

from typing import ClassVar


class Counters:
    """Monotonic counters, plus ``conn_open`` (a gauge)."""

    FIELDS: ClassVar[tuple[str, ...]] = (
        "received",          # messages accepted into the pipeline (TCP frames + UDP datagrams)
        "bytes",             # their bytes
        "bytes_read",        # raw bytes read from TCP connections
        "rfc5424", "rfc3164", "raw",  # parsed by format (raw: not syslog, stored marked raw)
        "truncated",         # messages cut to max_message_size
        "framing_errors",    # TCP connections closed because the stream could not be framed
        "framing_fallbacks",  # digit-led frames without '<' after the count, read as LF lines
        "udp_datagrams", "udp_empty", "udp_errors",
        "udp_kernel_drops",  # datagrams the kernel dropped on our sockets (rcvbuf full), from /proc/net/udp
        "shed_ordinary",     # UDP datagrams read but not processed: the reader was behind, kernel lines went first
        "conn_accepted", "conn_open", "conn_refused", "conn_idle_closed",
        "conn_refused_per_peer",  # TCP/TLS connections refused: limits.max_connections_per_peer open from that IP
        "conn_frame_timeouts",  # TCP/TLS connections closed: a frame incomplete past limits.frame_timeout (slowloris)
        "written", "written_bytes", "write_errors", "write_failed",
        "torn_lines_ended",  # timeline files found ending in a cut-off line (kill mid-write) and ended
        "write_retry_queued",   # kernel lines a failed timeline write could not store, held for retry
        "write_retry_written",  # held lines written later (also in written)
        "write_retry_dropped",  # held lines dropped: retry queue full or shutdown (also in write_failed)
        "write_retry_held",     # gauge: lines held for retry right now
        "dropped",           # messages dropped on purpose (load shedding; none yet)
        "tcp_pauses",        # times TCP reading paused because the timeline writer fell behind
        "turn_yields",       # busy connections that yielded the rest of a loop turn (fairness budget)
        "observer_errors", "internal_errors",
        "tcp_messages", "tls_messages", "udp_messages",  # messages by listener kind (netconsole: below)
        "denied_datagrams",  # UDP/netconsole datagrams from senders outside the allowlist (dropped)
        "denied_connections",  # TCP/TLS connections from senders outside the allowlist (closed at once)
        "tls_handshakes",    # TLS handshakes begun (ClientHello seen)
        "tls_sessions",      # TLS handshakes completed and accepted (handshakes - sessions: failed/refused)
        "tls_peer_rejected",  # completed handshakes whose client name is not in tls.permitted_peers (closed)
        "netconsole_datagrams", "netconsole_messages", "netconsole_fragments", "netconsole_reassembled",
        "netconsole_incomplete",  # fragment sets that timed out or were evicted (emitted with what arrived)
        "kernel_dups",       # kernel lines that came by both netconsole and syslog: stored twice, fed to the
        #                      incident engine once (sylog.server.dedup)
        "reloads", "reload_errors",  # SIGHUP configuration reloads done / refused (bad file: old config kept)
        "loop_lag_max_ms",   # worst lateness of the 100 ms observer tick (a gauge: event-loop starvation)
    )
    __slots__ = FIELDS

    def __init__(self) -> None:
        for f in self.FIELDS:
            setattr(self, f, 0)

    def as_dict(self) -> dict[str, int]:
        return {f: getattr(self, f) for f in self.FIELDS}

    def summary(self, prev: dict[str, int] | None = None) -> str:
        """One log line: every non-zero counter (``received`` and ``written`` always), rates vs ``prev``."""
        d = self.as_dict()
        parts = []
        for k, v in d.items():
            if v or k in ("received", "written", "conn_open"):
                parts.append(f"{k}={v}")
        return " ".join(parts)

"""Configuration: one msgspec Struct tree, loaded from TOML, overridden by command-line flags.

Every flag of ``sylog serve`` has a key here. Unknown keys and wrong types are errors that name the key path
(msgspec reports e.g. ``Object contains unknown field `quite` - at `$.incidents```).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from sylog.alerts.config import AlertConfig  # [[alert]] entries: documented beside the hooks

PosFloat = Annotated[float, Meta(gt=0)]
NonNegFloat = Annotated[float, Meta(ge=0)]


class ConfigError(Exception):
    """A configuration file that cannot be used; the message names the file and the key."""


class _Section(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class ListenConfig(_Section):
    udp: list[str] = msgspec.field(default_factory=lambda: ["0.0.0.0:514"])  # "none" in the list: disabled
    tcp: list[str] = msgspec.field(default_factory=lambda: ["0.0.0.0:514"])
    loop: Literal["uvloop", "asyncio"] = "uvloop"
    # SO_REUSEPORT on every listener: several sylog processes may share the ports (the kernel spreads
    # connections/datagrams by flow hash). The base for multi-core workers; off by default.
    reuse_port: bool = False
    netconsole: list[str] = []  # kernel netconsole (UDP, plain and extended format); off by default
    tls: list[str] = []  # RFC 5425 syslog over TLS; needs [tls] cert and key
    # Sender allowlists (CIDRs or addresses): ``allow`` for every listener; a non-empty per-listener list
    # replaces it for that listener. Empty everywhere: everyone may send. Reloaded on SIGHUP.
    allow: list[str] = []
    udp_allow: list[str] = []
    tcp_allow: list[str] = []
    tls_allow: list[str] = []
    netconsole_allow: list[str] = []


class TlsConfig(_Section):
    cert: str = ""  # PEM server certificate (+ chain)
    key: str = ""  # PEM private key
    client_ca: str = ""  # set: mutual TLS (client certificate required, signed by this CA)
    permitted_peers: list[str] = []  # with client_ca: accepted client names (SAN DNS / CN; "*.example.com")


class MetricsConfig(_Section):
    listen: str = ""  # "ADDR:PORT" of the Prometheus endpoint; empty: off


class LimitsConfig(_Section):
    # longer messages are truncated (and counted)
    max_message_size: Annotated[int, Meta(ge=16, le=64 * 1024 * 1024)] = 64 * 1024
    tcp_idle_timeout: NonNegFloat = 600.0  # seconds without a byte before a TCP connection is closed (0: never)
    # beyond this many open TCP+TLS connections (all stream listeners together) new ones are refused (counted)
    max_connections: Annotated[int, Meta(ge=1)] = 20000
    # ... and beyond this many from one sender address (0: no per-address cap); NAT gateways hide many hosts
    max_connections_per_peer: Annotated[int, Meta(ge=0)] = 4096
    # seconds an incomplete TCP frame may stay pending (slowloris): then it is stored as it is and the connection
    # closed (counted); 0: no bound (only tcp_idle_timeout)
    frame_timeout: NonNegFloat = 60.0
    udp_rcvbuf: Annotated[int, Meta(ge=0)] = 8 * 1024 * 1024  # SO_RCVBUF asked for on UDP sockets (0: default)


class TimelineConfig(_Section):
    flush_interval: Annotated[float, Meta(gt=0, le=60)] = 0.2  # seconds; batches are written at least this often
    max_open_files: Annotated[int, Meta(ge=1)] = 1024  # open timeline files kept cached (LRU)
    # back-pressure: the busiest TCP connections pause while this many lines wait to be written (no TCP loss);
    # light ones are read up to twice this many (memory bound). 50k, not 200k: at 10,000 hosts the backlog (two
    # batches, ~0.2 KB a line) was the largest part of the RSS peak (185 -> 119 MB); no throughput change measured
    # at 1,000 hosts
    max_pending_lines: Annotated[int, Meta(ge=1000)] = 50_000
    # disk full / failing: kernel lines a write could not store are held in memory and retried (ordinary lines
    # are counted lost); the queue is bounded by both (0 lines: hold nothing)
    retry_queue_lines: Annotated[int, Meta(ge=0)] = 100_000
    retry_queue_bytes: Annotated[int, Meta(ge=0)] = 32 * 1024 * 1024


class IncidentsConfig(_Section):
    quiet: float = 30.0  # an open incident closes after the host is quiet this long
    context_lines: int = 200  # last lines per host kept as last-gasp context
    refresh_interval: float = 0.5  # min seconds between rewrites of an open incident's files


class VmcoreConfig(_Section):
    dirs: list[str] = []
    interval: float = 30.0
    window: float = 7200.0  # seconds: how far before a dump an incident may be to link to it
    settle: NonNegFloat = 300.0  # seconds a finished dump waits for the host's late syslog lines before a time
    #                              match or a dump-only incident (a signature match links at once)


class Config(_Section):
    data_dir: str = "./sylog-data"
    stats_interval: NonNegFloat = 60.0  # seconds between counter summary log lines (0 disables)
    listen: ListenConfig = msgspec.field(default_factory=ListenConfig)
    limits: LimitsConfig = msgspec.field(default_factory=LimitsConfig)
    timeline: TimelineConfig = msgspec.field(default_factory=TimelineConfig)
    incidents: IncidentsConfig = msgspec.field(default_factory=IncidentsConfig)
    vmcore: VmcoreConfig = msgspec.field(default_factory=VmcoreConfig)
    tls: TlsConfig = msgspec.field(default_factory=TlsConfig)
    metrics: MetricsConfig = msgspec.field(default_factory=MetricsConfig)
    hosts: dict[str, str] = {}  # source IP -> host name (netconsole sends no host name); reloaded on SIGHUP
    alert: list[AlertConfig] = msgspec.field(default_factory=list)  # [[alert]] hooks (sylog.alerts)


def load_config(path: str | Path | None) -> Config:
    """Read and validate a TOML file (``None``: the defaults)."""
    if path is None:
        return Config()
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ConfigError(f"{p}: cannot read: {e.strerror or e}") from None
    try:
        return msgspec.toml.decode(data, type=Config)
    except msgspec.ValidationError as e:
        raise ConfigError(f"{p}: {e}") from None
    except msgspec.DecodeError as e:
        raise ConfigError(f"{p}: not valid TOML: {e}") from None


def apply_overrides(cfg: Config, overrides: dict[str, Any], source: str = "command line") -> Config:
    """``cfg`` with dotted keys replaced (``{"limits.max_message_size": 1024}``), validated again, so a bad flag
    value is reported like a bad file value: naming the key."""
    if not overrides:
        return cfg
    data = msgspec.to_builtins(cfg)
    for key, value in overrides.items():
        node = data
        *path, last = key.split(".")
        for p in path:
            node = node[p]
        node[last] = value
    try:
        return msgspec.convert(data, type=Config)
    except msgspec.ValidationError as e:
        raise ConfigError(f"{source}: {e}") from None

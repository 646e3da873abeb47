"""Configuration: one msgspec Struct tree, loaded from TOML, overridden by command-line flags.

Every flag of ``sylog serve`` has a key here. Unknown keys and wrong types are errors that name the key path
(msgspec reports e.g. ``Object contains unknown field `quite` - at `$.incidents```).
"""

from __future__ import annotations

from pathlib import Path

import msgspec


class ConfigError(Exception):
    """A configuration file that cannot be used; the message names the file and the key."""


class _Section(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class ListenConfig(_Section):
    udp: list[str] = ["0.0.0.0:514"]
    tcp: list[str] = ["0.0.0.0:514"]
    loop: str = "uvloop"  # uvloop | asyncio


class LimitsConfig(_Section):
    max_message_size: int = 64 * 1024  # longer messages are truncated (and counted)
    tcp_idle_timeout: float = 600.0  # seconds without a byte before a TCP connection is closed
    max_connections: int = 20000
    udp_rcvbuf: int = 8 * 1024 * 1024  # SO_RCVBUF asked for on UDP sockets


class TimelineConfig(_Section):
    flush_interval: float = 0.2  # seconds; batches are written at least this often
    max_open_files: int = 1024  # open timeline files kept cached (LRU)


class IncidentsConfig(_Section):
    quiet: float = 30.0  # an open incident closes after the host is quiet this long
    context_lines: int = 200  # last lines per host kept as last-gasp context
    refresh_interval: float = 0.5  # min seconds between rewrites of an open incident's files


class VmcoreConfig(_Section):
    dirs: list[str] = []
    interval: float = 30.0
    window: float = 7200.0  # seconds: how far before a dump an incident may be to link to it


class Config(_Section):
    data_dir: str = "./sylog-data"
    stats_interval: float = 60.0  # seconds between counter summary log lines (0 disables)
    listen: ListenConfig = msgspec.field(default_factory=ListenConfig)
    limits: LimitsConfig = msgspec.field(default_factory=LimitsConfig)
    timeline: TimelineConfig = msgspec.field(default_factory=TimelineConfig)
    incidents: IncidentsConfig = msgspec.field(default_factory=IncidentsConfig)
    vmcore: VmcoreConfig = msgspec.field(default_factory=VmcoreConfig)


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

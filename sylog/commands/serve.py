"""``sylog serve``: run the receiver. Flags override the config file; every flag has a config key."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from typing import Any

from sylog.config import Config, ConfigError, apply_overrides, load_config

log = logging.getLogger("sylog.server")


def add_parser(sub: Any) -> None:
    p = sub.add_parser("serve", help="receive syslog over UDP/TCP/TLS and kernel netconsole into per-host timelines",
                       description="Receive syslog (UDP, TCP with RFC 6587 framing, TLS per RFC 5425) and kernel "
                                   "netconsole into DATA/timelines/<host>/. Flags override values from --config; "
                                   "SIGHUP re-reads --config (allowlists, [hosts], incidents.quiet, "
                                   "stats_interval apply live) and reopens the timeline files.")
    p.add_argument("--udp", action="append", metavar="ADDR:PORT",
                   help="UDP listener (repeatable; 'none' disables; IPv6 as [::]:514). Default 0.0.0.0:514")
    p.add_argument("--tcp", action="append", metavar="ADDR:PORT",
                   help="TCP listener (repeatable; 'none' disables). Default 0.0.0.0:514")
    p.add_argument("--netconsole", action="append", metavar="ADDR:PORT",
                   help="kernel netconsole listener, UDP (repeatable; off by default; 6666 is usual)  "
                        "[listen.netconsole]")
    p.add_argument("--tls", action="append", metavar="ADDR:PORT",
                   help="RFC 5425 syslog-over-TLS listener (repeatable; off by default; 6514 is usual)  [listen.tls]")
    p.add_argument("--tls-cert", metavar="FILE", help="PEM server certificate (+ chain)  [tls.cert]")
    p.add_argument("--tls-key", metavar="FILE", help="PEM server private key  [tls.key]")
    p.add_argument("--tls-client-ca", metavar="FILE",
                   help="mutual TLS: clients need a certificate signed by this CA  [tls.client_ca]")
    p.add_argument("--allow", action="append", metavar="CIDR",
                   help="senders every listener accepts (repeatable; default everyone)  [listen.allow]")
    p.add_argument("--metrics", metavar="ADDR:PORT",
                   help="Prometheus endpoint http://ADDR:PORT/metrics (off by default)  [metrics.listen]")
    p.add_argument("--data-dir", metavar="DIR", help="data directory (default ./sylog-data)  [data_dir]")
    p.add_argument("--config", metavar="FILE", help="TOML configuration file")
    p.add_argument("--loop", choices=("uvloop", "asyncio"), help="event loop (default uvloop)  [listen.loop]")
    p.add_argument("--max-message-size", type=int, metavar="BYTES",
                   help="longer messages are truncated and counted (default 65536)  [limits.max_message_size]")
    p.add_argument("--incident-quiet", type=float, metavar="SECONDS",
                   help="an open incident closes after the host is quiet this long  [incidents.quiet]")
    p.add_argument("--context-lines", type=int, metavar="N",
                   help="last lines per host kept as crash context  [incidents.context_lines]")
    p.add_argument("--vmcore-dir", action="append", metavar="DIR", help="watch for kernel dumps (repeatable)  "
                                                                        "[vmcore.dirs]")
    p.add_argument("--vmcore-interval", type=float, metavar="SECONDS", help="vmcore scan interval  "
                                                                            "[vmcore.interval]")
    p.add_argument("--stats-interval", type=float, metavar="SECONDS",
                   help="seconds between counter summary lines on stderr, 0 disables  [stats_interval]")
    p.set_defaults(func=run)


def _listeners(values: list[str] | None) -> list[str] | None:
    if values is None:
        return None
    return [] if any(v.strip().lower() == "none" for v in values) else values


def build_config(args: argparse.Namespace) -> Config:
    """Config file (or defaults) + flags, validated; ConfigError names the key."""
    cfg = load_config(args.config)
    o = flag_overrides(args)
    cfg = apply_overrides(cfg, o)
    return validate(cfg)


def flag_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The dotted config keys the command-line flags set (also re-applied over the file on SIGHUP)."""
    o: dict[str, Any] = {}
    for key, val in (
        ("listen.udp", _listeners(args.udp)),
        ("listen.tcp", _listeners(args.tcp)),
        ("data_dir", args.data_dir),
        ("listen.loop", args.loop),
        ("limits.max_message_size", args.max_message_size),
        ("incidents.quiet", args.incident_quiet),
        ("incidents.context_lines", args.context_lines),
        ("vmcore.dirs", args.vmcore_dir),
        ("vmcore.interval", args.vmcore_interval),
        ("stats_interval", args.stats_interval),
        ("listen.netconsole", _listeners(getattr(args, "netconsole", None))),
        ("listen.tls", _listeners(getattr(args, "tls", None))),
        ("tls.cert", getattr(args, "tls_cert", None)),
        ("tls.key", getattr(args, "tls_key", None)),
        ("tls.client_ca", getattr(args, "tls_client_ca", None)),
        ("listen.allow", getattr(args, "allow", None)),
        ("metrics.listen", _metrics(getattr(args, "metrics", None))),
    ):
        if val is not None:
            o[key] = val
    return o


def _metrics(v: str | None) -> str | None:
    if v is None:
        return None
    return "" if v.strip().lower() == "none" else v


def validate(cfg: Config) -> Config:
    """Checks msgspec cannot make: addresses, CIDRs, the hosts map, TLS files named when TLS listens."""
    from sylog.server.allow import Access
    from sylog.server.hostmap import parse_hosts
    from sylog.server.listeners import parse_address

    try:
        Access.from_listen_config(cfg.listen)
        parse_hosts(cfg.hosts)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if cfg.listen.tls and any(s.strip().lower() != "none" for s in cfg.listen.tls):
        if not cfg.tls.cert or not cfg.tls.key:
            raise ConfigError("listen.tls: a TLS listener needs tls.cert and tls.key (--tls-cert, --tls-key)")
    if cfg.tls.permitted_peers and not cfg.tls.client_ca:
        raise ConfigError("tls.permitted_peers: names are checked on client certificates, which only mutual TLS "
                          "asks for: set tls.client_ca (--tls-client-ca) too")
    if cfg.metrics.listen:
        try:
            parse_address(cfg.metrics.listen)
        except ValueError as e:
            raise ConfigError(f"metrics.listen: {e}") from None
    for kind in ("udp", "tcp", "netconsole", "tls"):
        specs = getattr(cfg.listen, kind)
        if any(s.strip().lower() == "none" for s in specs):
            specs = []
            cfg.listen.__setattr__(kind, specs)
        for spec in specs:
            try:
                parse_address(spec)
            except ValueError as e:
                raise ConfigError(f"listen.{kind}: {e}") from None
    return cfg


def setup_logging() -> None:
    root = logging.getLogger("sylog")
    if not root.handlers:
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(logging.Formatter("%(asctime)s sylog[%(process)d] %(levelname)s %(message)s"))
        root.addHandler(h)
    root.setLevel(logging.INFO)
    root.propagate = False


def run(args: argparse.Namespace) -> int:
    try:
        cfg = build_config(args)
    except ConfigError as e:
        print(f"sylog serve: configuration error: {e}", file=sys.stderr)
        return 2
    setup_logging()
    factory = None
    if cfg.listen.loop == "uvloop":
        try:
            import uvloop

            factory = uvloop.new_event_loop
        except ImportError:
            log.warning("uvloop is not installed; using the asyncio loop")
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(_serve(cfg, args.config, flag_overrides(args)))


async def _serve(cfg: Config, config_path: str | None = None, overrides: dict[str, Any] | None = None) -> int:
    from sylog.server.app import BindError, Server

    srv = Server(cfg)
    srv.config_path = config_path
    srv.config_overrides = overrides or {}
    loop = asyncio.get_running_loop()
    # Before binding: whoever sees our port open may signal us at once, and must get a clean stop.
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, srv.request_stop)
    loop.add_signal_handler(signal.SIGHUP, srv.reopen)
    try:
        await srv.start()
    except BindError as e:
        print(f"sylog serve: {e}", file=sys.stderr)
        return 1
    await srv.run()
    return 0

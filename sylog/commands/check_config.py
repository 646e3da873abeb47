"""``sylog check-config FILE...``: validate a configuration file without starting anything.

Two passes: :func:`sylog.config.load_config` (TOML syntax, unknown keys, wrong types - msgspec names the key path),
then semantic checks that only make sense on the machine that will run the server: listener addresses parse,
ports are in range, the data directory can be created, vmcore directories exist, alert hooks can run. Problems are
printed one per line as ``FILE: key.path: message``; a file that passes prints ``FILE: OK``. Exit status: 0 when
every file is OK (warnings allowed), 2 otherwise - so ``sylog check-config /etc/sylog/sylog.toml && systemctl
reload sylog`` never reloads a broken file.

The checks walk the Config tree generically where they can (every ``allow`` list is checked as CIDRs, every
``*_file``/``tls_cert``/``tls_key``/``tls_client_ca`` value must be a readable file, every ``listen.*`` list and
every ``*.listen``/``*.address`` string as ADDR:PORT), so keys added to :mod:`sylog.config` later are covered
without changing this module.
"""

from __future__ import annotations

import argparse
import ipaddress
import math
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec

from sylog.config import Config, ConfigError, load_config

_FILE_KEYS = {"tls_cert", "tls_key", "tls_client_ca", "cert", "key", "client_ca", "ca_file", "cert_file",
              "key_file"}
_ADDRESS_KEYS = {"listen", "address", "bind"}


@dataclass(frozen=True)
class Problem:
    key: str  # dotted key path, e.g. "listen.tcp[1]"
    message: str
    warning: bool = False


def parse_listen_address(spec: str) -> tuple[str, int]:
    """``ADDR:PORT`` / ``[V6]:PORT`` / ``:PORT`` / ``PORT`` -> (host, port): the server's own parser (so
    check-config and serve agree), plus a check that the host is an IP address or a plausible name."""
    from sylog.server.listeners import parse_address  # lazy: keeps `sylog check-config` start-up light

    host, port = parse_address(spec)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not host or any(c.isspace() or c in "/[]" for c in host):
            raise ValueError(f"{spec!r}: {host!r} is neither an IP address nor a host name") from None
    return host, port


def check(cfg: Config) -> list[Problem]:
    """Semantic problems of a loaded configuration (errors and warnings), in key order."""
    out: list[Problem] = []
    _check_listen(cfg, out)
    _walk(msgspec.to_builtins(cfg), "", out)
    _check_data_dir(cfg.data_dir, out)
    _check_positive(cfg, out)
    for i, d in enumerate(cfg.vmcore.dirs):
        key = f"vmcore.dirs[{i}]"
        p = Path(d)
        if not p.exists():
            out.append(Problem(key, f"{d}: does not exist (yet); the watcher skips it until it does", warning=True))
        elif not p.is_dir():
            out.append(Problem(key, f"{d}: not a directory"))
        elif not os.access(p, os.R_OK | os.X_OK):
            out.append(Problem(key, f"{d}: not readable by this user", warning=True))
    _check_alerts(cfg, out)
    return out


def _check_listen(cfg: Config, out: list[Problem]) -> None:
    seen: dict[tuple[str, str, int], str] = {}
    # Every list-of-strings under [listen] is a list of listener addresses (udp, tcp, and tls/netconsole when the
    # server grows them); "none" disables a listener kind.
    for name in getattr(cfg.listen, "__struct_fields__", ()):
        value = getattr(cfg.listen, name)
        specs = [value] if isinstance(value, str) and name not in ("loop",) and ":" in value else value
        if not isinstance(specs, list) or not all(isinstance(s, str) for s in specs):
            continue
        if name in ("allow",) or name.endswith("_allow"):
            continue
        for i, spec in enumerate(specs):
            key = f"listen.{name}[{i}]" if isinstance(value, list) else f"listen.{name}"
            if spec.strip().lower() == "none":
                continue
            try:
                host, port = parse_listen_address(spec)
            except ValueError as e:
                out.append(Problem(key, str(e)))
                continue
            if port == 0:
                out.append(Problem(key, f"{spec!r}: port 0 picks a random port; senders cannot find it",
                                   warning=True))
            proto = "udp" if name in ("udp", "netconsole") else "tcp"
            where = (proto, host, port)
            if where in seen and port != 0:
                out.append(Problem(key, f"{spec!r}: {proto} {host}:{port} is already used by {seen[where]}"))
            seen.setdefault(where, key)


def _walk(node: Any, path: str, out: list[Problem]) -> None:
    """Generic checks by key name anywhere in the tree: CIDR allowlists, certificate/key files, addresses."""
    if isinstance(node, dict):
        for k, v in node.items():
            key = f"{path}.{k}" if path else str(k)
            if k == "allow" or str(k).endswith("_allow"):
                _check_allow(v, key, out)
            elif k in _FILE_KEYS and isinstance(v, str) and v:
                _check_file(v, key, out)
            elif k in _ADDRESS_KEYS and isinstance(v, str) and v and not path.startswith("listen"):
                if v.strip().lower() != "none":
                    try:
                        parse_listen_address(v)
                    except ValueError as e:
                        out.append(Problem(key, str(e)))
            else:
                _walk(v, key, out)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _walk(v, f"{path}[{i}]", out)


def _check_allow(value: Any, key: str, out: list[Problem]) -> None:
    if not isinstance(value, list):
        return
    for i, cidr in enumerate(value):
        try:
            ipaddress.ip_network(str(cidr), strict=False)
        except ValueError:
            out.append(Problem(f"{key}[{i}]", f"{cidr!r}: not an address or CIDR network (10.0.0.0/8, 2001:db8::/32)"))


def _check_file(value: str, key: str, out: list[Problem]) -> None:
    p = Path(value)
    if not p.is_file():
        out.append(Problem(key, f"{value}: no such file"))
    elif not os.access(p, os.R_OK):
        out.append(Problem(key, f"{value}: not readable by this user (the service user must read it)", warning=True))


def _check_data_dir(data_dir: str, out: list[Problem]) -> None:
    p = Path(data_dir)
    if not p.is_absolute():
        out.append(Problem("data_dir", f"{data_dir}: relative path; it depends on the working directory the "
                                       "server is started in", warning=True))
    if p.exists():
        if not p.is_dir():
            out.append(Problem("data_dir", f"{data_dir}: exists and is not a directory"))
        elif not os.access(p, os.W_OK | os.X_OK):
            out.append(Problem("data_dir", f"{data_dir}: not writable by this user (the service user must write it)",
                               warning=True))
        return
    # Not there yet: the server creates it (mkdir -p), so the nearest existing ancestor must be a directory.
    parent = p.absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        out.append(Problem("data_dir", f"{data_dir}: cannot be created: {parent} is not a directory"))
    elif not os.access(parent, os.W_OK | os.X_OK):
        out.append(Problem("data_dir", f"{data_dir}: does not exist and {parent} is not writable by this user",
                           warning=True))


def _check_positive(cfg: Config, out: list[Problem]) -> None:
    # Keys without a range in their type: a zero or negative value would spin a loop or close incidents at once.
    for key, value in (("incidents.quiet", cfg.incidents.quiet),
                       ("incidents.refresh_interval", cfg.incidents.refresh_interval),
                       ("vmcore.interval", cfg.vmcore.interval), ("vmcore.window", cfg.vmcore.window)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            out.append(Problem(key, f"{value!r}: must be a number > 0"))
    if cfg.incidents.context_lines < 0:
        out.append(Problem("incidents.context_lines", f"{cfg.incidents.context_lines}: must be >= 0"))


def _check_alerts(cfg: Config, out: list[Problem]) -> None:
    names: dict[str, int] = {}
    for i, a in enumerate(cfg.alert):
        key = f"alert[{i}]"
        if a.type == "exec":
            prog = a.command[0]
            if os.sep in prog:
                if not (Path(prog).is_file() and os.access(prog, os.X_OK)):
                    out.append(Problem(f"{key}.command[0]", f"{prog}: not an executable file"))
            elif shutil.which(prog) is None:
                out.append(Problem(f"{key}.command[0]", f"{prog}: not found on PATH (the service's PATH may differ; "
                                                        "an absolute path is safer)", warning=True))
        else:
            u = urlsplit(a.url)
            if not u.hostname:
                out.append(Problem(f"{key}.url", f"{a.url}: no host"))
            try:
                u.port
            except ValueError:
                out.append(Problem(f"{key}.url", f"{a.url}: bad port"))
            if u.scheme == "http" and a.headers and any(h.lower() == "authorization" for h in a.headers):
                out.append(Problem(f"{key}.headers", "Authorization header sent over plain http", warning=True))
        if a.fleet_hosts == 1:
            out.append(Problem(f"{key}.fleet_hosts", "1 host is every incident; a fleet rule wants >= 2",
                               warning=True))
        if a.name:
            if a.name in names:
                out.append(Problem(f"{key}.name", f"{a.name!r} is also alert[{names[a.name]}]'s name"))
            names.setdefault(a.name, i)


def check_file(path: str) -> tuple[bool, list[str]]:
    """(ok, output lines) for one file."""
    try:
        cfg = load_config(path)
    except ConfigError as e:
        return False, [_key_path_message(path, str(e))]
    problems = check(cfg)
    if not any(not p.warning for p in problems):
        # the server's own start-up checks too (hosts map, TLS files and peers, CIDRs): what check-config passes,
        # `sylog serve` accepts
        from sylog.commands.serve import validate

        try:
            validate(cfg)
        except ConfigError as e:
            key, sep, msg = str(e).partition(": ")
            problems.append(Problem(key, msg) if sep and " " not in key else Problem("", str(e)))
    lines = [f"{path}: {'warning: ' if p.warning else ''}{p.key + ': ' if p.key else ''}{p.message}"
             for p in problems]
    ok = not any(not p.warning for p in problems)
    if ok:
        lines.append(f"{path}: OK")
    return ok, lines


_MSGSPEC_AT = re.compile(r"^(?P<msg>.*) - at `\$(?P<path>[^`]*)`$")
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<field>[^`]+)`$")


def _key_path_message(path: str, text: str) -> str:
    """load_config's ``FILE: <msgspec message> - at `$.a.b```  ->  ``FILE: a.b: <message>`` (the key path first,
    as for the semantic checks; an unknown key is named with its full path)."""
    prefix = f"{path}: "
    body = text[len(prefix):] if text.startswith(prefix) else text
    m = _MSGSPEC_AT.match(body)
    if m:
        key, msg = m.group("path").lstrip("."), m.group("msg")
    elif _UNKNOWN.match(body):
        key, msg = "", body
    else:
        return f"{path}: {body}"
    u = _UNKNOWN.match(msg)
    if u:
        key = f"{key}.{u.group('field')}" if key else u.group("field")
        msg = "unknown key (misspelled, or not supported by this sylog version)"
    return f"{path}: {key or '(top level)'}: {msg}"


def add_parser(sub: Any) -> None:
    p = sub.add_parser("check-config", help="validate configuration files without starting the server",
                       description="Validate sylog TOML configuration files: syntax, unknown keys and types (by key "
                                   "path), listener addresses, data dir, vmcore dirs, certificate files, alert "
                                   "hooks. Prints 'FILE: OK' or one line per problem; exit 0 if all are OK, 2 if "
                                   "not (warnings do not fail).")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    status = 0
    for path in args.files:
        ok, lines = check_file(path)
        for line in lines:
            print(line, file=sys.stdout if ok else sys.stderr)
        if not ok:
            status = 2
    return status

"""``sylog client-setup``: the files a host needs to send its logs (and crash lines) to sylog, filled in.

Prints them, or writes them under a root directory with ``--apply DIR`` (``DIR=/`` installs them for real; any other
directory stages them for a config-management tool or a review). The templates live in :mod:`sylog.deploy_templates`
so a pip-installed sylog carries them; ``deploy/`` in the repository is rendered from the same templates
(:func:`write_examples`), so there is one source of truth.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
import socket
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

TEMPLATE_PACKAGE = "sylog.deploy_templates"
RSYSLOG_PATH = "etc/rsyslog.d/60-sylog.conf"
SYSCTL_PATH = "etc/sysctl.d/90-sylog-panic.conf"
MODPROBE_PATH = "etc/modprobe.d/netconsole.conf"
MODULES_LOAD_PATH = "etc/modules-load.d/netconsole.conf"
NETCONSOLE_SCRIPT_PATH = "usr/local/sbin/sylog-netconsole"

_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")
# Values end up inside double-quoted rsyslog strings and config lines: refuse anything that could break out.
_SAFE_VALUE = re.compile(r"^[A-Za-z0-9_.:/@+\-\[\]%]+$")
_MAC = re.compile(r"^(?:[0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}$")
_IFACE = re.compile(r"^[A-Za-z0-9_.:@\-]{1,15}$")


class SetupError(ValueError):
    """Bad arguments: the message says which and why."""


@dataclass(frozen=True)
class OutFile:
    path: str  # relative to the root ('etc/rsyslog.d/60-sylog.conf')
    text: str
    mode: int = 0o644


def template(name: str) -> str:
    return resources.files(TEMPLATE_PACKAGE).joinpath(name).read_text(encoding="utf-8")


def render(name: str, values: dict[str, Any]) -> str:
    """Fill ``{{key}}`` placeholders; a placeholder without a value is an error (never ship a half-filled file)."""
    text = template(name)
    missing = sorted({m for m in _PLACEHOLDER.findall(text) if m not in values})
    if missing:
        raise SetupError(f"template {name}: no value for {', '.join(missing)}")
    return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), text)


def parse_receiver(spec: str, default_port: int) -> tuple[str, int]:
    """``HOST``, ``HOST:PORT``, ``[V6]:PORT`` or a bare IPv6 address -> (host, port)."""
    s = spec.strip()
    if s.startswith("["):
        host, sep, rest = s[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise SetupError(f"--receiver {spec!r}: expected [IPV6]:PORT")
        port_s = rest[1:] if rest else ""
    elif s.count(":") == 1:
        host, _, port_s = s.partition(":")
    else:
        host, port_s = s, ""  # a name, an IPv4 address, or a bare IPv6 address
    if not host:
        raise SetupError(f"--receiver {spec!r}: no host")
    _check_value("--receiver", host)
    if port_s:
        if not port_s.isdigit() or not 1 <= int(port_s) <= 65535:
            raise SetupError(f"--receiver {spec!r}: port must be 1-65535")
        return host, int(port_s)
    return host, default_port


def _check_value(what: str, value: str) -> str:
    if not _SAFE_VALUE.match(value):
        raise SetupError(f"{what} {value!r}: only letters, digits and . : / @ + - _ [ ] % are allowed")
    return value


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def netconsole_param(*, receiver_ip: str, port: int, interface: str, local_ip: str, remote_mac: str,
                     extended: bool) -> str:
    """The kernel's ``netconsole=[+][src-port]@[src-ip]/[<dev>],[tgt-port]@<tgt-ip>/[tgt-macaddr]``."""
    return f"{'+' if extended else ''}@{local_ip}/{interface},{port}@{receiver_ip}/{remote_mac}"


def modprobe_text(*, receiver_ip: str, port: int, interface: str, local_ip: str, remote_mac: str,
                  extended: bool) -> str:
    param = netconsole_param(receiver_ip=receiver_ip, port=port, interface=interface, local_ip=local_ip,
                             remote_mac=remote_mac, extended=extended)
    notes = []
    if not interface:
        notes.append("# No interface given: the kernel then uses eth0. Set it (--interface) if this host names its\n"
                     "# NICs otherwise (ens3, enp1s0, ...).")
    if not remote_mac:
        notes.append("# No MAC address given: frames go to the Ethernet broadcast address, which some switches\n"
                     "# drop. Give the receiver's MAC (same subnet) or the gateway's (--remote-mac), or run\n"
                     "# /usr/local/sbin/sylog-netconsole on this host: it finds both with `ip route get` + `ip neigh`.")
    return render("netconsole-modprobe.conf", {
        "receiver": receiver_ip, "port": port, "param": param,
        "notes": ("\n".join(notes) + "\n") if notes else "",
    })


def build_files(*, receiver: str, tls: bool = False, netconsole: bool = False, tls_name: str | None = None,
                tls_driver: str = "gtls", ca_file: str = "/etc/ssl/sylog/ca.pem",
                cert_file: str = "/etc/ssl/sylog/client-cert.pem", key_file: str = "/etc/ssl/sylog/client-key.pem",
                max_disk_space: str = "1g", netconsole_ip: str | None = None, netconsole_port: int = 6666,
                interface: str = "", local_ip: str = "", remote_mac: str = "", extended: bool = True,
                resolve: bool = True) -> list[OutFile]:
    """Every file a host needs, in install order. Raises :class:`SetupError` on bad values."""
    host, port = parse_receiver(receiver, 6514 if tls else 514)
    _check_value("--max-disk-space", max_disk_space)
    if not re.match(r"^\d+[kKmMgG]?$", max_disk_space):
        raise SetupError(f"--max-disk-space {max_disk_space!r}: a number with an optional k/m/g suffix")
    files: list[OutFile] = []
    if tls:
        if tls_driver not in ("gtls", "ossl"):
            raise SetupError(f"--tls-driver {tls_driver!r}: gtls or ossl")
        for what, value in (("--tls-name", tls_name or host), ("--ca-file", ca_file), ("--cert-file", cert_file),
                            ("--key-file", key_file)):
            _check_value(what, value)
        text = render("rsyslog-tls.conf", {
            "host": host, "port": port, "driver": tls_driver, "tls_name": tls_name or host, "ca_file": ca_file,
            "cert_file": cert_file, "key_file": key_file, "max_disk_space": max_disk_space,
        })
    else:
        text = render("rsyslog-tcp.conf", {"host": host, "port": port, "max_disk_space": max_disk_space})
    files.append(OutFile(RSYSLOG_PATH, text))
    files.append(OutFile(SYSCTL_PATH, template("90-sylog-panic.conf")))
    if netconsole:
        ip = netconsole_receiver_ip(host, netconsole_ip, resolve=resolve)
        if not 1 <= netconsole_port <= 65535:
            raise SetupError("--netconsole-port must be 1-65535")
        if interface and not _IFACE.match(interface):
            raise SetupError(f"--interface {interface!r}: not an interface name")
        if local_ip and not _is_ip(local_ip):
            raise SetupError(f"--local-ip {local_ip!r}: not an IP address")
        if remote_mac and not _MAC.match(remote_mac):
            raise SetupError(f"--remote-mac {remote_mac!r}: expected 12:34:56:78:9a:bc")
        files.append(OutFile(MODPROBE_PATH, modprobe_text(
            receiver_ip=ip, port=netconsole_port, interface=interface, local_ip=local_ip, remote_mac=remote_mac,
            extended=extended)))
        files.append(OutFile(MODULES_LOAD_PATH, template("netconsole-modules-load.conf")))
        files.append(OutFile(NETCONSOLE_SCRIPT_PATH, template("sylog-netconsole.sh"), 0o755))
    return files


def netconsole_receiver_ip(host: str, netconsole_ip: str | None, *, resolve: bool = True) -> str:
    """netconsole sends to an address (the kernel cannot resolve names at panic time): the given one, the receiver
    if it is an address, else the receiver's name resolved now."""
    ip = netconsole_ip or (host if _is_ip(host) else (_resolve(host) if resolve else None))
    if not ip or not _is_ip(ip):
        raise SetupError(f"netconsole needs the receiver's IP address (the kernel cannot resolve {host!r}); "
                         "give --netconsole-ip")
    return ip


def _resolve(host: str) -> str | None:
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_DGRAM)
    except OSError:
        return None
    return str(infos[0][4][0]) if infos else None


def apply_files(root: str | Path, files: list[OutFile]) -> list[Path]:
    """Write ``files`` under ``root`` (atomically: temp file + rename), creating directories; returns the paths."""
    root = Path(root)
    written = []
    for f in files:
        dest = root / f.path
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.sylog-tmp")
        tmp.write_text(f.text, encoding="utf-8")
        os.chmod(tmp, f.mode)
        os.replace(tmp, dest)
        written.append(dest)
    return written


# ---- deploy/ examples: rendered from the same templates (one source of truth) ----

EXAMPLE_RECEIVER = "sylog.example.net"
EXAMPLE_NETCONSOLE = {"receiver_ip": "192.0.2.10", "port": 6666, "interface": "eth0", "local_ip": "",
                      "remote_mac": "00:00:5e:00:53:01", "extended": True}


def example_files() -> dict[str, tuple[str, int]]:
    """``deploy/``-relative path -> (text, mode) of every file that is rendered from a package template."""
    tcp = build_files(receiver=EXAMPLE_RECEIVER)[0].text
    tls = build_files(receiver=EXAMPLE_RECEIVER, tls=True)[0].text
    return {
        "rsyslog/60-sylog.conf": (tcp, 0o644),
        "rsyslog/60-sylog-tls.conf": (tls, 0o644),
        "kdump/sysctl.d/90-sylog-panic.conf": (template("90-sylog-panic.conf"), 0o644),
        "netconsole/sylog-netconsole.sh": (template("sylog-netconsole.sh"), 0o755),
        "netconsole/modprobe.d/netconsole.conf": (modprobe_text(**EXAMPLE_NETCONSOLE), 0o644),
        "netconsole/modules-load.d/netconsole.conf": (template("netconsole-modules-load.conf"), 0o644),
    }


def write_examples(deploy_dir: str | Path) -> list[Path]:
    """Regenerate the template-derived files under ``deploy/`` (maintainers: after editing a template)."""
    return apply_files(deploy_dir, [OutFile(p, t, m) for p, (t, m) in example_files().items()])


# ---- CLI ----

def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "client-setup", help="print (or write) the rsyslog/netconsole/sysctl files a host needs to send to sylog",
        description="Print the files a host needs to send its logs to sylog: rsyslog forwarding (TCP, or TLS with "
                    "--tls; RFC 5424, octet-counted, disk-assisted queue), the panic sysctl file, and with "
                    "--netconsole the netconsole module options and setup script. With --apply DIR they are "
                    "written under DIR instead (DIR=/ installs them).")
    p.add_argument("--receiver", required=True, metavar="HOST[:PORT]",
                   help="the sylog receiver (port default: 514, with --tls 6514; IPv6 as [addr]:port)")
    p.add_argument("--tls", action="store_true", help="forward over TLS (RFC 5425) instead of plain TCP")
    p.add_argument("--tls-name", metavar="NAME", help="name the receiver's certificate must carry (default: HOST)")
    p.add_argument("--tls-driver", choices=("gtls", "ossl"), default="gtls",
                   help="rsyslog TLS driver: gtls (package rsyslog-gnutls, default) or ossl (rsyslog-openssl)")
    p.add_argument("--ca-file", default="/etc/ssl/sylog/ca.pem", metavar="FILE", help="CA that signed the receiver")
    p.add_argument("--cert-file", default="/etc/ssl/sylog/client-cert.pem", metavar="FILE",
                   help="this host's client certificate (mutual TLS)")
    p.add_argument("--key-file", default="/etc/ssl/sylog/client-key.pem", metavar="FILE",
                   help="this host's client key (mutual TLS)")
    p.add_argument("--max-disk-space", default="1g", metavar="SIZE",
                   help="disk the rsyslog queue may use while sylog is unreachable (default 1g)")
    p.add_argument("--netconsole", action="store_true",
                   help="also the netconsole files: kernel messages (and panics) over UDP straight from the kernel")
    p.add_argument("--netconsole-ip", metavar="IP", help="receiver IP for netconsole (default: HOST, resolved)")
    p.add_argument("--netconsole-port", type=int, default=6666, metavar="PORT", help="default 6666")
    p.add_argument("--interface", default="", metavar="IF", help="this host's NIC towards the receiver")
    p.add_argument("--local-ip", default="", metavar="IP", help="this host's source address for netconsole")
    p.add_argument("--remote-mac", default="", metavar="MAC",
                   help="next hop's MAC (receiver on the same subnet, else the gateway)")
    p.add_argument("--no-extended", dest="extended", action="store_false",
                   help="plain netconsole format (default: extended, for kernels >= 4.1)")
    p.add_argument("--apply", metavar="DIR", help="write the files under DIR instead of printing them")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        files = build_files(
            receiver=args.receiver, tls=args.tls, netconsole=args.netconsole, tls_name=args.tls_name,
            tls_driver=args.tls_driver, ca_file=args.ca_file, cert_file=args.cert_file, key_file=args.key_file,
            max_disk_space=args.max_disk_space, netconsole_ip=args.netconsole_ip,
            netconsole_port=args.netconsole_port, interface=args.interface, local_ip=args.local_ip,
            remote_mac=args.remote_mac, extended=args.extended)
    except SetupError as e:
        print(f"sylog client-setup: {e}", file=sys.stderr)
        return 2
    if args.apply:
        try:
            written = apply_files(args.apply, files)
        except OSError as e:
            print(f"sylog client-setup: cannot write under {args.apply}: {e}", file=sys.stderr)
            return 1
        for path in written:
            print(f"wrote {path}")
        print(_next_steps(args), end="")
        return 0
    for f in files:
        sys.stdout.write(f"# ==> /{f.path} <==\n{f.text}")
        if not f.text.endswith("\n"):
            sys.stdout.write("\n")
        sys.stdout.write("\n")
    sys.stdout.write(_next_steps(args))
    return 0


def _next_steps(args: argparse.Namespace) -> str:
    steps = ["rsyslogd -N1                 # check the rsyslog configuration",
             "systemctl restart rsyslog",
             "sysctl --system              # load 90-sylog-panic.conf"]
    if args.tls:
        steps.insert(0, f"install CA/cert/key: {args.ca_file} {args.cert_file} {args.key_file}  "
                        f"(package rsyslog-{'gnutls' if args.tls_driver == 'gtls' else 'openssl'})")
    if args.netconsole:
        host, _ = parse_receiver(args.receiver, 514)
        ip = netconsole_receiver_ip(host, args.netconsole_ip)
        steps.append(f"sylog-netconsole --receiver {ip} --port {args.netconsole_port}"
                     f"{' --extended' if args.extended else ''} --persistent   # finds NIC and MAC; "
                     "or: modprobe netconsole")
    return "# next steps on the host:\n" + "".join(f"#   {s}\n" for s in steps)

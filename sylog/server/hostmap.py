"""Names for senders that send no host name (netconsole): the ``[hosts]`` map, else the name sylog has seen in
syslog from that address (the peer map, ``DATA/state/peers.json``), else the address itself.

Looked up once per netconsole datagram: a dict hit in the common case.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from sylog.syslog.hostnames import fold_host


def normalize_ip(addr: str) -> str:
    """Canonical text of an address (``::ffff:10.0.0.1`` -> ``10.0.0.1``); other strings unchanged."""
    try:
        ip = ipaddress.ip_address(addr.split("%", 1)[0])
    except ValueError:
        return addr
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ip)


def parse_hosts(hosts: dict[str, str]) -> dict[str, str]:
    """The config's ``[hosts]`` with canonical address keys; ValueError names ``hosts."KEY"``."""
    out: dict[str, str] = {}
    for k, v in hosts.items():
        try:
            ip = ipaddress.ip_address(k.strip())
        except ValueError:
            raise ValueError(f'hosts."{k}": not an IP address') from None
        if not v.strip():
            raise ValueError(f'hosts."{k}": empty host name')
        out[normalize_ip(str(ip))] = v.strip()
    return out


class HostMap:
    """``name(peer)`` -> the host name to file a nameless sender's lines under (always a safe path name)."""

    def __init__(self, hosts: dict[str, str], peers: Any = None) -> None:
        self.hosts = parse_hosts(hosts)
        self.peers = peers  # a PeerRecorder (``.peers``: ip -> {"host": name | None, ...}) or None
        self._cache: dict[str, str] = {}

    def replace_hosts(self, hosts: dict[str, str]) -> None:
        self.hosts = parse_hosts(hosts)
        self._cache.clear()

    def name(self, peer: str) -> str:
        ip = normalize_ip(peer)
        h = self.hosts.get(ip)
        if h is None and self.peers is not None:
            ent = self.peers.peers.get(ip) or self.peers.peers.get(peer)
            if ent:
                h = ent.get("host")
        if h is None:
            return fold_host(None, ip)
        v = self._cache.get(h)
        if v is None:
            if len(self._cache) > 65536:
                self._cache.clear()
            v = self._cache[h] = fold_host(h, ip)
        return v

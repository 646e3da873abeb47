"""Sender allowlists (sans-IO): is this peer address allowed to send to this listener?

Checked once per UDP datagram and once per TCP/TLS connection, so the answer is cached per address string (a
dict lookup on the hot path; the ipaddress work happens once per new sender). IPv4-mapped IPv6 peers
(``::ffff:10.1.2.3``, what a dual-stack socket reports) match IPv4 networks.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Callable, Iterable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

CACHE_MAX = 65536  # distinct peer addresses remembered per list; beyond this the cache starts afresh
KINDS = ("udp", "tcp", "tls", "netconsole")


def parse_networks(specs: Iterable[str], key: str = "allow") -> list[Network]:
    """CIDRs or plain addresses -> networks; ValueError names ``key[i]`` and the bad entry."""
    out: list[Network] = []
    for i, s in enumerate(specs):
        try:
            out.append(ipaddress.ip_network(s.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{key}[{i}]: {s!r} is not an address or CIDR") from None
    return out


class Allowlist:
    """A set of networks; ``allowed(peer)`` is True when the peer address is inside one of them."""

    __slots__ = ("networks", "_cache")

    def __init__(self, networks: Iterable[Network]) -> None:
        self.networks = list(networks)
        self._cache: dict[str, bool] = {}

    def allowed(self, peer: str) -> bool:
        v = self._cache.get(peer)
        if v is None:
            v = self._check(peer)
            if len(self._cache) >= CACHE_MAX:
                self._cache.clear()
            self._cache[peer] = v
        return v

    def _check(self, peer: str) -> bool:
        try:
            ip = ipaddress.ip_address(peer.split("%", 1)[0])
        except ValueError:
            return False  # not an IP (unix socket, "unknown"): an allowlist admits addresses only
        if ip.version == 6 and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in n for n in self.networks if n.version == ip.version)

    def __repr__(self) -> str:
        return f"Allowlist({[str(n) for n in self.networks]})"


class Access:
    """The allowlist of each listener kind (None: everyone), swapped whole on reload."""

    def __init__(self, lists: dict[str, Allowlist | None] | None = None) -> None:
        self.lists: dict[str, Allowlist | None] = {k: None for k in KINDS}
        if lists:
            self.lists.update(lists)

    @classmethod
    def from_listen_config(cls, listen: object) -> Access:
        """``allow`` for every listener; a non-empty ``<kind>_allow`` replaces it. ValueError names the key."""
        common = parse_networks(getattr(listen, "allow", []), "listen.allow")
        lists: dict[str, Allowlist | None] = {}
        for kind in KINDS:
            own = parse_networks(getattr(listen, f"{kind}_allow", []), f"listen.{kind}_allow")
            nets = own or common
            lists[kind] = Allowlist(nets) if nets else None
        return cls(lists)

    def get(self, kind: str) -> Allowlist | None:
        return self.lists[kind]

    def describe(self) -> str:
        return " ".join(f"{k}={','.join(map(str, a.networks))}" for k, a in self.lists.items() if a is not None) \
            or "everyone"


class DenyLog:
    """Logs denied senders at a bounded rate: at most one line per ``interval`` seconds, with the count since."""

    def __init__(self, logger: logging.Logger, interval: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.log = logger
        self.interval = interval
        self.clock = clock
        self._next = 0.0
        self._pending = 0

    def denied(self, kind: str, peer: str) -> bool:
        """Note one denial; True when a line was logged."""
        self._pending += 1
        now = self.clock()
        if now < self._next:
            return False
        self.log.warning("denied %s sender %s by the allowlist (%d denials since the last such line)",
                         kind, peer, self._pending)
        self._pending = 0
        self._next = now + self.interval
        return True

"""TLS for RFC 5425: the server context, and the permitted-peer check on a client certificate.

TLS 1.2 minimum. With a client CA the client must present a certificate signed by it (CERT_REQUIRED: a client
without one fails the handshake and never reaches the deframer). ``permitted_peers`` then narrows the accepted
names (SAN DNS entries, else the subject CN), ``*.example.com`` matching one label, like rsyslog's
``PermittedPeer``. Handshakes begun are counted from the SNI callback (called for every ClientHello).
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterable
from typing import Any


class TlsSetupError(Exception):
    """Certificate/key/CA files that cannot be used; the message names the file."""


def make_server_context(cert: str, key: str, client_ca: str = "", *,
                        on_hello: Callable[[], None] | None = None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as e:
        raise TlsSetupError(f"cannot load TLS certificate {cert} / key {key}: {e}") from None
    if client_ca:
        try:
            ctx.load_verify_locations(cafile=client_ca)
        except (OSError, ssl.SSLError) as e:
            raise TlsSetupError(f"cannot load TLS client CA {client_ca}: {e}") from None
        ctx.verify_mode = ssl.CERT_REQUIRED
    if on_hello is not None:
        def _hello(sslobj: Any, name: str | None, c: ssl.SSLContext) -> None:
            on_hello()
            return None
        ctx.sni_callback = _hello
    return ctx


def cert_names(peercert: dict[str, Any] | None) -> list[str]:
    """DNS names of a (verified) peer certificate: SAN DNS entries, else the subject common name."""
    if not peercert:
        return []
    names = [v for k, v in peercert.get("subjectAltName", ()) if k == "DNS"]
    if names:
        return names
    for rdn in peercert.get("subject", ()):
        for k, v in rdn:
            if k == "commonName":
                names.append(v)
    return names


def name_matches(pattern: str, name: str) -> bool:
    """``*.example.com`` matches ``a.example.com`` (one label), not ``example.com`` nor ``a.b.example.com``."""
    p = pattern.lower().rstrip(".")
    n = name.lower().rstrip(".")
    if p.startswith("*."):
        head, dot, rest = n.partition(".")
        return bool(dot) and bool(head) and rest == p[2:]
    return p == n


class PeerCheck:
    """Called with the transport after the handshake: None when the client may stay, else why not."""

    def __init__(self, permitted: Iterable[str]) -> None:
        self.permitted = [p for p in permitted if p]

    def __call__(self, transport: Any) -> str | None:
        if not self.permitted:
            return None
        names = cert_names(transport.get_extra_info("peercert"))
        if not names:
            return "no client certificate name"
        for n in names:
            for p in self.permitted:
                if name_matches(p, n):
                    return None
        return f"client certificate names {names} not permitted"

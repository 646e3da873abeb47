"""A tiny HTTP/1.1 POST client on asyncio streams: enough for webhooks, no new dependency.

One request per connection (``Connection: close``): alerts are rare, and a fresh connection never trips over a
receiver that closed an idle keep-alive socket. Only the status line and headers are read; the body is ignored.
"""

from __future__ import annotations

import asyncio
import ssl
from urllib.parse import urlsplit

from sylog import __version__

MAX_HEADER_BYTES = 64 * 1024


class HTTPError(Exception):
    """The exchange failed before a status code was known (connect, TLS, malformed response)."""


def _request(url: str, body: bytes, headers: dict[str, str]) -> tuple[str, int, bool, bytes]:
    u = urlsplit(url)
    if u.scheme not in ("http", "https") or not u.hostname:
        raise HTTPError(f"unsupported url {url!r}")
    tls = u.scheme == "https"
    port = u.port or (443 if tls else 80)
    path = u.path or "/"
    if u.query:
        path += "?" + u.query
    host_hdr = u.hostname if ":" not in u.hostname else f"[{u.hostname}]"
    if u.port:
        host_hdr += f":{u.port}"
    hdrs = {
        "Host": host_hdr,
        "User-Agent": f"sylog/{__version__}",
        "Content-Type": "application/json",
        "Content-Length": str(len(body)),
        "Connection": "close",
    }
    for k, v in headers.items():
        if "\r" in k or "\n" in k or "\r" in v or "\n" in v:
            raise HTTPError(f"bad header {k!r}")
        hdrs[k] = v
    if u.username or u.password:
        import base64

        cred = f"{u.username or ''}:{u.password or ''}".encode()
        hdrs.setdefault("Authorization", "Basic " + base64.b64encode(cred).decode())
    head = f"POST {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
    return u.hostname, port, tls, head.encode("latin-1") + body


async def post(url: str, body: bytes, headers: dict[str, str] | None = None, *, timeout: float = 10.0,
               ssl_context: ssl.SSLContext | None = None) -> int:
    """POST ``body`` to ``url``; returns the status code. Raises ``HTTPError``/``OSError``/``TimeoutError``."""
    host, port, tls, req = _request(url, body, headers or {})

    async def exchange() -> int:
        ctx = (ssl_context or ssl.create_default_context()) if tls else None
        reader, writer = await asyncio.open_connection(host, port, ssl=ctx, limit=MAX_HEADER_BYTES)
        try:
            writer.write(req)
            await writer.drain()
            status = await reader.readline()
            parts = status.split(None, 2)
            if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
                raise HTTPError(f"bad status line {status[:80]!r}")
            code = int(parts[1])
            seen = 0
            while True:  # drain headers so the receiver sees an orderly close
                ln = await reader.readline()
                seen += len(ln)
                if ln in (b"\r\n", b"\n", b"") or seen > MAX_HEADER_BYTES:
                    break
            return code
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except (OSError, ssl.SSLError):
                pass

    return await asyncio.wait_for(exchange(), timeout)

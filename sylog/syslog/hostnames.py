"""Host identity: turn the name a sender claims (or its address) into a safe directory name.

The result is used as ``DATA/timelines/<host>/``, so it must never be able to leave that directory whatever a
peer sends. Rules (one place, so the query side can fold a user's argument the same way):

* a hostname that is absent, empty, ``-`` (RFC 5424 nil) or implausible falls back to the peer address.
  Implausible: any byte outside printable ASCII (control, NUL, space, non-ASCII), a ``/`` or ``\\``, a leading
  ``.`` or ``-``, or nothing left after trailing dots are removed (so ``.``, ``..``, ``../../etc`` all fall back);
* the name is lower-cased; characters outside ``[a-z0-9._:-]`` (e.g. ``%`` in ``fe80::1%eth0``, ``*``, ``@``)
  become ``_``; trailing dots (absolute DNS names) are dropped. Colons are kept: IPv6 peers appear as
  ``2001:db8::1``, which operators recognise and Linux file systems accept;
* IPv4-mapped IPv6 peers (``::ffff:10.0.0.1`` from a dual-stack socket) are shown as ``10.0.0.1``;
* at most :data:`MAX_LEN` characters: longer names keep a prefix plus ``~`` and 10 hex digits of a SHA-1 of the
  whole name, so two long names never share a directory.

Results are cached (a fleet has a bounded set of names; the cache is cleared if it ever grows past a bound).
"""

from __future__ import annotations

import hashlib

__all__ = ["MAX_LEN", "fold_host", "fold_name"]

MAX_LEN = 253
_CACHE_MAX = 100_000
_OK = frozenset("abcdefghijklmnopqrstuvwxyz0123456789._:-")
_BAD = ""  # cached marker: implausible
_cache: dict[str, str] = {}
_peer_cache: dict[str, str] = {}


def _fold(name: str) -> str:
    """Fold one candidate name; '' when it is not a plausible host name."""
    if not name.isascii() or not name.isprintable() or " " in name or "/" in name or "\\" in name:
        return _BAD
    s = name.lower().rstrip(".")
    if not s or s[0] in ".-":
        return _BAD
    if not _OK.issuperset(s):
        s = "".join(c if c in _OK else "_" for c in s)
    if len(s) > MAX_LEN:
        s = s[: MAX_LEN - 11] + "~" + hashlib.sha1(s.encode()).hexdigest()[:10]
    return s


def fold_name(name: str) -> str:
    """The folded form of ``name``, or '' if it is not a plausible host name (cached)."""
    r = _cache.get(name)
    if r is None:
        if len(_cache) >= _CACHE_MAX:
            _cache.clear()
        r = _cache[name] = _fold(name)
    return r


def _fold_peer(peer: str) -> str:
    r = _peer_cache.get(peer)
    if r is None:
        p = peer
        if p.startswith("::ffff:") and "." in p:
            p = p[7:]
        r = _fold(p) or "unknown"
        if len(_peer_cache) >= _CACHE_MAX:
            _peer_cache.clear()
        _peer_cache[peer] = r
    return r


def fold_host(name: str | None, peer: str) -> str:
    """Directory name for a message: its hostname if plausible, else the peer address (never empty)."""
    if name:
        r = _cache.get(name)
        if r:
            return r
        if r is None and name != "-":
            r = fold_name(name)
            if r:
                return r
    return _fold_peer(peer or "")

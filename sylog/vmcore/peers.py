"""Remember which host name each sender address speaks for: ``DATA/state/peers.json``.

kdump names remote dump directories after the crashed host's IP address (RHEL ``<ip>-<date>``, Debian
``HOSTTAG=ip``), while sylog files everything under the host *name* the messages carry. The server knows both
for every batch it receives (the socket's peer address and the folded host name), so it tells this recorder,
once per batch (not per message): ``note(peer, host)``.

A relay (rsyslog forwarding many hosts) is one address speaking for many names; such an address maps to no host
(``ambiguous``), so a dump named after the relay's address is never pinned on whichever host spoke last.
The file is rewritten (atomically, off the hot path, at most every ``flush_interval`` seconds) only when a
mapping changed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable

import orjson

log = logging.getLogger("sylog.vmcore")

MAX_PEERS = 100_000


class PeerRecorder:
    """Observer-shaped (``tick``, ``aclose``; ``feed = None``) plus ``note_peer(peer, host)`` once per batch."""

    def __init__(self, data_dir: str, *, flush_interval: float = 1.0, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(data_dir).absolute() / "state" / "peers.json"
        self.flush_interval = flush_interval
        self.clock = clock
        self.peers: dict[str, dict[str, Any]] = self._load()
        self._last: dict[str, str] = {p: v["host"] for p, v in self.peers.items() if v.get("host")}
        self._dirty = False
        self._next_flush = 0.0
        self.errors = 0

    def _load(self) -> dict[str, dict[str, Any]]:
        try:
            raw = orjson.loads(self.path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return {}
        raw = raw.get("peers", raw) if isinstance(raw, dict) else {}
        out = {}
        for ip, v in raw.items():
            if isinstance(v, dict):
                out[str(ip)] = dict(v)
            elif isinstance(v, str):
                out[str(ip)] = {"host": v}
        return out

    feed = None  # not called per message; the pipeline calls note_peer once per received batch

    def note(self, peer: str, host: str) -> None:
        """The server received messages for ``host`` from address ``peer`` (cheap: one dict lookup when known)."""
        if self._last.get(peer) == host or host == peer or not peer or peer == "unknown":
            return
        ent = self.peers.get(peer)
        now = self.clock()
        if ent is None:
            if len(self.peers) >= MAX_PEERS:
                return
            self.peers[peer] = {"host": host, "since": now}
            self._last[peer] = host
        elif ent.get("host") and ent["host"].split(".", 1)[0] == host.split(".", 1)[0]:
            self._last[peer] = host  # db-07 and db-07.example.com: one host; keep the first name
            return
        else:
            # a second name from one address: a relay (or a renamed host). A rename is told apart by the old name
            # not coming back; we keep it simple: the address stops naming anyone.
            ent.setdefault("names", [])
            if ent.get("host") and ent["host"] not in ent["names"]:
                ent["names"].append(ent["host"])
            if host not in ent["names"]:
                ent["names"].append(host)
                del ent["names"][:-8]
            ent["host"] = None
            ent["ambiguous"] = True
            self._last[peer] = host
        self._dirty = True

    note_peer = note

    def mapping(self) -> dict[str, str]:
        return {p: v["host"] for p, v in self.peers.items() if v.get("host")}

    def flush(self) -> None:
        if not self._dirty:
            return
        self._dirty = False
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            tmp = self.path.with_name(f".peers.json.tmp-{os.getpid()}")
            with open(tmp, "wb") as f:
                f.write(orjson.dumps({"peers": self.peers}, option=orjson.OPT_SORT_KEYS))
            os.replace(tmp, self.path)
        except OSError as e:
            self.errors += 1
            self._dirty = True
            log.warning("cannot write %s: %s", self.path, e)

    def tick(self, now: float | None = None) -> None:
        now = self.clock() if now is None else now
        if self._dirty and now >= self._next_flush:
            self._next_flush = now + self.flush_interval
            self.flush()

    async def aclose(self) -> None:
        self.flush()
        await asyncio.sleep(0)

"""``[[alert]]`` entries of the config file (imported into :class:`sylog.config.Config` as ``alert``).

Kept beside the alert code so the hook semantics and their knobs are documented in one place; plain msgspec so
that ``sylog.config`` can import it without pulling in asyncio.

Example::

    [[alert]]                       # a program gets the incident JSON on stdin
    type = "exec"
    on = ["open", "vmcore"]
    command = ["/usr/local/bin/page-oncall", "--team", "kernel"]
    timeout = 10

    [[alert]]                       # HTTP POST of the incident JSON, retried with exponential backoff
    type = "webhook"
    on = ["open", "close"]
    url = "http://alerts.example:8080/sylog"
    retries = 5

    [[alert]]                       # fleet rule: one signature on 5 distinct hosts within 10 minutes
    type = "webhook"
    url = "http://isolator.example/drain"
    fleet_hosts = 5
    fleet_window = 600

What a hook receives: for ``open``/``close``/``vmcore`` the incident JSON (the fields of
``DATA/incidents/<host>/<id>.json``, as they are when the event fires); for a fleet rule a JSON object ``{"event": "fleet", "signature", "kind", "title", "hosts",
"host_count", "threshold", "window", "incidents", "first_seen", "last_seen"}`` (times: epoch seconds). The event
name is in ``SYLOG_EVENT`` (exec, also ``SYLOG_ALERT`` = the hook's name) or the ``X-Sylog-Event`` header (webhook).
Delivery: exec succeeds on exit status 0; webhook on 2xx (5xx, 408, 425, 429 and network errors are retried, other
codes are not). Counters: ``AlertDispatcher.stats()``; a summary line is logged at shutdown.
"""

from __future__ import annotations

from typing import Literal

import msgspec

EVENTS = ("open", "close", "vmcore")


class AlertConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One alert hook. ``on`` lists the incident events that fire it (for a fleet rule: the events whose incidents
    are counted; default ``["open", "close"]`` so both the first and the final signature count)."""

    type: Literal["exec", "webhook"]
    on: list[Literal["open", "close", "vmcore"]] | None = None  # default: ["open"]; fleet rule: ["open", "close"]
    command: list[str] = []  # exec: argv, no shell
    url: str = ""  # webhook: http:// or https://
    headers: dict[str, str] = {}  # webhook: extra request headers (e.g. Authorization)
    ca_file: str = ""  # webhook https: CA bundle that signs the receiver's certificate (default: system store)
    timeout: float = 10.0  # seconds per attempt; an exec child is killed when it runs longer
    retries: int | None = None  # further attempts after a failure (default: webhook 3, exec 0)
    backoff: float = 1.0  # seconds before the first retry; doubles each time, capped by backoff_max
    backoff_max: float = 60.0
    queue: int = 1000  # pending events per hook; more are dropped (counted), ingestion never waits
    fleet_hosts: int = 0  # > 0: fire once when one signature reaches this many distinct hosts ...
    fleet_window: float = 3600.0  # ... whose incidents fall within this many seconds
    name: str = ""  # for logs and counters (default: type + index)

    def __post_init__(self) -> None:
        if self.type == "exec" and not self.command:
            raise ValueError("alert of type 'exec' needs `command` (a list: program and arguments)")
        if self.type == "webhook" and not self.url.lower().startswith(("http://", "https://")):
            raise ValueError("alert of type 'webhook' needs `url` starting with http:// or https://")
        if self.ca_file and self.type != "webhook":
            raise ValueError("alert `ca_file` is for webhooks only")
        if not self.timeout > 0:
            raise ValueError("alert `timeout` must be > 0")
        if self.retries is not None and self.retries < 0:
            raise ValueError("alert `retries` must be >= 0")
        if self.backoff < 0 or self.backoff_max < 0:
            raise ValueError("alert `backoff` must be >= 0")
        if self.queue < 1:
            raise ValueError("alert `queue` must be >= 1")
        if self.fleet_hosts < 0 or not self.fleet_window > 0:
            raise ValueError("alert `fleet_hosts` must be >= 0 and `fleet_window` > 0")

    @property
    def events(self) -> tuple[str, ...]:
        if self.on is not None:
            return tuple(self.on)
        return ("open", "close") if self.fleet_hosts else ("open",)

    @property
    def max_retries(self) -> int:
        if self.retries is not None:
            return self.retries
        return 3 if self.type == "webhook" else 0

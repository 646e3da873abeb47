"""Alert dispatcher: incident events -> ``exec`` / ``webhook`` hooks, off the ingestion path.

The incident engine calls :meth:`AlertDispatcher.on_incident` (a listener in ``IncidentEngine.listeners``) or
``await emit(event, incident_json)``; both only encode and ``put_nowait`` into a bounded per-hook queue, so a slow
or dead receiver can never hold up ingestion — when a queue is full the event is dropped and counted. Each hook has
one worker task, so its deliveries stay in order (an ``open`` is delivered before the matching ``close``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import ssl
import time
from typing import Any, Awaitable, Callable, Iterable

import msgspec
import orjson

from sylog.alerts import http
from sylog.alerts.config import AlertConfig
from sylog.alerts.fleet import FleetRule
from sylog.query.incidents import iter_incidents
from sylog.query.timefilter import parse_stored_time

log = logging.getLogger("sylog.alerts")

# Event names as the incident engine / vmcore linker may spell them -> the config's vocabulary.
EVENT_ALIASES = {
    "open": "open", "opened": "open",
    "close": "close", "closed": "close",
    "vmcore": "vmcore", "vmcore-linked": "vmcore", "vmcore_linked": "vmcore", "linked": "vmcore",
}
RETRY_STATUSES = frozenset((408, 425, 429))


class DeliveryFailed(Exception):
    """One failed attempt; ``retryable`` False for answers that retrying cannot change (e.g. HTTP 400)."""

    def __init__(self, reason: str, retryable: bool = True, timeout: bool = False) -> None:
        super().__init__(reason)
        self.retryable = retryable
        self.timeout = timeout


class Hook:
    """One configured hook: bounded queue, one worker, retries with exponential backoff, counters."""

    def __init__(self, cfg: AlertConfig, index: int, sleep: Callable[[float], Awaitable[Any]]) -> None:
        self.cfg = cfg
        self.name = cfg.name or f"{cfg.type}{index}"
        self.events = frozenset(cfg.events)
        self.fleet = FleetRule(cfg.fleet_hosts, cfg.fleet_window) if cfg.fleet_hosts else None
        self._sleep = sleep
        self.queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(maxsize=cfg.queue)
        self.task: asyncio.Task | None = None
        self.counters = {"queued": 0, "sent": 0, "failed": 0, "attempts": 0, "retries": 0, "timeouts": 0,
                         "dropped": 0, "fleet_fired": 0}
        self._last_drop_log = 0.0

    def enqueue(self, event: str, payload: bytes) -> bool:
        try:
            self.queue.put_nowait((event, payload))
        except asyncio.QueueFull:
            self.drop("queue full")
            return False
        self.counters["queued"] += 1
        return True

    def drop(self, why: str) -> None:
        self.counters["dropped"] += 1
        now = time.monotonic()
        if now - self._last_drop_log >= 10.0:  # a storm of drops is one line per 10 s, the count says the rest
            self._last_drop_log = now
            log.warning("alert %s: event dropped (%s); %d dropped so far", self.name, why, self.counters["dropped"])

    async def run(self) -> None:
        while True:
            event, payload = await self.queue.get()
            try:
                await self.deliver(event, payload)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug in a hook must not kill the worker
                self.counters["failed"] += 1
                log.exception("alert %s: delivery crashed", self.name)
            finally:
                self.queue.task_done()

    async def deliver(self, event: str, payload: bytes) -> bool:
        """Try once plus ``retries`` times, sleeping backoff, 2*backoff, ... (capped) between attempts."""
        cfg = self.cfg
        last: DeliveryFailed | None = None
        for attempt in range(cfg.max_retries + 1):
            if attempt:
                self.counters["retries"] += 1
                await self._sleep(min(cfg.backoff * (2 ** (attempt - 1)), cfg.backoff_max))
            self.counters["attempts"] += 1
            try:
                await self.attempt(event, payload)
            except DeliveryFailed as e:
                last = e
                if e.timeout:
                    self.counters["timeouts"] += 1
                if not e.retryable:
                    break
                continue
            self.counters["sent"] += 1
            return True
        self.counters["failed"] += 1
        log.warning("alert %s: %s event not delivered after %d attempt(s): %s", self.name, event,
                    attempt + 1, last)
        return False

    async def attempt(self, event: str, payload: bytes) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


class ExecHook(Hook):
    """Runs ``command`` (no shell) with the JSON on stdin; exit 0 is success. Killed (its whole process group)
    when it outlives ``timeout``. ``SYLOG_EVENT`` and ``SYLOG_ALERT`` are set in its environment."""

    async def attempt(self, event: str, payload: bytes) -> None:
        env = dict(os.environ, SYLOG_EVENT=event, SYLOG_ALERT=self.name)
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.cfg.command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE, env=env, start_new_session=True)
        except OSError as e:
            raise DeliveryFailed(f"cannot run {self.cfg.command[0]!r}: {e.strerror or e}", retryable=False) from None
        try:
            _, err = await asyncio.wait_for(proc.communicate(payload), self.cfg.timeout)
        except (asyncio.TimeoutError, TimeoutError):
            await _kill(proc)
            raise DeliveryFailed(f"timed out after {self.cfg.timeout:g}s (killed)", timeout=True) from None
        except BaseException:  # cancelled at shutdown: never leave the child behind
            await _kill(proc)
            raise
        if proc.returncode != 0:
            tail = (err or b"").strip()[-200:].decode("utf-8", "replace")
            raise DeliveryFailed(f"exit status {proc.returncode}" + (f": {tail}" if tail else ""))


async def _kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            try:
                proc.kill()
            except ProcessLookupError:
                pass
    try:
        await asyncio.wait_for(proc.wait(), 5.0)
    except (asyncio.TimeoutError, TimeoutError):
        pass


class WebhookHook(Hook):
    """HTTP POST of the JSON; 2xx is success, 5xx/408/429 and network errors are retried, other codes are not."""

    _ssl: ssl.SSLContext | None = None

    def ssl_context(self) -> ssl.SSLContext | None:
        """Built once (loading a CA bundle is slow); a bad ``ca_file`` fails each attempt with a clear reason."""
        if self._ssl is None and self.cfg.url.lower().startswith("https://"):
            ctx = ssl.create_default_context()
            if self.cfg.ca_file:
                try:
                    ctx.load_verify_locations(self.cfg.ca_file)
                except (OSError, ssl.SSLError) as e:
                    raise DeliveryFailed(f"cannot load ca_file {self.cfg.ca_file!r}: {e}", retryable=False) from None
            self._ssl = ctx
        return self._ssl

    async def attempt(self, event: str, payload: bytes) -> None:
        headers = {"X-Sylog-Event": event, **self.cfg.headers}
        try:
            status = await http.post(self.cfg.url, payload, headers, timeout=self.cfg.timeout,
                                     ssl_context=self.ssl_context())
        except (asyncio.TimeoutError, TimeoutError):
            raise DeliveryFailed(f"timed out after {self.cfg.timeout:g}s", timeout=True) from None
        except (OSError, ssl.SSLError, http.HTTPError) as e:
            raise DeliveryFailed(f"{type(e).__name__}: {e}") from None
        if 200 <= status < 300:
            return
        raise DeliveryFailed(f"HTTP {status}", retryable=status >= 500 or status in RETRY_STATUSES)


class AlertDispatcher:
    """All configured hooks. ``on_incident``/``emit``/``submit`` never block; ``aclose`` drains with a deadline."""

    def __init__(self, configs: Iterable[AlertConfig], *,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> None:
        self.hooks: list[Hook] = []
        for i, cfg in enumerate(configs):
            cls = ExecHook if cfg.type == "exec" else WebhookHook
            self.hooks.append(cls(cfg, i, sleep))
        self.wanted = frozenset(e for h in self.hooks for e in h.events)
        self.closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self.counters = {"events": 0, "ignored": 0, "bad_payload": 0}

    @classmethod
    def from_config(cls, cfg: Any, *, now: float | None = None) -> "AlertDispatcher":
        """From :class:`sylog.config.Config` (its ``alert`` list; absent or empty: a dispatcher that does nothing).

        Fleet rules are seeded from the incidents already in the data dir, so a restart neither forgets the hosts
        counted so far nor fires again for a threshold that was already reached.
        """
        d = cls(getattr(cfg, "alert", None) or [])
        data_dir = getattr(cfg, "data_dir", None)
        if data_dir and any(h.fleet for h in d.hooks):
            d.seed_fleet(data_dir, now=now)
        return d

    def seed_fleet(self, data_dir: str | os.PathLike, *, now: float | None = None) -> int:
        """Feed the fleet rules (silently) with incidents on disk that are still inside their windows."""
        hooks = [h for h in self.hooks if h.fleet is not None]
        if not hooks:
            return 0
        now = time.time() if now is None else now
        cutoff = now - max(h.fleet.window for h in hooks)  # type: ignore[union-attr]
        found = []
        # a file written last before the window opened cannot hold an incident that counts: not even read
        for inc in iter_incidents(data_dir, modified_since=cutoff):
            t = parse_stored_time(inc.get("first_seen"))
            if t is not None and t >= cutoff and inc.get("signature"):
                found.append((t, inc))
        found.sort(key=lambda x: x[0])
        for t, inc in found:
            for h in hooks:
                h.fleet.observe(str(inc["signature"]), str(inc.get("host") or ""), t,  # type: ignore[union-attr]
                                str(inc.get("id") or ""), kind=inc.get("kind"), title=inc.get("title"))
        if found:
            log.info("alerts: fleet rules seeded with %d recent incident(s) from %s", len(found), data_dir)
        return len(found)

    # --- entry points -----------------------------------------------------------------------------------------

    def on_incident(self, event: str, incident: Any) -> None:
        """Listener for ``IncidentEngine.listeners``: ``(event, Incident)``; cheap when no hook wants ``event``."""
        ev = EVENT_ALIASES.get(event)
        if ev is None or ev not in self.wanted:
            self.counters["ignored"] += 1
            return
        payload = incident if isinstance(incident, (bytes, bytearray)) else msgspec.json.encode(incident)
        self.submit(ev, bytes(payload))

    async def emit(self, event: str, incident_json: bytes) -> None:
        """The coroutine form for callers that are already async; returns as soon as the event is queued."""
        ev = EVENT_ALIASES.get(event)
        if ev is None or ev not in self.wanted:
            self.counters["ignored"] += 1
            return
        self.submit(ev, incident_json)

    def submit(self, event: str, payload: bytes) -> None:
        """Queue ``payload`` for every hook that wants ``event``; fleet hooks count it and fire at the threshold."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # called from another thread: hop to the loop the workers run on
            loop = self._loop
            if loop is not None and not loop.is_closed() and not self.closed:
                loop.call_soon_threadsafe(self.submit, event, payload)
                return
        self.counters["events"] += 1
        info: dict | None = None
        for h in self.hooks:
            if event not in h.events:
                continue
            if not self._ensure_worker(h):
                h.drop("no running event loop" if not self.closed else "dispatcher closed")
                continue
            if h.fleet is None:
                h.enqueue(event, payload)
                continue
            if info is None:
                try:
                    info = orjson.loads(payload)
                    if not isinstance(info, dict):
                        raise ValueError("not an object")
                except (ValueError, orjson.JSONDecodeError):
                    self.counters["bad_payload"] += 1
                    return
            t = parse_stored_time(info.get("first_seen"))
            fire = h.fleet.observe(str(info.get("signature") or ""), str(info.get("host") or ""),
                                   t if t is not None else time.time(), str(info.get("id") or ""),
                                   kind=info.get("kind"), title=info.get("title"))
            if fire is not None:
                h.counters["fleet_fired"] += 1
                log.warning("alert %s: signature %s on %d hosts within %gs", h.name, fire["signature"],
                            fire["host_count"], fire["window"])
                h.enqueue("fleet", orjson.dumps(fire))

    def _ensure_worker(self, h: Hook) -> bool:
        if self.closed:
            return False
        if h.task is None or h.task.done():
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return False
            h.task = loop.create_task(h.run(), name=f"sylog-alert-{h.name}")
            self._loop = loop
        return True

    # --- server observer protocol (registered only when alerts are configured; events come via listeners) ------

    feed = None  # tick/close only: the pipeline never calls it per message (events arrive through listeners)

    def tick(self, now: float) -> None:  # pragma: no cover - no-op
        pass

    # --- shutdown / stats -------------------------------------------------------------------------------------

    async def drain(self, timeout: float) -> bool:
        """Wait until every queued event was delivered or given up (True), or ``timeout`` passed (False)."""
        waits = [asyncio.ensure_future(h.queue.join()) for h in self.hooks if h.task is not None]
        if not waits:
            return True
        done, pending = await asyncio.wait(waits, timeout=timeout)
        for p in pending:
            p.cancel()
        return not pending

    async def aclose(self, timeout: float = 5.0) -> None:
        """Stop taking events, give queued ones ``timeout`` seconds, then cancel (children are killed)."""
        self.closed = True
        drained = await self.drain(timeout)
        tasks = [h.task for h in self.hooks if h.task is not None]
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        for h in self.hooks:
            left = h.queue.qsize()
            if left:
                h.counters["dropped"] += left
        if not drained:
            log.warning("alerts: shutdown with undelivered events: %s",
                        {h.name: h.queue.qsize() for h in self.hooks if h.queue.qsize()})
        if self.counters["events"]:
            st = self.stats()
            log.info("alerts: %s", " ".join(f"{k[7:]}={st[k]}" for k in (
                "alerts_events", "alerts_sent", "alerts_failed", "alerts_retries", "alerts_timeouts",
                "alerts_dropped", "alerts_fleet_fired")))

    def stats(self) -> dict[str, int]:
        """Totals over hooks (``alerts_sent`` ...) plus per hook (``alert.<name>.sent`` ...)."""
        out = {f"alerts_{k}": v for k, v in self.counters.items()}
        for key in ("queued", "sent", "failed", "attempts", "retries", "timeouts", "dropped", "fleet_fired"):
            out[f"alerts_{key}"] = sum(h.counters[key] for h in self.hooks)
        for h in self.hooks:
            for k, v in h.counters.items():
                out[f"alert.{h.name}.{k}"] = v
        return out

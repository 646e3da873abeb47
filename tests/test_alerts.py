"""Alert hooks with a real subprocess and a real HTTP receiver on 127.0.0.1, plus the fleet rule.

Every wait is on a condition with a deadline; backoffs are shortened through the config, not by mocking time.
"""

from __future__ import annotations

import asyncio
import os
import sys
import textwrap
import time
from datetime import datetime, timezone
from pathlib import Path

import msgspec
import orjson
import pytest

from sylog.alerts import AlertConfig, AlertDispatcher, FleetRule
from sylog.alerts.http import post
from conftest import until

pytestmark = pytest.mark.timeout(60)


def incident(host: str = "db-07", sig: str = "a1b2c3d4e5f6", iid: str = "20261125T101500Z-3f2a9c",
             first_seen: str = "2026-11-25T10:15:00.000000Z", **kw) -> bytes:
    d = {"id": iid, "host": host, "kind": "oops", "kinds": ["oops"], "fatal": False,
         "title": "general protection fault in tcp_retransmit_timer", "signature": sig, "state": "open",
         "first_seen": first_seen, "last_seen": first_seen}
    d.update(kw)
    return orjson.dumps(d)


def cfg(**kw) -> AlertConfig:
    return msgspec.convert(kw, AlertConfig)


# ---------------------------------------------------------------------------------------------------- exec


@pytest.fixture
def recorder(tmp_path: Path) -> tuple[list[str], Path]:
    """A small program that appends "<event> <stdin>" to a file (and its pid to another)."""
    script = tmp_path / "hook.py"
    script.write_text(textwrap.dedent("""
        import os, sys, time
        out, pidfile, mode = sys.argv[1], sys.argv[2], sys.argv[3]
        data = sys.stdin.buffer.read()
        with open(pidfile, "a") as f:
            f.write(f"{os.getpid()}\\n")
        if mode == "sleep":
            time.sleep(60)
        if mode == "fail":
            sys.stderr.write("receiver says no\\n")
            sys.exit(3)
        with open(out, "ab") as f:
            f.write(os.environ["SYLOG_EVENT"].encode() + b" " + data + b"\\n")
    """))
    out = tmp_path / "out.txt"
    return [sys.executable, str(script), str(out), str(tmp_path / "pids.txt")], out


async def test_exec_gets_incident_json_on_stdin(recorder):
    argv, out = recorder
    d = AlertDispatcher([cfg(type="exec", on=["open", "close"], command=argv + ["ok"])])
    j1, j2 = incident(), incident(state="closed")
    d.on_incident("opened", j1)
    await d.emit("closed", j2)
    await d.emit("updated", j2)  # not an alert event
    await until(lambda: out.exists() and out.read_bytes().count(b"\n") == 2, what="two hook runs")
    assert out.read_bytes() == b"open " + j1 + b"\nclose " + j2 + b"\n"
    await d.aclose()
    s = d.stats()
    assert s["alerts_sent"] == 2 and s["alerts_failed"] == 0 and s["alerts_ignored"] == 1


async def test_exec_timeout_kills_the_child(recorder, tmp_path):
    argv, out = recorder
    d = AlertDispatcher([cfg(type="exec", command=argv + ["sleep"], timeout=0.5)])
    t0 = time.monotonic()
    await d.emit("open", incident())
    assert time.monotonic() - t0 < 0.2  # queued, not run inline
    h = d.hooks[0]
    await until(lambda: h.counters["failed"] == 1, timeout=15, what="timeout")
    assert h.counters["timeouts"] == 1 and h.counters["attempts"] == 1  # exec: no retries by default
    pid = int((tmp_path / "pids.txt").read_text().split()[0])
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # killed and reaped
    await d.aclose()


async def test_exec_failure_is_retried_then_counted(recorder, tmp_path):
    argv, out = recorder
    d = AlertDispatcher([cfg(type="exec", command=argv + ["fail"], retries=2, backoff=0.01)])
    d.on_incident("open", incident())
    h = d.hooks[0]
    await until(lambda: h.counters["failed"] == 1, what="give up")
    assert h.counters["attempts"] == 3 and h.counters["retries"] == 2 and h.counters["sent"] == 0
    assert len((tmp_path / "pids.txt").read_text().split()) == 3
    await d.aclose()


async def test_exec_missing_program_is_not_retried(tmp_path):
    d = AlertDispatcher([cfg(type="exec", command=[str(tmp_path / "nope")], retries=5, backoff=0.01)])
    d.on_incident("open", incident())
    h = d.hooks[0]
    await until(lambda: h.counters["failed"] == 1)
    assert h.counters["attempts"] == 1
    await d.aclose()


async def test_aclose_kills_a_running_child(recorder, tmp_path):
    argv, _ = recorder
    d = AlertDispatcher([cfg(type="exec", command=argv + ["sleep"], timeout=30)])
    d.on_incident("open", incident())
    pids = tmp_path / "pids.txt"
    await until(lambda: pids.exists() and pids.read_text().strip(), what="child started")
    t0 = time.monotonic()
    await d.aclose(timeout=0.2)
    assert time.monotonic() - t0 < 5
    with pytest.raises(ProcessLookupError):
        os.kill(int(pids.read_text().split()[0]), 0)


# ------------------------------------------------------------------------------------------------- webhook


class Receiver:
    """A real HTTP/1.1 server on 127.0.0.1: records requests, answers with ``statuses`` in turn (last repeats);
    status 0 means "never answer" (to provoke timeouts)."""

    def __init__(self, statuses=(200,)) -> None:
        self.statuses = list(statuses)
        self.requests: list[dict] = []
        self.server: asyncio.AbstractServer | None = None
        self.port = 0

    async def __aenter__(self) -> "Receiver":
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.close()
        await self.server.wait_closed()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook?x=1"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            headers = {}
            while True:
                h = await reader.readline()
                if h in (b"\r\n", b""):
                    break
                k, _, v = h.decode().partition(":")
                headers[k.strip().lower()] = v.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            n = len(self.requests)
            self.requests.append({"line": line.decode().strip(), "headers": headers, "body": body})
            status = self.statuses[min(n, len(self.statuses) - 1)]
            if status == 0:
                await asyncio.sleep(30)
                return
            writer.write(f"HTTP/1.1 {status} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok".encode())
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()


async def test_http_post_client():
    async with Receiver([201]) as r:
        assert await post(r.url, b'{"a":1}', {"X-Test": "1"}, timeout=5) == 201
    req = r.requests[0]
    assert req["line"] == "POST /hook?x=1 HTTP/1.1"
    assert req["headers"]["content-type"] == "application/json" and req["headers"]["x-test"] == "1"
    assert req["headers"]["host"] == f"127.0.0.1:{r.port}" and req["body"] == b'{"a":1}'


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 made with the openssl CLI (skip when there is none)."""
    import shutil
    import subprocess

    if not shutil.which("openssl"):
        pytest.skip("openssl not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return cert, key


async def test_webhook_over_https_verifies_the_receiver(tls_files):
    import ssl

    cert, key = tls_files
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(cert, key)
    r = Receiver()
    r.server = await asyncio.start_server(r._handle, "127.0.0.1", 0, ssl=sctx)
    r.port = r.server.sockets[0].getsockname()[1]
    url = f"https://127.0.0.1:{r.port}/hook"
    try:
        d = AlertDispatcher([cfg(type="webhook", url=url, ca_file=str(cert), name="tls"),
                             cfg(type="webhook", url=url, retries=0, name="untrusted")])  # system CAs only
        d.on_incident("opened", incident())
        await until(lambda: d.hooks[0].counters["sent"] == 1 and d.hooks[1].counters["failed"] == 1)
        await d.aclose()
    finally:
        r.server.close()
        await r.server.wait_closed()
    assert len(r.requests) == 1 and r.requests[0]["body"] == incident()


async def test_webhook_posts_incident_json():
    async with Receiver() as r:
        d = AlertDispatcher([cfg(type="webhook", url=r.url, on=["open", "vmcore"],
                                 headers={"Authorization": "Bearer t"})])
        j = incident()
        d.on_incident("opened", j)
        d.on_incident("closed", j)  # not subscribed
        d.on_incident("vmcore", incident(vmcore={"path": "/var/crash/x/vmcore"}))
        await until(lambda: len(r.requests) == 2, what="two POSTs")
        await d.aclose()
    assert r.requests[0]["body"] == j and r.requests[0]["headers"]["x-sylog-event"] == "open"
    assert r.requests[0]["headers"]["authorization"] == "Bearer t"
    assert orjson.loads(r.requests[1]["body"])["vmcore"]["path"] == "/var/crash/x/vmcore"
    assert r.requests[1]["headers"]["x-sylog-event"] == "vmcore"
    assert d.stats()["alerts_sent"] == 2


async def test_webhook_failing_then_succeeding_receiver_is_retried_with_backoff():
    async with Receiver([503, 500, 200]) as r:
        d = AlertDispatcher([cfg(type="webhook", url=r.url, retries=3, backoff=0.05)])
        t0 = time.monotonic()
        d.on_incident("open", incident())
        h = d.hooks[0]
        await until(lambda: h.counters["sent"] == 1, what="delivery after retries")
        elapsed = time.monotonic() - t0
        await d.aclose()
    assert len(r.requests) == 3 and all(q["body"] == incident() for q in r.requests)
    assert h.counters["attempts"] == 3 and h.counters["retries"] == 2 and h.counters["failed"] == 0
    assert elapsed >= 0.05 + 0.1  # backoff 0.05 then 0.1: exponential


async def test_webhook_gives_up_after_retries_and_does_not_retry_client_errors():
    async with Receiver([500]) as r:
        d = AlertDispatcher([cfg(type="webhook", url=r.url, retries=2, backoff=0.01, name="ops")])
        d.on_incident("open", incident())
        await until(lambda: d.hooks[0].counters["failed"] == 1)
        assert len(r.requests) == 3
        await d.aclose()
    assert d.stats()["alert.ops.failed"] == 1
    async with Receiver([400]) as r:
        d = AlertDispatcher([cfg(type="webhook", url=r.url, retries=4, backoff=0.01)])
        d.on_incident("open", incident())
        await until(lambda: d.hooks[0].counters["failed"] == 1)
        assert len(r.requests) == 1  # 400 will not get better by asking again
        await d.aclose()


async def test_webhook_timeout_and_refused_connection():
    async with Receiver([0, 200]) as r:  # first request hangs
        d = AlertDispatcher([cfg(type="webhook", url=r.url, timeout=0.3, retries=1, backoff=0.01)])
        d.on_incident("open", incident())
        h = d.hooks[0]
        await until(lambda: h.counters["sent"] == 1, what="sent after a timeout")
        assert h.counters["timeouts"] == 1 and len(r.requests) == 2
        await d.aclose()
    port = r.port  # closed now: connection refused
    d = AlertDispatcher([cfg(type="webhook", url=f"http://127.0.0.1:{port}/", retries=2, backoff=0.01)])
    d.on_incident("open", incident())
    await until(lambda: d.hooks[0].counters["failed"] == 1)
    assert d.hooks[0].counters["attempts"] == 3
    await d.aclose()


async def test_never_blocks_ingestion_bounded_queue_counts_drops():
    async with Receiver([0]) as r:  # a receiver that never answers
        d = AlertDispatcher([cfg(type="webhook", url=r.url, queue=2, timeout=5, retries=0)])
        t0 = time.monotonic()
        for i in range(10):
            await d.emit("open", incident(iid=f"i{i}"))
        assert time.monotonic() - t0 < 0.1
        h = d.hooks[0]
        assert h.counters["queued"] == 2 and h.counters["dropped"] == 8
        await until(lambda: len(r.requests) == 1, what="first request in flight")
        await d.aclose(timeout=0.1)
    assert h.counters["dropped"] >= 9  # the queued one that never got its turn counts too


async def test_events_from_another_thread_hop_to_the_loop():
    import threading

    async with Receiver() as r:
        d = AlertDispatcher([cfg(type="webhook", url=r.url)])
        d.on_incident("opened", incident(iid="first"))  # starts the worker on this loop
        th = threading.Thread(target=d.on_incident, args=("closed", incident(iid="x")))
        d.hooks[0].events = frozenset(("open", "close"))
        d.wanted = frozenset(("open", "close"))
        th.start()
        th.join(5)
        await until(lambda: len(r.requests) == 2, what="both events")
        await d.aclose()
    assert orjson.loads(r.requests[1]["body"])["id"] == "x"


def test_no_loop_is_counted_not_raised():
    d = AlertDispatcher([cfg(type="webhook", url="http://127.0.0.1:9/")])
    d.on_incident("opened", incident())
    assert d.hooks[0].counters["dropped"] == 1


# --------------------------------------------------------------------------------------------------- fleet


def test_fleet_rule_threshold_window_and_rearm():
    r = FleetRule(3, 600)
    assert r.observe("S", "a", 1000, "i1") is None
    assert r.observe("S", "a", 1010, "i2") is None  # same host again: still one host
    assert r.observe("T", "b", 1020, "j1") is None  # other signature
    assert r.observe("S", "b", 1100, "i3") is None
    fired = r.observe("S", "c", 1200, "i4", kind="oops", title="t")
    assert fired is not None and fired["hosts"] == ["a", "b", "c"] and fired["host_count"] == 3
    assert fired["incidents"] == ["i2", "i3", "i4"] and fired["signature"] == "S" and fired["kind"] == "oops"
    assert r.observe("S", "d", 1250) is None  # already fired: no page per crash
    # hosts age out: at t=1801, a(1010), b(1100), c(1200) are older than 600 s, only d and e remain -> re-armed
    assert r.observe("S", "e", 1801) is None
    assert r.hosts_for("S") == ["d", "e"]
    again = r.observe("S", "f", 1810)
    assert again is not None and again["hosts"] == ["d", "e", "f"]
    assert r.observe("", "x", 1) is None


def test_fleet_rule_window_is_on_incident_times():
    r = FleetRule(2, 60)
    assert r.observe("S", "a", 0) is None
    assert r.observe("S", "b", 61) is None  # a is 61 s older: not within the window
    assert r.observe("S", "a", 100) is not None


async def test_fleet_rule_fires_one_webhook_with_the_hosts():
    async with Receiver() as r:
        d = AlertDispatcher([
            cfg(type="webhook", url=r.url, fleet_hosts=3, fleet_window=600),
        ])
        d.on_incident("opened", incident(host="n1", iid="a", first_seen="2026-11-25T10:00:00Z"))
        d.on_incident("closed", incident(host="n1", iid="a", first_seen="2026-11-25T10:00:00Z"))
        d.on_incident("opened", incident(host="n2", iid="b", first_seen="2026-11-25T10:03:00Z"))
        d.on_incident("opened", incident(host="n9", sig="other", iid="z", first_seen="2026-11-25T10:04:00Z"))
        d.on_incident("opened", incident(host="n3", iid="c", first_seen="2026-11-25T10:05:00Z"))
        d.on_incident("opened", incident(host="n4", iid="d", first_seen="2026-11-25T10:06:00Z"))
        await until(lambda: len(r.requests) == 1, what="fleet POST")
        await d.aclose()
    assert len(r.requests) == 1
    body = orjson.loads(r.requests[0]["body"])
    assert r.requests[0]["headers"]["x-sylog-event"] == "fleet"
    assert body["hosts"] == ["n1", "n2", "n3"] and body["signature"] == "a1b2c3d4e5f6"
    assert body["incidents"] == ["a", "b", "c"] and body["threshold"] == 3
    assert d.stats()["alerts_fleet_fired"] == 1


async def test_fleet_rule_with_exec(recorder):
    argv, out = recorder
    d = AlertDispatcher([cfg(type="exec", command=argv + ["ok"], fleet_hosts=2, fleet_window=60, on=["open"])])
    d.on_incident("opened", incident(host="x1"))
    d.on_incident("opened", incident(host="x2"))
    await until(lambda: out.exists() and out.read_bytes().endswith(b"\n"))
    await d.aclose()
    ev, _, js = out.read_bytes().rstrip(b"\n").partition(b" ")
    assert ev == b"fleet" and orjson.loads(js)["hosts"] == ["x1", "x2"]


# -------------------------------------------------------------------------------------------------- config


def test_alert_config_validation():
    def decode(b: bytes):
        return msgspec.toml.decode(b, type=dict[str, list[AlertConfig]])

    got = decode(b'[[alert]]\ntype = "webhook"\nurl = "http://h/x"\n[[alert]]\ntype = "exec"\n'
                     b'command = ["/bin/true"]\nfleet_hosts = 4\nfleet_window = 300\n')["alert"]
    assert got[0].events == ("open",) and got[0].max_retries == 3
    assert got[1].events == ("open", "close") and got[1].max_retries == 0 and got[1].fleet_hosts == 4
    for bad, needle in [
        (b'type = "exec"', "needs `command`"),
        (b'type = "webhook"\nurl = "ftp://x"', "needs `url`"),
        (b'type = "mail"', "Invalid enum value 'mail'"),
        (b'type = "exec"\ncommand = ["x"]\non = ["opened"]', "Invalid enum value 'opened'"),
        (b'type = "exec"\ncommand = ["x"]\ntimeout = 0', "timeout"),
        (b'type = "exec"\ncommand = ["x"]\nfrobnicate = 1', "unknown field"),
    ]:
        with pytest.raises(msgspec.ValidationError, match=needle):
            decode(b"[[alert]]\n" + bad + b"\n")


def test_load_config_has_alerts(tmp_path):
    from sylog.config import load_config

    p = tmp_path / "sylog.toml"
    p.write_text('[[alert]]\ntype = "webhook"\nurl = "http://127.0.0.1:1/x"\non = ["open", "close"]\n')
    c = load_config(p)
    assert len(c.alert) == 1 and c.alert[0].events == ("open", "close")
    assert load_config(None).alert == []
    d = AlertDispatcher.from_config(c)
    assert [h.name for h in d.hooks] == ["webhook0"]


async def test_fleet_rule_survives_a_restart_by_seeding_from_disk(tmp_path):
    """Two hosts crashed before the restart; the third after it completes the fleet alert — and a threshold
    already reached before the restart does not fire again."""
    from types import SimpleNamespace

    now = time.time()

    def put(host: str, sig: str, ago: float) -> None:
        d = tmp_path / "incidents" / host
        d.mkdir(parents=True, exist_ok=True)
        first = datetime.fromtimestamp(now - ago, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        (d / f"{sig}-{host}.json").write_bytes(incident(host=host, sig=sig, iid=f"{sig}-{host}", first_seen=first))

    put("a", "S", 100)
    put("b", "S", 50)
    put("old", "S", 5000)  # outside the 600 s window
    for h in ("x", "y", "z"):
        put(h, "T", 10)  # T already reached 3 hosts before the restart
    async with Receiver() as r:
        conf = SimpleNamespace(data_dir=str(tmp_path), alert=[cfg(type="webhook", url=r.url, fleet_hosts=3,
                                                                  fleet_window=600)])
        d = AlertDispatcher.from_config(conf, now=now)
        stamp = datetime.fromtimestamp(now, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        d.on_incident("opened", incident(host="w", sig="T", iid="t-w", first_seen=stamp))
        d.on_incident("opened", incident(host="c", sig="S", iid="s-c", first_seen=stamp))
        await until(lambda: len(r.requests) == 1, what="fleet POST")
        await d.aclose()
    assert len(r.requests) == 1  # drained: T did not fire again
    body = orjson.loads(r.requests[0]["body"])
    assert body["signature"] == "S" and body["hosts"] == ["a", "b", "c"]

"""Engine on a real event loop: trigger on disk fast, writes batched off the loop, aclose persists, ENOSPC-like
failures retried."""

from __future__ import annotations

import asyncio
import os
import time

import orjson

from sylog.config import Config
from sylog.incidents.engine import IncidentEngine

from test_incident_support import OOPS, PANIC, FakeDetector, Feeder


async def _ticker(engine, stop: asyncio.Event, period: float = 0.1):
    while not stop.is_set():
        engine.tick(time.time())
        await asyncio.sleep(period)


def _jsons(root):
    return sorted((root / "incidents").rglob("*.json")) if (root / "incidents").is_dir() else []


async def _wait(pred, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")


async def test_trigger_on_disk_within_one_second_and_batched(tmp_path):
    cfg = Config(data_dir=str(tmp_path))
    cfg.incidents.quiet = 1.0
    e = IncidentEngine.from_config(cfg, detector=FakeDetector())
    stop = asyncio.Event()
    task = asyncio.create_task(_ticker(e, stop))
    feed = Feeder(e, t0=time.time())
    try:
        t0 = time.monotonic()
        for h in range(50):
            feed.t = time.time()
            feed(f"host-{h}", OOPS[0], dt=0)
        paths = await _wait(lambda: len(_jsons(tmp_path)) == 50 and _jsons(tmp_path))
        latency = time.monotonic() - t0
        assert latency < 1.0, latency
        assert e.counters["write_batches"] <= 5  # one executor hop per tick, not per incident
        inc = orjson.loads(paths[0].read_bytes())
        assert inc["state"] == "open" and inc["lines"] == 1
        # they close after quiet and the final version lands
        await _wait(lambda: all(orjson.loads(p.read_bytes())["state"] == "closed" for p in _jsons(tmp_path)))
    finally:
        stop.set()
        await task
        await e.aclose()


async def test_aclose_persists_open_incidents_as_open(tmp_path):
    e = IncidentEngine(str(tmp_path), detector=FakeDetector(), quiet=60)
    feed = Feeder(e, t0=time.time())
    for ln in OOPS + PANIC:
        feed("db", ln)
    await e.aclose()  # no tick ever ran: aclose must still write
    (p,) = _jsons(tmp_path)
    inc = orjson.loads(p.read_bytes())
    assert inc["state"] == "open" and inc["lines"] == len(OOPS) + len(PANIC) and inc["fatal"]
    assert inc["function"] == "ext4_fill_super"  # report refreshed before the final write
    log = p.with_suffix(".log").read_bytes()
    assert log.count(b"\n") == len(OOPS) + len(PANIC) + 1


async def test_failed_writes_are_counted_and_retried(tmp_path):
    e = IncidentEngine(str(tmp_path), detector=FakeDetector(), quiet=60)
    real = e.store.write_batch
    fail = {"on": True}

    def flaky(items, durable=True):  # the loop's first publication (durable=False) fails the same way
        if fail["on"]:
            return [(h, i, OSError(28, "No space left on device")) for h, i, _, _ in items]
        return real(items, durable)

    e.store.write_batch = flaky
    feed = Feeder(e, t0=time.time())
    feed("db", OOPS[0])
    stop = asyncio.Event()
    task = asyncio.create_task(_ticker(e, stop, 0.05))
    try:
        await _wait(lambda: e.counters["write_errors"] >= 2)
        assert not _jsons(tmp_path)
        fail["on"] = False
        await _wait(lambda: _jsons(tmp_path), timeout=10)
    finally:
        stop.set()
        await task
        await e.aclose()


async def test_listeners_hear_opened_and_closed_after_write(tmp_path):
    e = IncidentEngine(str(tmp_path), detector=FakeDetector(), quiet=0.3)
    heard = []
    e.listeners.append(lambda ev, inc: heard.append((ev, inc.id, os.path.exists(inc.path))))
    stop = asyncio.Event()
    task = asyncio.create_task(_ticker(e, stop, 0.05))
    feed = Feeder(e, t0=time.time())
    feed("db", OOPS[0])
    try:
        await _wait(lambda: [h for h in heard if h[0] == "closed"])
    finally:
        stop.set()
        await task
        await e.aclose()
    assert [h[0] for h in heard] == ["opened", "closed"] and all(h[2] for h in heard)


async def test_new_incident_visible_before_the_writer_thread_syncs_it(tmp_path):
    """The first version is published on the loop (temp + rename, no fsync): visible while the writer thread is
    stuck in a slow fsync; listeners hear of it only once the thread has synced it."""
    import threading

    e = IncidentEngine(str(tmp_path), detector=FakeDetector(), quiet=60)
    heard = []
    e.listeners.append(lambda ev, inc: heard.append(ev))
    gate = threading.Event()
    real_sync = e.store.sync_batch

    def slow_sync(keys):
        gate.wait(10)
        return real_sync(keys)

    e.store.sync_batch = slow_sync
    feed = Feeder(e, t0=time.time())
    try:
        feed("db", OOPS[0])
        (p,) = await _wait(lambda: _jsons(tmp_path), timeout=2)
        inc = orjson.loads(p.read_bytes())
        assert inc["state"] == "open" and inc["lines"] == 1
        assert p.with_suffix(".log").is_file()
        assert not [q for q in p.parent.iterdir() if q.name.startswith(".")]  # no temp file left behind
        assert e.counters["published"] == 1 and heard == []
        e.tick(time.time())  # hands the fsync to the (blocked) writer thread
        await asyncio.sleep(0.05)
        assert heard == []
        gate.set()
        await _wait(lambda: heard == ["opened"])
    finally:
        gate.set()
        await e.aclose()


def test_memory_trimmed_once_when_a_burst_of_ingest_ends(tmp_path, monkeypatch):
    e = IncidentEngine(str(tmp_path), detector=FakeDetector(), quiet=60)
    trims = []
    monkeypatch.setattr(e, "_trim_memory", lambda: trims.append(1))
    feed = Feeder(e, t0=time.time())
    e.tick(feed.t)
    for i in range(5000):  # a burst: well over BURST_LINES context lines in one tick
        feed(f"h{i % 50}", f"ordinary line {i}", kernel=False)
    e.tick(feed.advance(0.1))
    assert trims == []  # still busy
    e.tick(feed.advance(0.1))  # nothing came in: the burst is over
    e.tick(feed.advance(0.1))
    assert trims == [1]
    e.flush_sync()

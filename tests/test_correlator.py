"""Correlator units: fake clock, fake detector (see test_incident_support), no I/O."""

from __future__ import annotations

import random

from sylog.incidents.correlator import Correlator
from sylog.incidents.ring import ContextRing, pack

from test_incident_support import OOPS, PANIC, FakeDetector, Feeder


class Rec:
    def __init__(self) -> None:
        self.events = []

    def __call__(self, ev, rec):
        self.events.append((ev, rec))

    def closed(self):
        return [r for e, r in self.events if e == "closed"]

    def opened(self):
        return [r for e, r in self.events if e == "opened"]


def make(**kw):
    sink = Rec()
    det = kw.pop("detector", None) or FakeDetector()
    c = Correlator(sink, detector=det, **kw)
    return c, sink, Feeder(c), det


def test_oops_escalating_to_panic_is_one_fatal_incident():
    c, sink, feed, _ = make(quiet=30)
    for ln in OOPS + PANIC:
        feed("db-07", ln)
    assert len(sink.opened()) == 1
    rec = sink.opened()[0]
    inc = rec.inc
    assert inc.kind == "page-fault" and inc.kinds == ["page-fault", "oops", "panic"] and inc.fatal
    assert inc.lines == len(OOPS) + len(PANIC)
    assert inc.state == "open" and inc.function is None  # report refreshed at a bounded rate, not per line
    c.tick(feed.advance(0.6))
    assert inc.function == "ext4_fill_super" and inc.cpu == 3
    assert [e for e, _ in sink.events] == ["opened", "updated"]
    c.tick(feed.advance(28.0))
    assert inc.state == "open"
    c.tick(feed.advance(1.5))
    assert inc.state == "closed" and inc.closed_reason == "quiet"
    assert sink.closed() == [rec] and not c.open


def test_interleaved_hosts_never_mix():
    c, sink, feed, _ = make(quiet=5)
    hosts = [f"h{i}" for i in range(8)]
    rnd = random.Random(7)
    pos = {h: 0 for h in hosts}
    seq = OOPS + PANIC
    while any(pos[h] < len(seq) for h in hosts):
        h = rnd.choice([h for h in hosts if pos[h] < len(seq)])
        feed(h, seq[pos[h]])
        if rnd.random() < 0.3:
            feed(h, "ordinary daemon chatter", kernel=False)
        pos[h] += 1
    c.tick(feed.advance(10))
    closed = sink.closed()
    assert sorted(r.inc.host for r in closed) == sorted(hosts)
    for r in closed:
        assert r.inc.lines == len(seq), r.inc.host
        for ln in r.crash_lines():
            assert f" {r.inc.host} ".encode() in ln
        assert r.inc.fatal and r.inc.kind == "page-fault"


def test_two_crashes_with_a_boot_between_are_two_incidents():
    c, sink, feed, _ = make(quiet=30)
    for ln in OOPS + PANIC:
        feed("db-07", ln)
    feed.advance(40)  # kdump, reboot
    feed("db-07", "[    0.000000] Linux version 6.1.0-test (gcc) #1 SMP")
    feed("db-07", "[    0.000000] Command line: BOOT_IMAGE=/vmlinuz")
    first = sink.closed()
    assert len(first) == 1
    for ln in OOPS:
        feed("db-07", ln.replace("[  100.", "[  200."))
    c.tick(feed.advance(31))
    closed = sink.closed()
    assert len(closed) == 2 and closed[0].inc.id != closed[1].inc.id
    assert [r.inc.kind for r in closed] == ["page-fault", "page-fault"]
    assert not any(r.inc.kind == "unclean-reboot" for r in closed)


def test_boot_closes_open_incident_with_reason_reboot():
    c, sink, feed, _ = make(quiet=300)
    for ln in OOPS:
        feed("h", ln)
    feed("h", "[    0.000000] Linux version 6.1.0")
    (rec,) = sink.closed()
    assert rec.inc.closed_reason == "reboot"
    assert rec.inc.lines == len(OOPS)  # the new boot's line is not part of the crash


def test_unclean_reboot_has_context_of_last_lines_before_silence():
    c, sink, feed, _ = make(quiet=30, context_lines=5)
    for i in range(20):
        feed("web-1", f"[ {1000 + i}.000000] eth0: link flap {i}")
        feed("web-1", f"cron job {i}", kernel=False, app="CRON")
    feed.advance(300)
    feed("web-1", "[    0.000000] Linux version 6.1.0-test (gcc) #1 SMP")
    feed("web-1", "[    0.000000] Command line: root=/dev/sda1")
    (rec,) = sink.closed()
    inc = rec.inc
    assert inc.kind == "unclean-reboot" and inc.kinds == ["unclean-reboot"] and inc.state == "closed"
    assert inc.title == "unexpected kernel reboot" and not inc.fatal
    ctx = rec.context.decode().splitlines()
    assert len(ctx) == 5 and inc.context_lines == 5
    assert ctx[-1].endswith("cron job 19") and ctx[0].endswith("cron job 17")
    assert "Linux version" in inc.trigger and inc.signature
    assert inc.first_seen < inc.last_seen  # first_seen: when the host went silent


def test_printk_time_back_near_zero_is_a_new_boot():
    c, sink, feed, _ = make(quiet=30)
    feed("h", "[  500.000000] something")
    feed("h", "[    1.000000] early boot line without banner")
    (rec,) = sink.closed()
    assert rec.inc.kind == "unclean-reboot"


def test_clean_shutdown_then_boot_is_not_an_incident():
    c, sink, feed, _ = make(quiet=30)
    feed("h", "[  500.000000] eth0: up")
    feed("h", "exiting on signal 15.", kernel=False, app="rsyslogd")
    feed("h", "[  501.000000] reboot: Restarting system")
    feed.advance(60)
    feed("h", "[    0.000000] Linux version 6.1.0-test")
    assert sink.events == []
    # ... and the next boot without shutdown is unclean again
    for i in range(3):
        feed("h", f"[  {100 + i}.000000] up and running")
    feed.advance(100)
    feed("h", "[    0.000000] Linux version 6.1.0-test")
    assert [r.inc.kind for r in sink.closed()] == ["unclean-reboot"]


def test_first_boot_seen_is_not_unclean():
    c, sink, feed, _ = make()
    feed("fresh", "[    0.000000] Linux version 6.1.0-test")
    feed("fresh", "[    0.000000] Command line: x")
    assert sink.events == []


def test_context_is_last_n_lines_before_trigger():
    c, sink, feed, _ = make(context_lines=7)
    sent = [feed("h", f"line {i}", kernel=(i % 2 == 0)) for i in range(500)]
    feed("h", OOPS[0])
    (rec,) = sink.opened()
    assert rec.context == b"".join(sent[-7:])
    assert rec.inc.context_lines == 7
    assert rec.crash_lines()[0].endswith(OOPS[0].encode() + b"\n")


def test_non_kernel_lines_do_not_attach_but_feed_the_ring():
    c, sink, feed, _ = make(quiet=30, context_lines=50)
    feed("h", OOPS[0])
    feed("h", "sshd chatter", kernel=False)
    feed("h", OOPS[4])
    c.tick(feed.advance(31))
    (rec,) = sink.closed()
    assert rec.inc.lines == 2
    assert all(b"sshd chatter" not in ln for ln in rec.crash_lines())
    feed("h", OOPS[0])
    rec2 = sink.opened()[-1]
    assert b"sshd chatter" in rec2.context


def test_line_cap_keeps_head_and_tail_and_counts_the_cut():
    c, sink, feed, _ = make(quiet=30, max_lines=50, tail_keep=10)
    feed("h", OOPS[0])
    for i in range(199):
        feed("h", f"[  100.1] stack line {i}")
    c.tick(feed.advance(31))
    (rec,) = sink.closed()
    assert rec.inc.lines == 200
    assert rec.inc.lines_cut == 200 - 50
    lines = rec.crash_lines()
    assert len(lines) == 50 + 1  # plus the marker line
    assert b"cut here" in lines[40]
    assert lines[-1].endswith(b"stack line 198\n")


def test_report_refresh_is_bounded():
    det = FakeDetector()
    c, sink, feed, _ = make(quiet=30, refresh_interval=0.5, detector=det)
    feed("h", OOPS[0])
    for i in range(3000):
        feed("h", f"[  100.2] line {i}", dt=0.0001)  # 0.3 s of lines
        if i % 100 == 0:
            c.tick(feed.t)
    assert det.analyze_calls <= 3
    c.tick(feed.advance(31))
    assert sink.closed()[0].inc.lines == 3001


def test_quiet_counts_from_last_crash_line_when_detector_knows_continuations():
    det = FakeDetector(continuation=True)
    c, sink, feed, _ = make(quiet=10, detector=det)
    for ln in OOPS:
        feed("h", ln)
    for i in range(30):  # firewall chatter at kern facility, one line a second: attaches, does not extend
        feed("h", f"[  {101 + i}.0] IN=eth0 OUT= SRC=10.0.0.{i}", dt=1.0)
        c.tick(feed.t)
    (rec,) = sink.closed()
    assert rec.inc.closed_reason == "quiet"
    assert rec.inc.lines < len(OOPS) + 12


def test_resumed_incident_closes_with_reason_restart_or_joins():
    c, sink, feed, _ = make(quiet=10)
    for ln in OOPS:
        feed("h", ln)
    (rec,) = sink.opened()
    inc = rec.inc
    c2, sink2, feed2, _ = make(quiet=10)
    feed2.t = feed.t
    c2.resume(inc, rec.context, rec.crash_lines(), list(rec.bodies), feed.t)
    c2.tick(feed2.advance(11))
    (r2,) = sink2.closed()
    assert r2.inc.closed_reason == "restart"
    # joining: a new line within quiet keeps it alive and closes normally later
    c3, sink3, feed3, _ = make(quiet=10)
    feed3.t = feed.t
    inc.state = "open"
    inc.closed_reason = None
    c3.resume(inc, rec.context, rec.crash_lines(), list(rec.bodies), feed.t)
    feed3("h", PANIC[0], dt=5)
    c3.tick(feed3.advance(11))
    (r3,) = sink3.closed()
    assert r3.inc.closed_reason == "quiet" and r3.inc.fatal and r3.inc.lines == len(OOPS) + 1
    assert sink3.opened() == []


def test_a_detector_exception_never_escapes_feed():
    det = FakeDetector()
    det.classify = lambda body: 1 / 0
    c, sink, feed, _ = make(detector=det)
    feed("h", "[ 1.0] anything")
    assert c.counters["detector_errors"] == 1
    assert len(c.hosts["h"]) == 1


def _append(r, line, maxlen, max_bytes=64 * 1024, pending=None):
    blk = r.append(line, maxlen, max_bytes)
    if blk is not None:
        if pending is None:
            r.packed(blk, pack(blk[1]), maxlen, max_bytes)
        else:
            pending.append(blk)


def test_ring_keeps_last_lines_across_blocks():
    r = ContextRing()
    lines = [b"%05d " % i + b"x" * (i % 300) + b"\n" for i in range(5000)]
    for ln in lines:
        _append(r, ln, 200)
    assert r.lines(200) == lines[-200:]
    assert r.lines(3) == lines[-3:]
    assert len(r) >= 200
    assert r.nbytes() < sum(map(len, lines[-400:]))


def test_ring_byte_cap_bounds_memory_for_huge_lines():
    import os
    r = ContextRing()
    for _ in range(1000):
        _append(r, os.urandom(3000).hex().encode() + b"\n", 200, max_bytes=64 * 1024)
    assert r.nbytes() <= 64 * 1024 + 3 * 8192 + 6000 * 2
    assert len(r.lines(200)) > 0


def test_ring_reads_right_while_blocks_are_still_raw_or_dropped_in_flight():
    r = ContextRing()
    pending = []
    lines = [b"line %d\n" % i for i in range(1000)]
    for ln in lines:
        _append(r, ln, 100, pending=pending)
    assert r.lines(100) == lines[-100:]  # raw blocks read as they are
    for blk in pending:  # late packing, including blocks dropped meanwhile
        r.packed(blk, pack(blk[1]), 100)
    assert r.lines(100) == lines[-100:]
    assert r.nbytes() < sum(map(len, lines[-200:]))


def test_ring_cap_shrinks_with_host_count():
    c, sink, feed, _ = make(ring_budget=1_000_000, ring_bytes=64 * 1024)
    for h in range(10):
        feed(f"h{h}", "x")
    assert c._ring_cap == 64 * 1024
    for h in range(1000):
        feed(f"h{h}", "x")
    assert c._ring_cap == 2048  # floor


def test_host_table_is_bounded():
    c, sink, feed, _ = make(max_hosts=100)
    feed("keep", OOPS[0])  # open incident: never forgotten
    for h in range(150):
        feed(f"h{h}", "x", kernel=False)
    c.tick(feed.t)
    assert len(c.hosts) < 150 and "keep" in c.hosts and c.counters["hosts_forgotten"] > 0


def test_unclean_reboot_names_the_release_that_died():
    c, sink, feed, _ = make()
    feed("h", "[    0.000000] Linux version 5.10.0-old (gcc) #1 SMP")
    feed.advance(100)
    feed("h", "[  100.000000] eth0: up")
    feed.advance(100)
    feed("h", "[    0.000000] Linux version 6.1.0-new (gcc) #1 SMP")
    (rec,) = sink.closed()
    assert rec.inc.kind == "unclean-reboot" and rec.inc.kernel_release == "5.10.0-old"


def test_tick_spends_a_bounded_cpu_budget_on_analysis_in_a_storm():
    det = FakeDetector()
    c, sink, feed, _ = make(quiet=5, refresh_interval=0.5, detector=det)
    fake_cpu = [0.0]

    def analyze(kind, bodies, _orig=det.analyze):
        fake_cpu[0] += 0.001  # each analysis "costs" 1 ms
        return _orig(kind, bodies)

    det.analyze = analyze
    c.cpu_clock = lambda: fake_cpu[0]
    for h in range(300):
        for ln in OOPS:
            feed(f"h{h}", ln, dt=0)
    calls = det.analyze_calls
    c.tick(feed.advance(1.0), budget=0.03)
    assert det.analyze_calls - calls <= 32  # not 300 refreshes in one tick
    for _ in range(20):
        c.tick(feed.advance(0.1), budget=0.03)
    c.tick(feed.advance(10))
    for _ in range(20):  # closes need their final analysis: spread over ticks too, none lost
        c.tick(feed.advance(0.1), budget=0.03)
    assert len(sink.closed()) == 300 and not c.open
    assert all(r.inc.function == "ext4_fill_super" for r in sink.closed())


# --- properties ---------------------------------------------------------------------------------------------------

from hypothesis import given, settings, strategies as hs  # noqa: E402

_TEXTS = OOPS + PANIC + [
    "[    0.000000] Linux version 6.1.0", "[  900.0] eth0: up", "[    1.0] early", "WARNING: CPU: 1 PID: 2 at x",
    "reboot: Restarting system", "", "\x00\xff garbage", "[T12] INFO: task kworker:1 blocked for more than 1 s",
]
_EVENTS = hs.lists(hs.tuples(hs.sampled_from(["a", "b", "c"]), hs.one_of(hs.sampled_from(_TEXTS), hs.text(max_size=40)),
                             hs.booleans(), hs.sampled_from([0.0, 0.001, 1.0, 40.0])), max_size=120)


@settings(max_examples=300, deadline=None)
@given(_EVENTS)
def test_property_hosts_never_mix_and_every_incident_closes(events):
    c, sink, feed, _ = make(quiet=30, context_lines=10, max_lines=40, tail_keep=5)
    for host, text, kernel, dt in events:
        feed(host, text, kernel=kernel, dt=dt)
        if dt >= 1.0:
            c.tick(feed.t)
    c.tick(feed.advance(10_000))
    opened = {id(r) for r in sink.opened()}
    closed = sink.closed()
    assert opened == {id(r) for r in closed} and not c.open
    by_host = {}
    for r in closed:
        inc = r.inc
        assert inc.state == "closed" and inc.kind in inc.kinds and inc.lines >= 1
        for ln in r.crash_lines():
            assert ln.startswith(b"---- sylog:") or f" {inc.host} ".encode() in ln
        for ln in r.context.splitlines():
            assert f" {inc.host} ".encode() in ln
        by_host.setdefault(inc.host, []).append(r)
    for recs in by_host.values():  # one host's incidents never overlap in time
        spans = sorted((r.first_t, r.last_t) for r in recs)
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))


def test_raw_blocks_waiting_for_the_worker_are_bounded():
    from sylog.incidents.correlator import MAX_PENDING_BLOCKS
    c, sink, feed, _ = make(inline_pack=False, raw_budget=0)  # deflate everything: the path under test
    for i in range(MAX_PENDING_BLOCKS * 20):
        feed(f"h{i % 500}", f"line {i}", kernel=False)
    assert len(c.pending_blocks) <= MAX_PENDING_BLOCKS
    c.install_packed(jobs := c.take_pending_blocks(), [pack(b[1]) for _, b in jobs])
    last7 = max(i for i in range(MAX_PENDING_BLOCKS * 20) if i % 500 == 7)
    assert [ln.split()[-1] for ln in c.hosts["h7"].lines(3)] == [b"%d" % (last7 - k * 500) for k in (2, 1, 0)]

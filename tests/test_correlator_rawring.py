"""Context rings kept raw while the raw budget allows, deflated past it: same context lines either way."""

from __future__ import annotations

from sylog.incidents.correlator import Correlator
from sylog.incidents.ring import PACKED, RAW, pack

from test_incident_support import FakeDetector, Feeder


def _fill(c: Correlator, hosts: int, per_host: int, width: int = 60) -> Feeder:
    feed = Feeder(c)
    for i in range(hosts * per_host):
        feed(f"h{i % hosts}", f"line {i} " + "x" * width, kernel=False)
    return feed


def _states(c: Correlator) -> set[int]:
    return {b[2] for st in c.hosts.values() for b in (st._raw or ())} | ({PACKED} if any(
        st._zmeta for st in c.hosts.values()) else set())


def test_small_fleet_keeps_blocks_raw_and_reads_them():
    c = Correlator(detector=FakeDetector())
    _fill(c, 20, 300)
    assert _states(c) == {RAW}
    assert not c.pending_blocks
    lines = c.hosts["h3"].lines(200)
    assert len(lines) == 200 and all(b" h3 " in ln for ln in lines)
    assert int(lines[-1].split()[-2]) == 20 * 299 + 3


def test_over_the_raw_budget_blocks_are_deflated_and_older_raw_ones_follow_in_order():
    ref = Correlator(detector=FakeDetector(), raw_budget=0)
    c = Correlator(detector=FakeDetector(), raw_budget=20 * 216 * 120)  # ~20 hosts of ~100-byte lines fit raw
    _fill(ref, 5, 100)
    _fill(c, 5, 100)
    assert _states(c) == {RAW} and PACKED in _states(ref)
    feed_ref, feed_c = _fill(ref, 60, 40), _fill(c, 60, 40)  # now over budget
    assert PACKED in _states(c)
    for h in ("h0", "h4", "h59"):
        assert c.hosts[h].lines(200) == ref.hosts[h].lines(200)
    del feed_ref, feed_c


def test_long_lines_are_always_deflated():
    c = Correlator(detector=FakeDetector())
    _fill(c, 2, 100, width=1000)
    assert PACKED in _states(c)


def test_engine_mode_pending_blocks_bounded_when_packing():
    from sylog.incidents.correlator import MAX_PENDING_BLOCKS
    c = Correlator(detector=FakeDetector(), inline_pack=False, raw_budget=0)
    _fill(c, 500, 80)
    assert 0 < len(c.pending_blocks) <= MAX_PENDING_BLOCKS
    jobs = c.take_pending_blocks()
    c.install_packed(jobs, [pack(b[1]) for _, b in jobs])
    assert [int(ln.split()[-2]) for ln in c.hosts["h7"].lines(2)] == [500 * 78 + 7, 500 * 79 + 7]

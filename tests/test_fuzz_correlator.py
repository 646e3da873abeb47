"""Fuzz properties of the correlator with the REAL detector and a fake clock.

Several hosts' crash traces (bench/traces.py) and chatter (kernel and daemon, plus arbitrary kernel text) are fed in
an arbitrary interleaving with arbitrary clock steps (the traces never pausing for the quiet period: that would be
two incidents by design). Properties: nothing raises and the detector never
errors (the correlator swallows detector exceptions into ``detector_errors``, so that counter must stay 0); an
incident's lines all come from its own host; every crashed host gets exactly one incident of the trace's kind, no
chatter-only host gets one; after ``quiet`` seconds of silence ticks close everything.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.traces import DAEMON_CHATTER, KERNEL_CHATTER, TRACES
from sylog.incidents.correlator import Correlator
from sylog.syslog.message import Message
from sylog.timeline.format import format_line

QUIET = 30.0
T0 = 1_800_000_000.0
FILL = {"cpu": 3, "pid": 4242, "comm": "nginx", "rel": "6.1.0-18-amd64", "a": 1, "b": 2, "c": 3, "port": 4444,
        "n": 7, "s2": "05", "hex": "00000000abcd", "sec": 1764064800, "ms": "123"}


def kmsg(host: str, text: str, sev: int = 4) -> Message:
    return Message(format="rfc5424", pri=sev, facility=0, severity=sev, hostname=host, app_name="kernel", msg=text)


def umsg(host: str, app: str, fac: int, sev: int, text: str) -> Message:
    return Message(format="rfc5424", pri=fac * 8 + sev, facility=fac, severity=sev, hostname=host, app_name=app,
                   msg=text)


class Sink:
    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []

    def __call__(self, ev, rec) -> None:
        self.events.append((ev, rec))

    def of(self, kind: str) -> list:
        return [r for e, r in self.events if e == kind]


def _drain(c: Correlator, now: float) -> None:
    """Tick until nothing is open (a tick spends a bounded CPU budget on analysis, so closes may take a few)."""
    for _ in range(200):
        c.tick(now)
        if not c.open:
            return
        now += 0.2
    raise AssertionError(f"still open after 200 ticks: {sorted(c.open)}")


def _check_no_mixing(sink: Sink) -> None:
    for rec in sink.of("opened"):
        host = rec.inc.host
        for ln in rec.crash_lines():
            if ln.startswith(b"---- sylog:"):
                continue
            assert f" {host} ".encode() in ln, (host, ln)


@st.composite
def scenarios(draw):
    nhosts = draw(st.integers(1, 6))
    hosts = [f"node-{i:02d}" for i in range(nhosts)]
    crashed = {h: draw(st.sampled_from(sorted(TRACES))) for h in hosts if draw(st.booleans())}
    queues: dict[str, list[tuple[str, object]]] = {}
    for k, h in enumerate(hosts):
        q: list[tuple[str, object]] = []
        ts = 200.0 + k
        for _ in range(draw(st.integers(0, 8))):
            ts += 0.5
            if draw(st.booleans()):
                sev, text = draw(st.sampled_from(KERNEL_CHATTER))
                q.append(("k", (sev, f"[{ts:12.6f}] {text.format(**FILL)}")))
            else:
                q.append(("u", draw(st.sampled_from(DAEMON_CHATTER))))
        if h in crashed:
            at = draw(st.integers(0, len(q)))
            lines = [("k", (sev, f"[{ts + 1 + j * 1e-5:12.6f}] {text.format(**FILL)}"))
                     for j, (sev, text) in enumerate(TRACES[crashed[h]][1])]
            q[at:at] = lines
        queues[h] = q
    order = draw(st.lists(st.sampled_from(hosts), min_size=sum(map(len, queues.values())),
                          max_size=sum(map(len, queues.values()))))
    steps = draw(st.lists(st.floats(0.0, 2.0), min_size=len(order), max_size=len(order)))
    return hosts, crashed, queues, order, steps


def _feed_all(c: Correlator, hosts, queues, order, steps) -> float:
    t = T0
    pos = {h: 0 for h in hosts}
    pending = [h for h in order]
    # the drawn order decides who speaks next; hosts with lines left after it speak round-robin
    pending += [h for h in hosts for _ in range(len(queues[h]))]
    # gaps are arbitrary but a host's trace must not pause for ``quiet`` (that is two incidents by design):
    # the whole feed is squeezed into 80 % of the quiet period
    scale = min(1.0, 0.8 * QUIET / max(sum(steps), 1e-9))
    i = 0
    for h in pending:
        if pos[h] >= len(queues[h]):
            continue
        what, item = queues[h][pos[h]]
        pos[h] += 1
        t += steps[i % len(steps)] * scale if steps else 0.001
        i += 1
        if what == "k":
            sev, text = item
            m = kmsg(h, text, sev)
        else:
            app, fac, sev, text = item
            m = umsg(h, app, fac, sev, text.format(**FILL))
        c.feed(h, t, m, format_line(t, h, m))
        if i % 7 == 0:
            c.tick(t)
    return t


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(scenarios())
def test_interleaved_crashes_one_incident_per_host_never_mixed(sc):
    hosts, crashed, queues, order, steps = sc
    sink = Sink()
    c = Correlator(sink, quiet=QUIET)
    t = _feed_all(c, hosts, queues, order, steps)
    _drain(c, t + QUIET + 1)
    assert c.counters["detector_errors"] == 0 and c.counters["analyze_errors"] == 0
    _check_no_mixing(sink)
    opened = sink.of("opened")
    assert sorted(r.inc.host for r in opened) == sorted(crashed), [(r.inc.host, r.inc.kind, r.inc.trigger)
                                                                   for r in opened]
    for rec in opened:
        assert rec.inc.kind == TRACES[crashed[rec.inc.host]][0], (rec.inc.host, rec.inc.kinds)
        assert rec.inc.state == "closed" and rec.closed
    assert {id(r) for r in sink.of("closed")} == {id(r) for r in opened}


JUNK = st.one_of(st.text(max_size=120), st.lists(st.sampled_from([
    "[  100.000001] ", "[    0.000000] ", "Linux version 6.1.0 ", "BUG: ", "Oops: ", "Kernel panic - not syncing: ",
    "RIP: 0010:f+0x1/0x2", "Call Trace:", " <TASK>", "---[ end trace ", "WARNING: CPU: 1 PID: 2 at ",
    "INFO: task x:1 blocked for more than 120 seconds.", "reboot: Restarting system", "[Hardware Error]: ",
    "Command line: ", "\udcff", "\x00", "é", " "]), max_size=8).map("".join))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 4), st.booleans(), JUNK, st.floats(0.0, 45.0)), max_size=80))
def test_arbitrary_kernel_text_never_raises_never_mixes_and_closes(items):
    sink = Sink()
    c = Correlator(sink, quiet=QUIET, max_lines=50, tail_keep=10)
    t = T0
    for hi, kernel, text, dt in items:
        h = f"h{hi}"
        t += dt
        m = kmsg(h, text) if kernel else umsg(h, "systemd", 3, 6, text)
        c.feed(h, t, m, format_line(t, h, m))
        if dt > 1:
            c.tick(t)
    _drain(c, t + QUIET + 1)
    assert c.counters["detector_errors"] == 0 and c.counters["analyze_errors"] == 0
    _check_no_mixing(sink)
    for rec in sink.of("opened"):
        assert rec.closed and rec.inc.state == "closed"
        assert rec.inc.lines >= 1 and rec.inc.signature

"""Fuzz properties of printk handling, detection and report analysis.

* split_printk / classify / trigger_body / is_crash_continuation / ends_report / is_boot_marker / is_clean_shutdown
  and analyze never raise on arbitrary text, nor on text built from kernel-report fragments;
* analyze on the realistic traces of bench/traces.py gives the same signature (and function) whatever the
  addresses, register values, pids, cpus, comms and printk times are: a signature must name the bug, not the run.
"""

from __future__ import annotations

import random
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.traces import TRACES
from sylog.kernel.detect import KINDS, classify, ends_report, is_boot_marker, is_clean_shutdown, \
    is_crash_continuation, trigger_body
from sylog.kernel.printk import split_printk, strip_printk
from sylog.kernel.report import analyze
from sylog.syslog.message import Message

SETTINGS = dict(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

FRAGMENTS = st.sampled_from([
    "<4>", "<0>", "<99999>", "[", "]", "[  100.000001] ", "[    0.000000] ", "[ 1e9] ", "[T123] ", "[C3] ", "[ T1]",
    "kernel: [", "kernel: ", "** 5 printk messages dropped ** ", "host login: ", "BUG: ", "BUG: kernel NULL pointer "
    "dereference, address: ", "Oops: ", "Kernel panic - not syncing: ", "general protection fault", "WARNING: ",
    "WARNING: CPU: 3 PID: 42 at ", "kernel BUG at ", "mm/slub.c:123!", "INFO: task ", "blocked for more than ",
    "watchdog: BUG: soft lockup - CPU#", "NMI watchdog: Watchdog detected hard LOCKUP on cpu ", "rcu: INFO: rcu_sched "
    "detected stalls", "[Hardware Error]: ", "CPU 3: Machine Check Exception: ", "Bank 4: ", "KASAN: ",
    "use-after-free in ", "UBSAN: ", "KFENCE: ", "KCSAN: ", "Out of memory: Killed process ", "RIP: 0010:",
    "func+0x1a/0x40", " [mod]", "Call Trace:", " <TASK>", " </TASK>", " ? ", "Modules linked in: ", "---[ end trace ",
    "CPU: 3 PID: 42 Comm: bash Tainted: G D 6.1.0 #1", "Not tainted ", "Hardware name: ", "Linux version 6.1.0 ",
    "Code: 48 8b <48> ", "RAX: ffff888000000000 ", "0x", "ffffffff81000000", "#PF: ", "Rebooting in 10 seconds",
    "Kernel Offset: ", "pc : ", "lr : ", "Internal error: ", "[<c0101234>] (func) from [<c0105678>] (other)",
    "\t", "\r", "\n", " ", "\x00", "\udcff", "é", "\u2028",
])
ktext = st.one_of(st.text(max_size=200), st.lists(st.one_of(FRAGMENTS, st.text(max_size=8)), max_size=16).map("".join))


@settings(**SETTINGS)
@given(ktext)
def test_line_functions_never_raise(text):
    p = split_printk(text)
    assert isinstance(p.body, str) and p.body == strip_printk(text)
    assert p.level is None or 0 <= p.level <= 7
    for body in (text, p.body):
        hit = classify(body)
        if hit is not None:
            assert hit.kind in KINDS and isinstance(hit.fatal, bool)
        assert isinstance(trigger_body(body), str)
        assert isinstance(is_crash_continuation(body), bool)
        assert isinstance(ends_report(body), bool)
        assert isinstance(is_boot_marker(body), bool)


@settings(**SETTINGS)
@given(ktext, st.sampled_from(["kernel", "systemd", "systemd-logind", "rsyslogd", "shutdown", None]),
       st.one_of(st.none(), st.integers(0, 23)))
def test_is_clean_shutdown_never_raises(text, app, fac):
    m = Message(format="rfc3164", pri=None if fac is None else fac * 8 + 5, facility=fac,
                severity=None if fac is None else 5, app_name=app, msg=text)
    assert isinstance(is_clean_shutdown(m), bool)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(KINDS + ("no-such-kind",)), st.lists(ktext, max_size=40))
def test_analyze_never_raises(kind, bodies):
    r = analyze(kind, bodies)
    assert isinstance(r.title, str)
    if any(b.strip() for b in bodies):
        assert r.title.strip(), r
    assert isinstance(r.signature, str) and r.signature
    assert all(isinstance(f, str) for f in r.frames)


# ---------------------------------------------------------------- stable signatures

_HEX16 = re.compile(r"\b[0-9a-f]{16}\b")
_HEXADDR = re.compile(r"(address: |addr |at addr |for address )(0x)?[0-9a-f]{8,16}")
_COMMS = ("kworker/2:1", "nginx", "postgres", "java", "python3", "containerd", "rsync", "fio", "swapper/0")


def _render(name: str, rng: random.Random | None, ts0: float) -> list[str]:
    fill = {"cpu": 3, "pid": 4242, "comm": "nginx", "rel": "6.1.0-18-amd64"}
    if rng is not None:
        fill = {"cpu": rng.randint(0, 255), "pid": rng.randint(1, 4_000_000), "comm": rng.choice(_COMMS),
                "rel": "6.1.0-18-amd64"}
    out = []
    for k, (_sev, text) in enumerate(TRACES[name][1]):
        body = text.format(**fill)
        if rng is not None:
            body = _HEX16.sub(lambda m: f"{rng.getrandbits(64):016x}", body)
            body = _HEXADDR.sub(lambda m: f"{m.group(1)}{m.group(2) or ''}{rng.getrandbits(48):012x}", body)
        out.append(f"[{ts0 + k * 1e-5:12.6f}] {body}")
    return out


BASELINE = {name: analyze(kind, _render(name, None, 100.0)) for name, (kind, _) in TRACES.items()}


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(TRACES)), st.integers(0, 2**32), st.floats(0.0, 9_999_999.0), st.booleans())
def test_signature_stable_under_address_pid_cpu_perturbation(name, seed, ts0, stripped):
    kind = TRACES[name][0]
    bodies = _render(name, random.Random(seed), ts0)
    if stripped:
        bodies = [strip_printk(b) for b in bodies]
    r = analyze(kind, bodies)
    base = BASELINE[name]
    assert r.signature == base.signature, (name, r.title, base.title)
    assert r.function == base.function and r.frames == base.frames

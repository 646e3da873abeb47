"""Coverage-guided fuzz target for the receive path: deframer -> parse -> split_printk -> classify (+ netconsole).

Not in CI: run it for a bounded time by hand.

    .venv/bin/pip install atheris          # optional; not a runtime dependency of sylog
    .venv/bin/python -m bench.fuzz_parsers --seconds 180
    .venv/bin/python -m bench.fuzz_parsers --hypothesis --examples 200000   # without atheris
    .venv/bin/python -m bench.fuzz_parsers --repro /tmp/sylog-fuzz/crash-...  # replay one input

With atheris (libFuzzer) the target runs with ``-max_total_time`` (and ``-timeout`` per input, so a regular
expression that backtracks badly on some input is reported as a slow unit); the corpus is seeded from
bench/workload.py and bench/traces.py so the fuzzer starts from real syslog and kernel lines, and crash/slow
inputs are written under ``--artifacts`` (default /tmp/sylog-fuzz/). Without atheris (or with ``--hypothesis``) the
same checks run under hypothesis at a high example count.

What one input checks (an AssertionError is a finding, like an exception):
* the first byte picks a max frame size and cut points; the TCP deframer must give the same frames whether the
  stream arrives whole or cut there, never a frame longer than max_size, never hold more than max_size + 12 bytes;
* every frame (and the whole input as one UDP datagram) parses leniently without raising, the MSG being a suffix
  of the frame; strict parsing raises nothing but ParseError;
* each message's text goes through split_printk, classify, is_crash_continuation (the kernel path);
* the whole input as a netconsole datagram never makes the decoder raise.
Each input also gets a wall-time budget (``--slow-ms``): the hypothesis runner reports the slowest inputs.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

try:
    import atheris
except ImportError:  # the hypothesis fallback needs nothing extra
    atheris = None

if atheris is not None and "--hypothesis" not in sys.argv:
    with atheris.instrument_imports():
        from sylog.kernel.detect import classify, is_crash_continuation
        from sylog.kernel.netconsole import NetconsoleDecoder
        from sylog.kernel.printk import split_printk
        from sylog.syslog.framing import TcpDeframer, udp_frame
        from sylog.syslog.parse import ParseError, parse
else:
    from sylog.kernel.detect import classify, is_crash_continuation
    from sylog.kernel.netconsole import NetconsoleDecoder
    from sylog.kernel.printk import split_printk
    from sylog.syslog.framing import TcpDeframer, udp_frame
    from sylog.syslog.parse import ParseError, parse

NOW = 1_764_064_800.0  # 2026-11-25T10:00:00Z: fixed, so a reproducer replays exactly
SIZES = (1, 2, 7, 16, 64, 300, 2048, 64 * 1024)


def _deframe(chunks: list[bytes], max_size: int) -> tuple[list[bytes], TcpDeframer]:
    d = TcpDeframer(max_size=max_size)
    out: list[bytes] = []
    for c in chunks:
        out += d.feed(c)
        assert d.buffered <= max_size + 12, f"deframer holds {d.buffered} > max_size {max_size} + 12"
    out += d.eof()
    return [bytes(f) for f in out], d


def _message(frame: bytes) -> None:
    m = parse(frame, now=NOW)
    assert frame.endswith(m.msg.encode("utf-8", "surrogateescape")), "lenient MSG is not a suffix of the frame"
    assert m.pri is None or 0 <= m.pri <= 191, f"pri {m.pri} out of range"
    try:
        parse(frame, strict=True, now=NOW)
    except ParseError:
        pass
    p = split_printk(m.msg)
    for body in (m.msg, p.body):
        classify(body)
        is_crash_continuation(body)


def one_input(data: bytes) -> None:
    """The fuzz target: all the checks above for one input (raises on a finding)."""
    if not data:
        return
    ctl, stream = data[0], data[1:]
    max_size = SIZES[ctl & 7]
    # cut points derived from the control byte, deterministic for a reproducer
    step = (ctl >> 3) + 1
    cuts = [stream[i:i + step] for i in range(0, len(stream), step)]
    whole, d1 = _deframe([stream], max_size)
    parts, d2 = _deframe(cuts, max_size)
    assert whole == parts, f"split-variant framing (max_size={max_size}, step={step})"
    assert (d1.error, d1.truncated) == (d2.error, d2.truncated), "split-variant framing counters"
    for f in whole:
        assert 0 < len(f) <= max_size, "empty or oversized frame"
        _message(f)
    u = udp_frame(stream)
    if u is not None:
        _message(u)
    nd = NetconsoleDecoder()
    nd.feed(stream, "10.0.0.1", NOW)
    nd.flush()


def seed_corpus(directory: Path, limit: int = 400) -> int:
    """Real-looking inputs to start from: workload messages (both framings), trace lines, netconsole records."""
    from bench.traces import TRACES
    from bench.workload import Workload, WorkloadSpec, frame

    directory.mkdir(parents=True, exist_ok=True)
    w = Workload(WorkloadSpec(hosts=20, messages=300, crashes=5, senders=1, seed=7))
    n = 0
    msgs = [m for _h, m, _c in w.messages()]
    for i in range(0, min(len(msgs), limit), 3):
        framing = ("octet", "lf")[i % 2]
        blob = bytes([i & 0xFF]) + b"".join(frame(m, framing) for m in msgs[i:i + 3])
        (directory / f"seed-{n:04d}").write_bytes(blob)
        n += 1
    for name, (_kind, lines) in TRACES.items():
        text = "\n".join(f"<4>[  100.{k:06d}] {t}" for k, (_s, t) in enumerate(lines)).encode()
        (directory / f"trace-{name}").write_bytes(b"\x42" + text + b"\n")
        (directory / f"nc-{name}").write_bytes(b"\x06" + b"4,%d,100000,-;" % len(lines) + lines[0][1].encode())
        n += 2
    for s in (b"\x00<13>Nov 25 10:00:00 host sshd[1]: hi\n", b"\x0112 <13>1 - - - - - x", b"\x02<0>91: *Oct 07",
              b"\x03<13>1 2026-11-25T10:00:00Z h a p m [x@1 a=\"b\\]\"] \xef\xbb\xbfmsg\n"):
        (directory / f"hand-{n:04d}").write_bytes(s)
        n += 1
    return n


def run_atheris(seconds: int, corpus: Path, artifacts: Path, extra: list[str]) -> int:
    artifacts.mkdir(parents=True, exist_ok=True)
    if not any(corpus.glob("*")) if corpus.exists() else True:
        print(f"seeded {seed_corpus(corpus)} corpus inputs into {corpus}", flush=True)
    argv = [sys.argv[0], f"-max_total_time={seconds}", "-timeout=5", "-rss_limit_mb=4096", "-max_len=4096",
            f"-artifact_prefix={artifacts}/", "-print_final_stats=1", *extra, str(corpus)]
    atheris.Setup(argv, one_input)
    atheris.Fuzz()  # exits the process (libFuzzer) when the time is up or on the first finding
    return 0


def run_hypothesis(examples: int, slow_ms: float) -> int:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    slow: list[tuple[float, bytes]] = []
    count = [0]
    tokens = st.sampled_from([b"<13>", b"<0>", b"<4>", b"1 ", b"Nov 25 10:00:00 ", b"2026-11-25T10:00:00Z ",
                              b"host ", b"kernel: ", b"[  100.000001] ", b"BUG: ", b"Oops: ", b"RIP: 0010:",
                              b"Call Trace:", b"Kernel panic - not syncing: ", b"\n", b"\0", b"\r\n", b"12 ",
                              b"4,1,100,-;", b",ncfrag=0/10", b"\xff", b"[", b"]", b"=", b'"', b":", b" "])
    data = st.one_of(st.binary(min_size=1, max_size=2048),
                     st.builds(lambda c, ps: bytes([c]) + b"".join(ps), st.integers(0, 255),
                               st.lists(st.one_of(tokens, st.binary(max_size=16)), max_size=60)))

    @settings(max_examples=examples, deadline=None, database=None, derandomize=False,
              suppress_health_check=list(HealthCheck))
    @given(data)
    def target(b: bytes) -> None:
        t = time.perf_counter()
        one_input(b)
        ms = (time.perf_counter() - t) * 1000
        count[0] += 1
        if ms > slow_ms:
            slow.append((ms, b))

    t0 = time.perf_counter()
    target()
    dt = time.perf_counter() - t0
    print(f"hypothesis: {count[0]} inputs in {dt:.1f} s, no failure; {len(slow)} slower than {slow_ms} ms")
    for ms, b in sorted(slow, reverse=True)[:5]:
        print(f"  {ms:.1f} ms  {b[:120]!r}{'...' if len(b) > 120 else ''} ({len(b)} bytes)")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=int, default=180, help="atheris: -max_total_time")
    ap.add_argument("--corpus", type=Path, default=Path("/tmp/sylog-fuzz/corpus"))
    ap.add_argument("--artifacts", type=Path, default=Path("/tmp/sylog-fuzz"))
    ap.add_argument("--hypothesis", action="store_true", help="use hypothesis even if atheris is installed")
    ap.add_argument("--examples", type=int, default=100_000, help="hypothesis: example count")
    ap.add_argument("--slow-ms", type=float, default=50.0, help="hypothesis: report inputs slower than this")
    ap.add_argument("--repro", type=Path, help="run one saved input and show the traceback")
    ap.add_argument("libfuzzer", nargs="*", help="extra libFuzzer flags (after --)")
    a = ap.parse_args(argv)
    if a.repro:
        t = time.perf_counter()
        one_input(a.repro.read_bytes())
        print(f"no failure ({(time.perf_counter() - t) * 1000:.1f} ms)")
        return 0
    if atheris is None or a.hypothesis:
        if not a.hypothesis:
            print("atheris not installed (pip install atheris): hypothesis fallback", file=sys.stderr)
        return run_hypothesis(a.examples, a.slow_ms)
    return run_atheris(a.seconds, a.corpus, a.artifacts, a.libfuzzer)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())

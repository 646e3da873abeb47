"""`sylog timeline` over generated day files: order across days, --since/--until seeks, --grep, --around, errors.

The CLI is run in a real subprocess for the paths that matter (stdout a pipe or a regular file, so the
``sendfile`` path is exercised) and in-process for the many small cases.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import orjson
import pytest

from sylog.cli import main
from sylog.commands import timeline as tl

T0 = datetime(2026, 11, 23, 22, 0, 0, tzinfo=timezone.utc).timestamp()


def stamp(t: float) -> bytes:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ").encode()


def line(t: float, host: str, text: bytes, fac: bytes = b"kern.info", tag: bytes = b"kernel:") -> bytes:
    return b" ".join((stamp(t), host.encode(), fac, tag, text)) + b"\n"


def write_timeline(data: Path, host: str, lines: list[tuple[float, bytes]]) -> list[bytes]:
    """Write (time, text) pairs into per-UTC-day files, as the server does; return the lines in order."""
    out = []
    by_day: dict[str, list[bytes]] = {}
    for t, text in lines:
        ln = line(t, host, text)
        out.append(ln)
        by_day.setdefault(datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d"), []).append(ln)
    d = data / "timelines" / host
    d.mkdir(parents=True, exist_ok=True)
    for day, lns in by_day.items():
        (d / f"{day}.log").write_bytes(b"".join(lns))
    return out


def run_cli(capsysbinary, *argv: str) -> tuple[int, bytes, str]:
    rc = main(["timeline", *argv])
    cap = capsysbinary.readouterr()
    return rc, cap.out, cap.err.decode()


def run_proc(*argv: str, stdout=subprocess.PIPE) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sylog", "timeline", *argv], stdout=stdout, stderr=subprocess.PIPE, timeout=60
    )


@pytest.fixture
def three_days(tmp_path: Path) -> tuple[Path, list[bytes], list[float]]:
    # 22:00 on day 1 .. 02:00 on day 3: one line every 60 s, crossing two midnights.
    times = [T0 + i * 60 for i in range(60 * 28)]
    lines = write_timeline(tmp_path, "db-07", [(t, b"msg %d" % i) for i, t in enumerate(times)])
    return tmp_path, lines, times


def test_whole_timeline_in_order_across_days(three_days, capsysbinary):
    data, lines, _ = three_days
    assert sorted(p.name for p in (data / "timelines" / "db-07").iterdir()) == [
        "2026-11-23.log", "2026-11-24.log", "2026-11-25.log"]
    rc, out, err = run_cli(capsysbinary, "db-07", "--data-dir", str(data))
    assert rc == 0, err
    assert out == b"".join(lines)


def test_subprocess_pipe_and_file_outputs_are_identical(three_days, tmp_path):
    data, lines, _ = three_days
    p = run_proc("db-07", "--data-dir", str(data))
    assert p.returncode == 0, p.stderr
    assert p.stdout == b"".join(lines)
    target = tmp_path / "out.log"
    with open(target, "wb") as f:  # a regular file: the sendfile path
        p = run_proc("db-07", "--data-dir", str(data), "--since", "2026-11-24T23:00Z", stdout=f)
    assert p.returncode == 0, p.stderr
    want = [ln for ln in lines if ln >= b"2026-11-24T23:00"]
    assert target.read_bytes() == b"".join(want)
    with open(target, "ab") as f:  # O_APPEND refuses sendfile: the fallback must still copy everything
        p = run_proc("db-07", "--data-dir", str(data), "--since", "2026-11-25T01:00Z", stdout=f)
    assert p.returncode == 0, p.stderr
    assert target.read_bytes() == b"".join(want) + b"".join(ln for ln in lines if ln >= b"2026-11-25T01:00")


def test_since_until_across_days(three_days, capsysbinary):
    data, lines, times = three_days
    rc, out, _ = run_cli(capsysbinary, "db-07", "--data-dir", str(data),
                         "--since", "2026-11-23T23:30:00Z", "--until", "2026-11-25T00:10:00Z")
    assert rc == 0
    lo, hi = datetime(2026, 11, 23, 23, 30, tzinfo=timezone.utc).timestamp(), \
        datetime(2026, 11, 25, 0, 10, tzinfo=timezone.utc).timestamp()
    want = [ln for ln, t in zip(lines, times) if lo <= t <= hi]
    assert out == b"".join(want)
    assert want[0].startswith(b"2026-11-23T23:30:00.000000Z") and want[-1].startswith(b"2026-11-25T00:10:00")


def test_since_duration_is_relative_to_now(tmp_path, capsysbinary):
    import time

    now = time.time()
    lines = write_timeline(tmp_path, "web1", [(now - 3 * 3600 + i * 600, b"tick %d" % i) for i in range(18)])
    rc, out, _ = run_cli(capsysbinary, "web1", "--data-dir", str(tmp_path), "--since", "1h")
    assert rc == 0
    got = out.splitlines(keepends=True)
    # lines every 10 min from now-3h: those within the last hour (allow the clock to move a little)
    assert got == lines[-len(got):] and len(got) in (5, 6)  # i=12 sits right on the bound


def test_since_seek_big_file_matches_naive_filter(tmp_path):
    """A file of ~40 MB with runs of equal timestamps: every bound finds exactly the first line >= since."""
    rnd = random.Random(7)
    host = "big"
    t = T0 + 3 * 3600  # all in one day file
    parts = []
    times = []
    for i in range(250_000):
        if rnd.random() < 0.7:
            t += rnd.choice((0.000001, 0.01, 0.2))
        times.append(t)
        parts.append(line(t, host, b"x" * rnd.randint(20, 300) + b" %d" % i))
    d = tmp_path / "timelines" / host
    d.mkdir(parents=True)
    path = d / "2026-11-24.log"
    path.write_bytes(b"".join(parts))
    offsets = [0]
    for p in parts:
        offsets.append(offsets[-1] + len(p))
    with open(path, "rb") as f:
        fd = f.fileno()
        size = os.fstat(fd).st_size
        assert size > 30_000_000
        probes = [times[0] - 1, times[0], times[-1], times[-1] + 1] + [rnd.choice(times) for _ in range(40)] + [
            rnd.uniform(times[0], times[-1]) for _ in range(40)]
        for b in probes:
            # compare on the stored microsecond precision
            sb = stamp(b)
            want = next((i for i, p in enumerate(parts) if p[:27] >= sb), len(parts))
            assert tl.find_offset(fd, size, b) == offsets[want], (b, want)
            want_after = next((i for i, p in enumerate(parts) if p[:27] > sb), len(parts))
            assert tl.find_offset(fd, size, b, after=True) == offsets[want_after], (b, want_after)
    # and through the CLI, with the real stdout
    since = times[200_000]
    p = run_proc(host, "--data-dir", str(tmp_path), "--since", stamp(since).decode(), "--grep", "x 2000[0-9]{2}$")
    assert p.returncode == 0, p.stderr
    got = p.stdout.splitlines(keepends=True)
    sb = stamp(since)
    assert got == [q for q in parts if q[:27] >= sb and q.rstrip(b"\n")[-6:-2] == b"2000" and b"x 2000" in q]
    assert len(got) == 100


def test_grep_bytes_anchors_and_non_utf8(tmp_path, capsysbinary):
    lines = write_timeline(tmp_path, "h1", [
        (T0 + 1, b"usb 1-1: new device"),
        (T0 + 2, b"BUG: kernel NULL pointer dereference, address: 0000000000000008"),
        (T0 + 3, b"raw \xff\xfe bytes stay"),
        (T0 + 4, b"Call Trace:"),
        (T0 + 5, b"end"),
    ])
    rc, out, _ = run_cli(capsysbinary, "h1", "--data-dir", str(tmp_path), "--grep", r"NULL pointer|Call Trace")
    assert rc == 0 and out == lines[1] + lines[3]
    rc, out, _ = run_cli(capsysbinary, "h1", "--data-dir", str(tmp_path), "--grep", r"\xff\xfe")
    assert out == lines[2]  # bytes as stored, not re-encoded
    rc, out, _ = run_cli(capsysbinary, "h1", "--data-dir", str(tmp_path), "--grep", r"Trace:$")
    assert out == lines[3]
    rc, out, _ = run_cli(capsysbinary, "h1", "--data-dir", str(tmp_path), "--grep", r"^2026-11-23T22:00:05")
    assert out == lines[4]
    # a match may not span lines: `device\s2026` would only match across the newline
    rc, out, _ = run_cli(capsysbinary, "h1", "--data-dir", str(tmp_path), "--grep", r"device\s2026")
    assert rc == 0 and out == b""
    rc, out, _ = run_cli(capsysbinary, "h1", "--data-dir", str(tmp_path), "--grep", "call trace", "-i")
    assert out == lines[3]


def test_grep_chunk_many_matches_per_chunk():
    data = b"".join(b"line %d %s\n" % (i, b"hit" if i % 3 == 0 else b"miss") for i in range(1000))
    got = tl.grep_chunk(__import__("re").compile(rb"hit", __import__("re").M), data)
    assert got == [ln for ln in data.splitlines(keepends=True) if b"hit" in ln]
    got = tl.grep_chunk(__import__("re").compile(rb"", __import__("re").M), data)
    assert got == data.splitlines(keepends=True)  # an empty pattern matches every line once


@pytest.mark.parametrize("pattern", [
    rb"^2026-11-23T22:0[0-2]", rb"^2026-11-23T22:01:..\.000000Z h kern", rb"^a|b", rb"^x|^2026-11-23T22:00:0",
    rb"^", rb"^.*kernel: msg 1[0-9]$", rb"^(2026)-11-23T22:00:(0[13])", rb"^(?:zz)?2026-11-23T22:02:3", rb"msg 7",
    rb"^[0-9]+-11-23T22:03:00", rb"^2026-11-23T22:00:05.000000Z H KERN",
])
def test_grep_scan_equals_per_line_search(pattern):
    import re

    data = b"".join(line(T0 + i, "h", b"msg %d" % i) for i in range(300)) + b"abc b\nb start\n"
    for ic in (False, True):
        g = tl.Grep(pattern, ic)
        rx = re.compile(pattern, re.IGNORECASE if ic else 0)
        want = [ln for ln in data.splitlines(keepends=True) if rx.search(ln.rstrip(b"\n"))]
        assert g.lines(data) == want, (pattern, ic, g.scan)
        assert tl.grep_chunk(g.rx, data) == want
    assert (tl.Grep(rb"^2026").scan is not None) and tl.Grep(rb"^a|b").scan is None


def test_partial_last_line_is_not_shown(tmp_path, capsysbinary):
    lines = write_timeline(tmp_path, "h2", [(T0 + i, b"m%d" % i) for i in range(3)])
    f = tmp_path / "timelines" / "h2" / "2026-11-23.log"
    with open(f, "ab") as fh:
        fh.write(stamp(T0 + 9) + b" h2 kern.info kernel: half a li")
    rc, out, _ = run_cli(capsysbinary, "h2", "--data-dir", str(tmp_path))
    assert rc == 0 and out == b"".join(lines)


def _incident(data: Path, host: str, ident: str, first_seen) -> None:
    d = data / "incidents" / host
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{ident}.json").write_bytes(orjson.dumps({"id": ident, "host": host, "kind": "oops",
                                                    "first_seen": first_seen, "last_seen": first_seen}))


def test_around_incident_across_midnight(three_days, capsysbinary):
    data, lines, times = three_days
    # first_seen two minutes after midnight of day 2: 50 lines before reach back into day 1's file
    k = next(i for i, t in enumerate(times) if stamp(t).startswith(b"2026-11-24T00:02"))
    _incident(data, "db-07", "db-07-20261124-000200-oops", stamp(times[k]).decode())
    rc, out, err = run_cli(capsysbinary, "db-07", "--data-dir", str(data), "--around", "db-07-20261124-000200-oops")
    assert rc == 0, err
    assert out == b"".join(lines[k - 50 : k + 20])
    rc, out, _ = run_cli(capsysbinary, "db-07", "--data-dir", str(data), "--around", "db-07-20261124-000200-oops",
                         "--before", "3", "--after", "1")
    assert out == b"".join(lines[k - 3 : k + 1])
    # epoch-number first_seen between two lines; near the start of the data
    _incident(data, "db-07", "early", times[2] + 0.5)
    rc, out, _ = run_cli(capsysbinary, "db-07", "--data-dir", str(data), "--around", "early")
    assert out == b"".join(lines[0:23])
    # with --grep the counts are of matching lines
    rc, out, _ = run_cli(capsysbinary, "db-07", "--data-dir", str(data), "--around", "db-07-20261124-000200-oops",
                         "--before", "2", "--after", "2", "--grep", r"msg \d*5$")
    want_b = [ln for ln in lines[:k] if ln.rstrip().endswith(b"5")][-2:]
    want_a = [ln for ln in lines[k:] if ln.rstrip().endswith(b"5")][:2]
    assert out == b"".join(want_b + want_a)


def test_around_at_end_of_data(three_days, capsysbinary):
    data, lines, times = three_days
    _incident(data, "db-07", "late", times[-1] + 3600)
    rc, out, _ = run_cli(capsysbinary, "db-07", "--data-dir", str(data), "--around", "late", "--before", "4")
    assert rc == 0 and out == b"".join(lines[-4:])


def test_lines_backward_small_blocks(tmp_path, monkeypatch):
    monkeypatch.setattr(tl, "PROBE", 7)  # blocks shorter than a line: tails carried between reads
    a = tmp_path / "a.log"
    b = tmp_path / "b.log"
    a.write_bytes(b"one\n\ntwo two two two\n")
    b.write_bytes(b"three\nfour four four\nfive\n")
    got = list(tl.lines_backward([a, b], len(b"three\nfour four four\n")))
    assert got == [b"four four four\n", b"three\n", b"two two two two\n", b"\n", b"one\n"]
    assert list(tl.lines_forward([a, b], 4)) == [b"\n", b"two two two two\n", b"three\n", b"four four four\n",
                                                 b"five\n"]


def test_host_name_is_folded(three_days, capsysbinary):
    data, lines, _ = three_days
    rc, out, err = run_cli(capsysbinary, "DB-07", "--data-dir", str(data), "--since", "2026-11-25T01:59Z")
    assert rc == 0, err
    assert out == b"".join(ln for ln in lines if ln >= b"2026-11-25T01:59")


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["nohost"], "unknown host 'nohost'"),
        (["../timelines"], "unknown host"),
        (["db-07", "--since", "yesterdayish"], "bad time 'yesterdayish'"),
        (["db-07", "--until", "2h3q"], "bad time"),
        (["db-07", "--grep", "(unclosed"], "bad --grep regex"),
        (["db-07", "--around", "nope"], "no incidents in"),
        (["db-07", "--around", "../x"], "not an incident ID"),
        (["db-07", "--around", "x", "--since", "1h"], "cannot be combined"),
        (["db-07", "--around", "x", "-f"], "cannot be combined"),
        (["db-07", "-f", "--until", "1h"], "--follow cannot be combined with --until"),
    ],
)
def test_errors_are_one_line_and_nonzero(three_days, capsysbinary, argv, needle):
    data, _, _ = three_days
    rc, out, err = run_cli(capsysbinary, argv[0], "--data-dir", str(data), *argv[1:])
    assert rc != 0
    assert out == b""
    assert needle in err and err.count("\n") == 1, err


def test_unknown_host_suggests_close_names(three_days, capsysbinary):
    data, _, _ = three_days
    rc, out, err = run_cli(capsysbinary, "db07", "--data-dir", str(data))
    assert rc == 1 and out == b"" and "(did you mean db-07?)" in err and err.count("\n") == 1


def test_incident_of_another_host_and_unknown_ids(three_days, capsysbinary):
    data, _, times = three_days
    write_timeline(data, "other", [(T0, b"x")])
    _incident(data, "other", "other-1", times[5])
    rc, _, err = run_cli(capsysbinary, "db-07", "--data-dir", str(data), "--around", "other-1")
    assert rc == 1 and "belongs to host 'other'" in err
    rc, _, err = run_cli(capsysbinary, "db-07", "--data-dir", str(data), "--around", "nope")
    assert rc == 1 and "unknown incident 'nope'" in err and err.count("\n") == 1
    _incident(data, "db-07", "20261124T000200Z-3f2a9c", times[1])
    rc, out, err = run_cli(capsysbinary, "db-07", "--data-dir", str(data), "--around", "20261124T000200Z",
                           "--before", "1", "--after", "1")  # a unique prefix is enough
    assert rc == 0 and out.count(b"\n") == 2, err


def test_empty_ranges(three_days, capsysbinary):
    data, _, _ = three_days
    for argv in (["--since", "2030-01-01"], ["--until", "2020-01-01"],
                 ["--since", "2026-11-25", "--until", "2026-11-24"]):
        rc, out, _ = run_cli(capsysbinary, "db-07", "--data-dir", str(data), *argv)
        assert rc == 0 and out == b""


def test_safe_while_the_server_appends(tmp_path):
    """A writer appends (sometimes half a line at a time) while timeline runs: every run prints whole lines
    that are a prefix of what ends up in the file."""
    import threading

    host = "live"
    d = tmp_path / "timelines" / host
    d.mkdir(parents=True)
    path = d / "2026-11-23.log"
    path.write_bytes(b"")
    stop = threading.Event()
    all_lines = [line(T0 + i * 0.001, host, b"n %d %s" % (i, b"y" * (i % 50))) for i in range(20000)]

    def writer() -> None:
        with open(path, "ab", buffering=0) as f:
            for i, ln in enumerate(all_lines):
                if stop.is_set():
                    return
                if i % 7 == 0:
                    f.write(ln[:20])
                    f.write(ln[20:])
                else:
                    f.write(ln)

    th = threading.Thread(target=writer)
    th.start()
    try:
        runs = 0
        while th.is_alive() and runs < 20:
            p = run_proc(host, "--data-dir", str(tmp_path), "--since", "2026-11-23T22:00:01Z")
            assert p.returncode == 0, p.stderr
            got = p.stdout.splitlines(keepends=True)
            want = [ln for ln in all_lines if ln >= b"2026-11-23T22:00:01"]
            assert got == want[: len(got)]
            runs += 1
    finally:
        stop.set()
        th.join(30)
    assert runs >= 1


def test_around_finds_the_trigger_inside_a_batch_with_one_receive_time(tmp_path, capsysbinary):
    """A TCP batch shares one receive time: the anchor is the trigger line, not the batch's first line."""
    t = T0 + 30
    lines = write_timeline(tmp_path, "b1", [(T0, b"earlier")] + [(t, b"ctx %d" % i) for i in range(4)] + [
        (t, b"general protection fault, probably for non-canonical address 0xdead"), (t, b"RIP: x"), (T0 + 31, b"z")])
    d = tmp_path / "incidents" / "b1"
    d.mkdir(parents=True)
    # 1. only the trigger text (no .log): found by substring among the lines of that instant
    (d / "i1.json").write_bytes(orjson.dumps({"id": "i1", "host": "b1", "first_seen": stamp(t).decode(),
                                              "trigger": "general protection fault, probably for"}))
    rc, out, _ = run_cli(capsysbinary, "b1", "--data-dir", str(tmp_path), "--around", "i1", "--before", "2",
                         "--after", "2")
    assert rc == 0 and out == b"".join(lines[3:7])
    # 2. the .log names the exact line (ctx 2 here, to tell it from the text match)
    (d / "i2.json").write_bytes(orjson.dumps({"id": "i2", "host": "b1", "first_seen": stamp(t).decode(),
                                              "trigger": "general protection", "log_path": str(d / "i2.log")}))
    (d / "i2.log").write_bytes(lines[1] + b"---- sylog: crash lines of incident i2 follow (1 context lines above) "
                               b"----\n" + lines[3] + lines[4])
    rc, out, _ = run_cli(capsysbinary, "b1", "--data-dir", str(tmp_path), "--around", "i2", "--before", "1",
                         "--after", "1")
    assert rc == 0 and out == lines[2] + lines[3]


def test_follow_prints_new_lines_and_new_day_files(tmp_path):
    """`timeline -f` in a real process: existing lines, then appended ones (half lines held back until complete),
    then a new day's file, then lines written late into the old file just after the rollover."""
    import threading
    import time

    lines = write_timeline(tmp_path, "f1", [(T0 + i, b"old %d" % i) for i in range(3)])
    d = tmp_path / "timelines" / "f1"
    proc = subprocess.Popen([sys.executable, "-m", "sylog", "timeline", "f1", "--data-dir", str(tmp_path), "-f",
                             "--follow-interval", "0.05"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    got: list[bytes] = []

    def reader() -> None:
        for ln in proc.stdout:
            got.append(ln)

    th = threading.Thread(target=reader, daemon=True)
    th.start()

    def wait_lines(n: int) -> None:
        deadline = time.monotonic() + 20
        while len(got) < n:
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, got
            time.sleep(0.02)

    try:
        wait_lines(3)
        day1 = d / "2026-11-23.log"
        new1 = line(T0 + 10, "f1", b"appended")
        with open(day1, "ab") as f:
            f.write(new1[:15])
            f.flush()
            time.sleep(0.2)  # a half line is not printed ...
            assert len(got) == 3
            f.write(new1[15:])  # ... until it is complete
        wait_lines(4)
        new2 = line(T0 + 7200, "f1", b"next day")
        (d / "2026-11-24.log").write_bytes(new2)
        wait_lines(5)
        late = line(T0 + 11, "f1", b"late batch")
        with open(day1, "ab") as f:
            f.write(late)
        wait_lines(6)
        more = line(T0 + 7201, "f1", b"next day 2")
        with open(d / "2026-11-24.log", "ab") as f:
            f.write(more)
        wait_lines(7)
    finally:
        proc.terminate()
        proc.wait(10)
        th.join(5)
    assert got == lines + [new1, new2, late, more]


def test_follow_with_since_past_all_files_does_not_replay_history(tmp_path):
    out = tmp_path / "out"
    write_timeline(tmp_path, "f2", [(T0, b"old")])
    hdir = tmp_path / "timelines" / "f2"
    (hdir / "2026-11-25.log").write_bytes(line(T0 + 2 * 86400, "f2", b"new"))
    with open(out, "wb") as fh:
        tl.follow(tl.Output(fh), hdir, None, None, 0.01, min_day="2026-11-25", max_polls=3)
    assert out.read_bytes() == line(T0 + 2 * 86400, "f2", b"new")


def test_around_tolerates_first_seen_rounded_up_by_a_microsecond(tmp_path, capsysbinary):
    """The timeline truncates receive times to the µs, an incident may round them: the trigger line (first of
    its batch) stamped 1 µs before first_seen is still the anchor."""
    t = T0 + 40
    lines = write_timeline(tmp_path, "r1", [(T0, b"a"), (T0 + 1, b"b"), (t, b"BUG: trigger here"), (t, b"next"),
                                           (T0 + 50, b"later")])
    d = tmp_path / "incidents" / "r1"
    d.mkdir(parents=True)
    first_seen = datetime.fromtimestamp(t + 0.000001, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    (d / "i.json").write_bytes(orjson.dumps({"id": "i", "host": "r1", "first_seen": first_seen,
                                             "trigger": "BUG: trigger here"}))
    rc, out, _ = run_cli(capsysbinary, "r1", "--data-dir", str(tmp_path), "--around", "i", "--before", "1",
                         "--after", "2")
    assert rc == 0 and out == b"".join(lines[1:4])

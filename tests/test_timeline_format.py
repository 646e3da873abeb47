"""Timeline line format and the batched writer."""

from __future__ import annotations

import asyncio
import errno
import os
import stat

from hypothesis import given, settings, strategies as st

from sylog.syslog.message import Message
from sylog.timeline.format import TimeCache, escape, format_line
from sylog.timeline.writer import TimelineWriter

T = 1795600800.123456  # 2026-11-25T10:00:00.123456Z


def test_kernel_line_example():
    m = Message(format="rfc3164", pri=4, facility=0, severity=4, app_name="kernel", msg="[  12.3] BUG: x")
    assert format_line(T, "db-07", m) == b"2026-11-25T10:00:00.123456Z db-07 kern.warning kernel: [  12.3] BUG: x\n"


def test_tag_forms_and_unknown_priority():
    m = Message(format="rfc5424", pri=30, facility=3, severity=6, app_name="sshd", procid="123", msg="hi")
    assert b" daemon.info sshd[123]: hi\n" in format_line(T, "h", m)
    m = Message(format="rfc3164", msg="no tag")
    assert format_line(T, "h", m).endswith(b" h -.- - no tag\n")


def test_raw_is_marked():
    m = Message(format="raw", msg="garbage")
    assert format_line(T, "10.0.0.5", m) == b"2026-11-25T10:00:00.123456Z 10.0.0.5 -.raw - garbage\n"


def test_control_chars_escaped_rsyslog_style_and_bytes_kept():
    raw = b"a\nb\rc\td\x00e\x7ff \xff\xfe caf\xc3\xa9"
    m = Message(format="rfc3164", pri=13, facility=1, severity=5, msg=raw.decode("utf-8", "surrogateescape"))
    line = format_line(T, "h", m)
    assert line.endswith(b" a#012b#015c#011d#000e#177f \xff\xfe caf\xc3\xa9\n")
    assert line.count(b"\n") == 1


def test_escape_fast_path_returns_same_object():
    s = "plain text"
    assert escape(s) is s


def test_time_cache_micros_and_day():
    tc = TimeCache()
    assert tc.stamp(T) == ("2026-11-25T10:00:00.123456Z", "2026-11-25")
    assert tc.stamp(T + 0.5)[0] == "2026-11-25T10:00:00.623456Z"
    assert tc.stamp(1795651199.9999)[1] == "2026-11-25"
    assert tc.stamp(1795651200.0) == ("2026-11-26T00:00:00.000000Z", "2026-11-26")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.one_of(st.none(), st.text(max_size=20)))
def test_any_message_is_one_line(raw, app):
    m = Message(format="rfc3164", pri=13, facility=1, severity=5, app_name=app,
                msg=raw.decode("utf-8", "surrogateescape"))
    line = format_line(T, "h", m)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert not any(b < 0x20 or b == 0x7F for b in line[:-1])
    body = line.split(b" ", 4)[4][:-1]
    # the bytes of the message are all there, control bytes as #ooo
    expect = b"".join(b"#%03o" % b if b < 0x20 or b == 0x7F else bytes([b]) for b in raw)
    assert body == expect


# -- writer ------------------------------------------------------------------------------------------------------
def test_writer_batches_modes_and_lru(tmp_path):
    w = TimelineWriter(tmp_path / "data", max_open_files=2)
    for i in range(5):
        for h in ("a", "b", "c"):
            w.append(h, "2026-11-25", b"%s %d\n" % (h.encode(), i))
    w.append("a", "2026-11-26", b"next day\n")
    w.close_sync()
    root = tmp_path / "data" / "timelines"
    assert (root / "a" / "2026-11-25.log").read_bytes() == b"".join(b"a %d\n" % i for i in range(5))
    assert (root / "a" / "2026-11-26.log").read_bytes() == b"next day\n"
    for d in (tmp_path / "data", root, root / "a"):
        assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(root / "b" / "2026-11-25.log").st_mode) == 0o600
    assert w.counters.written == 16 and w.open_files == 0


def test_writer_ends_a_torn_last_line_once_before_appending(tmp_path):
    """A file left ending mid-line (kill during write) gets its line ended before the first new line; a file that
    ends cleanly, and later writes of this process, get nothing extra."""
    root = tmp_path / "timelines"
    (root / "cut").mkdir(parents=True)
    (root / "ok").mkdir()
    (root / "cut" / "d.log").write_bytes(b"whole\nhalf a li")
    (root / "ok" / "d.log").write_bytes(b"whole\n")
    w = TimelineWriter(tmp_path, max_open_files=1)  # LRU of one: every batch below reopens both files
    for i in range(3):
        assert w.write_batch({"d": {"cut": [b"new %d\n" % i], "ok": [b"new %d\n" % i]}}) == []
    w.close_sync()
    assert (root / "cut" / "d.log").read_bytes() == b"whole\nhalf a li\nnew 0\nnew 1\nnew 2\n"
    assert (root / "ok" / "d.log").read_bytes() == b"whole\nnew 0\nnew 1\nnew 2\n"
    assert w.counters.torn_lines_ended == 1


def test_writer_refuses_unsafe_host_names(tmp_path):
    w = TimelineWriter(tmp_path)
    w.append("..", "d", b"x\n")
    w.append("a/b", "d", b"x\n")
    w.close_sync()
    assert w.counters.write_errors == 2 and w.counters.write_failed == 2
    assert not (tmp_path / "timelines").exists() or not os.listdir(tmp_path / "timelines")
    assert not (tmp_path.parent / "d.log").exists()


def test_writer_counts_write_errors_and_keeps_going(tmp_path, monkeypatch):
    w = TimelineWriter(tmp_path)
    real_write = os.write
    calls = {"n": 0}

    def flaky(fd, data):
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", flaky)
    w.append("a", "d", b"lost 1\nlost 2\n")
    failed = w.write_batch(w._pending)
    w._pending = {}
    assert [(k, e) for k, _, e in failed] == [(("a", "d"), errno.ENOSPC)]
    assert w.counters.write_errors == 1 and w.counters.write_failed == 2
    w.append("a", "d", b"kept\n")
    w.close_sync()
    assert (tmp_path / "timelines" / "a" / "d.log").read_bytes() == b"kept\n"


async def test_writer_flushes_periodically(tmp_path):
    w = TimelineWriter(tmp_path, flush_interval=0.05)
    task = asyncio.create_task(w.run())
    w.append("h", "d", b"one\n")
    f = tmp_path / "timelines" / "h" / "d.log"
    deadline = asyncio.get_running_loop().time() + 5
    while not (f.exists() and f.read_bytes() == b"one\n"):
        assert asyncio.get_running_loop().time() < deadline, "not flushed within 5 s"
        await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    w.append("h", "d", b"two\n")
    await w.aclose()
    assert f.read_bytes() == b"one\ntwo\n"

"""netconsole: the sans-IO decoder (plain and extended format, fragments, continuations, escapes) and the listener
end to end over loopback (host naming, timelines, incidents; one incident for a crash seen by syslog and netconsole).
"""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path
from typing import Any

import pytest

from sylog.kernel.netconsole import NetconsoleDecoder, console_text, to_message
from sylog.kernel.printk import split_printk
from sylog.server.app import Server
from conftest import read_timeline, until

# ---- decoder -------------------------------------------------------------------------------------------------


def test_plain_lines_one_and_many_per_datagram() -> None:
    d = NetconsoleDecoder()
    (r,) = d.feed(b"[ 12.345678] BUG: unable to handle page fault\n", "10.0.0.1", 0)
    assert r.text == "[ 12.345678] BUG: unable to handle page fault" and not r.extended and r.level is None
    recs = d.feed(b"line one\nline two\r\n\nline three\n", "10.0.0.1", 0)
    assert [r.text for r in recs] == ["line one", "line two", "line three"]


def test_plain_line_split_across_datagrams_waits_per_source() -> None:
    d = NetconsoleDecoder(frag_timeout=2.0)
    assert d.feed(b"first\nhalf of a lo", "a", 0) [0].text == "first"
    assert d.feed(b"other source\n", "b", 0)[0].text == "other source"  # does not join a's tail
    (r,) = d.feed(b"ng line\n", "a", 0.5)
    assert r.text == "half of a long line"
    assert d.feed(b"unterminated", "a", 1.0) == []
    assert d.expire(2.5) == []
    (r,) = d.expire(3.1)
    assert r.text == "unterminated" and d.waiting == 0


def test_extended_record_fields_and_escapes() -> None:
    d = NetconsoleDecoder()
    (r,) = d.feed(b"4,1234,5000123,-,caller=T42;tab\\x09and\\x5cbackslash \\xc3\\xa9\n SUBSYSTEM=pci\n"
                  b" DEVICE=+pci:0000:00:1f.0\n", "10.0.0.2", 0)
    assert r.extended and r.level == 4 and r.facility == 0 and r.seq == 1234 and r.ts_us == 5000123
    assert r.caller == "T42" and r.text == "tab\tand\\backslash é"
    assert r.fields == {"SUBSYSTEM": "pci", "DEVICE": "+pci:0000:00:1f.0"}
    assert console_text(r) == "[    5.000123] [T42] tab\tand\\backslash é"
    pl = split_printk(console_text(r))
    assert pl.ts == pytest.approx(5.000123) and pl.caller == "T42" and pl.body == r.text


def test_extended_with_release_prepended_and_sysdata_lines() -> None:
    d = NetconsoleDecoder()
    (r,) = d.feed(b"6.4.0-rc1,6,444,1758426,-;hello world\n release=6.4.0-rc1\n taskname=swapper/0\n cpu=3\n"
                  b" msgid=17\n", "h", 0)
    assert r.release == "6.4.0-rc1" and r.text == "hello world" and r.level == 6
    assert r.fields["taskname"] == "swapper/0" and r.fields["cpu"] == "3" and r.fields["msgid"] == "17"
    m = to_message(r, "web-01")
    assert m.facility == 0 and m.severity == 6 and m.app_name == "kernel" and m.msgid == "netconsole"
    assert m.hostname == "web-01" and m.is_kernel
    assert m.structured_data == {"netconsole": {"release": "6.4.0-rc1", "taskname": "swapper/0", "cpu": "3",
                                                "msgid": "17", "seq": "444"}}


def test_fragments_reassembled_in_any_order_and_per_source() -> None:
    """The kernel documentation's example, fed out of order, interleaved with another sender's same seq."""
    d = NetconsoleDecoder()
    assert d.feed(b"6,416,1758426,-,ncfrag=16/31; the 2nd chunk.", "a", 0) == []
    assert d.feed(b"6,416,1758426,-,ncfrag=0/31;THE FIRST CHUNK,", "b", 0) == []
    assert d.feed(b"6,416,1758426,-,ncfrag=16/31; the 2nd chunk.", "a", 0) == []  # a duplicate
    (r,) = d.feed(b"6,416,1758426,-,ncfrag=0/31;the first chunk,", "a", 0)
    assert r.text == "the first chunk, the 2nd chunk." and r.seq == 416
    (r,) = d.feed(b"6,416,1758426,-,ncfrag=16/31; the 2nd chunk.", "b", 0)
    assert r.text == "THE FIRST CHUNK, the 2nd chunk."
    assert d.counters["reassembled"] == 2 and d.waiting == 0


def test_fragmented_record_with_dictionary_in_a_later_fragment() -> None:
    body = b"a long message text\n SUBSYSTEM=net\n release=6.9.0"
    parts = [body[i:i + 10] for i in range(0, len(body), 10)]
    d = NetconsoleDecoder()
    out = []
    off = 0
    for p in parts:
        out += d.feed(b"6.9.0,3,7,99,-,ncfrag=%d/%d;" % (off, len(body)) + p, "x", 0)
        off += len(p)
    (r,) = out
    assert r.text == "a long message text" and r.fields == {"SUBSYSTEM": "net", "release": "6.9.0"}
    assert r.release == "6.9.0" and r.level == 3


def test_incomplete_fragments_expire_marked_and_sets_are_bounded() -> None:
    d = NetconsoleDecoder(frag_timeout=1.0, max_frag_sets=3)
    assert d.feed(b"6,1,10,-,ncfrag=0/20;first half", "a", 0) == []
    (r,) = d.expire(1.5)
    assert r.text == "first half" and r.incomplete
    assert to_message(r, "h").structured_data["netconsole"]["incomplete"] == "1"
    for seq in range(10):
        d.feed(b"6,%d,10,-,ncfrag=0/20;x" % seq, "a", 2.0)
    assert len(d._frags) == 3 and d.counters["frag_evicted"] == 7
    assert d.feed(b"6,1,10,-,ncfrag=50/20;bad", "a", 2) == [] and d.counters["frag_bad"] == 1


def test_continuation_records_joined() -> None:
    d = NetconsoleDecoder(frag_timeout=1.0)
    assert d.feed(b"6,10,100,c;Memory: 1024K", "a", 0) == []
    assert d.feed(b"6,11,101,+; available", "a", 0) == []
    r, nxt = d.feed(b"6,12,102,-;next line", "a", 0)  # a whole line ends the continued one
    assert r.text == "Memory: 1024K available" and nxt.text == "next line"
    assert d.feed(b"6,13,103,c;dangling", "a", 0) == []
    (r,) = d.expire(5)
    assert r.text == "dangling"


@pytest.mark.parametrize("data", [b"", b"1,2;not enough fields", b"x,1,2,-;release-like but level missing",
                                  b"6,1,2,z;bad flag", b"6,1,2,-,ncfrag=a/b;bad frag"])
def test_odd_datagrams_never_raise(data: bytes) -> None:
    d = NetconsoleDecoder()
    recs = d.feed(data + b"\n", "a", 0) + d.expire(100)
    assert all(isinstance(r.text, str) for r in recs)


def test_random_bytes_never_raise() -> None:
    import random

    rnd = random.Random(5)
    d = NetconsoleDecoder()
    for i in range(2000):
        n = rnd.randrange(0, 80)
        head = rnd.choice([b"", b"6,%d,%d,-," % (i, i), b"6,%d,1,-,ncfrag=%d/40;" % (i % 7, rnd.randrange(50))])
        d.feed(head + bytes(rnd.randrange(256) for _ in range(n)), rnd.choice("ab"), i / 100)
    d.flush()
    assert d.waiting == 0


def test_dedup_pairs_copies_across_sources_only() -> None:
    from sylog.server.dedup import KernelDedup

    d = KernelDedup(window=10.0)
    assert not d.duplicate("h", "[ 1.000001] BUG: x", "netconsole", 0)
    assert d.duplicate("h", "BUG: x", "syslog", 1)  # the syslog copy, without the time stamp
    assert not d.duplicate("h", "BUG: x", "syslog", 2)  # a third copy is a new line
    assert not d.duplicate("other", "Call Trace:", "syslog", 2)
    assert not d.duplicate("other", "Call Trace:", "syslog", 2)  # printed twice by one path: both kept
    assert d.duplicate("other", "Call Trace:", "netconsole", 3)
    assert d.duplicate("other", "Call Trace:", "netconsole", 3)
    assert not d.duplicate("other", "Call Trace:", "netconsole", 3)
    assert not d.duplicate("late", "line", "syslog", 0)
    assert not d.duplicate("late", "line", "netconsole", 20)  # outside the window: not a copy


# ---- the listener, end to end ---------------------------------------------------------------------------------

def incidents(data: Path, host: str) -> list[dict]:
    d = data / "incidents" / host
    return [json.loads(p.read_bytes()) for p in sorted(d.glob("*.json"))] if d.is_dir() else []


@pytest.fixture
def nc_server(inproc_server: Any) -> Any:
    async def start(**over: Any) -> Server:
        return await inproc_server(**{"listen.netconsole": ["127.0.0.1:0"], "incidents.quiet": 1.0, **over})

    return start


def send_udp(addr: tuple[Any, ...], *datagrams: bytes) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for d in datagrams:
            s.sendto(d, addr[:2])


CRASH = [
    "BUG: kernel NULL pointer dereference, address: 0000000000000008",
    "#PF: supervisor read access in kernel mode",
    "Oops: 0000 [#1] PREEMPT SMP NOPTI",
    "CPU: 7 PID: 1234 Comm: kworker/7:1 Tainted: G           OE      6.1.0-18-amd64 #1 Debian 6.1.76-1",
    "RIP: 0010:mlx5e_napi_poll+0x1c/0x6d0 [mlx5_core]",
    "Call Trace:",
    " __napi_poll+0x2b/0x160",
    " net_rx_action+0x29e/0x350",
    "Modules linked in: mlx5_core(OE) nfsd",
    "---[ end trace 0000000000000000 ]---",
    "Kernel panic - not syncing: Fatal exception in interrupt",
]


def ext(seq: int, text: str, level: int = 4) -> bytes:
    return b"%d,%d,%d,-;" % (level, seq, 4242_000_000 + seq) + text.encode()


async def test_extended_crash_named_by_hosts_map_makes_a_netconsole_incident(nc_server, tmp_path: Path) -> None:
    srv = await nc_server(hosts={"127.0.0.1": "web-01"})
    data = tmp_path / "data"
    send_udp(srv.netconsole_addresses[0], *(ext(i, ln) for i, ln in enumerate(CRASH)))
    lines = await until(lambda: len(read_timeline(data, "web-01")) >= len(CRASH) and read_timeline(data, "web-01"),
                        what="netconsole lines in web-01's timeline")
    assert " web-01 kern.warning kernel: " in lines[0] and lines[0].endswith(
        "[ 4242.000000] BUG: kernel NULL pointer dereference, address: 0000000000000008")
    (inc,) = await until(lambda: incidents(data, "web-01"), what="incident")
    assert inc["source"] == "netconsole" and inc["kind"] == "page-fault" and inc["host"] == "web-01"
    assert srv.counters.netconsole_messages == len(CRASH) and srv.counters.netconsole_datagrams == len(CRASH)


async def test_plain_netconsole_named_by_the_syslog_name_seen_from_that_address(nc_server, tmp_path: Path) -> None:
    srv = await nc_server()
    data = tmp_path / "data"
    send_udp(srv.udp_addresses[0], b"<13>1 2026-11-25T10:00:00Z db-07 app 1 - - hello from syslog")
    await until(lambda: srv.peers is not None and srv.peers.mapping().get("127.0.0.1") == "db-07",
                what="peer map learns db-07")
    send_udp(srv.netconsole_addresses[0], b"[ 10.000001] plain console line\n[ 10.000002] second\n")
    lines = await until(lambda: [ln for ln in read_timeline(data, "db-07") if "console" in ln or "second" in ln],
                        what="netconsole lines under db-07")
    assert any(ln.endswith("kern.info kernel: [ 10.000001] plain console line") for ln in lines), lines


async def test_unknown_sender_named_by_its_address(nc_server, tmp_path: Path) -> None:
    srv = await nc_server()
    send_udp(srv.netconsole_addresses[0], b"6,1,1000000,-;hello\n")
    lines = await until(lambda: read_timeline(tmp_path / "data", "127.0.0.1"), what="line under the IP")
    assert lines[0].endswith("kern.info kernel: [    1.000000] hello")


async def test_crash_by_syslog_and_netconsole_is_one_incident(nc_server, tmp_path: Path) -> None:
    """The same crash by both paths (the same host name): one incident. Both copies are kept in the timeline (a
    record of what arrived), but the incident engine is fed each line once: the incident has len(CRASH) lines."""
    srv = await nc_server(hosts={"127.0.0.1": "db-07"})
    data = tmp_path / "data"
    r, w = await asyncio.open_connection(*srv.tcp_addresses[0][:2])
    for i, ln in enumerate(CRASH):
        send_udp(srv.netconsole_addresses[0], ext(i, ln))  # netconsole first: it is sent from inside the kernel
        m = f"<4>1 2026-11-25T10:00:00Z db-07 kernel - - - [ 4242.{i:06d}] {ln}".encode()
        w.write(b"%d %s" % (len(m), m))
    await w.drain()
    w.close()
    await until(lambda: len(read_timeline(data, "db-07")) >= 2 * len(CRASH), what="both copies stored")
    await until(lambda: incidents(data, "db-07") and incidents(data, "db-07")[0]["state"] == "closed",
                timeout=15, what="incident closed")
    incs = incidents(data, "db-07")
    assert len(incs) == 1, [(i["id"], i["kind"], i["source"]) for i in incs]
    assert incs[0]["kind"] == "page-fault" and incs[0]["fatal"]
    assert incs[0]["lines"] == len(CRASH) and srv.counters.kernel_dups == len(CRASH)


async def test_fragments_over_the_wire_and_flush_at_shutdown(nc_server, tmp_path: Path) -> None:
    srv = await nc_server(hosts={"127.0.0.1": "frag-host"})
    text = ("x" * 1500).encode()
    body = b"BUG: soft lockup - CPU#3 stuck for 23s! " + text
    chunks = [(o, body[o:o + 1000]) for o in range(0, len(body), 1000)]
    dgrams = [b"4,77,5000000,-,ncfrag=%d/%d;" % (o, len(body)) + c for o, c in chunks]
    send_udp(srv.netconsole_addresses[0], *reversed(dgrams))
    send_udp(srv.netconsole_addresses[0], b"no newline yet")
    lines = await until(lambda: read_timeline(tmp_path / "data", "frag-host"), what="reassembled line")
    assert lines[0].endswith("BUG: soft lockup - CPU#3 stuck for 23s! " + "x" * 1500)
    await until(lambda: srv.counters.netconsole_datagrams == 3, what="datagrams read")
    srv.request_stop()
    await srv.shutdown()  # the unterminated plain line is delivered, not lost
    assert read_timeline(tmp_path / "data", "frag-host")[-1].endswith("no newline yet")
    assert srv.counters.netconsole_reassembled == 1

"""End to end through ``sylog serve --vmcore-dir``: hosts send from distinct loopback addresses (127.0.0.x), kdump
directories named after those addresses appear, and the server links them to the right host's incidents — also
across a restart, and never twice."""

from __future__ import annotations

import json
import socket
import time
from datetime import datetime
from pathlib import Path

from conftest import wait_for
from test_vmcore_build import (RELEASE_DEB, RELEASE_RHEL, SYSRQ_C, age, crash_lines, finish_rhel, make_debian,
                               make_rhel)


def send_from(src: str, port: int, lines: list[str], host: str) -> None:
    """RFC 3164 kernel lines over one TCP connection from source address ``src``."""
    stamp = time.strftime("%b %e %H:%M:%S")
    data = b"".join(f"<4>{stamp} {host} kernel: {ln}\n".encode() for ln in lines)
    with socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(src, 0)) as s:
        s.sendall(data)


def incidents_of(srv, host: str) -> list[dict]:
    return [i for i in srv.incidents() if i.get("host") == host]


def test_server_links_ip_named_dumps_to_hosts_by_sender_address(sylog_server_factory, tmp_path: Path) -> None:
    crash = tmp_path / "crash"
    crash.mkdir()
    srv = sylog_server_factory("--vmcore-dir", str(crash), "--vmcore-interval", "0.2", incident_quiet=1)
    # db-07 (from 127.0.0.2) dies loudly: its oops reaches syslog; web-3 (127.0.0.3) only says hello.
    send_from("127.0.0.2", srv.tcp_port, crash_lines(RELEASE_DEB), "db-07")
    send_from("127.0.0.3", srv.tcp_port, ["[  100.000000] e1000e: eth0 NIC Link is Up 1000 Mbps Full Duplex"],
              "web-3")
    peers_file = srv.data_dir / "state" / "peers.json"

    def peers() -> dict:
        try:
            return json.loads(peers_file.read_bytes())["peers"]
        except (OSError, ValueError, KeyError):
            return {}

    wait_for(lambda: peers().get("127.0.0.2", {}).get("host") == "db-07" and
             peers().get("127.0.0.3", {}).get("host") == "web-3", 10, what="peers.json", diagnose=srv.output)
    [oops] = wait_for(lambda: [i for i in incidents_of(srv, "db-07") if i["state"] == "closed"], 10,
                      what="db-07 incident closed", diagnose=srv.output)
    now = time.time()
    # RHEL remote dumps named after the NIC address; web-3's still being written
    make_rhel(crash, datetime.fromtimestamp(now), ip="127.0.0.2", crashtime=int(now) - 5, rel=RELEASE_DEB)
    d3 = make_rhel(crash, datetime.fromtimestamp(now), ip="127.0.0.3", crashtime=int(now) - 5, rel=RELEASE_RHEL,
                   crash=SYSRQ_C, incomplete=True)

    def linked() -> dict | None:
        inc = next((i for i in incidents_of(srv, "db-07") if i["id"] == oops["id"]), None)
        return inc["vmcore"] if inc else None

    vm = wait_for(linked, 10, what="db-07 incident linked to its dump", diagnose=srv.output)
    assert vm["matched_by"] == "signature" and vm["host_from"] == "peer-ip" and vm["layout"] == "rhel"
    assert vm["crash_command"].startswith(f"crash /usr/lib/debug/lib/modules/{RELEASE_DEB}/vmlinux ")
    # the watcher has seen the incomplete dump (it says so once) and left it alone
    wait_for(lambda: "vmcore-incomplete present" in srv.output(), 10, what="pending dump noticed",
             diagnose=srv.output)
    assert incidents_of(srv, "web-3") == []
    finish_rhel(d3)
    age(d3, 600)  # finished a while ago: nothing more will come from web-3, so it gets an incident of its own
    [web] = wait_for(lambda: incidents_of(srv, "web-3"), 10, what="web-3 dump-only incident", diagnose=srv.output)
    assert web["source"] == "vmcore" and web["vmcore"]["matched_by"] == "dump-only" and web["kind"] == "panic"
    assert web["fatal"] and web["vmcore"]["kernel_release"] == RELEASE_RHEL

    # restart on the same data: nothing is linked twice, and a new dump is still picked up
    before = {i["id"]: i["vmcore"]["path"] for i in srv.incidents() if i.get("vmcore")}
    srv.stop()
    srv2 = sylog_server_factory("--vmcore-dir", str(crash), "--vmcore-interval", "0.2", incident_quiet=1,
                                data_dir=srv.data_dir)
    age(make_debian(crash, datetime.fromtimestamp(now + 60), host_folder="db-08", crashtime=int(now) + 55), 600)
    wait_for(lambda: incidents_of(srv2, "db-08"), 10, what="db-08 incident from the new dump",
             diagnose=srv2.output)
    after = {i["id"]: i["vmcore"]["path"] for i in srv2.incidents() if i.get("vmcore")}
    assert {k: v for k, v in after.items() if k in before} == before
    assert len(after) == len(before) + 1
    assert len(set(after.values())) == len(after)


def test_vmcore_link_fires_the_vmcore_alert_hook(sylog_server_factory, tmp_path: Path) -> None:
    """An ``[[alert]]`` exec hook on ``vmcore`` gets the incident JSON, with its vmcore, on stdin."""
    import sys

    crash = tmp_path / "crash"
    crash.mkdir()
    out = tmp_path / "hook.out"
    prog = f"import sys; open({str(out)!r}, 'ab').write(sys.stdin.buffer.read() + b'\\n')"
    conf = tmp_path / "sylog.toml"
    conf.write_text(f'[[alert]]\ntype = "exec"\non = ["vmcore"]\ncommand = [{json.dumps(sys.executable)}, "-c", '
                    f'{json.dumps(prog)}]\ntimeout = 20\n')
    srv = sylog_server_factory("--config", str(conf), "--vmcore-dir", str(crash), "--vmcore-interval", "0.2")
    now = time.time()
    age(make_debian(crash, datetime.fromtimestamp(now), host_folder="db-11", crashtime=int(now) - 5, crash=SYSRQ_C),
        600)

    def delivered() -> list[dict]:
        try:
            return [json.loads(x) for x in out.read_bytes().splitlines() if x.strip()]
        except (OSError, ValueError):
            return []

    [inc] = wait_for(delivered, 15, what="vmcore alert delivered", diagnose=srv.output)
    assert inc["host"] == "db-11" and inc["vmcore"]["matched_by"] == "dump-only"
    assert inc["vmcore"]["crash_command"].startswith(f"crash /usr/lib/debug/boot/vmlinux-{RELEASE_DEB} ")

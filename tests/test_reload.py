"""SIGHUP: the config file is read again; allowlists, [hosts], incidents.quiet and stats_interval change live, other
changed keys are logged as needing a restart, and a bad file keeps the running configuration."""

from __future__ import annotations

import signal
import socket
import uuid
from pathlib import Path
from typing import Any

import pytest
from conftest import free_port, read_timeline, until, wait_for

from sylog.config import load_config
from sylog.server.app import Server


def conf(data: Path, *, allow: str = '["127.0.0.0/8"]', hosts: str = '"127.0.0.1" = "first-name"',
         quiet: float = 30.0, max_size: int = 65536) -> str:
    return f"""
data_dir = "{data}"
stats_interval = 0.0
[listen]
udp = ["127.0.0.1:0"]
tcp = ["127.0.0.1:0"]
netconsole = ["127.0.0.1:0"]
allow = {allow}
[limits]
max_message_size = {max_size}
[timeline]
flush_interval = 0.05
[incidents]
quiet = {quiet}
[hosts]
{hosts}
"""


@pytest.fixture
async def reloadable(tmp_path: Path):
    started: list[Server] = []
    path = tmp_path / "sylog.toml"
    data = tmp_path / "data"

    async def start() -> Server:
        path.write_text(conf(data))
        srv = Server(load_config(path))
        srv.config_path = str(path)
        await srv.start()
        started.append(srv)
        return srv

    yield start, path, data
    for s in started:
        s.request_stop()
        await s.shutdown()


def send(addr: tuple[Any, ...], data: bytes) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(data, addr[:2])


async def test_reload_applies_live_keys_and_names_the_rest(reloadable, caplog: pytest.LogCaptureFixture) -> None:
    start, path, data = reloadable
    srv = await start()
    send(srv.netconsole_addresses[0], b"6,1,1,-;before reload\n")
    await until(lambda: read_timeline(data, "first-name"), what="line under the first name")
    path.write_text(conf(data, allow='["10.0.0.0/8"]', hosts='"127.0.0.1" = "second-name"', quiet=5.0,
                         max_size=1024))
    with caplog.at_level("INFO", logger="sylog"):
        srv.reopen()  # what SIGHUP calls
    text = caplog.text
    assert "applied hosts, incidents.quiet, listen.allow" in text
    assert "needing a restart (still running the old value): limits.max_message_size" in text
    assert srv.engine.corr.quiet == 5.0 and srv.cfg.incidents.quiet == 5.0
    assert srv.cfg.limits.max_message_size == 65536  # the running value, as the log says
    send(srv.udp_addresses[0], b"<13>1 - h app - - - now denied")
    await until(lambda: srv.counters.denied_datagrams == 1, what="denied after reload")
    # allow loopback again, and the new name applies to netconsole lines
    path.write_text(conf(data, hosts='"127.0.0.1" = "second-name"', quiet=5.0, max_size=1024))
    srv.reopen()
    send(srv.netconsole_addresses[0], b"6,2,2,-;after reload\n")
    await until(lambda: read_timeline(data, "second-name"), what="line under the new name")
    assert srv.counters.reloads == 2 and srv.counters.reload_errors == 0


async def test_bad_file_on_reload_keeps_the_running_config(reloadable, caplog: pytest.LogCaptureFixture) -> None:
    start, path, data = reloadable
    srv = await start()
    for bad in ('[listen]\nallow = ["10.0.0.300/8"]\n', "[incidents]\nquite = 3\n", "x = [\n",
                '[hosts]\n"not-an-ip" = "x"\n'):
        path.write_text(f'data_dir = "{data}"\n' + bad)
        with caplog.at_level("ERROR", logger="sylog"):
            assert srv.reload() is False
    assert srv.counters.reload_errors == 4 and srv.counters.reloads == 0
    assert "reload refused, keeping the running configuration" in caplog.text
    assert "listen.allow[0]" in caplog.text and "incidents" in caplog.text
    send(srv.udp_addresses[0], b"<13>1 - still-here app - - - old config still works")
    await until(lambda: read_timeline(data, "still-here"), what="still serving")


@pytest.mark.realclient
def test_sighup_to_sylog_serve(tmp_path: Path, sylog_server_factory: Any) -> None:
    """The real process: --config FILE, SIGHUP after editing it; the flags still override the reloaded file."""
    cfgf = tmp_path / "live.toml"
    cfgf.write_text('[listen]\nallow = ["127.0.0.1/32"]\n[hosts]\n"127.0.0.1" = "nc-one"\n')
    nport = free_port("udp")
    srv = sylog_server_factory("--config", str(cfgf), "--netconsole", f"127.0.0.1:{nport}")
    tag = uuid.uuid4().hex
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(f"6,1,1,-;{tag} one\n".encode(), ("127.0.0.1", nport))
    wait_for(lambda: read_timeline(srv.data_dir, "nc-one"), 10, what="nc-one line", diagnose=srv.output)
    cfgf.write_text('[listen]\nallow = ["127.0.0.1/32"]\n[hosts]\n"127.0.0.1" = "nc-two"\n')
    srv.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "reloaded configuration: applied hosts" in srv.output(), 10, what="reload logged",
             diagnose=srv.output)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(f"6,2,2,-;{tag} two\n".encode(), ("127.0.0.1", nport))
    lines = wait_for(lambda: read_timeline(srv.data_dir, "nc-two"), 10, what="nc-two line", diagnose=srv.output)
    assert f"{tag} two" in str(lines[0])


def test_example_config_passes_serve_validation() -> None:
    """config/sylog.toml passes what `sylog serve` checks beyond check-config (CIDRs, [hosts], TLS key pairs)."""
    from sylog.commands.serve import validate

    cfg = validate(load_config(Path(__file__).parent.parent / "config" / "sylog.toml"))
    assert cfg.listen.netconsole == ["0.0.0.0:6666"] and cfg.hosts["192.0.2.21"] == "web-01"
    assert cfg.metrics.listen == "127.0.0.1:9514"

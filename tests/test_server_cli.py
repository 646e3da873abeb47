"""``sylog serve`` as a real process: signals, exit codes, operator-facing errors."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import LOOPBACK, free_port, wait_for


def serve(*args: str, prefix: tuple[str, ...] = (), timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*prefix, sys.executable, "-m", "sylog", "serve", *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, cwd="/")


def one_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def r5424(host: str, msg: str) -> bytes:
    return f"<13>1 2026-11-25T10:00:00Z {host} app 1 - - {msg}".encode()


def test_sigterm_drains_flushes_and_exits_0(sylog_server_factory):
    srv = sylog_server_factory("--stats-interval", "0")
    n = 5000
    payload = b"".join(b"%d %s" % (len(m), m) for m in (r5424("term", f"m{i}") for i in range(n)))
    with socket.create_connection((LOOPBACK, srv.tcp_port)) as s:
        s.sendall(payload)
        s.sendall(r5424("term", "tail without newline"))
    srv.send_udp(r5424("term-udp", "udp before term"))
    srv.proc.send_signal(signal.SIGTERM)  # no wait for a flush: shutdown must drain and flush
    assert srv.stop() == 0
    lines = srv.timeline("term")
    assert len(lines) == n + 1 and lines[-1].endswith("tail without newline"), srv.output()
    assert len(srv.timeline("term-udp")) == 1
    err = srv.stderr_path.read_text()
    assert "listening udp=127.0.0.1:" in err and "loop=uvloop" in err
    assert f"received={n + 2}" in err.splitlines()[-1] and "stopped:" in err.splitlines()[-1]


def test_sigint_also_stops_cleanly(sylog_server_factory):
    srv = sylog_server_factory()
    srv.proc.send_signal(signal.SIGINT)
    srv.proc.wait(15)
    assert srv.proc.returncode == 0


def test_asyncio_loop_option(sylog_server_factory):
    srv = sylog_server_factory("--loop", "asyncio")
    srv.send_tcp(r5424("aloop", "hi") + b"\n")
    srv.wait_for_text("aloop", "hi")
    assert "loop=asyncio" in srv.stderr_path.read_text()


def test_periodic_stats_line(sylog_server_factory):
    srv = sylog_server_factory("--stats-interval", "0.2")
    srv.send_udp(r5424("st", "x"))
    wait_for(lambda: "stats received=1" in srv.stderr_path.read_text(), 10, what="a stats line")


def _unprivileged() -> tuple[str, ...]:
    """A command prefix that runs as nobody without capabilities (we are root in CI), or skip."""
    if os.geteuid() != 0:
        return ()
    setpriv = shutil.which("setpriv")
    if not setpriv:
        pytest.skip("running as root and util-linux setpriv is missing: cannot drop privileges")
    return (setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--inh-caps=-all")


def test_privileged_port_without_permission_names_the_fix(tmp_path):
    try:
        if int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text()) <= 514:
            pytest.skip("net.ipv4.ip_unprivileged_port_start <= 514: port 514 needs no privilege here")
    except (OSError, ValueError):
        pass
    pre = _unprivileged()
    r = serve("--data-dir", str(tmp_path / "d"), "--udp", "none", "--tcp", "127.0.0.1:514", prefix=pre)
    assert r.returncode == 1, r.stderr
    line = one_line(r.stderr)
    assert "permission denied" in line and "CAP_NET_BIND_SERVICE" in line and "5514" in line
    r = serve("--data-dir", str(tmp_path / "d"), "--tcp", "none", "--udp", "127.0.0.1:514", prefix=pre)
    assert r.returncode == 1 and "CAP_NET_BIND_SERVICE" in one_line(r.stderr)


def test_address_in_use(tmp_path):
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        s.listen()
        port = s.getsockname()[1]
        r = serve("--data-dir", str(tmp_path / "d"), "--udp", "none", "--tcp", f"127.0.0.1:{port}")
    assert r.returncode == 1
    assert "already in use" in one_line(r.stderr)
    assert not (tmp_path / "d").exists()


def test_bad_config_file_names_the_key(tmp_path):
    cfg = tmp_path / "sylog.toml"
    cfg.write_text("[limits]\nmax_mesage_size = 1000\n")
    r = serve("--config", str(cfg), "--udp", "none", "--tcp", "none")
    assert r.returncode == 2
    line = one_line(r.stderr)
    assert "max_mesage_size" in line and "$.limits" in line
    cfg.write_text("[timeline]\nflush_interval = -1\n")
    r = serve("--config", str(cfg))
    assert r.returncode == 2 and "$.timeline.flush_interval" in one_line(r.stderr)
    cfg.write_text("[listen]\ntcp = ['nonsense']\n")
    r = serve("--config", str(cfg))
    assert r.returncode == 2 and "listen.tcp" in one_line(r.stderr)


def test_bad_flag_value_names_the_key(tmp_path):
    r = serve("--max-message-size", "1", "--data-dir", str(tmp_path))
    assert r.returncode == 2 and "limits.max_message_size" in one_line(r.stderr)
    r = serve("--tcp", "127.0.0.1:99999", "--data-dir", str(tmp_path))
    assert r.returncode == 2 and "port" in one_line(r.stderr)


def test_config_file_values_and_flag_override(tmp_path):
    up, tp = free_port("udp"), free_port("tcp")
    cfg = tmp_path / "sylog.toml"
    cfg.write_text(f'data_dir = "{tmp_path / "fromfile"}"\nstats_interval = 0\n[listen]\nudp = ["127.0.0.1:{up}"]\n'
                   f'tcp = ["127.0.0.1:1"]\nloop = "asyncio"\n')
    p = subprocess.Popen([sys.executable, "-m", "sylog", "serve", "--config", str(cfg), "--tcp", f"127.0.0.1:{tp}"],
                         stderr=subprocess.PIPE, text=True)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            def delivered() -> bool:
                u.sendto(r5424("cfg", "via file config"), (LOOPBACK, up))
                return bool(list((tmp_path / "fromfile" / "timelines").glob("cfg/*.log")))
            wait_for(delivered, 20, interval=0.2, what="a line in the data dir from the config file")
    finally:
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=15)
    assert p.returncode == 0, err
    assert f"tcp=127.0.0.1:{tp}" in err and "loop=asyncio" in err


def test_sighup_reopens_files_for_logrotate(sylog_server_factory):
    srv = sylog_server_factory("--stats-interval", "0")
    srv.send_tcp(r5424("rot", "before rotate") + b"\n")
    srv.wait_for_text("rot", "before rotate")
    [f] = list((srv.data_dir / "timelines" / "rot").glob("*.log"))
    rotated = f.with_name(f.name + ".1")
    f.rename(rotated)
    srv.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "SIGHUP" in srv.stderr_path.read_text(), 10, what="SIGHUP acknowledged")
    srv.send_tcp(r5424("rot", "after rotate") + b"\n")
    srv.wait_for_text("rot", "after rotate")
    assert "before rotate" in rotated.read_text() and "after rotate" not in rotated.read_text()
    assert "after rotate" in f.read_text()
    assert srv.running


def test_unwritable_data_dir_fails_at_start():
    import tempfile

    pre = _unprivileged()
    if not pre and os.geteuid() == 0:
        pytest.skip("cannot make a directory unwritable for root")
    with tempfile.TemporaryDirectory(dir="/tmp") as top:  # traversable by nobody, unlike pytest's tmp_path
        data = Path(top) / "ro"
        (data / "timelines").mkdir(parents=True)
        for d in (top, data, data / "timelines"):
            os.chmod(d, 0o755)
        r = serve("--data-dir", str(data), "--udp", "127.0.0.1:0", "--tcp", "none", prefix=pre)
    assert r.returncode == 1, r.stderr
    line = one_line(r.stderr)
    assert "cannot use data dir" in line and "ermission denied" in line and "timelines" in line

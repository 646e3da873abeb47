"""``sylog client-setup``: the host-side files, filled in, printed or written; rsyslog accepts what it generates;
``deploy/`` stays identical to what the package templates render (one source of truth)."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from sylog.cli import main
from sylog.commands.client_setup import (
    MODPROBE_PATH, NETCONSOLE_SCRIPT_PATH, RSYSLOG_PATH, SYSCTL_PATH, SetupError, build_files, example_files,
    parse_receiver,
)

from conftest import require_binary

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"


def _rsyslog_check(conf: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_binary("rsyslogd"), "-N1", "-f", str(conf)], capture_output=True, text=True,
                          timeout=30)


def _files(**kw: object) -> dict[str, str]:
    return {f.path: f.text for f in build_files(**kw)}  # type: ignore[arg-type]


# ---- receiver parsing ----

@pytest.mark.parametrize("spec, tls, expect", [
    ("sylog.example.net", False, ("sylog.example.net", 514)),
    ("sylog.example.net", True, ("sylog.example.net", 6514)),
    ("10.0.0.5:1514", False, ("10.0.0.5", 1514)),
    ("[2001:db8::5]:6514", True, ("2001:db8::5", 6514)),
    ("[2001:db8::5]", False, ("2001:db8::5", 514)),
    ("2001:db8::5", False, ("2001:db8::5", 514)),
])
def test_parse_receiver(spec: str, tls: bool, expect: tuple[str, int]) -> None:
    assert parse_receiver(spec, 6514 if tls else 514) == expect


@pytest.mark.parametrize("spec", ["", ":514", "host:0", "host:70000", "host:x", '"bad"host', "a b", "h;x",
                                  "[::1", "host\nx"])
def test_parse_receiver_rejects(spec: str) -> None:
    with pytest.raises(SetupError):
        parse_receiver(spec, 514)


# ---- what is generated ----

def test_plain_tcp_files_filled_in() -> None:
    files = _files(receiver="logs.example.org:1514")
    assert list(files) == [RSYSLOG_PATH, SYSCTL_PATH]
    conf = files[RSYSLOG_PATH]
    for needle in ('target="logs.example.org"', 'port="1514"', 'protocol="tcp"', 'TCP_Framing="octet-counted"',
                   'template="RSYSLOG_SyslogProtocol23Format"', 'queue.type="LinkedList"', "queue.filename=",
                   'queue.saveOnShutdown="on"', 'queue.maxDiskSpace="1g"', 'action.resumeRetryCount="-1"'):
        assert needle in conf, needle
    assert "StreamDriver" not in conf
    assert "kernel.panic = 10" in files[SYSCTL_PATH] and "kernel.panic_on_oops = 1" in files[SYSCTL_PATH]
    assert all("{{" not in t for t in files.values())


def test_tls_files_filled_in() -> None:
    conf = _files(receiver="logs.example.org", tls=True, tls_driver="ossl", ca_file="/etc/pki/sylog/ca.pem")[
        RSYSLOG_PATH]
    for needle in ('port="6514"', 'StreamDriver="ossl"', 'StreamDriverMode="1"', 'StreamDriverAuthMode="x509/name"',
                   'StreamDriverPermittedPeers="logs.example.org"', 'streamDriver.CAFile="/etc/pki/sylog/ca.pem"',
                   'TCP_Framing="octet-counted"', 'queue.saveOnShutdown="on"', 'action.resumeRetryCount="-1"'):
        assert needle in conf, needle
    assert "{{" not in conf


def test_netconsole_files() -> None:
    files = build_files(receiver="10.0.0.5", netconsole=True, interface="ens3", local_ip="10.0.0.20",
                        remote_mac="12:34:56:78:9a:bc")
    by_path = {f.path: f for f in files}
    assert [f.path for f in files][-3:] == [MODPROBE_PATH, "etc/modules-load.d/netconsole.conf",
                                           NETCONSOLE_SCRIPT_PATH]
    assert "options netconsole netconsole=+@10.0.0.20/ens3,6666@10.0.0.5/12:34:56:78:9a:bc\n" in by_path[
        MODPROBE_PATH].text
    assert by_path["etc/modules-load.d/netconsole.conf"].text.splitlines()[-1] == "netconsole"
    assert by_path[NETCONSOLE_SCRIPT_PATH].mode == 0o755
    assert by_path[NETCONSOLE_SCRIPT_PATH].text.startswith("#!/usr/bin/env bash")


def test_netconsole_without_interface_or_mac_says_what_is_missing() -> None:
    text = _files(receiver="10.0.0.5", netconsole=True, extended=False)[MODPROBE_PATH]
    assert "options netconsole netconsole=@/,6666@10.0.0.5/\n" in text
    assert "uses eth0" in text and "broadcast" in text


def test_netconsole_needs_an_ip() -> None:
    with pytest.raises(SetupError, match="--netconsole-ip"):
        build_files(receiver="sylog.invalid", netconsole=True, resolve=False)
    text = _files(receiver="sylog.invalid", netconsole=True, netconsole_ip="192.0.2.7", resolve=False)[MODPROBE_PATH]
    assert "6666@192.0.2.7/" in text


@pytest.mark.parametrize("kw", [
    {"remote_mac": "12:34:56"}, {"local_ip": "ten"}, {"interface": "eth0; rm -rf /"}, {"netconsole_port": 0},
])
def test_netconsole_bad_values(kw: dict[str, object]) -> None:
    with pytest.raises(SetupError):
        build_files(receiver="10.0.0.5", netconsole=True, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("kw", [{"ca_file": '/x"y'}, {"tls_name": "a b"}, {"max_disk_space": "lots"}])
def test_values_that_could_break_the_config_are_refused(kw: dict[str, object]) -> None:
    with pytest.raises(SetupError):
        build_files(receiver="10.0.0.5", tls=True, **kw)  # type: ignore[arg-type]


# ---- rsyslogd accepts what is generated ----

@pytest.mark.realclient
@pytest.mark.parametrize("kw", [
    {"receiver": "127.0.0.1"},
    {"receiver": "[::1]:1514", "max_disk_space": "512m"},
    {"receiver": "sylog.example.net", "tls": True},
    {"receiver": "sylog.example.net:16514", "tls": True, "tls_driver": "ossl", "tls_name": "collector.example.net"},
])
def test_generated_rsyslog_config_passes_rsyslogd(tmp_path: Path, kw: dict[str, object]) -> None:
    conf = tmp_path / "60-sylog.conf"
    conf.write_text(_files(**kw)[RSYSLOG_PATH])
    r = _rsyslog_check(conf)
    assert r.returncode == 0 and "error" not in (r.stdout + r.stderr).lower(), r.stdout + r.stderr


@pytest.mark.realclient
def test_rsyslogd_check_is_not_vacuous(tmp_path: Path) -> None:
    """rsyslogd -N1 really rejects a misspelt parameter, so the test above means something."""
    conf = tmp_path / "bad.conf"
    conf.write_text(_files(receiver="127.0.0.1")[RSYSLOG_PATH].replace("queue.saveOnShutdown", "queue.saveOnShutdwn"))
    r = _rsyslog_check(conf)
    assert r.returncode != 0 and "saveOnShutdwn" in r.stdout + r.stderr


# ---- CLI ----

def test_cli_prints_every_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["client-setup", "--receiver", "10.0.0.5", "--tls", "--netconsole", "--interface", "eth1"]) == 0
    out = capsys.readouterr().out
    for path in (RSYSLOG_PATH, SYSCTL_PATH, MODPROBE_PATH, "etc/modules-load.d/netconsole.conf",
                 NETCONSOLE_SCRIPT_PATH):
        assert f"# ==> /{path} <==\n" in out, path
    assert 'StreamDriverMode="1"' in out and "netconsole=+@/eth1,6666@10.0.0.5/" in out
    assert "sylog-netconsole --receiver 10.0.0.5 --port 6666 --extended --persistent" in out  # next steps
    assert "rsyslog-gnutls" in out
    assert "{{" not in out


def test_cli_apply_writes_under_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "root"
    assert main(["client-setup", "--receiver", "10.0.0.5:1514", "--netconsole", "--apply", str(root)]) == 0
    out = capsys.readouterr().out
    conf = root / RSYSLOG_PATH
    assert f"wrote {conf}" in out
    assert 'port="1514"' in conf.read_text()
    assert (root / SYSCTL_PATH).is_file() and (root / MODPROBE_PATH).is_file()
    script = root / NETCONSOLE_SCRIPT_PATH
    assert stat.S_IMODE(script.stat().st_mode) == 0o755
    assert not list(root.rglob("*.sylog-tmp"))
    # applying again replaces the files (idempotent)
    assert main(["client-setup", "--receiver", "10.0.0.6", "--apply", str(root)]) == 0
    assert 'target="10.0.0.6"' in conf.read_text()


def test_cli_bad_receiver_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["client-setup", "--receiver", "host:99999"]) == 2
    assert "port must be 1-65535" in capsys.readouterr().err


def test_cli_apply_unwritable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["client-setup", "--receiver", "10.0.0.5", "--apply", str(blocker)]) == 1
    assert "cannot write" in capsys.readouterr().err


# ---- one source of truth: deploy/ == rendered templates ----

@pytest.mark.parametrize("rel", sorted(example_files()))
def test_deploy_files_match_package_templates(rel: str) -> None:
    text, mode = example_files()[rel]
    path = DEPLOY / rel
    assert path.is_file(), f"deploy/{rel} missing; regenerate (deploy/README.md)"
    assert path.read_text() == text, (
        f"deploy/{rel} differs from the package template; edit sylog/deploy_templates/ and regenerate with "
        "write_examples (deploy/README.md)")
    if mode & 0o111:
        assert os.access(path, os.X_OK), f"deploy/{rel} must be executable"


def test_templates_ship_with_the_package() -> None:
    """The templates are package data (read through importlib.resources, not the repo path)."""
    from importlib import resources

    names = {p.name for p in resources.files("sylog.deploy_templates").iterdir()}
    assert {"rsyslog-tcp.conf", "rsyslog-tls.conf", "90-sylog-panic.conf", "sylog-netconsole.sh",
            "netconsole-modprobe.conf", "netconsole-modules-load.conf"} <= names
    pyproject = (REPO / "pyproject.toml").read_text()
    assert '"sylog.deploy_templates" = ["*.conf", "*.sh"]' in pyproject

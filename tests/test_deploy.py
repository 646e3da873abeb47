"""deploy/: every file an operator copies is checked with the real tool where one exists.

systemd unit: ``systemd-analyze verify`` (Debian package systemd); rsyslog files: ``rsyslogd -N1``; netconsole
script: ``bash -n``, ``shellcheck`` (Debian package shellcheck) and a ``--dry-run`` run; kdump snippets: parsed
the way their tools read them (a shell for /etc/default/kdump-tools, directive lines for /etc/kdump.conf).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from conftest import require_binary

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
UNIT = DEPLOY / "systemd" / "sylog.service"
SCRIPT = DEPLOY / "netconsole" / "sylog-netconsole.sh"


# ---- systemd ----

def _unit_sections() -> dict[str, list[tuple[str, str]]]:
    """Strict INI reading of the unit: every non-comment line is KEY=VALUE inside a [Section]."""
    sections: dict[str, list[tuple[str, str]]] = {}
    cur = None
    for n, line in enumerate(UNIT.read_text().splitlines(), 1):
        if not line.strip() or line.startswith(("#", ";")):
            continue
        m = re.fullmatch(r"\[(\w+)\]", line)
        if m:
            cur = m.group(1)
            assert cur not in sections, f"line {n}: section [{cur}] twice"
            sections[cur] = []
            continue
        m = re.fullmatch(r"([A-Za-z]+)=(.*)", line)
        assert m and cur, f"line {n}: not KEY=VALUE in a section: {line!r}"
        sections[cur].append((m.group(1), m.group(2)))
    return sections


def test_unit_has_the_required_settings() -> None:
    s = _unit_sections()
    assert set(s) == {"Unit", "Service", "Install"}
    svc = s["Service"]
    values: dict[str, list[str]] = {}
    for k, v in svc:
        values.setdefault(k, []).append(v)
    one = {k: v[-1] for k, v in values.items()}
    assert one["User"] == "sylog" and one["Group"] == "sylog"
    assert one["ExecStart"] == "/opt/sylog/bin/sylog serve --config /etc/sylog/sylog.toml"
    assert "/bin/kill -HUP $MAINPID" in values["ExecReload"]
    assert one["AmbientCapabilities"] == "CAP_NET_BIND_SERVICE"
    assert one["CapabilityBoundingSet"] == "CAP_NET_BIND_SERVICE"
    assert one["ProtectSystem"] == "strict"
    assert one["ReadWritePaths"] == "/var/lib/sylog"
    assert one["StateDirectory"] == "sylog"
    assert one["LimitNOFILE"] == "65536"
    assert one["Restart"] == "on-failure"
    for key in ("NoNewPrivileges", "PrivateTmp", "ProtectHome", "PrivateDevices", "ProtectKernelTunables",
                "ProtectKernelModules", "ProtectControlGroups", "RestrictSUIDSGID"):
        assert one[key] == "yes", key
    assert dict(s["Install"])["WantedBy"] == "multi-user.target"
    # the unit's data dir and config path agree with the example config
    from sylog.config import load_config

    assert load_config(REPO / "config" / "sylog.toml").data_dir == one["ReadWritePaths"]


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """``systemd-analyze verify`` on the unit, with ExecStart pointing at this checkout's sylog (verify insists the
    program exists). It prints unknown keys and bad values but still exits 0, so its output must be empty too."""
    exe = require_binary("systemd-analyze")
    sylog = Path(sys.executable).parent / "sylog"
    assert sylog.exists(), "the package's console script (pip install -e .)"
    unit = tmp_path / "sylog.service"
    unit.write_text(UNIT.read_text().replace("/opt/sylog/bin/sylog", str(sylog)))
    r = subprocess.run([exe, "verify", str(unit)], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "SYSTEMD_LOG_LEVEL": "info"})
    assert r.returncode == 0, r.stdout + r.stderr
    assert [ln for ln in (r.stdout + r.stderr).splitlines() if "sylog.service" in ln] == [], r.stdout + r.stderr

    # and a misspelt key is caught (the check is not vacuous)
    bad = tmp_path / "bad" / "sylog.service"
    bad.parent.mkdir()
    bad.write_text(unit.read_text().replace("ProtectSystem=", "ProtectSystm="))
    r = subprocess.run([exe, "verify", str(bad)], capture_output=True, text=True, timeout=60)
    assert "ProtectSystm" in r.stdout + r.stderr


def test_unit_exposure_stays_low(tmp_path: Path) -> None:
    """``systemd-analyze security --offline`` rates the sandbox: keep it at "OK" (1.6 of 10 when written; fail above
    2.0), so a later edit cannot quietly drop hardening."""
    exe = require_binary("systemd-analyze")
    unit = tmp_path / "sylog.service"
    unit.write_text(UNIT.read_text().replace("/opt/sylog/bin/sylog", str(Path(sys.executable).parent / "sylog")))
    r = subprocess.run([exe, "security", "--offline=yes", "--threshold=20", "--no-pager", str(unit)],
                       capture_output=True, text=True, timeout=60)
    if "--offline" in r.stderr and "unrecognized" in r.stderr:  # systemd < 252
        pytest.skip("systemd-analyze security --offline needs systemd >= 252")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr
    assert "Overall exposure level for sylog.service" in r.stdout


def test_systemd_readme_has_the_install_steps() -> None:
    text = (DEPLOY / "systemd" / "README.md").read_text()
    for step in ("useradd --system", "install -d -o sylog -g sylog -m 0700 /var/lib/sylog", "python3 -m venv /opt/sylog",
                 "sylog check-config /etc/sylog/sylog.toml", "systemctl enable --now sylog", "systemctl reload sylog"):
        assert step in text, step


# ---- rsyslog ----

@pytest.mark.realclient
@pytest.mark.parametrize("name", ["60-sylog.conf", "60-sylog-tls.conf"])
def test_rsyslog_files_pass_rsyslogd(name: str) -> None:
    r = subprocess.run([require_binary("rsyslogd"), "-N1", "-f", str(DEPLOY / "rsyslog" / name)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "error" not in (r.stdout + r.stderr).lower(), r.stdout + r.stderr


def test_rsyslog_files_say_where_they_go() -> None:
    for name in ("60-sylog.conf", "60-sylog-tls.conf"):
        text = (DEPLOY / "rsyslog" / name).read_text()
        assert "/etc/rsyslog.d/60-sylog.conf" in text
        assert 'include(file="/etc/rsyslog.d/*.conf"' in text


# ---- netconsole ----

def _script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=30,
                          env={**os.environ, "PATH": os.environ.get("PATH", "") + ":/usr/sbin:/sbin"})


def test_netconsole_script_syntax() -> None:
    r = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    head = SCRIPT.read_text().splitlines()
    assert head[0] == "#!/usr/bin/env bash" and "set -euo pipefail" in head
    assert os.access(SCRIPT, os.X_OK)


def test_netconsole_script_shellcheck() -> None:
    exe = require_binary("shellcheck")
    r = subprocess.run([exe, "--shell=bash", "--severity=style", str(SCRIPT)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_netconsole_dry_run_configfs_and_persistent() -> None:
    r = _script("--receiver", "192.0.2.10", "--port", "6666", "--interface", "eth0", "--local-ip", "192.0.2.20",
                "--remote-mac", "12:34:56:78:9a:bc", "--extended", "--persistent", "--dry-run")
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    base = "/sys/kernel/config/netconsole/sylog"
    for line in (f"+ mkdir {base}", f"+ echo eth0 > {base}/dev_name", f"+ echo 192.0.2.20 > {base}/local_ip",
                 f"+ echo 192.0.2.10 > {base}/remote_ip", f"+ echo 12:34:56:78:9a:bc > {base}/remote_mac",
                 f"+ echo 6666 > {base}/remote_port", f"+ echo 1 > {base}/extended", f"+ echo 1 > {base}/enabled"):
        assert line in out.splitlines(), (line, out)
    # enabled is written last: attributes can only change while the target is disabled
    assert out.index(f"{base}/enabled") > out.index(f"{base}/remote_port")
    assert "+ write /etc/modprobe.d/netconsole.conf:" in out
    assert "options netconsole netconsole=+@192.0.2.20/eth0,6666@192.0.2.10/12:34:56:78:9a:bc" in out
    assert "+ write /etc/modules-load.d/netconsole.conf:" in out


def test_netconsole_dry_run_finds_route_itself() -> None:
    """Without --interface/--local-ip the script asks `ip route get` (loopback here: dev lo, src 127.0.0.1)."""
    if not (shutil.which("ip") or shutil.which("ip", path="/usr/sbin:/sbin")):
        pytest.skip("iproute2 `ip` not installed")
    r = _script("--receiver", "127.0.0.1", "--dry-run")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "netconsole: lo (127.0.0.1) -> 127.0.0.1:6666" in r.stdout
    assert "+ echo 0 > /sys/kernel/config/netconsole/sylog/extended" in r.stdout
    assert "write /etc/modprobe.d" not in r.stdout  # not --persistent


@pytest.mark.parametrize("args, msg", [
    ([], "--receiver IP is required"),
    (["--receiver", "sylog.example.net"], "must be an IP address"),
    (["--receiver", "10.0.0.1", "--port", "70000"], "1-65535"),
    (["--receiver", "10.0.0.1", "--port", "x"], "must be a number"),
    (["--receiver", "10.0.0.1", "--remote-mac", "zz"], "--remote-mac"),
    (["--receiver", "10.0.0.1", "--target", "../x"], "plain name"),
    (["--bogus"], "unknown argument"),
])
def test_netconsole_bad_arguments(args: list[str], msg: str) -> None:
    r = _script(*args, "--dry-run")
    assert r.returncode == 2 and msg in r.stderr, r.stdout + r.stderr


def test_netconsole_help() -> None:
    r = _script("--help")
    assert r.returncode == 0 and "--receiver IP" in r.stdout and "set -euo" not in r.stdout


# ---- kdump ----

def test_panic_sysctl_file() -> None:
    path = DEPLOY / "kdump" / "sysctl.d" / "90-sylog-panic.conf"
    active, commented = {}, {}
    for line in path.read_text().splitlines():
        m = re.fullmatch(r"(# )?([a-z_.]+) = (\S+)", line)
        if m:
            (commented if m.group(1) else active)[m.group(2)] = m.group(3)
    assert active == {"kernel.panic": "10", "kernel.panic_on_oops": "1"}
    assert {"kernel.hung_task_panic", "kernel.softlockup_panic"} <= set(commented)
    for key in active:  # the keys exist in this kernel (sysctl.d names map to /proc/sys paths)
        proc = Path("/proc/sys") / key.replace(".", "/")
        if Path("/proc/sys/kernel").is_dir():
            assert proc.exists(), proc


def test_kdump_tools_default_is_valid_shell_with_the_right_keys(tmp_path: Path) -> None:
    """/etc/default/kdump-tools is sourced by kdump-config (sh): source it and read the values back."""
    f = DEPLOY / "kdump" / "kdump-tools.default"
    r = subprocess.run(["sh", "-euc", f'. "{f}"; echo "$USE_KDUMP|$SSH|$SSH_KEY|$KDUMP_COREDIR|$HOSTTAG|$MAKEDUMP_ARGS"'],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    use, ssh, key, coredir, hosttag, args = r.stdout.strip().split("|")
    assert (use, ssh, key, hosttag) == ("1", "kdump@sylog.example.net", "/root/.ssh/kdump_id_rsa", "hostname")
    assert coredir in _vmcore_dirs()
    assert "-d 31" in args
    text = f.read_text()
    assert '# NFS="sylog.example.net:/var/crash/sylog"' in text  # the NFS alternative, commented out


def test_kexec_tools_kdump_conf() -> None:
    directives = {"raw", "nfs", "ssh", "sshkey", "path", "core_collector", "kdump_post", "kdump_pre", "extra_bins",
                  "extra_modules", "failure_action", "final_action", "default", "force_rebuild", "force_no_rebuild",
                  "dracut_args", "fence_kdump_args", "fence_kdump_nodes", "ext4", "xfs", "btrfs", "sshkey"}
    active: dict[str, str] = {}
    for n, line in enumerate((DEPLOY / "kdump" / "kdump.conf").read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        name, _, value = line.partition(" ")
        assert name in directives, f"line {n}: unknown kdump.conf directive {name!r}"
        assert name not in active, f"line {n}: {name} twice"
        active[name] = value
    assert active["ssh"] == "kdump@sylog.example.net"
    assert active["sshkey"] == "/root/.ssh/kdump_id_rsa"
    assert active["path"] in _vmcore_dirs()
    assert active["core_collector"] == "makedumpfile -F -l --message-level 7 -d 31"  # -F: ssh needs a stream


def test_kdump_readme_covers_test_and_pitfalls() -> None:
    text = (DEPLOY / "kdump" / "README.md").read_text()
    for needle in ("echo c > /proc/sysrq-trigger", "Crash kernel", "/proc/iomem", "kdump-config show",
                   "kdumpctl status", "crashkernel=", "known_hosts", "Free space", "no_root_squash"):
        assert needle in text, needle


def _vmcore_dirs() -> list[str]:
    data = msgspec.toml.decode((REPO / "config" / "sylog.toml").read_bytes())
    return data["vmcore"]["dirs"]


def test_deploy_readmes_exist() -> None:
    for d in ("", "systemd", "rsyslog", "netconsole", "kdump"):
        assert (DEPLOY / d / "README.md").is_file(), d

"""``sylog check-config`` and the example configuration ``config/sylog.toml``.

The example must stay true both ways: it validates as it is (every key in it exists), it mentions every key that
``sylog.config`` has (so an operator sees all knobs), and its commented-out "available when ..." blocks are still
rejected by this sylog (once the server supports them, this test says: uncomment them).
"""

from __future__ import annotations

import re
import stat
from pathlib import Path

import msgspec
import pytest

from sylog.cli import main
from sylog.commands.check_config import Problem, _walk, check, check_file
from sylog.config import Config, ConfigError, load_config

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "config" / "sylog.toml"


def _write(tmp_path: Path, text: str, name: str = "c.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def _keys(tp: type, prefix: str = "") -> list[str]:
    """Dotted key paths of every field of a Struct tree (lists of Structs as ``name[]``)."""
    out = []
    for f in msgspec.structs.fields(tp):
        key = f"{prefix}{f.encode_name}"
        t = f.type
        if isinstance(t, type) and issubclass(t, msgspec.Struct):
            out += _keys(t, key + ".")
        elif getattr(t, "__origin__", None) is list and isinstance(t.__args__[0], type) and issubclass(
                t.__args__[0], msgspec.Struct):
            out += _keys(t.__args__[0], key + "[].")
        else:
            out.append(key)
    return out


# ---- the example file ----

def test_example_config_validates(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    assert f"{EXAMPLE}: OK" in out.splitlines()


def test_example_config_loads_with_production_values() -> None:
    cfg = load_config(EXAMPLE)
    assert cfg.data_dir == "/var/lib/sylog"  # what the systemd unit's StateDirectory= gives
    assert "0.0.0.0:514" in cfg.listen.udp and "[::]:514" in cfg.listen.tcp
    assert cfg.vmcore.dirs == ["/var/crash/sylog"]  # where deploy/kdump sends the dumps
    assert {a.type for a in cfg.alert} == {"exec", "webhook"}
    assert any(a.fleet_hosts for a in cfg.alert)


def test_example_config_mentions_every_key() -> None:
    """Every key of sylog.config appears, uncommented, in the example (alert keys in some [[alert]])."""
    cfg = load_config(EXAMPLE)
    data = msgspec.toml.decode(EXAMPLE.read_bytes())
    missing = []
    for key in _keys(Config):
        parts = key.split(".")
        if parts[0] == "alert[]":
            if not any(parts[1] in a for a in data.get("alert", [])):
                missing.append(key)
            continue
        node = data
        for p in parts:
            if not isinstance(node, dict) or p not in node:
                missing.append(key)
                break
            node = node[p]
    assert not missing, f"config/sylog.toml does not show these keys of sylog.config: {missing}"
    assert cfg  # and it loads


def _marked_blocks(text: str) -> list[list[str]]:
    """The commented-out "available when ..." blocks: lists of their line indexes' texts."""
    lines = text.splitlines()
    blocks, cur = [], None
    for line in lines:
        if line.startswith("# ---- available when"):
            cur = []
            continue
        if cur is not None and line.startswith("# ------"):
            blocks.append(cur)
            cur = None
            continue
        if cur is not None:
            cur.append(line)
    return blocks


_TOML_LINE = re.compile(r'^# (\[|"|[a-z_]+ = )')


def test_example_future_blocks_are_marked_and_still_unknown() -> None:
    """Keys the example shows for features not built yet are commented out; each block, uncommented, is still
    rejected. When this fails, the server supports the keys: uncomment the block and drop its marker."""
    text = EXAMPLE.read_text()
    blocks = _marked_blocks(text)
    assert len(blocks) <= 2  # 0: every feature of issue 5 is built and its keys are uncommented
    assert not blocks or ("available when" in text and "Uncomment once" in text)
    for block in blocks:
        toml_lines = [ln for ln in block if _TOML_LINE.match(ln)]
        assert toml_lines, block
        enabled = text
        for ln in toml_lines:
            enabled = enabled.replace(ln + "\n", ln[2:] + "\n", 1)
        assert enabled != text
        try:
            msgspec.toml.decode(enabled.encode())
        except msgspec.DecodeError as e:  # pragma: no cover - the block itself must be valid TOML
            pytest.fail(f"uncommented block is not valid TOML: {e}\n{toml_lines}")
        try:
            _load_text(enabled)
        except ConfigError as e:
            assert "unknown field" in str(e), e
        else:
            pytest.fail("sylog.config now accepts every key of this commented-out block of config/sylog.toml: "
                        f"uncomment it and remove its 'available when' marker:\n" + "\n".join(toml_lines))


def _load_text(text: str) -> Config:
    try:
        return msgspec.toml.decode(text.encode(), type=Config)
    except msgspec.ValidationError as e:
        raise ConfigError(str(e)) from None


def test_example_names_the_flags_of_the_future_keys() -> None:
    text = EXAMPLE.read_text()
    for flag in ("--netconsole", "--tls]", "--tls-cert", "--tls-key", "--tls-client-ca", "--allow", "--metrics"):
        assert flag in text, flag


# ---- errors name the key path, exit 2 ----

@pytest.mark.parametrize("toml, expect", [
    ("[incidents]\nquite = 3\n", "incidents.quite: unknown key"),
    ("foo = 1\n", "foo: unknown key"),
    ("data_dir = 3\n", "data_dir: Expected `str`, got `int`"),
    ("[limits]\nmax_message_size = 1\n", "limits.max_message_size: Expected `int` >= 16"),
    ("[[alert]]\ntype = \"exec\"\n", "alert[0]: alert of type 'exec' needs `command`"),
    ("[[alert]]\ntype = \"mail\"\n", "alert[0].type: Invalid enum value 'mail'"),
    ("x = [\n", "not valid TOML"),
])
def test_load_errors_name_the_key(tmp_path: Path, toml: str, expect: str) -> None:
    p = _write(tmp_path, toml)
    ok, lines = check_file(str(p))
    assert not ok
    assert len(lines) == 1 and lines[0].startswith(f"{p}: ") and expect in lines[0], lines


def test_missing_file_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(tmp_path / "nope.toml")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_semantic_errors_one_line_each(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    p = _write(tmp_path, f"""
data_dir = "{blocker}/data"
[listen]
udp = ["1.2.3.4:99999", "0.0.0.0:514"]
tcp = ["0.0.0.0:514", "0.0.0.0:514", "nonsense"]
[incidents]
quiet = 0
refresh_interval = -1
[vmcore]
dirs = ["{blocker}", "{tmp_path}/later"]
interval = 0
[[alert]]
type = "exec"
command = ["{blocker}"]
name = "a"
[[alert]]
type = "webhook"
url = "http://:80/x"
name = "a"
""")
    assert main(["check-config", str(p)]) == 2
    err = capsys.readouterr().err.splitlines()
    expected = {
        "listen.udp[0]": "port must be 0-65535",
        "listen.tcp[1]": "already used by listen.tcp[0]",
        "listen.tcp[2]": "expected ADDR:PORT",
        "data_dir": "is not a directory",
        "incidents.quiet": "must be a number > 0",
        "incidents.refresh_interval": "must be a number > 0",
        "vmcore.interval": "must be a number > 0",
        "vmcore.dirs[0]": "not a directory",
        "alert[0].command[0]": "not an executable file",
        "alert[1].url": "no host",
        "alert[1].name": "also alert[0]'s name",
    }
    for key, msg in expected.items():
        assert any(line.startswith(f"{p}: {key}: ") and msg in line for line in err), (key, err)
    assert any(f"{p}: warning: vmcore.dirs[1]:" in line and "does not exist" in line for line in err), err
    assert not any(line.endswith(": OK") for line in err)
    # udp 0.0.0.0:514 and tcp 0.0.0.0:514 are different sockets: no clash reported between them
    assert not any("listen.udp[1]" in line for line in err), err


def test_warnings_do_not_fail(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = _write(tmp_path, f"""
data_dir = "{tmp_path}/new/deeper/data"
[listen]
udp = ["none"]
tcp = ["127.0.0.1:0"]
[vmcore]
dirs = ["{tmp_path}/missing"]
[[alert]]
type = "exec"
command = ["no-such-program-sylog-test"]
""")
    assert main(["check-config", str(p)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == f"{p}: OK"
    assert any("warning: listen.tcp[0]" in line and "port 0" in line for line in out), out
    assert any("warning: vmcore.dirs[0]" in line for line in out), out
    assert any("warning: alert[0].command[0]" in line and "not found on PATH" in line for line in out), out
    assert not (tmp_path / "new").exists()  # validating never creates anything


def test_several_files_exit_2_if_any_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = _write(tmp_path, f'data_dir = "{tmp_path}"\n', "good.toml")
    bad = _write(tmp_path, "[listen]\nudp = 5\n", "bad.toml")
    assert main(["check-config", str(good), str(bad)]) == 2
    cap = capsys.readouterr()
    assert f"{good}: OK" in cap.out
    assert f"{bad}: listen.udp: Expected `array`, got `int`" in cap.err


def test_data_dir_checks(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        cfg = Config(data_dir=str(ro / "data"))
        problems = check(cfg)
        import os
        if os.geteuid() != 0:  # root may write anywhere
            assert any(p.key == "data_dir" and p.warning and "not writable" in p.message for p in problems)
        assert not any(p.key == "data_dir" and not p.warning for p in problems)
    finally:
        ro.chmod(stat.S_IRWXU)


def test_generic_checks_cover_future_keys(tmp_path: Path) -> None:
    """Allowlists, certificate files and metrics addresses are checked by key name wherever they appear, so the
    keys the TLS/allowlist/metrics work adds to sylog.config are validated without touching check-config."""
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    out: list[Problem] = []
    _walk({
        "listen": {"allow": ["10.0.0.0/8", "2001:db8::/32", "10.0.0.300/8"], "tcp_allow": ["nope"]},
        "tls": {"cert": str(cert), "key": str(tmp_path / "missing.pem"), "client_ca": ""},
        "metrics": {"listen": "127.0.0.1:99999"},
    }, "", out)
    by_key = {p.key: p.message for p in out}
    assert set(by_key) == {"listen.allow[2]", "listen.tcp_allow[0]", "tls.key", "metrics.listen"}, out
    assert "not an address or CIDR" in by_key["listen.allow[2]"]
    assert "no such file" in by_key["tls.key"]
    assert "port must be 0-65535" in by_key["metrics.listen"]


def test_check_config_applies_the_servers_own_start_up_checks(tmp_path):
    # permitted peers are only checked on client certificates: without a client CA the server refuses to start,
    # so check-config must refuse the file too
    from sylog.commands.check_config import check_file

    f = tmp_path / "c.toml"
    f.write_text(f'data_dir = "{tmp_path / "data"}"\n[listen]\nudp = ["127.0.0.1:5514"]\ntcp = ["none"]\n'
                 '[tls]\npermitted_peers = ["*.example.net"]\n')
    ok, lines = check_file(str(f))
    assert not ok
    assert any("tls.permitted_peers:" in ln and "client_ca" in ln for ln in lines), lines

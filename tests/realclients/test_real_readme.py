"""The README stays true: its rsyslog snippet is accepted by a real rsyslogd, its TOML example by sylog's config
loader, and every command its CLI table names exists."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from conftest import require_binary, run_cli
from sylog.config import load_config

README = Path(__file__).resolve().parents[2] / "README.md"


def blocks(lang: str) -> list[str]:
    """Fenced code blocks of README.md whose info string is exactly ``lang`` ('' for bare fences)."""
    out: list[str] = []
    current: list[str] | None = None
    info = ""
    for line in README.read_text().splitlines(keepends=True):
        if line.startswith("```"):
            if current is None:
                current, info = [], line[3:].strip()
            else:
                if info == lang:
                    out.append("".join(current))
                current = None
        elif current is not None:
            current.append(line)
    return out


@pytest.mark.realclient
def test_readme_rsyslog_snippet_passes_rsyslogd_config_check(tmp_path: Path) -> None:
    snippet = next(b for b in blocks("") if 'type="omfwd"' in b)
    conf = tmp_path / "rsyslog.conf"
    # -N1 only parses and checks; the work directory keeps it away from the system's spool.
    conf.write_text(f'global(workDirectory="{tmp_path}")\n{snippet}')
    r = subprocess.run([require_binary("rsyslogd"), "-N1", "-f", str(conf)], capture_output=True, timeout=30)
    out = (r.stdout + r.stderr).decode(errors="replace")
    assert r.returncode == 0 and "error" not in out.lower(), out


def test_readme_toml_example_loads(tmp_path: Path) -> None:
    (toml,) = blocks("toml")
    f = tmp_path / "sylog.toml"
    f.write_text(toml)
    cfg = load_config(f)
    assert cfg.data_dir == "/var/lib/sylog"


def test_readme_commands_exist() -> None:
    text = README.read_text()
    named = set(re.findall(r"^\| `sylog ([a-z-]+)", text, flags=re.M))
    assert {"serve", "parse", "incidents", "show", "timeline", "signatures"} <= named
    r = run_cli("--help")
    assert r.returncode == 0
    listed = set(re.findall(r"^    ([a-z-]+)", r.stdout.decode(), flags=re.M))
    assert named <= listed, f"README names commands sylog does not have: {sorted(named - listed)}"


def test_readme_documents_every_incident_field() -> None:
    """The incident JSON table names every field of the Incident struct (the schema responders script against)."""
    from sylog.incidents.model import Incident

    text = README.read_text()
    section = text[text.index("### Incident JSON"):text.index("## Configuration file")]
    missing = [f for f in Incident.__struct_fields__ if f"`{f}`" not in section]
    assert not missing, f"README's incident table lacks {missing}"

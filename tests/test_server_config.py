"""Config: TOML + flags, validation errors that name the key."""

from __future__ import annotations

import pytest

from sylog.config import Config, ConfigError, apply_overrides, load_config


def test_defaults():
    c = load_config(None)
    assert c.listen.udp == ["0.0.0.0:514"] and c.listen.tcp == ["0.0.0.0:514"]
    assert c.data_dir == "./sylog-data" and c.limits.max_message_size == 65536
    assert c.timeline.flush_interval == 0.2 and c.listen.loop == "uvloop"
    c.listen.udp.append("x")
    assert load_config(None).listen.udp == ["0.0.0.0:514"]  # defaults are not shared


@pytest.mark.parametrize("toml,key", [
    ("[limits]\nmax_mesage_size = 1\n", "$.limits"),
    ("[limits]\nmax_message_size = 'big'\n", "$.limits.max_message_size"),
    ("[limits]\nmax_connections = 0\n", "$.limits.max_connections"),
    ("[listen]\nloop = 'tokio'\n", "$.listen.loop"),
    ("stats_interval = -1\n", "$.stats_interval"),
])
def test_bad_values_name_the_key(tmp_path, toml, key):
    p = tmp_path / "c.toml"
    p.write_text(toml)
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert key in str(e.value) and str(p) in str(e.value)


def test_not_toml_and_missing_file(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text("[limits\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(p)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")


def test_overrides_are_validated_like_the_file():
    c = apply_overrides(Config(), {"limits.max_message_size": 1024, "listen.tcp": []})
    assert c.limits.max_message_size == 1024 and c.listen.tcp == []
    with pytest.raises(ConfigError, match=r"\$\.timeline\.flush_interval"):
        apply_overrides(c, {"timeline.flush_interval": 0})

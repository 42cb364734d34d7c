"""Config errors name the file and the key; `*_env` settings resolve from the given environment only."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import ConfigError, load_config

GOOD = """
[slack]
alert_channel = "C0ALERTS"
approval_channel = "C0APPROVALS"

[[connectors]]
name = "hld"
kind = "homebase"
base_url = "http://127.0.0.1:1/v1"
api_key_env = "TEST_HLD_KEY"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "idops.toml"
    path.write_text(text)
    return path


def test_good_config_loads_with_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD))
    assert config.slack.command == "/idops"
    assert config.approvals.expire_minutes == 30
    assert config.access.responders == []
    entry = config.connector("hld")
    assert entry.settings({"TEST_HLD_KEY": "hld_test_abc"}) == {
        "base_url": "http://127.0.0.1:1/v1",
        "api_key": "hld_test_abc",
    }


def test_missing_secret_names_the_variable(tmp_path: Path) -> None:
    entry = load_config(write(tmp_path, GOOD)).connector("hld")
    with pytest.raises(ConfigError, match=r"TEST_HLD_KEY .*api_key_env.* is not set"):
        entry.settings({})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[slack]\nalert_channel='C'\n", r"slack\.approval_channel: required key is missing"),
        (GOOD + "\n[approvals]\nexpire_minutes = 0\n", r"approvals\.expire_minutes"),
        (GOOD + "\n[access]\nresponder = ['U1']\n", r"access\.responder: unknown key"),
        (
            GOOD.replace('command = "/idops"', "") + '\n[alerts]\nlevels = ["severe"]\n',
            r"alerts\.levels\[0\]",
        ),
        ("[slack\n", "not valid TOML"),
        (
            GOOD + '\n[[connectors]]\nname = "hld"\nkind = "sailpoint"\n',
            "connectors: two connectors are named 'hld'",
        ),
        (
            GOOD + '\n[[connectors]]\nname = "sp"\nkind = "sailpoint"\nclient_secret = "s3cret"\n',
            r"connectors\[1\]: client_secret is a secret: set it in an environment variable named by"
            " client_secret_env",
        ),
        (
            GOOD.replace('api_key_env = "TEST_HLD_KEY"', 'api_key = "hld_live_abcdefgh"'),
            r"connectors\[0\]: api_key is a secret",
        ),
    ],
)
def test_bad_config_is_one_line_naming_file_and_key(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=expected) as info:
        load_config(path)
    assert str(info.value).startswith(str(path))
    assert "\n" not in str(info.value)
    assert "s3cret" not in str(info.value) and "hld_live_abcdefgh" not in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.toml")

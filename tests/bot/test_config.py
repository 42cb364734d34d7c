"""Config errors name the file and the key; `*_env` settings resolve from the given environment only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot import audit_cli, server
from bot.config import ConfigError, Secrets, load_config
from connectors import RiskLevel

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
        ("[slack]\nalert_channel='C0ALERTS'\n", r"slack\.approval_channel: required key is missing"),
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


# --- every value checked by type and shape, every refusal one line without the value ----------------

SECRET = "hld_test_SECRETVALUE0123456789"


def with_line(section: str, line: str) -> str:
    """GOOD with `line` added to `[section]` (the section appended when GOOD has none)."""
    if f"[{section}]\n" in GOOD:
        return GOOD.replace(f"[{section}]\n", f"[{section}]\n{line}\n", 1)
    return GOOD + f"\n[{section}]\n{line}\n"


def slack_channel(key: str, value: str) -> str:
    return GOOD.replace(f'{key} = "C0{key.split("_")[0].upper()}S"', f"{key} = {value}")


REFUSED = [
    # item 8: numbers out of range, an empty list, a store path that is no file name
    (
        with_line("alerts", "poll_seconds = 100000000000000000000"),
        r"alerts\.poll_seconds: .*less than or equal",
    ),
    (with_line("alerts", "levels = []"), r"alerts\.levels: .*at least 1 item"),
    (with_line("store", 'path = "' + "x" * 100_000 + '"'), r"store\.path: .*at most 4096"),
    (with_line("alerts", "cooldown_minutes = -1"), r"alerts\.cooldown_minutes"),
    (with_line("alerts", "snooze_minutes = 100000000"), r"alerts\.snooze_minutes"),
    # item 9: channel ids, booleans that are not numbers, people by id, the store not temporary
    *[
        (slack_channel("approval_channel", value), r"slack\.approval_channel: must be a channel id")
        for value in ('""', '" "', '"x"', '"#general"', '"U0123ABC"', '"C0 123"', '"<#C123|x>"')
    ],
    (slack_channel("approval_channel", "1"), r"slack\.approval_channel: must be text"),
    (slack_channel("approval_channel", "true"), r"slack\.approval_channel: must be text"),
    *[
        (slack_channel("alert_channel", value), r"slack\.alert_channel: must be a channel id")
        for value in ('""', '"#alerts"', '"c0alerts"')
    ],
    (with_line("store", 'path = ""'), r"store\.path: "),
    (with_line("store", 'path = " "'), r"store\.path: must name a database file"),
    (with_line("store", 'path = ":memory:"'), r"store\.path: must name a database file"),
    (with_line("store", 'path = "/tmp/"'), r"store\.path: must name a database file, not a directory"),
    (with_line("store", 'path = "/"'), r"store\.path: must name a database file, not a directory"),
    (with_line("store", "path = 1"), r"store\.path: must be text"),
    (with_line("alerts", "poll_seconds = true"), r"alerts\.poll_seconds: must be a whole number"),
    (with_line("alerts", "cooldown_minutes = true"), r"alerts\.cooldown_minutes: must be a whole number"),
    (with_line("alerts", "poll_seconds = 30.5"), r"alerts\.poll_seconds: must be a whole number"),
    (with_line("alerts", 'poll_seconds = "300"'), r"alerts\.poll_seconds: must be a whole number"),
    (with_line("alerts", "enabled = 1"), r"alerts\.enabled: must be true or false"),
    (with_line("approvals", "privileged_approvals = false"), r"approvals\.privileged_approvals"),
    (with_line("access", 'responders = ["alice"]'), r"access\.responders\[0\]: must be a Slack user id"),
    (
        with_line("access", 'approvers = ["bob@example.com"]'),
        r"access\.approvers\[0\]: must be a Slack user id",
    ),
    (with_line("access", 'responders = "U0ALICE"'), r"access\.responders: must be a list"),
    (with_line("alerts", 'mention = "@oncall"'), r"alerts\.mention: must be a Slack user group id"),
    (
        with_line("alerts", 'routes = [{channel = "#emea"}]'),
        r"alerts\.routes\[0\]\.channel: must be a channel",
    ),
    (with_line("slack", 'command = "/idops now"'), r"slack\.command: must be '/'"),
    (with_line("slack", 'api_url = "slack.com"'), r"slack\.api_url: must be an http\(s\) URL"),
    # a Slack token in the file: the environment variable it belongs in
    (
        with_line("slack", f'bot_token = "xoxb-1-{SECRET}"'),
        r"slack\.bot_token: .*environment variable SLACK_BOT_TOKEN",
    ),
    (with_line("slack", f'signing_secret = "{SECRET}"'), r"slack\.signing_secret: .*SLACK_SIGNING_SECRET"),
    (with_line("slack", f'app_token = "xapp-{SECRET}"'), r"slack\.app_token: .*SLACK_APP_TOKEN"),
    (f'token = "xoxb-{SECRET}"\n' + GOOD, r": token: .*SLACK_BOT_TOKEN"),
    (with_line("slack", f'misc = "xoxp-{SECRET}"'), r"slack\.misc: .*SLACK_BOT_TOKEN"),
    (
        with_line("webhooks", f'homebase_secret = "{SECRET}"'),
        r"webhooks\.homebase_secret: .*homebase_secret_env",
    ),
    (GOOD + f'\n[other]\nkey = 1\n[slack2]\ntoken = "xoxb-{SECRET}"\n', r"slack2: .*SLACK_BOT_TOKEN"),
    # item 10: a secret where a variable's name belongs is refused without being shown
    (
        GOOD.replace('"TEST_HLD_KEY"', f'"{SECRET}"'),
        r"connectors\[0\]: api_key_env: must be the name of an env",
    ),
    (GOOD.replace('"TEST_HLD_KEY"', "42"), r"connectors\[0\]: api_key_env: must be the name of an env"),
    (GOOD.replace('"TEST_HLD_KEY"', '""'), r"connectors\[0\]: api_key_env: must be the name of an env"),
    (
        with_line("webhooks", f'sailpoint_token_env = "{SECRET}"'),
        r"webhooks\.sailpoint_token_env: must be the",
    ),
    # long or hostile keys are cut and escaped
    (GOOD + '"' + "k" * 10_000 + '" = 1\n', r"connectors\[0\]: k{59}…: not a setting"),
    (GOOD + '"Api\\u0000Key" = 1\n', r"connectors\[0\]: Api\\x00Key: not a setting"),
    (with_line("slack", '"' + "k" * 10_000 + '" = 1'), r"slack\.k{59}…: unknown key"),
    (with_line("slack", '"a\\nb\\u202e" = 1'), r"slack\.a\\x0ab\\u202e: unknown key"),
]


@pytest.mark.parametrize(("text", "expected"), REFUSED)
def test_values_are_checked_by_type_and_shape_and_never_shown(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=expected) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message and len(message) < 400, message
    assert "SECRETVALUE" not in message and "xxxxxxxxxx" not in message


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (GOOD.encode() + b"\n# caf\xff\n", r"not UTF-8 text \(byte 0xff at offset \d+\)"),
        (b"\xff" + GOOD.encode(), r"not UTF-8 text \(byte 0xff at offset 0\)"),
        (b"a = " + b"[" * 5000 + b"]" * 5000 + b"\n", "nested too deeply"),
        (b"a = " + b"{b = " * 2000 + b"1" + b"}" * 2000 + b"\n", "nested too deeply"),
        (b"# " + b"x" * (2 * 1024 * 1024), "not an idops config file"),
    ],
)
def test_unreadable_files_are_one_line(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "idops.toml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=expected) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: ") and "\n" not in str(info.value)


def test_a_directory_as_the_config_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path)


def test_good_values_of_every_shape_are_accepted(tmp_path: Path) -> None:
    text = with_line("alerts", 'mention = "S0ONCALL"\nrouten = 1'.replace("\nrouten = 1", ""))
    text = text + '\n[access]\nresponders = ["U0ALICE", "W0BOB", "S0SECOPS"]\n'
    text += '\n[webhooks]\nhomebase_secret_env = "HLD_HOOK_SECRET"\n'
    config = load_config(write(tmp_path, text))
    assert config.access.responders == ["U0ALICE", "W0BOB", "S0SECOPS"]
    assert config.alerts.mention == "S0ONCALL" and config.alerts.levels == [
        RiskLevel.HIGH,
        RiskLevel.CRITICAL,
    ]
    assert config.source == str(tmp_path / "idops.toml")


# --- [store] path: checked where the server opens it ------------------------------------------------


def store_config(tmp_path: Path, store: str) -> Path:
    return write(tmp_path, GOOD + f"\n[store]\npath = {json.dumps(store)}\n")


@pytest.mark.parametrize(
    ("store", "expected"),
    [
        ("{tmp}", "is not a regular file"),
        ("/dev/null", "is not a regular file"),
        ("/proc/version", "cannot be opened as the store|is not readable and writable"),
        ("/nonexistent/dir/idops.db", "names a directory that does not exist"),
        ("{tmp}/" + "n" * 300 + ".db", r"can't be used \(File name too long\)"),
        ("{tmp}/idops.toml", r"cannot be opened as the store \(file is not a database\)"),
    ],
)
async def test_a_store_path_that_cant_hold_the_store_stops_start_up_in_one_line(
    tmp_path: Path, store: str, expected: str
) -> None:
    path = store_config(tmp_path, store.replace("{tmp}", str(tmp_path)))
    config = load_config(path)
    secrets = Secrets(SLACK_BOT_TOKEN="xoxb-1", SLACK_SIGNING_SECRET="s")
    with pytest.raises(ConfigError, match=expected) as info:
        server.build_web_app(config, secrets, environ={"TEST_HLD_KEY": "hld_test_abcd"}, extensions=[])
    assert str(info.value).startswith(f"{path}: store.path: ") and "\n" not in str(info.value)


def test_idops_serve_says_it_in_one_line_with_status_2(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-1")
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "s")
    monkeypatch.setenv("TEST_HLD_KEY", "hld_test_abcd")
    path = store_config(tmp_path, "/nonexistent/dir/idops.db")
    assert server.main(["--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err == f"idops serve: {path}: store.path: names a directory that does not exist\n"


def test_idops_audit_says_a_store_that_is_not_one_in_one_line(tmp_path: Path, capsys) -> None:
    path = store_config(tmp_path, str(tmp_path / "idops.toml"))  # the config file itself
    assert audit_cli.main(["verify", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err == f"idops audit: {path}: store.path: cannot be opened as the store (file is not a database)\n"

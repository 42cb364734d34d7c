"""Property test: generated config files (at least 300 per run) through the real CLI (`idops manifest
--config`, which loads and validates the whole file) and the loader. Each file is a good config with
one to three values replaced from pools labelled valid or invalid by the rules in the README, or its
bytes damaged. A file is accepted (exit 0) exactly when every value put in is valid; a refusal is one
line naming the file (and the key, when one value is wrong), exit status 2, never a traceback, never a
secret. Derandomized: every run tries the same files."""

from __future__ import annotations

import contextlib
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tomllib
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.logs import Problems, watching

from bot import cli
from bot.config import ConfigError, load_config

SECRET = "SECRETVALUE"

BASE: dict[str, Any] = {
    "slack": {"command": "/idops", "alert_channel": "C0ALERTS", "approval_channel": "C0APPROVALS"},
    "access": {"responders": ["U0ALICE"], "approvers": ["S0LEADS"]},
    "approvals": {"expire_minutes": 30, "privileged_approvals": 2},
    "store": {"path": "idops.db"},
    "alerts": {"enabled": True, "poll_seconds": 300, "levels": ["high", "critical"], "cooldown_minutes": 60},
    "webhooks": {"sailpoint_auth": "bearer"},
    "connectors": [
        {"name": "hb", "kind": "homebase", "base_url": "http://127.0.0.1:1/v1", "api_key_env": "HB_KEY"}
    ],
}

CHANNEL_BAD = [
    "",
    " ",
    "x",
    "#general",
    "U0123ABC",
    "C0 123",
    "<#C123|x>",
    "c0abc",
    "C0ALERTS\n",
    1,
    True,
    [],
]
NUMBER_BAD = [True, False, 1.5, "30", 10**20, -(10**20), float("inf"), float("nan")]
ENV_BAD = [
    f"hld_test_{SECRET}",
    f"xoxb-1-{SECRET}",
    "",
    "lower_case",
    "HAS SPACE",
    "1ABC",
    1,
    True,
    ["HB_KEY"],
]

# (path, valid values, invalid values); a path is section.key, or connectors.0.key
POOLS: list[tuple[str, list[Any], list[Any]]] = [
    ("slack.alert_channel", ["C0ALERTS", "G0PRIVATE1", "C0123456789"], CHANNEL_BAD),
    ("slack.approval_channel", ["C0APPROVALS", "G0PRIV9"], CHANNEL_BAD),
    ("slack.command", ["/idops", "/sec-ops", "/a_b"], ["idops", "/id ops", "", "/" + "a" * 40, "/IDOPS", 5]),
    (
        "slack.api_url",
        ["https://slack.com/api/", "http://127.0.0.1:3000/api/"],
        ["slack.com", "ftp://x/", "", True],
    ),
    (
        "access.responders",
        [[], ["U0ALICE"], ["S0GROUP", "W0BOB"]],
        [["alice"], ["a@b.c"], "U0ALICE", [1], [True]],
    ),
    ("access.approvers", [["U0BOB", "U0CAROL"]], [["U0 BOB"], [["U0BOB"]], ["<@U0BOB>"], [""]]),
    ("approvals.expire_minutes", [1, 30, 10080], [0, -1, 10081, *NUMBER_BAD]),
    ("approvals.privileged_approvals", [1, 5], [0, 6, *NUMBER_BAD]),
    (
        "store.path",
        ["idops.db", "data/idops.db", "x" * 200],
        ["", " ", ":memory:", "/", "a/", "x" * 5000, 1, True],
    ),
    ("replicas.lease_seconds", [3, 30, 3600], [0, 2, 3601, *NUMBER_BAD]),
    ("alerts.enabled", [True, False], [1, 0, "yes", "true"]),
    ("alerts.poll_seconds", [1, 300, 86400], [0, 86401, *NUMBER_BAD]),
    ("alerts.levels", [["high"], ["low", "critical"]], [[], ["severe"], "high", [1], [True], ["HIGH "]]),
    ("alerts.cooldown_minutes", [0, 60, 44640], [-1, 44641, *NUMBER_BAD]),
    ("alerts.snooze_minutes", [1, 240], [0, *NUMBER_BAD]),
    ("alerts.mention", ["S0ONCALL"], ["@oncall", "U0ALICE", "", 1, "<!subteam^S0ONCALL>"]),
    (
        "alerts.routes",
        [[], [{"channel": "C0EMEA", "level": "critical"}, {"channel": "C0T", "tenant": "ten_1"}]],
        [
            [{"channel": "#emea"}],
            [{"channel": "C0XX", "level": "severe"}],
            [{"level": "high"}],
            [{"channel": "C0XY", "x": 1}],
        ],
    ),
    ("webhooks.homebase_secret_env", ["HLD_HOOK_SECRET"], ENV_BAD),
    ("webhooks.sailpoint_auth", ["bearer", "basic", "none"], ["Bearer", "", 1, "token"]),
    ("webhooks.sailpoint_token_env", ["SP_TOKEN"], ENV_BAD),
    ("connectors.0.api_key_env", ["HB_KEY", "HOMEBASE_API_KEY_2"], ENV_BAD),
    ("connectors.0.name", ["hb", "hb-1.x"], ["", "h b", 1, "a" * 200, "<!here>"]),
    # secrets and unknown keys written into the file
    ("slack.bot_token", [], [f"xoxb-1-{SECRET}", SECRET]),
    ("slack.signing_secret", [], [SECRET]),
    ("slack.channel", [], ["C0ALERTS"]),
    ("connectors.0.api_key", [], [f"hld_live_{SECRET}"]),
    ("connectors.0.client_secret", [], [SECRET]),
    ("connectors.0.notes", [], [f"xoxp-{SECRET}"]),
    ("webhooks.homebase_secret", [], [SECRET]),
    ("store.token", [], [f"xapp-{SECRET}"]),
    ("misc.anything", [], [1, "x"]),
]


def put(data: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node: Any = data
    for part in parents:
        node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
    node[last] = value


# --- a small TOML writer (tomllib only reads) ---------------------------------------------------------


def _string(text: str) -> str:
    escaped = "".join(
        "\\\\"
        if c == "\\"
        else '\\"'
        if c == '"'
        else f"\\u{ord(c):04x}"
        if ord(c) < 0x20 or ord(c) == 0x7F
        else c
        for c in text
    )
    return f'"{escaped}"'


def _key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _string(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return (
            "nan"
            if value != value
            else "inf"
            if value == float("inf")
            else "-inf"
            if value < -1e308
            else repr(value)
        )
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_value(item) for item in value) + "]"
    return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + "}"


def to_toml(data: dict[str, Any]) -> str:
    lines = [f"{_key(k)} = {_value(v)}" for k, v in data.items() if not isinstance(v, (dict, list))]
    for name, section in data.items():
        if isinstance(section, dict):
            lines += ["", f"[{_key(name)}]"] + [f"{_key(k)} = {_value(v)}" for k, v in section.items()]
        elif isinstance(section, list) and all(isinstance(item, dict) for item in section):
            for table in section:
                lines += ["", f"[[{_key(name)}]]"] + [f"{_key(k)} = {_value(v)}" for k, v in table.items()]
        elif isinstance(section, list):
            lines.insert(0, f"{_key(name)} = {_value(section)}")
    return "\n".join(lines) + "\n"


def test_the_toml_writer_round_trips() -> None:
    data = json.loads(json.dumps(BASE))
    put(data, "slack.weird key", 'a"b\\c\n\x01é😀')
    assert tomllib.loads(to_toml(data)) == data


# --- the property ------------------------------------------------------------------------------------


@st.composite
def mutated(draw: st.DrawFn) -> tuple[dict[str, Any], list[tuple[str, bool]]]:
    """A config with 1-3 values replaced; each replacement's path and whether it was valid."""
    data = json.loads(json.dumps(BASE))
    chosen = draw(st.lists(st.sampled_from(POOLS), min_size=1, max_size=3, unique_by=lambda pool: pool[0]))
    changes = []
    for path, good, bad in chosen:
        valid = bool(good) and draw(st.booleans())
        put(data, path, draw(st.sampled_from(good if valid else bad)))
        changes.append((path, valid))
    return data, changes


@pytest.fixture(scope="module")
def problems() -> Iterator[Problems]:
    with watching() as handler:
        yield handler


def run_cli(path: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["manifest", "--url", "https://idops.example", "--config", str(path)])
    return code, out.getvalue(), err.getvalue()


def assert_refused_cleanly(path: Path, code: int, err: str) -> None:
    assert code == 2, err
    assert err.startswith(f"idops manifest: {path}: ") and err.count("\n") == 1, err
    assert "Traceback" not in err and SECRET not in err and len(err) < 500, err


FILES = settings(
    max_examples=400,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@FILES
@given(mutated())
def test_generated_configs_are_accepted_exactly_when_every_value_is_valid(
    tmp_path_factory: pytest.TempPathFactory,
    problems: Problems,
    case: tuple[dict[str, Any], list[tuple[str, bool]]],
) -> None:
    data, changes = case
    path = tmp_path_factory.getbasetemp() / "fuzz-config.toml"
    path.write_text(to_toml(data), encoding="utf-8")
    code, out, err = run_cli(path)
    if all(valid for _, valid in changes):
        assert code == 0 and err == "", f"{changes}: refused: {err}"
        assert json.loads(out)["features"]["slash_commands"][0]["command"] == load_config(path).slack.command
    else:
        assert_refused_cleanly(path, code, err)
        wrong = [p for p, valid in changes if not valid]
        if len(changes) == 1:  # the refusal names the key (a table for a key it doesn't know at all)
            section = wrong[0].partition(".")[0]
            named = {"connectors": "connectors[0]", "misc": ": misc: "}.get(section, wrong[0])
            assert named in err, f"{wrong}: {err}"
    assert problems.found == []


@FILES
@given(st.binary(min_size=1, max_size=8), st.floats(0, 1), st.sampled_from(["insert", "replace", "truncate"]))
def test_damaged_bytes_never_crash_the_loader(
    tmp_path_factory: pytest.TempPathFactory, problems: Problems, junk: bytes, where: float, how: str
) -> None:
    good = to_toml(BASE).encode()
    at = int(where * len(good))
    damaged = {
        "insert": good[:at] + junk + good[at:],
        "replace": good[:at] + junk + good[at + len(junk) :],
        "truncate": good[:at],
    }[how]
    path = tmp_path_factory.getbasetemp() / "fuzz-bytes.toml"
    path.write_bytes(damaged)
    code, _, err = run_cli(path)
    if code != 0:
        assert_refused_cleanly(path, code, err)
    if b"\xff" in junk and how != "truncate":  # never UTF-8
        assert "not UTF-8 text" in err
    try:
        load_config(path)
    except ConfigError:
        pass
    assert problems.found == []

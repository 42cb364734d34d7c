"""Every `idops sim X` says where it listens and which credentials it made up in one format
(`standins.print_env`): lines a user pastes into a shell, after which `idops` reaches the stand-in.
Each simulator runs as its own process, as a user starts it; its block is run by a real `sh`."""

from __future__ import annotations

import io
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from support.sims import ROOT, parse_env, sim_process

from bot import cli
from standins import print_env
from standins.cli import SIMULATORS

# what a simulator reads from the environment is left out, so it makes its credentials up
PREFIXES = ("HOMEBASE_", "SAILPOINT_", "SLACK_", "OKTA_", "ENTRA_", "GOOGLE_")


def _in_shell(block: str, then: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    """Run the printed block in `sh`, as if pasted, then `then` (a command in that shell)."""
    script = tmp_path / "pasted.sh"
    script.write_text(block + 'exec "$@"\n', encoding="utf-8")
    environ = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        ["sh", str(script), *then], cwd=ROOT, env=environ, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("kind", sorted(SIMULATORS))
def test_every_simulator_prints_its_address_as_lines_a_shell_takes(kind, tmp_path) -> None:
    with sim_process(kind, drop=(*PREFIXES, kind.upper() + "_")) as sim:
        block = sim.block()
        printed = sim.env()
    lines = block.splitlines()
    assert lines[-1] == "export " + " ".join(printed)
    assert all(line.startswith("#") or "=" in line for line in lines[:-1]), block
    urls = {name: value for name, value in printed.items() if name.endswith("_URL")}
    assert urls and all(value.startswith("http://127.0.0.1:") for value in urls.values()), printed
    exported = _in_shell(block, ["env"], tmp_path)
    assert exported.returncode == 0, exported.stderr
    seen = dict(line.split("=", 1) for line in exported.stdout.splitlines() if "=" in line)
    assert {name: seen.get(name) for name in printed} == printed


@pytest.mark.parametrize("kind", sorted(SIMULATORS))
def test_every_simulator_stops_cleanly_and_names_a_taken_port(kind, capsys) -> None:
    with sim_process(kind, drop=(*PREFIXES, kind.upper() + "_")) as sim:
        sim.env()
        sim.process.send_signal(signal.SIGTERM)  # as a service manager stops it
        assert sim.process.wait(timeout=15) == 0
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert cli.main(["sim", kind, "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"idops sim {kind}: cannot listen on 127.0.0.1:{port} ("), err
    assert "Traceback" not in err


def _config(tmp_path: Path, connector: str) -> Path:
    path = tmp_path / "idops.toml"
    path.write_text('[slack]\nalert_channel = "C0ALERTS"\napproval_channel = "C0APPROVALS"\n\n' + connector)
    return path


CONNECTORS = {
    "google_workspace": 'kind = "google_workspace"\nadmin_email = "secops-bot@acme.example"\n'
    'service_account_json_env = "GOOGLE_SERVICE_ACCOUNT_JSON"\nbase_url_env = "GOOGLE_WORKSPACE_BASE_URL"\n'
    'alert_center_url_env = "GOOGLE_WORKSPACE_BASE_URL"\n',
    "homebase": 'kind = "homebase"\nbase_url_env = "HOMEBASE_BASE_URL"\napi_key_env = "HOMEBASE_API_KEY"\n',
    "sailpoint": 'kind = "sailpoint"\nbase_url_env = "SAILPOINT_BASE_URL"\n'
    'client_id_env = "SAILPOINT_CLIENT_ID"\nclient_secret_env = "SAILPOINT_CLIENT_SECRET"\n',
}


@pytest.mark.parametrize("kind", sorted(CONNECTORS))
def test_identity_simulator_lines_configure_idops_check(kind, tmp_path) -> None:
    """The config names only variables; the pasted lines set them all, and `idops check` gets through."""
    config = _config(tmp_path, f'[[connectors]]\nname = "sim"\n{CONNECTORS[kind]}')
    prefix = kind.upper() + "_"
    with sim_process(kind, "--identities", "5", drop=(prefix,)) as sim:
        printed = sim.env()
        wanted = {line.split('"')[1] for line in CONNECTORS[kind].splitlines() if "_env" in line}
        assert set(printed) == wanted
        command = [sys.executable, "-m", "bot.cli", "check", "--config", str(config)]
        checked = _in_shell(sim.block(), command, tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "sim" in checked.stdout


SLACK_AUTH_TEST = """
import os
from slack_sdk import WebClient
answer = WebClient(token=os.environ["SLACK_BOT_TOKEN"], base_url=os.environ["SLACK_API_URL"]).auth_test()
print(answer["ok"], answer["team_id"])
"""


@pytest.mark.parametrize("socket_mode", [False, True])
def test_slack_lines_give_a_bot_the_web_api(socket_mode, tmp_path) -> None:
    """The copied lines alone reach the stand-in's Web API (slack_sdk's own client, as the bot uses)."""
    args = ["--socket-mode"] if socket_mode else []
    with sim_process("slack", *args, drop=("SLACK_",)) as sim:
        printed = sim.env()
        names = {"SLACK_API_URL", "SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET"}
        assert set(printed) == (names | {"SLACK_APP_TOKEN"} if socket_mode else names)
        assert printed["SLACK_API_URL"].endswith("/api/")
        answer = _in_shell(sim.block(), [sys.executable, "-c", SLACK_AUTH_TEST], tmp_path)
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.split() == ["True", "T0IDOPS"]


def test_slack_prints_no_credentials_it_was_given(tmp_path) -> None:
    given = {"SLACK_BOT_TOKEN": "xoxb-given-elsewhere", "SLACK_SIGNING_SECRET": "given-secret-value"}
    with sim_process("slack", env=given, drop=("SLACK_",)) as sim:
        assert list(sim.env()) == ["SLACK_API_URL"]
        shown = "".join(sim.lines)
    assert "given-elsewhere" not in shown and "given-secret-value" not in shown


def test_print_env_quotes_values_for_the_shell(tmp_path) -> None:
    out = io.StringIO()
    odd = {"ODD_VALUE": 'it\'s $HOME `x` "quoted" spaced out', "EMPTY": ""}
    print_env("a stand-in\nsecond line", odd, file=out)
    block = out.getvalue()
    assert block.splitlines()[:2] == ["# a stand-in", "# second line"]
    assert parse_env(block.splitlines()) == odd
    shown = _in_shell(block, ["sh", "-c", 'printf "%s|%s" "$ODD_VALUE" "$EMPTY"'], tmp_path)
    assert shown.stdout == odd["ODD_VALUE"] + "|"
    with pytest.raises(ValueError, match="not shell variable names: BAD-NAME"):
        print_env("x", {"BAD-NAME": "1"}, file=out)

"""`idops serve` and `idops manifest`: start-up errors, /healthz, the process end to end, App Home, the
SOAR API posting its card, the manifest's URLs and scopes, and the example config."""

from __future__ import annotations

import asyncio
import collections
import json
import os
import re
import signal
import socket
import sys
from pathlib import Path

import aiohttp
import pytest
from support.approvals import API_KEY
from support.bot import (
    APPROVAL_CHANNEL,
    APPROVER,
    OUTSIDER,
    REQUESTER,
    assert_scoped,
    buttons,
    slack_users,
    text_of,
)

from bot import manifest, server, tasks
from bot.config import Secrets, StoreSettings, load_config
from bot.lookups import NOT_A_MEMBER
from bot.slack_text import escape
from standins import homebase, serving
from standins.slack import SOCKET_MODE, FakeSlack

ROOT = Path(__file__).resolve().parents[2]
API_AUTH = {"Authorization": "Bearer test-api-token"}
SLACK_ENV = ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN", "SLACK_API_URL", "IDOPS_API_TOKEN")


# --- HTTP endpoints ---------------------------------------------------------------------------------


async def test_healthz_answers_with_the_connectors_the_store_and_the_claims_held(h):
    # to the API token's bearer only; without it just {"ok": ...} (tests/security/test_security_healthz.py)
    async with h.http.get(h.url + "/healthz", headers=API_AUTH) as response:
        assert response.status == 200
        body = await response.json()
    replica = body.pop("replica")
    assert body == {"ok": True, "connectors": ["homebase"], "store": {"ok": True, "backend": "sqlite"}}
    assert replica == {"ok": True, "id": h.bot.service.claims.holder, "claims": ["expiry"]}


async def soar_post(h, identity: str, **fields: str) -> tuple[int, dict]:
    """POST a revoke request to the bot's SOAR API as a playbook would; the status and the JSON body."""
    body = {"connector": "homebase", "identity": identity, "action": "revoke", "requested_by": REQUESTER}
    body.update(fields)
    async with h.http.post(h.url + "/api/v1/approvals", json=body, headers=API_AUTH) as response:
        return response.status, await response.json()


async def test_a_soar_api_request_posts_the_same_approval_card(h):
    status, created = await soar_post(h, h.people["plain"]["email"], reason="SOAR playbook 12")
    assert status == 201, created
    card = h.card()
    assert card["metadata"]["event_payload"]["request_id"] == created["id"]
    assert "SOAR playbook 12" in text_of(card) and f"Request {created['id']} · api" in text_of(card)
    await h.click(APPROVER, card, "approval:approve")
    async with h.http.get(f"{h.url}/api/v1/approvals/{created['id']}", headers=API_AUTH) as response:
        state = await response.json()
    assert state["status"] == "executed" and state["result"]["action"] == "revoke_sessions"
    assert len(h.actions()) == 1


async def test_a_soar_api_card_slack_refused_is_posted_by_the_same_post_again(h):
    email = h.people["plain"]["email"]
    h.slack.fail_next("chat.postMessage", error="not_in_channel")
    status, created = await soar_post(h, email)
    assert status == 201 and "could not be posted; the same POST again posts it" in created["warning"]
    assert h.cards() == []
    status, again = await soar_post(h, email)
    assert status == 409 and again["existing"]["id"] == created["id"] and "warning" not in again
    assert h.card()["metadata"]["event_payload"]["request_id"] == created["id"]
    status, third = await soar_post(h, email)  # the card is in Slack now: nothing more is posted
    assert status == 409 and third["existing"]["id"] == created["id"] and len(h.cards()) == 1
    assert len(h.slack.calls_to("chat.postMessage")) == 2


async def test_concurrent_soar_api_posts_after_a_refused_card_post_it_once(h):
    identity = h.people["plain"]["id"]
    h.slack.fail_next("chat.postMessage", error="fatal_error")
    assert (await soar_post(h, identity))[0] == 201 and h.cards() == []
    answers = await asyncio.gather(*(soar_post(h, identity) for _ in range(4)))
    assert [status for status, _ in answers] == [409] * 4
    (card,) = h.cards()
    (request,) = await h.bot.service.pending()
    assert card["metadata"]["event_payload"]["request_id"] == request.id and card["ts"] == request.message_ts


async def test_socket_mode_serves_no_events_url_and_needs_no_signing_secret(tmp_path):
    config = load_config(ROOT / "idops.example.toml").model_copy(
        update={"store": StoreSettings(path=str(tmp_path / "s.db")), "connectors": []}
    )
    secrets = Secrets(SLACK_BOT_TOKEN="xoxb-1", SLACK_APP_TOKEN="xapp-1")
    web_app = server.build_web_app(config, secrets, socket_mode=True, extensions=[], environ={})
    paths = {route.resource.canonical for route in web_app.router.routes() if route.resource}
    assert "/healthz" in paths and "/slack/events" not in paths
    await web_app.cleanup()  # never started: clean-up still closes the store


async def _socket_mode_app(tmp_path, slack: FakeSlack, app_token: str):
    config = load_config(ROOT / "idops.example.toml").model_copy(
        update={"store": StoreSettings(path=str(tmp_path / "s.db")), "connectors": []}
    )
    secrets = Secrets(SLACK_BOT_TOKEN=slack.bot_token, SLACK_APP_TOKEN=app_token, SLACK_API_URL=slack.api_url)
    return server.build_web_app(config, secrets, socket_mode=True, extensions=[], environ={})


async def _start_up_error(web_app) -> str:
    """What stopped the server's start-up (bounded: Slack's client alone would retry for ever)."""
    with pytest.raises(server.StartupError) as raised:
        async with asyncio.timeout(20), serving(web_app):
            pass
    return str(raised.value)


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("fatal_error", "Slack refused Socket Mode: apps.connections.open said fatal_error"),
        ("unknown token", "said invalid_auth (SLACK_APP_TOKEN must be an app-level token, xapp-…)"),
        ("bot token", "said not_allowed_token_type (SLACK_APP_TOKEN must be an app-level token, xapp-…)"),
        ("down", "cannot reach Slack at http://127.0.0.1:"),
    ],
)
async def test_socket_mode_start_up_stops_with_what_slack_said(tmp_path, fault, message):
    slack = FakeSlack()
    async with slack.serve():
        app_token = {"unknown token": "xapp-1-secret", "bot token": slack.bot_token}.get(
            fault, slack.app_token
        )
        if fault == "fatal_error":
            slack.fail_next("apps.connections.open", error=fault)
        elif fault == "down":
            slack.down("drop")
        error = await _start_up_error(await _socket_mode_app(tmp_path, slack, app_token))
    assert message in error and app_token not in error
    if fault != "down":
        assert len(slack.calls_to("apps.connections.open")) == 1  # asked once, not retried in a loop


async def test_socket_mode_start_up_stops_when_the_websocket_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(server, "SOCKET_CONNECT_SECONDS", 1.0)
    slack = FakeSlack()
    slack.refuse_sockets = True
    async with slack.serve():
        error = await _start_up_error(await _socket_mode_app(tmp_path, slack, slack.app_token))
    assert error == "Slack's Socket Mode endpoint did not accept a connection within 1 s"


async def _serve_until_exit(
    tmp_path, env: dict[str, str], *argv: str, timeout: float = 30
) -> tuple[int, str]:
    """Run `idops serve` expected to stop by itself: (exit status, stdout + stderr); killed if it hangs."""
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "bot.cli", "serve", "--config", str(_write_config(tmp_path)), *argv),
        cwd=ROOT,
        env={**{k: v for k, v in os.environ.items() if k not in SLACK_ENV}, "TEST_HLD_KEY": API_KEY, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(f"idops serve still ran after {timeout} s") from None
    assert process.returncode is not None
    return process.returncode, output.decode()


async def test_serve_socket_mode_refused_at_start_up_exits_2_with_one_line(tmp_path):
    slack = FakeSlack()
    async with slack.serve():
        env = {
            "SLACK_BOT_TOKEN": slack.bot_token,
            "SLACK_APP_TOKEN": "xapp-1-do-not-print",  # not the FakeSlack's: invalid_auth
            "SLACK_API_URL": slack.api_url,
        }
        status, output = await _serve_until_exit(tmp_path, env, "--socket-mode", "--port", "0")
    assert status == 2
    assert output.splitlines()[-1] == (
        "idops serve: Slack refused Socket Mode: apps.connections.open said invalid_auth"
        " (SLACK_APP_TOKEN must be an app-level token, xapp-…)"
    )
    assert "Traceback" not in output and "xapp-1-do-not-print" not in output


async def test_serve_on_a_taken_port_exits_2_with_one_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s"}
        status, output = await _serve_until_exit(tmp_path, env, "--port", str(port))
    assert status == 2
    assert (
        output.splitlines()[-1] == f"idops serve: cannot listen on 127.0.0.1:{port} (Address already in use)"
    )
    assert "Traceback" not in output


# --- App Home ---------------------------------------------------------------------------------------


async def test_app_home_shows_counts_riskiest_and_what_waits_on_the_viewer(h):
    card = await h.request_card("plain", "revoke", "phished")
    request_id = card["metadata"]["event_payload"]["request_id"]
    await h.slack.open_home(h.events_url, APPROVER)
    await h.settle()
    home = h.slack.home(APPROVER)
    assert home is not None and home["type"] == "home"
    levels = collections.Counter(h.sim.record(i)["risk_level"] for i in range(h.sim.size))
    counts = home["blocks"][1]["fields"]
    for field, level in zip(counts, ("critical", "high", "medium", "low")):
        assert field["text"].endswith(f"*{level.title()}*\n{levels[level]}")
    riskiest = max((h.sim.record(i) for i in range(h.sim.size)), key=lambda r: r["risk_score"])
    assert ("identity:show", f"homebase:{riskiest['id']}") == buttons(home)[0]
    assert h.people["plain"]["display_name"] in text_of(home) and "Waiting on your approval" in text_of(home)
    assert f"<#{APPROVAL_CHANNEL}>" in text_of(home)
    # the requester can't approve their own request, so nothing waits on them
    await h.slack.open_home(h.events_url, REQUESTER)
    await h.settle()
    assert "Nothing is waiting on you." in text_of(h.slack.home(REQUESTER))
    assert request_id not in text_of(h.slack.home(REQUESTER))


async def test_app_home_for_someone_outside_idops_shows_no_identity_data(h):
    await h.slack.open_home(h.events_url, OUTSIDER)
    await h.settle()
    home = h.slack.home(OUTSIDER)
    assert NOT_A_MEMBER in text_of(home) and buttons(home) == [] and "Critical" not in text_of(home)
    assert h.people["plain"]["email"] not in text_of(home)


async def test_a_home_tab_slack_refuses_is_logged_and_the_next_visit_publishes_it(h, caplog):
    h.slack.fail_next("views.publish", error="fatal_error")
    await h.slack.open_home(h.events_url, APPROVER)
    await h.settle()
    assert h.slack.home(APPROVER) is None
    assert f"App Home of {APPROVER} not published: Slack said fatal_error" in caplog.text
    await h.slack.open_home(h.events_url, APPROVER)
    await h.settle()
    assert h.slack.home(APPROVER) is not None


async def test_show_on_the_home_tab_opens_the_card_in_a_modal(h):
    await h.slack.open_home(h.events_url, APPROVER)
    await h.settle()
    home = h.slack.home(APPROVER)
    _, value = buttons(home)[0]
    await h.click(APPROVER, home, "identity:show", value)
    (modal,) = h.slack.views(APPROVER)
    assert modal["blocks"][0]["type"] == "header" and value.split(":", 1)[1] in text_of(modal)
    assert ("request:revoke_sessions", value) in buttons(modal)


# --- the manifest -----------------------------------------------------------------------------------


def test_the_manifest_points_every_url_at_the_events_endpoint():
    built = manifest.manifest("https://idops.example.com/")
    url = "https://idops.example.com/slack/events"
    (command,) = built["features"]["slash_commands"]
    assert command["command"] == "/idops" and command["url"] == url and command["should_escape"] is True
    assert built["settings"]["interactivity"] == {"is_enabled": True, "request_url": url}
    assert built["settings"]["event_subscriptions"] == {"request_url": url, "bot_events": ["app_home_opened"]}
    assert built["features"]["app_home"]["home_tab_enabled"] is True
    assert built["settings"]["socket_mode_enabled"] is False
    scopes = built["oauth_config"]["scopes"]["bot"]
    for scope in ("commands", "chat:write", "users:read", "users:read.email", "usergroups:read"):
        assert scope in scopes


def test_manifest_command_prints_json_and_takes_the_command_from_config(tmp_path, capsys):
    config = tmp_path / "idops.toml"
    config.write_text('[slack]\ncommand = "/sec"\nalert_channel = "C01"\napproval_channel = "C02"\n')
    assert manifest.main(["--url", "https://bot.example", "--config", str(config)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["features"]["slash_commands"][0]["command"] == "/sec"
    assert manifest.main(["--socket-mode"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert (
        printed["settings"]["socket_mode_enabled"] is True
        and "url" not in printed["features"]["slash_commands"][0]
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--url", "http://bot.example"], "--url must be an https:// URL"),
        (["--url", "https://"], "--url must be an https:// URL"),
        ([], "--url is required"),
        (["--url", "https://bot.example", "--config", "/nonexistent/idops.toml"], "no such config file"),
    ],
)
def test_manifest_errors_are_one_line(argv, message, capsys):
    assert manifest.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


async def test_the_manifest_has_a_scope_for_every_web_api_method_the_bot_calls(h):
    card = await h.request_card("plain", "disable", "takeover")
    await h.command(REQUESTER, f"disable {h.people['plain2']['email']}")
    await h.click(APPROVER, card, "approval:approve")
    await h.slack.open_home(h.events_url, APPROVER)
    await h.settle()
    called = {method for method, _ in h.slack.calls if method != "response_url"}
    assert {"chat.postMessage", "chat.update", "users.lookupByEmail", "usergroups.users.list"} <= called
    assert manifest.manifest("https://x.example")["oauth_config"]["scopes"]["bot"] == manifest.bot_scopes()
    assert_scoped(h.slack)  # (the harness checks this after every test too)


# --- the example config -----------------------------------------------------------------------------


async def test_the_example_config_loads_and_its_connectors_build():
    config = load_config(ROOT / "idops.example.toml")
    environ = {
        "HOMEBASE_API_KEY": "hld_live_example0123456789",
        "SAILPOINT_CLIENT_ID": "id",
        "SAILPOINT_CLIENT_SECRET": "secret",
    }
    built = server.build_connectors(config, environ)
    assert sorted(built) == ["homebase", "sailpoint"]
    for connector in built.values():
        await connector.close()
    assert config.access.responders and config.access.approvers


# --- idops serve ------------------------------------------------------------------------------------


def _write_config(tmp_path: Path, sim_url: str = "http://127.0.0.1:9/v1") -> Path:
    path = tmp_path / "idops.toml"
    path.write_text(
        f"""
[slack]
alert_channel = "C0ALERTS"
approval_channel = "{APPROVAL_CHANNEL}"

[access]
responders = ["{REQUESTER}"]
approvers = ["S0APPROVERS"]

[store]
path = "{tmp_path / "serve.db"}"

[[connectors]]
name = "homebase"
kind = "homebase"
base_url = "{sim_url}"
api_key_env = "TEST_HLD_KEY"
"""
    )
    return path


@pytest.mark.parametrize(
    ("env", "argv", "message"),
    [
        ({}, [], "environment variable SLACK_BOT_TOKEN is not set"),
        ({"SLACK_BOT_TOKEN": "xoxb-1"}, [], "environment variable SLACK_SIGNING_SECRET is not set"),
        (
            {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s"},
            ["--socket-mode"],
            "environment variable SLACK_APP_TOKEN is not set",
        ),
        (
            {"SLACK_BOT_TOKEN": "xoxb-secret-token", "SLACK_SIGNING_SECRET": "s"},
            [],
            "environment variable TEST_HLD_KEY (from api_key_env) is not set",
        ),
    ],
)
def test_serve_start_up_errors_are_one_line_naming_the_variable(
    tmp_path, monkeypatch, capsys, env, argv, message
):
    for name in (*SLACK_ENV, "TEST_HLD_KEY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert server.main(["--config", str(_write_config(tmp_path)), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert "xoxb-secret-token" not in err


def test_serve_with_a_bad_config_names_the_file_and_key(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text('[slack]\nalert_channel = "C01"\n')
    assert server.main(["--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "slack.approval_channel" in err


@pytest.mark.parametrize("socket_mode", [False, True], ids=["http", "socket-mode"])
async def test_idops_serve_runs_as_a_process_and_answers_slack(tmp_path, socket_mode):
    sim_app = homebase.create_app(identities=30, rate_limits=False)
    person = sim_app[homebase.STATE].record(3)
    slack = FakeSlack(users=slack_users({"plain": person}), usergroups={"S0APPROVERS": [APPROVER]})
    async with serving(sim_app) as sim_url, slack.serve():
        env = {
            **{k: v for k, v in os.environ.items() if k not in SLACK_ENV},
            "SLACK_BOT_TOKEN": slack.bot_token,
            "SLACK_API_URL": slack.api_url,
            "TEST_HLD_KEY": API_KEY,
        }
        if socket_mode:
            env["SLACK_APP_TOKEN"] = slack.app_token
        else:
            env["SLACK_SIGNING_SECRET"] = slack.signing_secret
        config = _write_config(tmp_path, sim_url + "/v1")
        process = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "bot.cli", "serve", "--config", str(config), "--port", "0"),
            *(["--socket-mode"] if socket_mode else []),
            cwd=ROOT,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        started = ""
        try:
            bot_url, started = await _listening(process)
            assert slack.socket_connected is socket_mode  # connected before it serves /healthz
            events = SOCKET_MODE if socket_mode else bot_url + "/slack/events"
            reply = await slack.command(events, REQUESTER, f"whois {person['email']}")
            assert reply.status == 200
            shown = await slack.wait_for(lambda: slack.responses(REQUESTER), timeout=10, what="the card")
            assert escape(person["display_name"]) in text_of(shown[-1])
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGINT)
            output, _ = await asyncio.wait_for(process.communicate(), 15)
        log = started + output.decode()
        assert process.returncode == 0, log
        assert "idops serving" in log
        assert "will be unused" not in log  # Bolt's false alarm about SLACK_BOT_TOKEN is filtered out
        for secret in (slack.bot_token, slack.signing_secret, slack.app_token, API_KEY):
            assert secret not in log


async def _listening(process: asyncio.subprocess.Process) -> tuple[str, str]:
    """The URL `idops serve --port 0` says it bound (its "idops listening on" line, logged once it
    listens), and the output up to that line; fails with that output if it exits first. The ceiling is
    for a loaded machine's start-up, not a pace: the line comes when it comes."""
    assert process.stdout is not None
    seen: list[str] = []
    async with asyncio.timeout(120):
        while line := (await process.stdout.readline()).decode():
            seen.append(line)
            found = re.search(r"idops listening on (http://\S+)", line)
            if found:
                return found.group(1), "".join(seen)
    raise AssertionError(f"idops serve exited before it listened: {''.join(seen)[-3000:]}")


async def _line_with(stream: asyncio.StreamReader, prefix: str, timeout: float = 60) -> str:
    async with asyncio.timeout(timeout):
        while line := (await stream.readline()).decode():
            if line.startswith(prefix):
                return line.strip()
    raise AssertionError(f"the process ended before printing {prefix!r}")


async def test_sim_slack_page_drives_a_bot_served_over_socket_mode(tmp_path):
    """`idops sim slack --socket-mode` and `idops serve --socket-mode`, as the README tells a user."""
    env = {k: v for k, v in os.environ.items() if k not in SLACK_ENV}
    sim = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "bot.cli", "sim", "slack", "--port", "0", "--socket-mode"),
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    serve = None
    try:
        assert sim.stdout is not None
        page = (await _line_with(sim.stdout, "# Slack stand-in: the page is at ")).split()[-1].rstrip("/")
        assert await _line_with(sim.stdout, "# Commands and clicks go to") == (
            "# Commands and clicks go to the bot's Socket Mode connection"
        )
        printed = {}
        for name in ("SLACK_API_URL", "SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN"):
            printed[name] = (await _line_with(sim.stdout, name + "=")).split("=", 1)[1]
        serve = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "bot.cli", "serve", "--config", str(_write_config(tmp_path))),
            *("--port", "0", "--socket-mode"),
            cwd=ROOT,
            env={
                **env,
                "SLACK_BOT_TOKEN": printed["SLACK_BOT_TOKEN"],
                "SLACK_APP_TOKEN": printed["SLACK_APP_TOKEN"],
                "SLACK_API_URL": printed["SLACK_API_URL"],
                "TEST_HLD_KEY": API_KEY,
            },
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        await _listening(serve)  # connected to the stand-in before it listens
        async with aiohttp.ClientSession() as session:
            typed = {"user": REQUESTER, "line": "/idops help", "channel": "C0ALERTS"}
            async with session.post(page + "/_ui/command", json=typed) as response:
                assert await response.json() == {"status": 200}
            async with session.get(page + "/_ui/state", params={"user": REQUESTER}) as response:
                shown = (await response.json())["ephemerals"]
        assert any("/idops whois" in message.get("text", "") for message in shown)
    finally:
        for process in (serve, sim):
            if process is not None and process.returncode is None:
                process.send_signal(signal.SIGINT)
                try:
                    await asyncio.wait_for(process.wait(), 15)
                except TimeoutError:
                    process.kill()
                    await process.wait()


async def test_stopping_ends_a_background_loop_that_swallowed_a_cancellation():
    """What Python 3.11's wait_for can do to the expiry loop: the first cancel is lost, the loop goes on.
    bot.tasks.stop (the server's, the scheduler's and the sender's) cancels again until it ends."""
    lost = 0

    async def loop_that_loses_one_cancel() -> None:
        nonlocal lost
        while True:
            try:
                await asyncio.sleep(0.05)
            except asyncio.CancelledError:
                if lost:
                    raise
                lost += 1  # swallowed, as the race does

    task = asyncio.get_running_loop().create_task(loop_that_loses_one_cancel())
    await asyncio.sleep(0.1)
    await asyncio.wait_for(tasks.stop(task), 30)  # the test's own ceiling: a hang fails it
    assert task.cancelled() and lost == 1

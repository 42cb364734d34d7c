"""The Slack flow on Google Workspace users, end to end: signed slash commands and clicks into the real
server, the Workspace connector over loopback to its simulator (service account JWT, Directory, Alert
Center), approvals, and the action seen in the simulator."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from support.bot import APPROVER, APPROVER2, REQUESTER, BotHarness, buttons, harness, request_buttons, text_of

from bot.config import ConfigError, parse_config
from standins import google_workspace, serving

KEY = google_workspace.generate_key()


@pytest.fixture
async def h(tmp_path) -> AsyncIterator[BotHarness]:
    app = google_workspace.create_app(key=KEY, identities=80)
    async with serving(app) as url:
        entry = {
            "name": "workspace",
            "kind": "google_workspace",
            "service_account_json_env": "TEST_GOOGLE_KEY",
            "admin_email": "secops-bot@acme.example",
            "token_url": f"{url}/token",
            "base_url": url,
            "alert_center_url": url,
            "timeout": 2,
        }
        environ = {"TEST_GOOGLE_KEY": json.dumps(KEY)}
        async with harness(tmp_path, environ=environ, connectors=[entry]) as built:
            built.extra["workspace"] = app[google_workspace.STATE]
            yield built


def workspace(h: BotHarness) -> google_workspace.WorkspaceState:
    return h.extra["workspace"]  # type: ignore[no-any-return]


def pick(h: BotHarness, *, admin: bool, alert: str) -> dict[str, Any]:
    """An active Workspace user (by its Directory record) with an open alert of type `alert`."""
    state = workspace(h)
    alerted = {
        a["data"]["email"] for a in state.alerts if a["type"] == alert and a["metadata"]["status"] != "CLOSED"
    }
    for index in range(state.identities):
        user = state.user(index)
        privileged = user["isAdmin"] or user["isDelegatedAdmin"]
        if user["primaryEmail"] in alerted and privileged == admin and not user["suspended"]:
            return {**user, "index": index}
    raise AssertionError(f"no seeded user with a {alert} alert and admin={admin}")


async def test_whois_shows_a_workspace_user_with_risk_from_alert_center(h: BotHarness) -> None:
    user = pick(h, admin=False, alert="Leaked password")
    await h.command(REQUESTER, f"whois {user['primaryEmail']}")
    card = h.last_seen(REQUESTER)
    shown = text_of(card)
    assert user["primaryEmail"] in shown and "Google Workspace (workspace)" in shown
    assert "*100* critical" in shown and "C03az79cb" in shown
    ref = f"workspace:{user['id']}"
    assert request_buttons(ref) <= set(buttons(card))
    # the search text goes into a quoted query clause: no admin list for a crafted name
    await h.command(REQUESTER, 'whois "x\' isAdmin=true"')
    assert "No identity matches" in h.last_seen(REQUESTER)["text"]


async def test_disable_runs_once_after_approval_and_an_already_suspended_user_is_success(
    h: BotHarness,
) -> None:
    user = pick(h, admin=False, alert="Suspicious login")
    state = workspace(h)
    await h.command(REQUESTER, f"disable {user['primaryEmail']} phished via a fake login page")
    (card,) = h.cards()
    assert user["primaryEmail"] in text_of(card) and "Disable account" in text_of(card)
    await h.click(APPROVER, card, "approval:approve")
    (card,) = h.cards()
    assert ":white_check_mark: Done" in text_of(card) and buttons(card) == []
    (reply,) = card["replies"]
    assert "suspended in Google Workspace" in reply["text"]
    assert state.user(user["index"])["suspended"] is True
    patches = [r for r in state.log if r.method == "PATCH"]
    assert len(patches) == 1
    # asked again: the approved action finds the user suspended and says so, sending nothing
    await h.command(REQUESTER, f"disable {user['id']} still phished")
    second = h.cards()[-1]
    await h.click(APPROVER, second, "approval:approve")
    (reply,) = h.cards()[-1]["replies"]
    assert "was already suspended" in reply["text"]
    assert len([r for r in state.log if r.method == "PATCH"]) == 1
    # the undo: enable unsuspends, after its own approval
    await h.command(REQUESTER, f"enable {user['primaryEmail']} false positive")
    undo = h.cards()[-1]
    assert "Enable account" in text_of(undo)
    await h.click(APPROVER, undo, "approval:approve")
    (reply,) = h.cards()[-1]["replies"]
    assert "unsuspended in Google Workspace" in reply["text"]
    assert state.user(user["index"])["suspended"] is False


async def test_a_privileged_workspace_user_needs_two_approvers_for_a_sign_out(h: BotHarness) -> None:
    state = workspace(h)
    index = next(
        i for i in range(state.identities) if state.user(i)["isAdmin"] and not state.user(i)["suspended"]
    )
    email = state.user(index)["primaryEmail"]
    await h.command(REQUESTER, f"revoke {email} token theft")
    (card,) = h.cards()
    assert ":crown: privileged" in text_of(card)
    await h.click(APPROVER, card, "approval:approve")
    assert state.sign_outs[index] == 0
    await h.click(APPROVER2, h.cards()[0], "approval:approve")
    assert state.sign_outs[index] == 1
    (reply,) = h.cards()[0]["replies"]
    assert "signed out of every web and device session" in reply["text"]


def test_the_key_file_is_a_secret_the_config_file_must_not_hold() -> None:
    with pytest.raises(ConfigError, match="service_account_json is a secret: set it in an environment"):
        parse_config(
            {
                "slack": {"alert_channel": "C0A", "approval_channel": "C0B"},
                "connectors": [
                    {
                        "name": "w",
                        "kind": "google_workspace",
                        "service_account_json": "{}",
                        "admin_email": "a@b.c",
                    }
                ],
            },
            "test config",
        )

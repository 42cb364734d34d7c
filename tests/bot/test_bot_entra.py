"""The Slack flow on Microsoft Entra ID users, end to end: signed slash commands and clicks into the real
server, the Entra connector over loopback to its Graph simulator (token endpoint, users, roles, risky
users), approvals, and each action seen in the simulator."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from support.bot import (
    APPROVER,
    APPROVER2,
    REQUESTER,
    BotHarness,
    buttons,
    entra_bot,
    request_buttons,
    text_of,
)

from bot.config import ConfigError, parse_config
from standins.entra_state import EntraState


@pytest.fixture
async def h(tmp_path) -> AsyncIterator[BotHarness]:
    async with entra_bot(tmp_path, entry={"timeout": 2}) as built:
        yield built


def entra(h: BotHarness) -> EntraState:
    return h.extra["entra"]  # type: ignore[no-any-return]


def plain_user(state: EntraState, *, start: int = 0) -> int:
    """An enabled user without roles, risk record or odd address, from `start` on."""
    for index in range(start, state.users):
        if state.user(index)["accountEnabled"] and not state.roles_of(index) and state.risk_of(index) is None:
            if state.mail(index) and "'" not in (state.mail(index) or "") and index % 50 != 49:
                return index
    raise AssertionError("no plain user")


async def test_whois_shows_an_entra_user_with_risk_and_roles(h: BotHarness) -> None:
    state = entra(h)
    await h.command(REQUESTER, f"whois {state.mail(7)}")  # confirmed compromised in Identity Protection
    card = h.last_seen(REQUESTER)
    shown = text_of(card)
    assert state.mail(7) in shown and "Microsoft Entra ID (entra)" in shown and "*100* critical" in shown
    ref = f"entra:{state.user_id(7)}"
    assert request_buttons(ref) <= set(buttons(card))
    await h.command(REQUESTER, f"whois {state.upn(3)}")  # a Global Administrator, by principal name
    assert "Global Administrator" in text_of(h.last_seen(REQUESTER))
    # MFA from the registration report: enrolled with its methods, or not enrolled (a warning)
    enrolled = next(i for i in range(state.users) if (r := state.registration(i)) and r["isMfaRegistered"])
    await h.command(REQUESTER, f"whois {state.upn(enrolled)}")
    methods = ", ".join(state.registration(enrolled)["methodsRegistered"])  # type: ignore[index]
    assert f"enrolled: {methods}" in text_of(h.last_seen(REQUESTER))
    bare = next(i for i in range(state.users) if (r := state.registration(i)) and not r["isMfaRegistered"])
    await h.command(REQUESTER, f"whois {state.upn(bare)}")
    assert ":warning: not enrolled" in text_of(h.last_seen(REQUESTER))
    # an address with a quote is found; a crafted one changes no filter and finds nobody
    await h.command(REQUESTER, f'whois "{state.mail(11)}"')
    assert state.user_id(11) in str(h.last_seen(REQUESTER)) or state.mail(11) in text_of(
        h.last_seen(REQUESTER)
    )
    await h.command(REQUESTER, "whois \"x' or startswith(mail,'a\"")
    assert "No identity matches" in h.last_seen(REQUESTER)["text"]
    filters = [r.query.get("$filter", "") for r in state.log if r.path == "/v1.0/users"]
    assert any("'x'' or startswith(mail,''a'" in f for f in filters)


async def test_disable_runs_once_after_approval_and_an_already_disabled_user_is_success(
    h: BotHarness,
) -> None:
    state = entra(h)
    index = plain_user(state)
    await h.command(REQUESTER, f"disable {state.mail(index)} phished via a fake sign-in page")
    (card,) = h.cards()
    assert "Disable account" in text_of(card)
    await h.click(APPROVER, card, "approval:approve")
    (card,) = h.cards()
    assert ":white_check_mark: Done" in text_of(card) and buttons(card) == []
    (reply,) = card["replies"]
    assert "account disabled" in reply["text"]
    assert state.enabled[index] is False
    patches = [r for r in state.log if r.method == "PATCH"]
    assert len(patches) == 1
    await h.command(REQUESTER, f"disable {state.user_id(index)} still phished")
    second = h.cards()[-1]
    await h.click(APPROVER, second, "approval:approve")
    (reply,) = h.cards()[-1]["replies"]
    assert "already disabled" in reply["text"]
    assert len([r for r in state.log if r.method == "PATCH"]) == 1


async def test_a_privileged_entra_user_needs_two_approvers_to_revoke(h: BotHarness) -> None:
    state = entra(h)
    index = next(i for i in range(3, state.users, 97) if state.user(i)["accountEnabled"])
    await h.command(REQUESTER, f"revoke {state.upn(index)} token theft")
    (card,) = h.cards()
    assert ":crown: privileged" in text_of(card)
    await h.click(APPROVER, card, "approval:approve")
    assert state.revoked[index] == 0
    await h.click(APPROVER2, h.cards()[0], "approval:approve")
    assert state.revoked[index] == 1
    (reply,) = h.cards()[0]["replies"]
    assert "sign-in sessions revoked" in reply["text"]


async def test_a_verdict_requested_over_the_api_is_approved_in_slack_and_reaches_entra(h: BotHarness) -> None:
    state = entra(h)
    index = 27  # atRisk (medium) in the simulator's seeded Identity Protection data
    body = {
        "connector": "entra",
        "identity": state.user_id(index),
        "action": "confirm_compromised",
        "reason": "analyst verdict: token replay from a known bad ASN",
        "requested_by": REQUESTER,
    }
    headers = {"Authorization": "Bearer test-api-token"}
    async with h.http.post(f"{h.url}/api/v1/approvals", json=body, headers=headers) as response:
        created = await response.json()
    assert response.status == 201, created
    (card,) = h.cards()
    assert "Confirm compromised" in text_of(card)
    await h.click(APPROVER, card, "approval:approve")
    assert state.risk_of(index)[1] == "confirmedCompromised"
    (reply,) = h.cards()[0]["replies"]
    assert "confirmed compromised in Identity Protection" in reply["text"]
    async with h.http.get(f"{h.url}/api/v1/approvals/{created['id']}", headers=headers) as response:
        assert (await response.json())["status"] == "executed"


def test_a_certificate_key_in_the_config_file_is_refused_as_a_secret() -> None:
    with pytest.raises(ConfigError, match="certificate_key is a secret: set it in an environment"):
        parse_config(
            {
                "slack": {"alert_channel": "C0A", "approval_channel": "C0B"},
                "connectors": [
                    {
                        "name": "e",
                        "kind": "entra",
                        "tenant_id": "t.example",
                        "client_id": "c",
                        "certificate_key": "-----BEGIN PRIVATE KEY-----",
                        "certificate_thumbprint": "0" * 40,
                    }
                ],
            },
            "test config",
        )

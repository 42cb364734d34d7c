"""Verdicts from the alert card: where the provider takes an analyst's verdict back (Okta ITP's
`PUT /users/{id}/risk`), the card offers Confirm compromised and Dismiss risk, each an approval request
behind the same approvals; HomeBase, which takes none, shows no such buttons. Signed clicks into the real
server with alerts on, the Okta and HomeBase simulators over loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from support.alerts import action_ids, all_text, eventually
from support.bot import (
    ALERT_CHANNEL,
    APPROVER,
    REQUESTER,
    BotHarness,
    entra_provider,
    harness_with,
    okta_provider,
)

from bot.alerts.detector import Scope
from bot.approvals import Status
from connectors import Action
from standins import homebase


@pytest.fixture
async def h(tmp_path) -> AsyncIterator[BotHarness]:
    async with (
        okta_provider() as in_okta,
        entra_provider(sim={"users": 60}) as in_entra,
        harness_with(
            tmp_path, in_okta, in_entra, with_homebase=True, with_alerts=True, alerts={"poll_seconds": 3600}
        ) as built,
    ):
        yield built


def alert_cards(h: BotHarness) -> list[dict[str, Any]]:
    return [m for m in h.slack.messages(ALERT_CHANNEL) if "risk:" in m.get("text", "")]


def puts(state: Any, user_id: str) -> int:
    """Verdicts Okta received for the user (PUT /api/v1/users/{id}/risk)."""
    return sum(
        1 for method, _, _, path in state.log if method == "PUT" and path == f"/api/v1/users/{user_id}/risk"
    )


async def started(h: BotHarness) -> None:
    alerts = h.extra["alerts"]
    await eventually(lambda: {"homebase", "okta", "entra"} <= set(alerts.results), 15, "the start-up sweeps")


async def test_the_alert_card_offers_verdicts_where_the_provider_takes_them(h: BotHarness) -> None:
    await started(h)
    state = h.extra["okta"]
    index = next(
        i for i in range(4, state.total) if state.status(i) == "ACTIVE" and state.risk_level(i)[0] == "NONE"
    )
    user_id = state.user(index)["id"]
    async with h.http.post(
        f"{h.extra['okta_url']}/_admin/users/{user_id}/risk", json={"riskLevel": "HIGH"}
    ) as r:
        assert r.status == 200
    low = next(i for i in range(h.sim.size) if homebase.risk_level(h.sim.risk_score(i)) == "low")
    h.sim.set_risk(h.sim.identity_id(low), 70)  # HomeBase: high as well
    alerts = h.extra["alerts"]
    await alerts.sweep(Scope("okta"))
    await alerts.sweep(Scope("homebase"))
    await eventually(lambda: len(alert_cards(h)) == 2, 10, "two alert cards")
    okta_card = next(c for c in alert_cards(h) if "Okta" in all_text(c))
    hb_card = next(c for c in alert_cards(h) if "HomeBase" in all_text(c))
    assert {"request:confirm_compromised", "request:dismiss_risk"} <= set(action_ids(okta_card))
    assert not {"request:confirm_compromised", "request:dismiss_risk"} & set(action_ids(hb_card))

    # Confirm compromised: an approval request like any action; Okta hears nothing until it is approved
    await h.click(REQUESTER, okta_card, "request:confirm_compromised", f"okta:{user_id}")
    card = h.cards()[-1]
    request = h.bot.service.get(card["metadata"]["event_payload"]["request_id"])
    assert request.action is Action.CONFIRM_COMPROMISED and request.status is Status.PENDING
    assert "Confirm compromised" in all_text(card)
    assert puts(state, user_id) == 0
    await h.click(REQUESTER, card, "approval:approve")  # never the requester's own approval
    assert "can't approve your own request" in h.last_seen(REQUESTER)["text"]
    assert h.bot.service.get(request.id).status is Status.PENDING
    await h.click(APPROVER, h.cards()[-1], "approval:approve")
    assert h.bot.service.get(request.id).status is Status.EXECUTED
    assert state.risk_level(index)[0] == "HIGH" and puts(state, user_id) == 1
    assert "Okta risk set to HIGH" in h.cards()[-1]["replies"][-1]["text"]

    # Dismiss risk: the same way, to LOW
    await h.click(REQUESTER, okta_card, "request:dismiss_risk", f"okta:{user_id}")
    card = h.cards()[-1]
    dismissal = h.bot.service.get(card["metadata"]["event_payload"]["request_id"])
    assert dismissal.action is Action.DISMISS_RISK and dismissal.id != request.id
    await h.click(APPROVER, card, "approval:approve")
    assert h.bot.service.get(dismissal.id).status is Status.EXECUTED
    assert state.risk_level(index)[0] == "LOW"
    events = {row["event"] for row in h.bot.service.history("okta", user_id, limit=50)}
    assert {"requested", "approved", "executed"} <= events


async def test_an_entra_alert_card_dismisses_risk_once_approved(h: BotHarness) -> None:
    await started(h)
    state = h.extra["entra"]
    index = next(
        i
        for i in range(state.users)
        if state.user(i)["accountEnabled"] and not state.roles_of(i) and state.risk_of(i) is None
    )
    user_id = state.user_id(index)
    risk = {"riskLevel": "high", "riskState": "atRisk"}
    async with h.http.post(f"{h.extra['entra_url']}/_admin/users/{user_id}/risk", json=risk) as r:
        assert r.status == 200
    await h.extra["alerts"].sweep(Scope("entra"))
    await eventually(lambda: any("Entra" in all_text(c) for c in alert_cards(h)), 10, "the Entra alert card")
    card = next(c for c in alert_cards(h) if "Entra" in all_text(c))
    assert {"request:confirm_compromised", "request:dismiss_risk"} <= set(action_ids(card))
    await h.click(REQUESTER, card, "request:dismiss_risk", f"entra:{user_id}")
    approval = h.cards()[-1]
    request = h.bot.service.get(approval["metadata"]["event_payload"]["request_id"])
    assert request.action is Action.DISMISS_RISK and state.risk_of(index)[1] == "atRisk"
    await h.click(APPROVER, approval, "approval:approve")
    assert h.bot.service.get(request.id).status is Status.EXECUTED
    assert state.risk_of(index)[1] == "dismissed"

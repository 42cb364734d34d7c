"""The SOAR app's Slack approval actions against the real bot API (bot/api.py over the real
ApprovalService, SQLite store and HomeBase simulator): a playbook asks, a person approves, idops disables
the account once, and the playbook reads the outcome. A time-boxed request runs over Okta (whose
simulator can unsuspend): the playbook reads the containment, then the revert; HomeBase refuses one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from support.approvals import (
    API_KEY,
    APPROVERS,
    REQUESTER,
    Clock,
    Harness,
    MemoryDirectory,
    harness,
    make_service,
    open_store,
)
from support.soar import SoarApp

import connectors
from bot.api import add_routes
from bot.approvals import ApprovalRequest, ApprovalService, Decision, State
from standins import okta, serving
from standins.okta_data import OktaState

TOKEN = "idops-api-token-0123456789"
OKTA_TOKEN = "00soar-timebox-okta-token"


@dataclass
class Bot:
    h: Harness
    url: str
    cards: list[ApprovalRequest]


@pytest.fixture
async def bot(tmp_path: Path) -> AsyncIterator[Bot]:
    async with harness(tmp_path) as h:
        cards: list[ApprovalRequest] = []

        async def post_card(request: ApprovalRequest) -> None:
            cards.append(request)
            h.service.set_message(request.id, "C0APPROVALS", f"{len(cards)}.000100")  # as the bot does

        app = web.Application()
        assert add_routes(app, h.service, TOKEN, post_card)
        async with serving(app) as url:
            yield Bot(h, url, cards)


@pytest.fixture
def soar(bot: Bot, tmp_path: Path) -> SoarApp:
    asset: dict[str, Any] = {
        "connector_kind": "homebase",
        "connector_name": "homebase",
        "base_url": bot.h.sim_url + "/v1",
        "api_key": API_KEY,
        "idops_url": bot.url,
        "idops_api_token": TOKEN,
        "idops_requested_by": REQUESTER,
    }
    return SoarApp(tmp_path, asset)


async def test_playbook_asks_in_slack_then_the_account_is_disabled(soar: SoarApp, bot: Bot) -> None:
    person = bot.h.people["plain"]
    asked = await soar.run(
        "request_slack_approval",
        {"identity_id": person["id"], "action": "disable", "reason": "SOAR case 7: impossible travel"},
    )
    assert asked.ok, asked.message
    [approval] = asked.data
    assert approval["status"] == "pending" and approval["action"] == "disable"
    assert approval["requested_by"] == REQUESTER and approval["identity_id"] == person["id"]
    assert [card.id for card in bot.cards] == [approval["id"]]  # the bot posted its Slack card

    waiting = await soar.run("get_approval_status", {"approval_id": approval["id"]})
    assert waiting.ok and waiting.data[0]["status"] == "pending"

    # a person clicks Approve in Slack: the bot decides and executes
    await bot.h.service.decide(approval["id"], user_id=APPROVERS[0], decision=Decision.APPROVE)
    await bot.h.service.execute(approval["id"])

    done = await soar.run("get_approval_status", {"approval_id": approval["id"]})
    assert done.ok, done.message
    assert done.data[0]["status"] == "executed"
    assert done.data[0]["approvers"] == [APPROVERS[0]]
    assert done.data[0]["result_status"] == "completed" and done.data[0]["result_reference"]
    assert [(a["identity_id"], a["action"]) for a in await bot.h.actions()] == [(person["id"], "disable")]


async def test_denied_request_reads_as_denied(soar: SoarApp, bot: Bot) -> None:
    person = bot.h.people["plain2"]
    asked = await soar.run(
        "request_slack_approval", {"identity_id": person["id"], "action": "revoke_sessions"}
    )
    assert asked.ok, asked.message
    approval_id = asked.data[0]["id"]
    await bot.h.service.decide(
        approval_id, user_id=APPROVERS[1], decision=Decision.DENY, reason="traveling, confirmed by phone"
    )
    status = await soar.run("get_approval_status", {"approval_id": approval_id})
    assert status.ok and status.data[0]["status"] == "denied"
    assert status.data[0]["decision_reason"] == "traveling, confirmed by phone"
    assert await bot.h.actions() == []


async def test_same_pending_request_points_at_the_first(soar: SoarApp, bot: Bot) -> None:
    params = {"identity_id": bot.h.people["plain"]["id"], "action": "revoke_sessions"}
    first = await soar.run("request_slack_approval", params)
    second = await soar.run("request_slack_approval", params)
    assert first.ok and second.ok, second.message
    assert second.data[0]["id"] == first.data[0]["id"]
    assert second.data[0]["note"]  # says why no new request was made
    assert len(bot.cards) == 1


async def test_approval_errors_are_clear(soar: SoarApp, bot: Bot) -> None:
    person = bot.h.people["plain"]
    wrong_token = await soar.run(
        "request_slack_approval", {"identity_id": person["id"], "action": "disable"}, idops_api_token="nope"
    )
    assert not wrong_token.ok
    assert wrong_token.message.startswith("Asset misconfiguration in request slack approval: idops rejected")
    assert "nope" not in wrong_token.message + wrong_token.stderr

    no_url = await soar.run("get_approval_status", {"approval_id": "x"}, idops_url="")
    assert not no_url.ok and "set the asset's idops_url and idops_api_token" in no_url.message
    bad_url = await soar.run("get_approval_status", {"approval_id": "x"}, idops_url="http://[::1/idops")
    assert bad_url.message == (
        "Asset misconfiguration in get approval status: the asset: setting 'idops_url' must be an http(s)"
        " URL like https://idops.example.com"
    )

    no_reason = await soar.run("request_slack_approval", {"identity_id": person["id"], "action": "disable"})
    assert not no_reason.ok and no_reason.message.startswith(
        "Action failure in request slack approval: idops"
    )

    unknown = await soar.run("request_slack_approval", {"identity_id": person["id"], "action": "wipe"})
    assert not unknown.ok and "Unknown action 'wipe'" in unknown.message

    nobody = await soar.run(
        "request_slack_approval",
        {"identity_id": person["id"], "action": "revoke_sessions"},
        idops_requested_by="",
    )
    assert not nobody.ok and "parameter 'requested_by' is required" in nobody.message

    missing = await soar.run("get_approval_status", {"approval_id": "apr_does_not_exist"})
    assert not missing.ok and "No approval request 'apr_does_not_exist'" in missing.message
    assert "(request id idops-" in missing.message
    assert bot.cards == []


@dataclass
class OktaBot:
    service: ApprovalService
    state: OktaState
    clock: Clock
    soar: SoarApp


@pytest.fixture
async def okta_bot(tmp_path: Path) -> AsyncIterator[OktaBot]:
    """The bot API over an ApprovalService with one Okta connector, and the SOAR app's Okta asset."""
    sim = okta.create_app(identities=40, rate_limits=False, api_token=OKTA_TOKEN)
    async with serving(sim) as sim_url:
        connector = connectors.build("okta", "okta", {"base_url": sim_url, "api_token": OKTA_TOKEN})
        async with connector:
            db = open_store(str(tmp_path / "idops.db"))
            clock = Clock()
            service = make_service(db, {"okta": connector}, MemoryDirectory({}), clock)
            app = web.Application()
            assert add_routes(app, service, TOKEN)
            try:
                async with serving(app) as url:
                    asset = {
                        "connector_kind": "okta",
                        "connector_name": "okta",
                        "base_url": sim_url,
                        "api_token": OKTA_TOKEN,
                        "idops_url": url,
                        "idops_api_token": TOKEN,
                        "idops_requested_by": REQUESTER,
                    }
                    yield OktaBot(service, sim[okta.STATE], clock, SoarApp(tmp_path, asset))
            finally:
                db.close()


async def test_playbook_asks_for_a_time_boxed_disable_and_reads_the_revert(okta_bot: OktaBot) -> None:
    state = okta_bot.state
    index = next(
        i
        for i in range(4, state.total)
        if state.status(i) == "ACTIVE" and not state.role_types(i) and state.risk_level(i)[0] == "NONE"
    )
    user_id = state.user_id(index)
    params = {"identity_id": user_id, "action": "disable", "reason": "SOAR case 9: token theft"}
    bad = await okta_bot.soar.run("request_slack_approval", {**params, "duration": "45d"})
    assert not bad.ok and "'45d' is out of range" in bad.message and "(field 'duration')" in bad.message

    asked = await okta_bot.soar.run("request_slack_approval", {**params, "duration": "4h"})
    assert asked.ok, asked.message
    [approval] = asked.data
    assert approval["duration_seconds"] == 4 * 3600 and approval["containment"] is None

    await okta_bot.service.decide(approval["id"], user_id=APPROVERS[0], decision=Decision.APPROVE)
    await okta_bot.service.execute(approval["id"])
    assert state.status(index) == "SUSPENDED"
    running = await okta_bot.soar.run("get_approval_status", {"approval_id": approval["id"]})
    assert running.ok, running.message
    containment = running.data[0]["containment"]
    item = okta_bot.service.containment(approval["id"])
    assert item is not None and item.due_at == okta_bot.clock.now + timedelta(hours=4)
    assert datetime.fromisoformat(containment.pop("due_at")) == item.due_at
    assert containment == {"status": "active", "revert_id": None}

    okta_bot.clock.advance(hours=4, minutes=1)
    assert await okta_bot.service.revert_due() == [approval["id"]]
    assert state.status(index) == "ACTIVE"
    done = await okta_bot.soar.run("get_approval_status", {"approval_id": approval["id"]})
    assert done.ok and done.data[0]["containment"]["status"] == State.REVERTED.value
    revert_id = done.data[0]["containment"]["revert_id"]
    assert revert_id and revert_id != approval["id"]
    revert = await okta_bot.soar.run("get_approval_status", {"approval_id": revert_id})
    assert revert.ok and revert.data[0]["action"] == "enable" and revert.data[0]["status"] == "executed"
    assert state.actions.count((user_id, "unsuspend")) == 1


async def test_time_box_is_refused_where_the_provider_cannot_undo(soar: SoarApp, bot: Bot) -> None:
    refused = await soar.run(
        "request_slack_approval",
        {"identity_id": bot.h.people["plain"]["id"], "action": "disable", "reason": "x", "duration": "1h"},
    )
    assert not refused.ok
    assert refused.message.startswith("Action failure in request slack approval: idops refused the request:")
    assert "can't undo" in refused.message
    assert bot.cards == [] and await bot.h.actions() == []

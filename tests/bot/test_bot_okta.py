"""The Slack flow on an Okta user, end to end: `idops serve`'s real web app with risk alerts installed,
signed slash commands and clicks from FakeSlack, the Okta connector over loopback to its simulator.
Lookup, the risk alert after ITP flags the user, the approval, and the suspend seen in the simulator."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from support.alerts import FAST, Clock, eventually
from support.bot import (
    ALERT_CHANNEL,
    APPROVAL_CHANNEL,
    APPROVER,
    APPROVER2,
    COMMAND_CHANNEL,
    GROUP_RESPONDER,
    REQUESTER,
    buttons,
    make_config,
    request_buttons,
    slack_secrets,
    text_of,
)

from bot.alerts.scheduler import ALERTS as SERVICE
from bot.alerts.scheduler import install
from bot.extension import BOT
from bot.server import build_web_app
from bot.services import Bot
from standins import okta, serving
from standins.okta_data import OktaState
from standins.okta_iam import factors
from standins.slack import FakeSlack, SlackUser

TOKEN = "00okta-bot-test-token-000"


class Served:
    def __init__(
        self, url: str, web_app: web.Application, slack: FakeSlack, state: OktaState, sim_url: str
    ) -> None:
        self.url, self.web_app, self.slack, self.state, self.sim_url = url, web_app, slack, state, sim_url

    @property
    def events_url(self) -> str:
        return self.url + "/slack/events"

    async def settle(self) -> None:
        await self.web_app[BOT].replies.join(timeout=15)
        service = self.web_app[SERVICE]
        await service.join(timeout=15)
        await service.sender.wait_idle(timeout=15)

    async def command(self, user: str, text: str) -> Any:
        reply = await self.slack.command(self.events_url, user, text, channel_id=COMMAND_CHANNEL)
        await self.settle()
        return reply

    async def click(
        self, user: str, message: dict[str, Any], action_id: str, value: str | None = None
    ) -> Any:
        reply = await self.slack.click(self.events_url, user, message, action_id, value)
        await self.settle()
        return reply

    def last_seen(self, user: str) -> dict[str, Any]:
        return self.slack.visible_ephemerals(user)[-1]


@pytest.fixture
async def served(tmp_path) -> AsyncIterator[Served]:
    sim = okta.create_app(identities=60, rate_limits=False, api_token=TOKEN)
    slack = FakeSlack(
        users=[
            SlackUser(id=REQUESTER, name="alice", email="alice@secops.example"),
            SlackUser(id=APPROVER, name="bob", email="bob@secops.example"),
            SlackUser(id=APPROVER2, name="carol", email="carol@secops.example"),
            SlackUser(id=GROUP_RESPONDER, name="dave", email="dave@secops.example"),
        ],
        usergroups={"S0APPROVERS": [APPROVER, APPROVER2], "S0RESPONDERS": [GROUP_RESPONDER]},
        channels={APPROVAL_CHANNEL: "approvals", ALERT_CHANNEL: "alerts", COMMAND_CHANNEL: "secops"},
    )
    environ = {"TEST_OKTA_TOKEN": TOKEN}
    async with serving(sim) as sim_url, slack.serve():
        entry = {"name": "okta", "kind": "okta", "base_url": sim_url, "api_token_env": "TEST_OKTA_TOKEN"}
        config = make_config(tmp_path, sim_url, connectors=[entry], alerts={"poll_seconds": 3600})
        secrets = slack_secrets(slack)

        def extension(web_app: web.Application, bot: Bot, env: Mapping[str, str]) -> None:
            install(web_app, bot, environ=env, clock=Clock(), timings=FAST)

        web_app = build_web_app(config, secrets, environ=environ, extensions=[extension], expiry_seconds=3600)
        async with serving(web_app) as url:
            harness = Served(url, web_app, slack, sim[okta.STATE], sim_url)
            service = web_app[SERVICE]
            scopes = [scope.key for scope in service.detector.scopes()]
            await eventually(lambda: all(key in service.results for key in scopes), 15, "the baseline sweep")
            await harness.settle()
            yield harness


def alert_cards(slack: FakeSlack) -> list[dict[str, Any]]:
    return [
        m
        for m in slack.messages(ALERT_CHANNEL)
        if (m.get("metadata") or {}).get("event_payload", {}).get("part") == "card"
    ]


async def test_lookup_alert_approval_and_suspend_on_an_okta_user(served: Served) -> None:
    state = served.state
    index = next(
        i for i in range(state.total) if state.status(i) == "ACTIVE" and not state.role_types(i) and i > 3
    )
    user = state.user(index)
    email, user_id = user["profile"]["email"], user["id"]
    # lookup
    await served.command(REQUESTER, f"whois {email}")
    card = served.last_seen(REQUESTER)
    shown = text_of(card)
    assert email in shown and "Okta (okta)" in shown
    # MFA read from the user's factors: the ACTIVE ones' types, or "not enrolled"
    active = sorted(f["factorType"] for f in factors(state, index) if f["status"] == "ACTIVE")
    assert (f"enrolled: {', '.join(active)}" if active else "not enrolled") in shown
    ref = f"okta:{user_id}"
    assert request_buttons(ref) <= set(buttons(card))
    # a crafted name stays one quoted search value: nobody matches
    await served.command(REQUESTER, 'whois "x\\" or status eq \\"ACTIVE"')
    assert "No identity matches" in served.last_seen(REQUESTER)["text"]
    # ITP flags the user HIGH (the System Log gets the event); the next sweep posts an alert card
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{served.sim_url}/_admin/users/{user_id}/risk", json={"riskLevel": "HIGH"}
        ) as answer:
            assert answer.status == 200
    service = served.web_app[SERVICE]
    (scope,) = service.detector.scopes()
    await service.detector.sweep(scope)
    await served.settle()
    (alert,) = [m for m in alert_cards(served.slack) if email in text_of(m)]
    assert "high" in text_of(alert).lower() and ("request:disable", ref) in buttons(alert)
    # the alert's Disable button starts an approval; the reason form comes first
    await served.click(REQUESTER, alert, "request:disable", ref)
    view = served.slack.views(REQUESTER)[-1]
    await served.slack.submit_view(
        served.events_url, REQUESTER, view["id"], {"reason": {"reason": "ITP high"}}
    )
    await served.settle()
    (approval,) = served.slack.messages(APPROVAL_CHANNEL)
    assert email in text_of(approval) and "Disable account" in text_of(approval)
    await served.click(APPROVER, approval, "approval:approve")
    (approval,) = served.slack.messages(APPROVAL_CHANNEL)
    assert ":white_check_mark: Done" in text_of(approval) and buttons(approval) == []
    (reply,) = approval["replies"]
    assert "suspend" in reply["text"]
    assert state.status(index) == "SUSPENDED" and state.actions.count((user_id, "suspend")) == 1

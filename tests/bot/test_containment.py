"""Time-boxed containment end to end: signed slash commands and clicks into the real server, the Okta
connector over loopback to its simulator (which supports unsuspend), a fake clock moved past the due
time and the server's own periodic job doing the revert."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from support.bot import APPROVER, GROUP_RESPONDER, REQUESTER, BotHarness, harness, text_of

from bot.approvals import State, Status
from standins import okta, serving
from standins.okta_data import OktaState

TOKEN = "00okta-containment-test-token"


@pytest.fixture
async def ok(tmp_path) -> AsyncIterator[BotHarness]:
    """The bot with one Okta connector; its periodic sweep runs every 50 ms (the clock is fake)."""
    sim = okta.create_app(identities=60, rate_limits=False, api_token=TOKEN)
    async with serving(sim) as sim_url:
        entry = {"name": "okta", "kind": "okta", "base_url": sim_url, "api_token_env": "TEST_OKTA_TOKEN"}
        async with harness(
            tmp_path, connectors=[entry], environ={"TEST_OKTA_TOKEN": TOKEN}, expiry_seconds=0.05
        ) as built:
            built.extra.update(okta=sim[okta.STATE], okta_url=sim_url)
            yield built


def pick(state: OktaState, skip: int = 0) -> tuple[int, str, str]:
    """An ordinary active Okta user without risk: (index, id, email)."""
    found = [
        i
        for i in range(4, state.total)
        if state.status(i) == "ACTIVE" and not state.role_types(i) and state.risk_level(i)[0] == "NONE"
    ]
    index = found[skip]
    user = state.user(index)
    return index, user["id"], user["profile"]["email"]


async def until(check: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "never happened"
        await asyncio.sleep(0.02)


def field(card: dict[str, Any], name: str) -> str:
    for block in card["blocks"]:
        for item in block.get("fields", []):
            if item["text"].startswith(f"*{name}*"):
                return str(item["text"].split("\n", 1)[1])
    raise AssertionError(f"no {name} field on the card")


async def contained(h: BotHarness, email: str, duration: str = "4h") -> tuple[dict[str, Any], str]:
    """Request `disable <email> for <duration>`, approve it; returns the card and the request id."""
    await h.command(REQUESTER, f"disable {email} for {duration} stolen laptop")
    card = h.card()
    request_id = card["metadata"]["event_payload"]["request_id"]
    await h.click(APPROVER, card, "approval:approve")
    return h.card(), request_id


async def test_disable_for_4h_reverts_once_at_the_due_time(ok: BotHarness) -> None:
    state: OktaState = ok.extra["okta"]
    index, user_id, email = pick(state)
    await ok.command(REQUESTER, f"disable {email} for 4h stolen laptop")
    assert "for 4 h" in ok.last_seen(REQUESTER)["text"]
    card = ok.card()
    assert "4 h from when it runs" in field(card, "Time box")  # shown on the approval card
    request_id = card["metadata"]["event_payload"]["request_id"]
    assert ok.bot.service.get(request_id).duration_seconds == 4 * 3600

    ran_at = ok.clock()
    await ok.click(APPROVER, card, "approval:approve")
    card = ok.card()
    assert state.status(index) == "SUSPENDED"
    due = ran_at + timedelta(hours=4)
    assert field(card, "Time box") == (
        f":stopwatch: Reverts <!date^{int(due.timestamp())}^{{date_short_pretty}} {{time}}|"
        f"{due:%Y-%m-%d %H:%M} UTC>"
    )
    item = ok.bot.service.containment(request_id)
    assert item is not None and item.status is State.ACTIVE and item.due_at == due

    # `/idops pending` lists it with its end time
    await ok.command(GROUP_RESPONDER, "pending")
    listed = text_of(ok.last_seen(GROUP_RESPONDER))
    assert "Active containments" in listed and f"<!date^{int(due.timestamp())}^" in listed

    # a minute before: the server's sweep leaves it alone
    ok.clock.advance(hours=3, minutes=59)
    await asyncio.sleep(0.3)
    assert state.status(index) == "SUSPENDED" and (user_id, "unsuspend") not in state.actions

    # past due: the server's periodic job reverts it, once, and says so in the thread and on the card
    ok.clock.advance(minutes=2)
    await until(lambda: state.status(index) == "ACTIVE")
    await until(lambda: ok.bot.service.containment(request_id).status is State.REVERTED)
    await until(lambda: len(ok.card()["replies"]) == 2)
    await asyncio.gather(*(ok.bot.containment.sweep() for _ in range(3)))  # more sweeps change nothing
    await asyncio.sleep(0.2)
    assert state.actions.count((user_id, "unsuspend")) == 1
    card = ok.card()
    assert field(card, "Time box").startswith(":leftwards_arrow_with_hook: Reverted")
    reply = card["replies"][-1]["text"]
    assert "Revert of the containment" in reply and "Enable" in reply
    assert f"Asked by <@{REQUESTER}>, approved by <@{APPROVER}>" in reply
    assert len(card["replies"]) == 2
    # the revert is an audited action of its own
    item = ok.bot.service.containment(request_id)
    assert item is not None and item.revert_id
    revert = ok.bot.service.get(item.revert_id)
    assert revert.status is Status.EXECUTED and revert.source == "containment"
    assert revert.approvers == (APPROVER,) and revert.requested_by == REQUESTER
    events = [row["event"] for row in ok.bot.service.history("okta", user_id, limit=50)]
    assert {"contained", "revert_started", "executed"} <= set(events)
    # no longer listed as active
    await ok.command(GROUP_RESPONDER, "pending")
    assert "Active containments" not in text_of(ok.last_seen(GROUP_RESPONDER))


async def test_revert_waits_while_the_risk_is_still_high(ok: BotHarness) -> None:
    state: OktaState = ok.extra["okta"]
    index, user_id, email = pick(state, 1)
    card, request_id = await contained(ok, email, "15m")
    assert state.status(index) == "SUSPENDED"
    async with ok.http.post(
        f"{ok.extra['okta_url']}/_admin/users/{user_id}/risk", json={"riskLevel": "HIGH"}
    ) as r:
        assert r.status == 200
    ok.clock.advance(minutes=16)
    await until(lambda: ok.bot.service.containment(request_id).status is State.HELD)
    await until(lambda: len(ok.card()["replies"]) == 2)
    await asyncio.sleep(0.3)  # more sweeps: still held, told once
    card = ok.card()
    assert len(card["replies"]) == 2 and state.status(index) == "SUSPENDED"
    assert (user_id, "unsuspend") not in state.actions
    held = card["replies"][-1]["text"]
    assert f"<@{REQUESTER}>" in held and "not restored" in held and "high" in held
    assert field(card, "Time box").startswith(":warning: Revert held")
    events = [row["event"] for row in ok.bot.service.history("okta", user_id, limit=50)]
    assert "revert_held" in events


async def test_time_boxing_is_refused_where_the_provider_cannot_undo(h: BotHarness) -> None:
    email = h.people["plain"]["email"]
    await h.command(REQUESTER, f"disable {email} for 4h stolen laptop")
    said = h.last_seen(REQUESTER)["text"]
    assert "can't undo" in said and "HomeBase" in said and "time-box" in said
    assert h.cards() == []
    # without a duration it is an ordinary request
    await h.command(REQUESTER, f"disable {email} for phishing")
    assert len(h.cards()) == 1 and "Time box" not in text_of(h.card())
    assert h.bot.service.get(h.card()["metadata"]["event_payload"]["request_id"]).reason == "for phishing"


@pytest.mark.parametrize(
    ("duration", "said"),
    [
        ("0m", "out of range"),
        ("31d", "out of range"),
        ("4x", "not a duration"),
        ("99999999h", "not a duration"),
    ],
)
async def test_bad_durations_are_named(h: BotHarness, duration: str, said: str) -> None:
    await h.command(REQUESTER, f"disable someone@example.com for {duration} reason")
    shown = h.last_seen(REQUESTER)["text"]
    assert said in shown and f"'{duration}'" in shown and "Usage" in shown
    assert h.cards() == []

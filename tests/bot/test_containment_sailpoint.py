"""Time-boxed containment on SailPoint (disable, undone by account enable), and two containment fixes:
a revert whose identity was deleted at the provider ends, audited, instead of retrying forever; a
reminder Slack did not take is posted again by the next sweep, once. Signed requests into the real
server, the SailPoint simulator over loopback, a fake clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Optional

import pytest
from support.bot import APPROVER, REQUESTER, BotHarness, harness, pg_store, sweeps, until
from support.postgres import PgDatabase

from bot.approvals import State, Status
from bot.thread_replies import reminder_key
from standins.sailpoint import SailPointState


@pytest.fixture
async def sp(tmp_path, server_pg: Optional[PgDatabase]) -> AsyncIterator[BotHarness]:
    """The bot with HomeBase and SailPoint; its periodic sweep runs every 50 ms (the clock is fake); on
    SQLite, then on PostgreSQL (`server_pg`)."""
    async with harness(tmp_path, with_sailpoint=True, expiry_seconds=0.05, **pg_store(server_pg)) as built:
        yield built


def low_risk(state: SailPointState, skip: int = 0) -> int:
    """An identity with a low risk score (an automatic revert is not held back)."""
    return [i for i in range(state.identities) if (state.identity(i)["attributes"]["riskScore"] or 0) < 40][
        skip
    ]


def accounts_disabled(state: SailPointState, index: int) -> list[bool]:
    return [state.account_id(index, n) in state.disabled_accounts for n in range(2)]


def tasks(state: SailPointState, action: str) -> int:
    return sum(task["action"] == action for task in state.tasks.values())


async def contain(h: BotHarness, index: int, duration: str) -> str:
    """Disable SailPoint identity `index` for `duration` through the request form, approved; its id."""
    state: SailPointState = h.extra["sailpoint"]
    identity_id = state.identity_id(index)
    await h.command(REQUESTER, f"whois {state.identity(index)['emailAddress']}")
    await h.click(REQUESTER, h.last_seen(REQUESTER), "request:disable", f"sailpoint:{identity_id}")
    view = h.slack.views(REQUESTER)[-1]
    (select,) = [b for b in view["blocks"] if b.get("block_id") == "duration"]
    assert duration in [o["value"] for o in select["element"]["options"]]  # SailPoint can undo it
    await h.slack.submit_view(
        h.events_url,
        REQUESTER,
        view["id"],
        {"reason": {"reason": "token theft"}, "duration": {"duration": duration}},
    )
    await h.settle()
    card = h.cards()[-1]
    request_id = str(card["metadata"]["event_payload"]["request_id"])
    await h.click(APPROVER, card, "approval:approve")
    assert h.bot.service.get(request_id).status is Status.EXECUTED
    return request_id


def thread(h: BotHarness) -> list[str]:
    return [reply["text"] for reply in h.cards()[-1]["replies"]]


async def test_a_time_boxed_disable_on_sailpoint_reverts_by_account_enable(sp: BotHarness) -> None:
    state: SailPointState = sp.extra["sailpoint"]
    index = low_risk(state)
    request_id = await contain(sp, index, "1h")
    assert accounts_disabled(state, index) == [True, True] and tasks(state, "disable") == 2
    item = sp.bot.service.containment(request_id)
    assert item is not None and item.status is State.ACTIVE and item.undo.value == "enable"
    sp.clock.advance(minutes=59)
    await sweeps(sp.bot)
    assert accounts_disabled(state, index) == [True, True]
    sp.clock.advance(minutes=2)
    await until(lambda: accounts_disabled(state, index) == [False, False])
    await until(lambda: sp.bot.service.containment(request_id).status is State.REVERTED)
    await until(lambda: any("Revert of the containment" in t for t in thread(sp)))
    await asyncio.gather(*(sp.bot.containment.sweep() for _ in range(3)))
    assert tasks(state, "enable") == 2  # one task per account, once
    item = sp.bot.service.containment(request_id)
    assert item is not None and item.revert_id
    revert = sp.bot.service.get(item.revert_id)
    assert revert.status is Status.EXECUTED and revert.result and revert.result["status"] == "queued"
    assert "enable queued for 2 account(s)" in thread(sp)[-1]
    assert state.identity(index)["identityStatus"] != "DISABLED"


async def test_a_revert_of_a_deleted_identity_closes_with_a_clear_outcome(sp: BotHarness) -> None:
    state: SailPointState = sp.extra["sailpoint"]
    index = low_risk(state, 1)
    identity_id = state.identity_id(index)
    request_id = await contain(sp, index, "1h")
    async with sp.http.delete(f"{sp.extra['sailpoint_url']}/_admin/identity/{identity_id}") as answer:
        assert answer.status == 200
    sp.clock.advance(hours=1, minutes=1)
    await until(lambda: sp.bot.service.containment(request_id).status is State.GONE)
    await until(lambda: any("no longer exists" in t for t in thread(sp)))
    await sweeps(sp.bot)  # more sweeps: nothing more is read, sent or said
    item = sp.bot.service.containment(request_id)
    assert item is not None and item.status is State.GONE and item.revert_id is None
    assert tasks(state, "enable") == 0
    said = [t for t in thread(sp) if "no longer exists" in t]
    assert len(said) == 1 and f"<@{REQUESTER}>" in said[0] and "SailPoint" in said[0]
    assert "nothing was reverted" in said[0]
    gone = [r for r in state.log if r.method == "GET" and r.path.endswith(identity_id) and r.status == 404]
    assert len(gone) == 1  # read once at the due time, never again
    rows = sp.bot.service.history("sailpoint", identity_id, limit=50)
    closed = [row for row in rows if row["event"] == "revert_closed"]
    assert len(closed) == 1 and closed[0]["detail"]["outcome"] == "identity no longer exists"
    assert closed[0]["actor"] == "idops"
    # the card says so, and offers no decisions on a containment that is over
    card = sp.cards()[-1]
    assert any("no longer exists" in str(block) for block in card["blocks"])
    assert not [b for b in card["blocks"] if b.get("type") == "actions"]


async def test_a_reminder_slack_did_not_take_is_posted_by_the_next_sweep_once(sp: BotHarness) -> None:
    state: SailPointState = sp.extra["sailpoint"]
    request_id = await contain(sp, low_risk(state, 2), "4h")
    sp.slack.fail_next("chat.postMessage", error="fatal_error")
    sp.clock.advance(hours=3, minutes=31)
    await until(lambda: any(t.startswith(":alarm_clock:") for t in thread(sp)))
    await sweeps(sp.bot)  # more sweeps: no second reminder
    assert [t for t in thread(sp) if t.startswith(":alarm_clock:")] and (
        len([t for t in thread(sp) if t.startswith(":alarm_clock:")]) == 1
    )
    item = sp.bot.service.containment(request_id)
    assert item is not None and item.reminder_state == "claimed"  # a thread reply: bot/thread_replies.py
    key = reminder_key(request_id, item.due_at.timestamp())
    (reply,) = sp.bot.service.db.query("SELECT * FROM thread_replies WHERE key = ?", [key])
    assert (reply["status"], reply["attempts"], reply["error"]) == ("sent", 2, None)
    reminders = [
        params
        for method, params in sp.slack.calls
        if method == "chat.postMessage" and str(params.get("text", "")).startswith(":alarm_clock:")
    ]
    assert len(reminders) == 2  # the one Slack refused, and the one it took
    sp_id = state.identity_id(low_risk(state, 2))
    events = [row["event"] for row in sp.bot.service.history("sailpoint", sp_id, limit=50)]
    assert events.count("reminded") == 1 and events.count("reminder_resent") == 0
    assert sp.bot.service.containment(request_id).due_at - item.started_at == timedelta(hours=4)  # type: ignore[union-attr]

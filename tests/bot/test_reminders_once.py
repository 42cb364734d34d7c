"""Containment reminders and escalation replies posted exactly once across replicas (thread replies,
bot/thread_replies.py, claimed in the transaction that marks the reminder or the step), through the real
server, the Slack stand-in and the Okta simulator over loopback, on a SQLite file and on PostgreSQL:

- a replica killed with SIGKILL after claiming a reminder (or an escalation step), before or after Slack
  took the post, leaves it to the next sweep, which looks in the thread first: never twice, never lost,
  and no "may repeat" note;
- replicas sweeping at once post one reminder;
- a reminder an earlier idops left half done (its own `reminder_state`, a rolling upgrade) is looked for
  in the thread by how it starts (it has no metadata) before it is posted: found, it is recorded."""

from __future__ import annotations

import asyncio
import collections
import time
from datetime import timedelta
from pathlib import Path
from typing import Any, Optional

import pytest
from slack_sdk.web.async_client import AsyncWebClient
from support.bot import (
    APPROVER,
    OKTA_TOKEN,
    REQUESTER,
    BotHarness,
    okta_bot,
    pg_store,
    second_server,
    store_of,
    sweeps,
    until,
)
from support.postgres import PgDatabase
from support.replies import killed_at

from bot import approval_cards, audit
from bot.approvals import State
from bot.extension import BOT
from bot.thread_replies import EVENT_TYPE, escalation_key, reminder_key
from standins.okta_data import OktaState

LEADS = "S0SECLEADS"


def keys(h: BotHarness) -> collections.Counter[Optional[str]]:
    """How many replies in the card's thread carry each thread-reply key (None: no idops metadata)."""
    return collections.Counter(
        ((reply.get("metadata") or {}).get("event_payload") or {}).get("key")
        if (reply.get("metadata") or {}).get("event_type") == EVENT_TYPE
        else None
        for reply in h.card()["replies"]
    )


def reminders(h: BotHarness) -> list[dict[str, Any]]:
    return [r for r in h.card()["replies"] if r["text"].startswith(":alarm_clock:")]


def row(h: BotHarness, key: str) -> dict[str, Any]:
    return next(h.bot.service.db.query("SELECT * FROM thread_replies WHERE key = ?", [key]))


async def contained(h: BotHarness, skip: int = 0) -> str:
    """`disable <someone> for 4h`, approved and run; the request id. The card's thread holds the result."""
    state: OktaState = h.extra["okta"]
    plain = [
        i
        for i in range(4, state.total)
        if state.status(i) == "ACTIVE" and not state.role_types(i) and state.risk_level(i)[0] == "NONE"
    ]
    email = state.user(plain[skip])["profile"]["email"]
    await h.command(REQUESTER, f"disable {email} for 4h stolen laptop")
    card = h.card()
    await h.click(APPROVER, card, "approval:approve")
    assert len(h.card()["replies"]) == 1  # the action's result
    return str(card["metadata"]["event_payload"]["request_id"])


def the_key(h: BotHarness, request_id: str) -> str:
    item = h.bot.service.containment(request_id)
    assert item is not None
    return reminder_key(request_id, item.due_at.timestamp())


def env_of(pg: Optional[PgDatabase]) -> dict[str, str]:
    return {"TEST_PG_PASSWORD": pg.password} if pg is not None else {}


@pytest.mark.parametrize("point", ["claimed", "posted"])
async def test_a_reminder_cut_off_by_a_kill_is_looked_up_then_posted_once(
    tmp_path: Path, server_pg: Optional[PgDatabase], point: str
) -> None:
    async with okta_bot(tmp_path, **pg_store(server_pg)) as h:
        request_id = await contained(h)
        h.clock.advance(hours=3, minutes=31)
        # another replica claims the reminder (its row, in the transaction that marks it reminded) and is
        # killed before posting it, or after Slack took it but before recording that
        await killed_at(
            point,
            *("sweep", store_of(tmp_path, server_pg), h.slack.api_url, h.slack.bot_token),
            *(h.clock().isoformat(), point),
            environ=env_of(server_pg),
        )
        key = the_key(h, request_id)
        item = h.bot.service.containment(request_id)
        assert item is not None and item.reminder_state == "claimed"
        assert row(h, key)["status"] == "sending"
        assert len(reminders(h)) == (1 if point == "posted" else 0)

        # within the dead replica's lease: nothing is posted (it may still be posting), nor claimed again
        assert await h.bot.containment.sweep() == []
        assert await h.bot.flow.threads.sweep() == 0
        posts = len(h.slack.calls_to("chat.postMessage"))
        lookups = len(h.slack.calls_to("conversations.replies"))

        # a lease later, the sweep takes it over: looks in the thread, posts only what is not there
        threads = h.bot.flow.threads
        threads.clock = lambda: time.time() + threads.lease + 1
        assert await threads.sweep() == 1
        assert len(h.slack.calls_to("conversations.replies")) == lookups + 1
        assert len(h.slack.calls_to("chat.postMessage")) == posts + (0 if point == "posted" else 1)
        (reminder,) = reminders(h)
        assert keys(h)[key] == 1
        assert reminder["text"].startswith(f":alarm_clock: <@{REQUESTER}> the containment of *")
        assert "repeat" not in reminder["text"]
        assert (row(h, key)["status"], row(h, key)["ts"], row(h, key)["attempts"]) == (
            "sent",
            reminder["ts"],
            2,
        )
        for _ in range(2):  # more sweeps: nothing more
            assert await h.bot.containment.sweep() == []
            assert await threads.sweep() == 0
        assert len(reminders(h)) == 1
        events = [r["event"] for r in h.bot.service.history("okta", item.identity_id, limit=50)]
        assert events.count("reminded") == 1 and "reminder_resent" not in events


async def test_replicas_sweeping_at_once_post_one_reminder(
    tmp_path: Path, server_pg: Optional[PgDatabase]
) -> None:
    async with okta_bot(tmp_path, **pg_store(server_pg)) as h:
        request_id = await contained(h, 1)
        h.clock.advance(hours=3, minutes=31)
        environ = {"TEST_OKTA_TOKEN": OKTA_TOKEN, **env_of(server_pg)}
        async with second_server(h, environ=environ) as app:
            second = app[BOT]
            # its own periodic sweep (every 50 ms) races these too
            swept = await asyncio.gather(*(bot.containment.sweep() for bot in (h.bot, second, h.bot, second)))
            assert sum(map(len, swept)) <= 1
            await until(lambda: len(reminders(h)) == 1)
            await sweeps(second)
        key = the_key(h, request_id)
        assert len(reminders(h)) == 1 and keys(h)[key] == 1 and row(h, key)["status"] == "sent"


@pytest.mark.parametrize(
    ("left", "in_thread"), [("sending", True), ("sending", False), ("resending", True), ("failed", True)]
)
async def test_a_reminder_an_earlier_idops_left_is_looked_for_before_it_is_posted(
    tmp_path: Path, server_pg: Optional[PgDatabase], left: str, in_thread: bool
) -> None:
    async with okta_bot(tmp_path, **pg_store(server_pg)) as h:
        request_id = await contained(h, 2)
        h.clock.advance(hours=3, minutes=31)
        service = h.bot.service
        request, item = service.get(request_id), service.containment(request_id)
        assert item is not None and request.message_channel and request.message_ts
        # an earlier idops (no thread-reply rows, no metadata) marked it and stopped: after posting it...
        service.db.execute(
            "UPDATE containments SET reminder_state = ?, reminded_at = ? WHERE request_id = ?",
            [left, audit.iso(h.clock() - timedelta(minutes=1)), request_id],
        )
        if in_thread:
            client = AsyncWebClient(token=h.slack.bot_token, base_url=h.slack.api_url)
            text = approval_cards.reminder(request, item)["text"] + (
                " (This may repeat a reminder idops was stopped from confirming.)"
                if left == "resending"
                else ""
            )
            await client.chat_postMessage(
                channel=request.message_channel, thread_ts=request.message_ts, text=text
            )
        posts = len(h.slack.calls_to("chat.postMessage"))
        if left != "failed":  # a claim of a minute ago may still be posting: left alone
            assert await h.bot.containment.sweep() == []
            h.clock.advance(minutes=1, seconds=1)
        assert await h.bot.containment.sweep() == [request_id]
        key = the_key(h, request_id)
        assert row(h, key)["status"] == "sent"
        assert len(reminders(h)) == 1
        assert len(h.slack.calls_to("chat.postMessage")) == posts + (0 if in_thread else 1)
        assert keys(h)[key] == (0 if in_thread else 1)
        assert row(h, key)["ts"] == reminders(h)[0]["ts"]
        assert await h.bot.containment.sweep() == [] and await h.bot.flow.threads.sweep() == 0
        assert len(reminders(h)) == 1
        item = service.containment(request_id)
        assert item is not None and item.reminder_state == "claimed" and item.status is State.ACTIVE
        resent = [
            r for r in service.history("okta", item.identity_id, limit=50) if r["event"] == "reminder_resent"
        ]
        assert len(resent) == 1 and f"left it {left}" in resent[0]["detail"]["earlier"]


@pytest.mark.parametrize("point", ["claimed", "posted"])
async def test_an_escalation_cut_off_by_a_kill_is_looked_up_then_posted_once(
    tmp_path: Path, server_pg: Optional[PgDatabase], point: str
) -> None:
    approvals = {"expire_minutes": 60, "escalate_after_minutes": 10, "escalate_to": LEADS}
    async with okta_bot(tmp_path, approvals=approvals, **pg_store(server_pg)) as h:
        state: OktaState = h.extra["okta"]
        await h.command(REQUESTER, f"revoke {state.user(5)['profile']['email']} phished")
        request_id = h.card()["metadata"]["event_payload"]["request_id"]
        h.clock.advance(minutes=10)
        await killed_at(
            point,
            *("sweep", store_of(tmp_path, server_pg), h.slack.api_url, h.slack.bot_token),
            *(h.clock().isoformat(), point),
            environ=env_of(server_pg),
        )
        key = escalation_key(request_id, 1)
        # the step and its reply were claimed together: the step is not claimed again, the reply waits
        assert h.bot.service.get(request_id).escalation_step == 1 and row(h, key)["status"] == "sending"
        assert await h.bot.flow.escalate_due() == []
        threads = h.bot.flow.threads
        threads.clock = lambda: time.time() + threads.lease + 1
        assert await threads.sweep() == 1
        assert keys(h) == {key: 1}
        assert h.card()["replies"][0]["text"].startswith(f":rotating_light: <!subteam^{LEADS}>")
        assert await threads.sweep() == 0 and await h.bot.flow.escalate_due() == []
        assert keys(h) == {key: 1}


async def test_a_containment_state_a_stopped_replica_never_told_is_told_once_by_the_sweep(
    tmp_path: Path, server_pg: Optional[PgDatabase]
) -> None:
    async with okta_bot(tmp_path, **pg_store(server_pg)) as h:
        request_id = await contained(h, 3)
        h.clock.advance(hours=4, minutes=1)
        # a replica reverts it and stops before telling the thread (the service alone, no report)
        assert await h.bot.service.revert_due() == [request_id]
        item = h.bot.service.containment(request_id)
        assert item is not None and item.status is State.REVERTED and item.reported is None
        assert len(h.card()["replies"]) == 1  # the action's result only
        assert request_id in await h.bot.containment.sweep()  # the next sweep tells it
        for _ in range(2):
            assert await h.bot.containment.sweep() == []
        told = [r for r in h.card()["replies"] if r["text"].startswith("*Revert of the containment*")]
        assert len(told) == 1 and "Enable" in told[0]["text"]
        ((key, count),) = [(k, c) for k, c in keys(h).items() if k and k.startswith("containment:")]
        assert count == 1 and key.startswith(f"containment:{request_id}:reverted:")
        # an old store's state never told, its request quiet for over a day, is left alone
        h.bot.service.db.execute("UPDATE containments SET reported = NULL WHERE request_id = ?", [request_id])
        h.clock.advance(days=1, minutes=1)
        assert await h.bot.containment.sweep() == []
        assert len(h.card()["replies"]) == len(told) + 1

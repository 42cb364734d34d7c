"""Approval thread replies exactly once across replicas (bot/thread_replies.py), through the real server,
the Slack stand-in and the HomeBase simulator, on a SQLite file and on PostgreSQL: two servers on one
store reporting one outcome post it once; a replica killed with SIGKILL between claiming a reply and
recording it leaves it to the next sweep, which looks in the thread before posting (never twice, never
lost); an escalation reply Slack refuses is sent again by the next sweep, once; an outcome with no reply
claimed is told by the sweep once it is quiet, unless an earlier idops told it already (a rolling
upgrade: found in the thread by how it starts, posted after its attempt started), a few per sweep.
Reminders and escalations cut off by a kill: tests/bot/test_reminders_once.py."""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

import pytest
from slack_sdk.web.async_client import AsyncWebClient
from support.bot import APPROVER, REQUESTER, BotHarness, harness, pg_store, second_server, until
from support.postgres import PgDatabase
from support.replies import killed_at

from bot import approval_flow
from bot.approval_cards import result_head, result_reply
from bot.approval_flow import QUIET
from bot.approvals import Decision, Status
from bot.extension import BOT
from bot.store import connect, upgrade
from bot.thread_replies import EVENT_TYPE, KEEP, PRUNE_EVERY, Legacy, escalation_key, result_key

LEADS = "S0SECLEADS"


def store_url(tmp_path: Path, pg: Optional[PgDatabase]) -> str:
    return pg.url if pg is not None else f"sqlite:///{tmp_path / 'idops.db'}"


def env_of(pg: Optional[PgDatabase]) -> dict[str, str]:
    return {"TEST_PG_PASSWORD": pg.password} if pg is not None else {}


def thread_keys(h: BotHarness) -> collections.Counter[str]:
    """How many replies carry each thread-reply key, over every approval card's thread."""
    return collections.Counter(
        (reply.get("metadata") or {}).get("event_payload", {}).get("key")
        for card in h.cards()
        for reply in card["replies"]
        if (reply.get("metadata") or {}).get("event_type") == EVENT_TYPE
    )


def row(h: BotHarness, key: str) -> dict[str, Any]:
    return next(h.bot.service.db.query("SELECT * FROM thread_replies WHERE key = ?", [key]))


async def executed_without_reply(h: BotHarness, who: str = "plain") -> Any:
    """A request approved and run through the service (no thread reply yet); its card is in Slack."""
    card = await h.request_card(who)
    rid = card["metadata"]["event_payload"]["request_id"]
    service = h.bot.service
    assert (await service.decide(rid, user_id=APPROVER, decision=Decision.APPROVE)).status is Status.APPROVED
    done = await service.execute(rid)
    assert done.status is Status.EXECUTED and h.cards()[-1]["replies"] == []
    return done


async def test_two_servers_on_one_store_report_one_outcome_once(
    tmp_path: Path, server_pg: Optional[PgDatabase]
) -> None:
    async with harness(tmp_path, **pg_store(server_pg)) as h:
        done = await executed_without_reply(h)
        key = result_key(done.id, done.attempts, "executed")
        async with second_server(h, environ=env_of(server_pg)) as app:
            second = app[BOT]
            # the replica that ran it and one that read the outcome back both report it, at once
            await asyncio.gather(*(bot.flow.report(done) for bot in (h.bot, second, h.bot, second)))
            await second.flow.threads.sweep()
        assert thread_keys(h) == {key: 1}
        (reply,) = h.card()["replies"]
        assert reply["text"].startswith(":white_check_mark: Revoke sessions for *")
        stored = row(h, key)
        assert (stored["status"], stored["attempts"], stored["ts"]) == ("sent", 1, reply["ts"])
        # a later report of the same attempt and outcome (a third replica, a restart) posts nothing
        await h.bot.flow.report(h.bot.service.get(done.id))
        assert thread_keys(h) == {key: 1}
        # a sent row is kept for KEEP (its key keeps the reply from being said again), then pruned
        threads = h.bot.flow.threads
        threads.clock = lambda: time.time() + KEEP - 60
        await threads.sweep()
        assert row(h, key)["status"] == "sent"
        threads.clock = lambda: time.time() + KEEP + PRUNE_EVERY + 60
        await threads.sweep()
        assert h.bot.service.db.count("thread_replies") == 0


@pytest.mark.parametrize("point", ["claimed", "posted"])
async def test_a_replica_killed_between_claim_and_record_leaves_the_reply_to_the_sweep_once(
    tmp_path: Path, server_pg: Optional[PgDatabase], point: str
) -> None:
    async with harness(tmp_path, **pg_store(server_pg)) as h:
        done = await executed_without_reply(h)
        key = result_key(done.id, done.attempts, "executed")
        card = h.card()
        await killed_at(
            point,
            *(store_url(tmp_path, server_pg), h.slack.api_url, h.slack.bot_token, key),
            *(card["channel"], card["ts"], "Revoke sessions: done", point),
            environ=env_of(server_pg),
        )
        assert row(h, key)["status"] == "sending"
        assert sum(thread_keys(h).values()) == (1 if point == "posted" else 0)

        # the dead replica's claim is not a lease old: nobody posts it yet (it may still be posting)
        await h.bot.flow.report(done)
        assert await h.bot.flow.threads.sweep() == 0
        assert row(h, key)["status"] == "sending"
        posts, lookups = (
            len(h.slack.calls_to("chat.postMessage")),
            len(h.slack.calls_to("conversations.replies")),
        )

        async with second_server(h, environ=env_of(server_pg)) as app:
            # a replica whose clock sees that claim a lease old: its periodic sweep takes the reply over
            threads = app[BOT].flow.threads
            threads.clock = lambda: time.time() + threads.lease + 1
            await until(lambda: row(h, key)["status"] == "sent")
        assert thread_keys(h) == {key: 1}
        assert len(h.slack.calls_to("conversations.replies")) > lookups  # looked for before posting
        assert len(h.slack.calls_to("chat.postMessage")) == posts + (0 if point == "posted" else 1)
        (reply,) = h.card()["replies"]
        assert row(h, key)["ts"] == reply["ts"] and row(h, key)["attempts"] == 2
        assert await h.bot.flow.threads.sweep() == 0  # settled: nothing more
        assert thread_keys(h) == {key: 1}


async def test_a_refused_escalation_reply_is_sent_again_by_the_next_sweep_once(
    tmp_path: Path, server_pg: Optional[PgDatabase], caplog: pytest.LogCaptureFixture
) -> None:
    approvals = {"expire_minutes": 60, "escalate_after_minutes": 10, "escalate_to": LEADS}
    async with harness(tmp_path, approvals=approvals, **pg_store(server_pg)) as h:
        card = await h.request_card()
        rid = card["metadata"]["event_payload"]["request_id"]
        caplog.set_level(logging.WARNING, logger="bot.thread_replies")
        h.slack.fail_next("chat.postMessage", error="fatal_error")
        h.clock.advance(minutes=10)
        await h.bot.flow.expire_due()  # step 1 is claimed; Slack refuses its reply
        step1 = escalation_key(rid, 1)
        assert h.bot.service.get(rid).escalation_step == 1
        assert thread_keys(h) == {} and row(h, step1)["status"] == "failed"
        assert any(
            "fatal_error" in r.getMessage() and "again, once" in r.getMessage() for r in caplog.records
        )
        await h.bot.flow.expire_due()  # the next sweep sends it again
        assert thread_keys(h) == {step1: 1}
        assert h.card()["replies"][0]["text"].startswith(
            f":rotating_light: <!subteam^{LEADS}> *Revoke sessions*"
        )
        await h.bot.flow.expire_due()
        assert thread_keys(h) == {step1: 1}

        # refused twice: sent again once, then left (logged; the card shows the escalation)
        h.slack.fail_next("chat.postMessage", error="fatal_error", count=2)
        h.clock.advance(minutes=10)
        step2 = escalation_key(rid, 2)
        for _ in range(3):
            await h.bot.flow.expire_due()
        assert thread_keys(h) == {step1: 1}
        assert (row(h, step2)["status"], row(h, step2)["attempts"]) == ("failed", 2)
        assert h.bot.service.get(rid).escalation_step == 2


async def test_an_outcome_whose_reply_nobody_claimed_is_told_once_by_the_sweep(
    tmp_path: Path, server_pg: Optional[PgDatabase]
) -> None:
    async with harness(tmp_path, **pg_store(server_pg)) as h:
        # recorded by a replica that stopped before claiming its reply: no row, nothing in the thread
        done = await executed_without_reply(h)
        key = result_key(done.id, done.attempts, "executed")
        assert h.bot.service.db.count("thread_replies") == 0
        # just recorded: left to whoever recorded it (it claims, or an earlier idops posts, right after)
        h.clock.advance(seconds=QUIET.total_seconds() - 5)
        assert await h.bot.flow.report_missed() == 0 and thread_keys(h) == {}
        h.clock.advance(seconds=6)
        lookups = len(h.slack.calls_to("conversations.replies"))
        await asyncio.gather(h.bot.flow.expire_due(), h.bot.flow.report(done))  # a live report races it
        assert thread_keys(h) == {key: 1}
        assert len(h.slack.calls_to("conversations.replies")) <= lookups + 1
        await h.bot.flow.expire_due()
        assert await h.bot.flow.report_missed() == 0
        assert thread_keys(h) == {key: 1}
        # older than the catch-up window: left alone (a reply a day late would only confuse)
        h.bot.service.db.execute("DELETE FROM thread_replies")
        h.clock.advance(days=1, seconds=1)
        assert await h.bot.flow.report_missed() == 0


async def post_as_earlier_idops(h: BotHarness, request: Any) -> str:
    """Post `request`'s outcome in its card's thread as an idops before thread replies did (no row, no
    metadata); its ts."""
    client = AsyncWebClient(token=h.slack.bot_token, base_url=h.slack.api_url)
    said = await client.chat_postMessage(
        channel=request.message_channel, thread_ts=request.message_ts, **result_reply(request)
    )
    return str(said["ts"])


async def test_an_outcome_an_earlier_idops_told_is_found_in_the_thread_not_told_again(
    tmp_path: Path, server_pg: Optional[PgDatabase]
) -> None:
    async with harness(tmp_path, **pg_store(server_pg)) as h:
        # a rolling upgrade: a replica of an earlier idops ran it and told it in the thread, unclaimed
        done = await executed_without_reply(h)
        ts = await post_as_earlier_idops(h, done)
        key = result_key(done.id, done.attempts, "executed")
        posts = len(h.slack.calls_to("chat.postMessage"))
        lookups = len(h.slack.calls_to("conversations.replies"))
        h.clock.advance(seconds=QUIET.total_seconds() + 1)
        await h.bot.flow.expire_due()  # the new replica's sweep: the outcome has no row
        assert len(h.slack.calls_to("conversations.replies")) == lookups + 1  # looked for once
        assert len(h.slack.calls_to("chat.postMessage")) == posts  # found: not told again
        (reply,) = h.card()["replies"]
        assert reply["ts"] == ts and thread_keys(h) == {}
        stored = row(h, key)
        assert (stored["status"], stored["ts"], stored["attempts"]) == ("sent", ts, 1)
        for _ in range(2):  # more sweeps: no more lookups, no more posts
            await h.bot.flow.expire_due()
        assert len(h.slack.calls_to("conversations.replies")) == lookups + 1
        assert len(h.slack.calls_to("chat.postMessage")) == posts and len(h.card()["replies"]) == 1


async def test_an_earlier_idops_reply_to_an_earlier_attempt_is_not_taken_for_this_one(
    tmp_path: Path, server_pg: Optional[PgDatabase]
) -> None:
    async with harness(tmp_path, **pg_store(server_pg)) as h:
        h.clock.now = datetime.now(timezone.utc)  # the attempts and Slack's ts on one time line
        person = h.people["plain"]
        path = f"/v1/identity/{person['id']}/revoke-sessions"
        await h.fault(kind="error", code="validation_error", path=path, count=2)
        card = await h.request_card()
        rid = card["metadata"]["event_payload"]["request_id"]
        service = h.bot.service
        await service.decide(rid, user_id=APPROVER, decision=Decision.APPROVE)
        first = await service.execute(rid)
        assert (first.status, first.attempts) == (Status.FAILED, 1)
        await post_as_earlier_idops(h, first)  # told by an earlier idops
        h.clock.advance(seconds=5)
        second = await service.retry(rid, user_id=APPROVER)  # fails the same way; its replica stops
        assert (second.status, second.attempts) == (Status.FAILED, 2)
        h.clock.advance(seconds=QUIET.total_seconds() + 1)
        assert await h.bot.flow.report_missed() == 1
        # the earlier reply reads the same but came before this attempt started: this one is told
        first_reply, second_reply = h.card()["replies"]
        head = result_head(second)
        assert first_reply["text"].startswith(head) and second_reply["text"].startswith(head)
        assert thread_keys(h) == {result_key(rid, 2, "failed"): 1}
        assert await h.bot.flow.report_missed() == 0


async def test_the_sweep_takes_a_few_missed_outcomes_at_a_time(
    tmp_path: Path, server_pg: Optional[PgDatabase], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(approval_flow, "MISSED_PER_SWEEP", 1)  # each costs a thread lookup
    async with harness(tmp_path, **pg_store(server_pg)) as h:
        done = [await executed_without_reply(h, who) for who in ("plain", "plain2")]
        h.clock.advance(seconds=QUIET.total_seconds() + 1)
        lookups = len(h.slack.calls_to("conversations.replies"))
        assert await h.bot.flow.report_missed() == 1
        assert len(h.slack.calls_to("conversations.replies")) == lookups + 1
        assert await h.bot.flow.report_missed() == 1
        assert await h.bot.flow.report_missed() == 0
        assert len(h.slack.calls_to("conversations.replies")) == lookups + 2
        assert thread_keys(h) == {result_key(d.id, d.attempts, "executed"): 1 for d in done}


def test_outcomes_told_before_thread_replies_existed_count_as_told(store_url: str) -> None:
    db = connect(store_url)
    try:
        upgrade(db, "0003_thread_replies")
        request = {
            "connector": "homebase",
            "identity_id": "hb-1",
            "action": "revoke_sessions",
            "reason": "phished",
            "requested_by": "U0ALICE",
            "source": "slack",
            "created_at": "2026-11-01T09:00:00.000000+00:00",
            "expires_at": "2026-11-01T09:30:00.000000+00:00",
            "target": "{}",
            "approvals_needed": 1,
            "approvers": "[]",
            "decision_reason": "",
            "version": 0,
            "escalation_step": 0,
        }
        for request_id, status, ts in [
            ("apr_a", "executed", "1.1"),
            ("apr_b", "pending", "1.2"),
            ("apr_c", "failed", None),
        ]:
            db.insert(
                "approvals",
                {
                    **request,
                    "id": request_id,
                    "status": status,
                    "attempts": 1,
                    "message_channel": "C0APPROVALS",
                    "message_ts": ts,
                },
            )
        upgrade(db)
        rows = db.execute("SELECT key, status, thread_ts FROM thread_replies").fetchall()
        assert [tuple(row) for row in rows] == [("result:apr_a:1:executed", "sent", "1.1")]
    finally:
        db.close()


async def test_check_again_on_an_outcome_an_earlier_idops_told_tells_nothing_more(
    tmp_path: Path, server_pg: Optional[PgDatabase]
) -> None:
    async with harness(tmp_path, **pg_store(server_pg)) as h:
        person = h.people["plain"]
        path = f"/v1/identity/{person['id']}/revoke-sessions"
        await h.fault(kind="slow", delay=2.0, count=1, path=path)
        card = await h.request_card()
        rid = card["metadata"]["event_payload"]["request_id"]
        service = h.bot.service
        await service.decide(rid, user_id=APPROVER, decision=Decision.APPROVE)
        unknown = await service.execute(rid)  # HomeBase can't say whether sessions were revoked
        assert unknown.status is Status.UNKNOWN
        await post_as_earlier_idops(h, unknown)  # told by an earlier idops, unclaimed
        await h.bot.flow.refresh_card(rid)  # and its card redrawn (Check again, Run again)
        posts = len(h.slack.calls_to("chat.postMessage"))
        await h.click(REQUESTER, h.card(), "approval:check")  # a new replica reads it back: no change
        assert "Still unknown" in h.last_seen(REQUESTER)["text"]
        assert len(h.slack.calls_to("chat.postMessage")) == posts and len(h.card()["replies"]) == 1
        h.clock.advance(seconds=QUIET.total_seconds() + 1)
        await h.bot.flow.expire_due()  # the sweep finds it in the thread: recorded, not told again
        assert len(h.slack.calls_to("chat.postMessage")) == posts and len(h.card()["replies"]) == 1
        assert row(h, result_key(rid, 1, "unknown"))["status"] == "sent"


async def test_a_reply_claimed_to_look_for_an_earlier_idops_keeps_that_look_after_a_kill(
    tmp_path: Path, server_pg: Optional[PgDatabase]
) -> None:
    async with harness(tmp_path, **pg_store(server_pg)) as h:
        done = await executed_without_reply(h)
        ts = await post_as_earlier_idops(h, done)
        key = result_key(done.id, done.attempts, "executed")
        threads = h.bot.flow.threads
        # claimed to be looked for (as the sweep does for an outcome with no row), then the replica stops
        head = result_head(done)
        claim = threads.claim(
            key, done.message_channel, done.message_ts, result_reply(done), legacy=Legacy(head)
        )
        assert claim is not None
        stored = row(h, key)
        assert (stored["status"], stored["legacy_head"], stored["legacy_after"]) == ("sending", head, 0.0)
        posts = len(h.slack.calls_to("chat.postMessage"))
        threads.clock = lambda: time.time() + threads.lease + 1
        assert await threads.sweep() == 1  # taken over: the look for the earlier reply is kept
        assert len(h.slack.calls_to("chat.postMessage")) == posts and len(h.card()["replies"]) == 1
        assert (row(h, key)["status"], row(h, key)["ts"]) == ("sent", ts)

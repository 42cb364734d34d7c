"""Slash commands answered exactly once (bot/command_log.py) through the real server, signed requests
from the Slack stand-in and the HomeBase simulator, on a SQLite file and on PostgreSQL: a command Slack
sends again (the same payload, so the same trigger_id) at any delay, to the same or another replica,
is answered once and makes one request; two replicas given the same command at once answer it once; a
command whose replica stopped after recording it (before or after making its request) is answered
once by another replica's sweep, which finds that request; a replica that stalled past its lease and
wakes up posts nothing. Answers are counted at the stand-in's response_url."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Optional

import pytest
from slack_bolt.context.respond.async_respond import AsyncRespond
from support.approvals import API_KEY
from support.bot import (
    COMMAND_CHANNEL,
    REQUESTER,
    BotHarness,
    harness,
    pg_store,
    slack_secrets,
    until,
)
from support.commands import command_form
from support.commands import deliver as send_again
from support.postgres import PgDatabase

from bot.command_log import ANSWER_WITHIN, KEEP, MAX_ATTEMPTS, Command, CommandLog, Ticket
from bot.extension import BOT
from bot.server import EXPIRY_CLAIM, build_web_app
from bot.services import Bot
from bot.store import open_store
from connectors import Action
from standins import serving
from standins.slack import BotReply


@pytest.fixture
async def h(tmp_path: Path, server_pg: Optional[PgDatabase]) -> AsyncIterator[BotHarness]:
    async with harness(tmp_path, **pg_store(server_pg)) as built:
        yield built


@contextlib.asynccontextmanager
async def replica(h: BotHarness) -> AsyncIterator[tuple[str, Bot]]:
    """Another server on the harness's store, Slack and clock: its URL and its services."""
    assert h.bot.service.claims is not None
    h.bot.service.claims.release(EXPIRY_CLAIM)
    app = build_web_app(
        h.config,
        slack_secrets(h.slack),
        environ={"TEST_HLD_KEY": API_KEY, **h.store_env},
        extensions=[],
        clock=h.clock,
    )
    async with serving(app) as url:
        yield url, app[BOT]
        await app[BOT].replies.join(timeout=15)


def form_of(h: BotHarness, reply: BotReply, user: str, text: str) -> str:
    return command_form(h.slack, reply, user, text, COMMAND_CHANNEL)


async def deliver(h: BotHarness, url: str, form: str, retry: int = 1) -> int:
    return await send_again(h.http, h.slack, url + "/slack/events", form, retry)


def row(h: BotHarness, trigger_id: Optional[str]) -> dict[str, Any]:
    return dict(
        next(h.bot.service.db.query("SELECT * FROM slash_commands WHERE trigger_id = ?", [trigger_id]))
    )


def answers(h: BotHarness, reply: BotReply) -> int:
    return h.slack.response_url_uses(reply.response_url or "")


def answer_texts(h: BotHarness) -> list[str]:
    return [m["text"] for m in h.slack.responses(REQUESTER)]


@pytest.mark.parametrize("delay", [0.0, 120.0, ANSWER_WITHIN])
async def test_a_command_slack_sends_again_at_any_delay_is_answered_once(h: BotHarness, delay: float) -> None:
    text = f"revoke {h.people['plain']['email']} phished"
    reply = await h.command(REQUESTER, text)
    assert reply.status == 200 and reply.body == ""  # acked empty: the answer follows
    assert answers(h, reply) == 1 and len(h.cards()) == 1
    (request_id,) = [r for (r,) in h.bot.service.db.execute("SELECT id FROM approvals")]
    assert row(h, reply.trigger_id)["status"] == "answered"
    assert h.bot.service.by_trigger(reply.trigger_id).id == request_id
    # Slack sends it again that much later (while the row is kept), to this replica and to another
    h.bot.commands.clock = lambda: time.time() + delay
    h.clock.advance(seconds=delay)
    form = form_of(h, reply, REQUESTER, text)
    async with replica(h) as (url, other):
        other.commands.clock = h.bot.commands.clock
        assert await deliver(h, h.url, form) == 200
        assert await deliver(h, url, form, retry=2) == 200
        await h.settle()
    assert answers(h, reply) == 1 and len(h.cards()) == 1
    assert [r for (r,) in h.bot.service.db.execute("SELECT id FROM approvals")] == [request_id]
    assert row(h, reply.trigger_id)["attempts"] == 1


async def test_a_lookup_sent_again_is_answered_once_and_read_once(h: BotHarness) -> None:
    text = f"whois {h.people['plain']['email']}"
    reply = await h.command(REQUESTER, text)
    assert answers(h, reply) == 1
    searched = len(h.sim.requests)
    assert await deliver(h, h.url, form_of(h, reply, REQUESTER, text)) == 200
    await h.settle()
    assert answers(h, reply) == 1 and len(h.sim.requests) == searched  # nothing ran again


async def test_two_replicas_given_one_command_at_once_answer_it_once(h: BotHarness) -> None:
    # the first delivery of a command, and the same one to a second replica (Slack sent it again
    # while the first replica was still working on it): both acked, one answer, one request, one card
    reply = await h.command(REQUESTER, "help")  # a trigger_id and response_url issued by the stand-in
    text = f"revoke {h.people['plain']['email']} phished"
    form = form_of(h, reply, REQUESTER, text)
    async with replica(h) as (url, _):
        statuses = await asyncio.gather(deliver(h, h.url, form, retry=0), deliver(h, url, form, retry=1))
        await h.settle()
    assert statuses == [200, 200]
    await until(lambda: answers(h, reply) == 1)
    assert h.bot.service.db.count("approvals") == 1 and len(h.cards()) == 1
    assert ":hourglass_flowing_sand: Requested *Revoke sessions*" in answer_texts(h)[-1]
    assert row(h, reply.trigger_id)["status"] == "answered"


def dead_replica(h: BotHarness, clock: Any = time.time) -> CommandLog:
    """The command log of a replica that records a command and then stops (its lease is not renewed)."""
    return CommandLog(h.bot.service.db, holder="dead-replica:1:0", lease=h.bot.commands.lease, clock=clock)


async def left_by_dead_replica(h: BotHarness, text: str, dead: CommandLog) -> BotReply:
    """`text` as a command whose first delivery went to `dead`, which recorded it and stopped; this
    server gets Slack's delivery of it again, finds it recorded and does nothing."""
    real = h.bot.commands.accept

    def first_delivery_went_to_the_dead_replica(command: Command) -> Optional[Ticket]:
        assert dead.accept(command) is not None
        return real(command)

    h.bot.commands.accept = first_delivery_went_to_the_dead_replica  # type: ignore[method-assign]
    try:
        reply = await h.command(REQUESTER, text)
    finally:
        del h.bot.commands.accept
    assert reply.status == 200 and answers(h, reply) == 0
    assert row(h, reply.trigger_id)["holder"] == dead.holder
    return reply


@pytest.mark.parametrize("made_request", [False, True])
async def test_a_command_its_replica_left_unanswered_is_answered_once_by_another(
    h: BotHarness, made_request: bool
) -> None:
    """The dead replica stopped before or after making the request; this server's sweep answers the
    command once the dead replica's lease ran out, finding that request (and posting its card)."""
    reply = await left_by_dead_replica(h, f"revoke {h.people['plain']['email']} phished", dead_replica(h))
    if made_request:  # what the dead replica did before it stopped: the request, but no card
        made = await h.bot.service.request(
            connector="homebase",
            identity_id=h.people["plain"]["id"],
            action=Action.REVOKE_SESSIONS,
            reason="phished",
            requested_by=REQUESTER,
            trigger_id=reply.trigger_id,
        )
        assert made.message_ts is None
    h.bot.service.db.execute("UPDATE slash_commands SET until = 0")  # the dead replica's lease runs out
    await until(lambda: answers(h, reply) == 1, what="the sweep to answer the command")
    await h.settle()
    assert h.bot.service.db.count("approvals") == 1 and len(h.cards()) == 1
    (request_id,) = [r for (r,) in h.bot.service.db.execute("SELECT id FROM approvals")]
    assert f"(request {request_id})" in answer_texts(h)[-1]
    stored = row(h, reply.trigger_id)
    assert (stored["status"], stored["attempts"], stored["holder"]) == ("answered", 2, h.bot.commands.holder)
    assert h.bot.commands.sweep() == 0  # settled: nothing more
    assert answers(h, reply) == 1


async def test_a_reason_form_opens_once_and_a_lost_one_is_answered(h: BotHarness) -> None:
    text = f"disable {h.people['plain']['email']}"  # disable needs a reason: the form opens
    reply = await h.command(REQUESTER, text)
    assert len(h.slack.calls_to("views.open")) == 1 and len(h.slack.views(REQUESTER)) == 1
    assert row(h, reply.trigger_id)["status"] == "answered" and answers(h, reply) == 0
    assert await deliver(h, h.url, form_of(h, reply, REQUESTER, text)) == 200  # sent again: no 2nd form
    await h.settle()
    assert len(h.slack.calls_to("views.open")) == 1 and answers(h, reply) == 0
    # a replica that stopped before opening the form: its trigger_id is spent, so the sweep says so
    lost = await left_by_dead_replica(h, text, dead_replica(h))
    h.bot.service.db.execute("UPDATE slash_commands SET until = 0 WHERE trigger_id = ?", [lost.trigger_id])
    await until(lambda: answers(h, lost) == 1, what="the sweep to answer the command")
    assert "could open the reason form" in answer_texts(h)[-1]
    assert "/idops disable &lt;who&gt; &lt;reason&gt;" in answer_texts(h)[-1]
    assert len(h.slack.calls_to("views.open")) == 1 and h.bot.service.db.count("approvals") == 0


async def test_a_stalled_replica_that_wakes_after_a_take_over_posts_nothing(h: BotHarness) -> None:
    reply = await h.command(REQUESTER, "help")  # a trigger_id and response_url the stand-in issued
    command = Command(
        reply.trigger_id, reply.response_url or "", REQUESTER, COMMAND_CHANNEL, "/idops", "pending"
    )
    db, lease = h.bot.service.db, h.bot.commands.lease
    stalled = CommandLog(db, holder="stalled:1:0", lease=lease)
    ticket = stalled.accept(command)
    assert ticket is not None and stalled.accept(command) is None  # recorded once
    work = asyncio.get_running_loop().create_task(asyncio.sleep(60))
    stalled.attach(ticket, work)
    # another replica's sweep sees the lease run out and takes the command over
    other = CommandLog(db, holder="other:1:0", lease=lease, clock=lambda: time.time() + lease + 1)
    taken: list[Ticket] = []
    other.rerun = taken.append
    assert other.sweep() == 1 and other.sweep() == 0
    (again,) = taken
    assert (again.attempts, row(h, reply.trigger_id)["holder"]) == (2, other.holder)
    # the stalled replica wakes: its renewal finds the command taken and stops its run; it posts nothing
    stalled.renew()
    await asyncio.sleep(0)
    assert work.cancelled() and ticket.state == "lost"
    assert await stalled.guard(ticket, AsyncRespond(response_url=command.response_url))(text="late") is None
    assert answers(h, reply) == 0
    answered = await other.guard(again, AsyncRespond(response_url=command.response_url))(text="the answer")
    assert answered.status_code == 200 and answers(h, reply) == 1
    assert row(h, reply.trigger_id)["status"] == "answered"
    assert other.sweep() == 0 and stalled.sweep() == 0


async def test_commands_never_answered_are_given_up_and_old_rows_pruned(h: BotHarness) -> None:
    db, lease = h.bot.service.db, h.bot.commands.lease
    # too old to answer (a response_url lasts 30 minutes): given up, not run
    old = await left_by_dead_replica(
        h, "pending", dead_replica(h, clock=lambda: time.time() - ANSWER_WITHIN - 60)
    )
    await until(lambda: row(h, old.trigger_id)["status"] == "expired", what="the sweep to give it up")
    assert answers(h, old) == 0 and row(h, old.trigger_id)["error"] == "too old to answer"
    # every row is kept a day (a delivery Slack sends again finds its command), then pruned
    assert db.count("slash_commands") == 1
    pruning = CommandLog(db, holder="any:1:0", lease=lease, clock=lambda: time.time() + KEEP + 60)
    pruning.sweep()
    assert db.count("slash_commands") == 0


async def test_a_run_that_ends_unanswered_is_run_again_at_most_max_attempts_times(store_url: str) -> None:
    db = open_store(store_url)
    try:
        command = Command(
            "7.T0.silent", "http://127.0.0.1:9/response/x", REQUESTER, COMMAND_CHANNEL, "/idops", "pending"
        )
        log = CommandLog(db, holder="silent:1:0", lease=3)
        runs: list[Ticket] = []

        def run_silently(ticket: Ticket) -> None:  # a run that ends without posting anything
            runs.append(ticket)
            log.attach(ticket, asyncio.get_running_loop().create_task(asyncio.sleep(0)))

        log.rerun = run_silently
        first = log.accept(command)
        assert first is not None
        run_silently(first)
        for _ in range(MAX_ATTEMPTS + 1):
            await asyncio.sleep(0.01)  # the run ends: released at once, for the next sweep
            log.sweep()
        assert [t.attempts for t in runs] == list(range(1, MAX_ATTEMPTS + 1))
        stored = dict(next(db.query("SELECT * FROM slash_commands")))
        assert (stored["status"], stored["error"], stored["attempts"]) == (
            "expired",
            f"{MAX_ATTEMPTS} runs",
            3,
        )
    finally:
        db.close()


async def test_a_command_is_answered_while_the_store_does_not_answer(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with harness(tmp_path) as h:
        caplog.set_level(logging.INFO, logger="bot.command_log")
        h.bot.service.db.conn.close()  # the store goes away under the running server
        reply = await h.command(REQUESTER, f"whois {h.people['plain']['email']}")
        assert reply.status == 200 and answers(h, reply) == 1  # answered, unrecorded
        assert h.people["plain"]["display_name"] in answer_texts(h)[-1]
        said = [r.getMessage() for r in caplog.records if r.name == "bot.command_log"]
        assert any("command not recorded" in line for line in said), said

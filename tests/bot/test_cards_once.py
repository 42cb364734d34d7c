"""Approval cards posted exactly once across replicas (bot/card_posts.py), through the real server, the
Slack stand-in and the HomeBase simulator over loopback, on a SQLite file and on PostgreSQL:

- the normal path: one claim, one post, no lookup; a card Slack refused is posted when asked again,
  after a look in the channel;
- two servers re-posting the same missing card at once post it once (also a SOAR retry on one and a
  slash command on the other); a replica stalled past its claim posts nothing after a take-over;
- a replica killed with SIGKILL between claiming a card and recording it (before or after Slack took it)
  leaves it to the next ask, or the sweep, once its claim is a lease old: looked for in the channel
  (by the request-id metadata) first, so never twice, never lost;
- a card an earlier idops posted without recording it is found in the channel, not posted again."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, Optional

import pytest
from support.bot import (
    COMMAND_CHANNEL as COMMAND,
)
from support.bot import (
    REQUESTER,
    BotHarness,
    harness,
    pg_store,
    second_server,
    store_of,
    until,
)
from support.postgres import PgDatabase
from support.replies import killed_at

from bot import approval_cards
from bot.approvals import ApprovalRequest
from bot.card_posts import EVENT_TYPE
from bot.extension import BOT
from connectors import Action


def env_of(pg: Optional[PgDatabase]) -> dict[str, str]:
    return {"TEST_PG_PASSWORD": pg.password} if pg is not None else {}


def card_row(h: BotHarness, request_id: str) -> dict[str, Any]:
    return next(h.bot.service.db.query("SELECT * FROM approval_cards WHERE request_id = ?", [request_id]))


def cards_of(h: BotHarness, request_id: str) -> list[dict[str, Any]]:
    """The approval channel's cards carrying `request_id` in their metadata."""
    return [
        card
        for card in h.cards()
        if (card.get("metadata") or {}).get("event_type") == EVENT_TYPE
        and card["metadata"]["event_payload"]["request_id"] == request_id
    ]


async def stored_request(h: BotHarness) -> ApprovalRequest:
    """A pending request whose card was never posted (its maker stopped before it): no claim, no card."""
    request = await h.bot.service.request(
        connector="homebase",
        identity_id=h.people["plain"]["id"],
        action=Action.REVOKE_SESSIONS,
        reason="phished",
        requested_by=REQUESTER,
    )
    assert request.message_ts is None and h.cards() == []
    return request


async def ask_again(h: BotHarness) -> str:
    """The requester asks for the same action again (as a redelivered slash command does)."""
    await h.command(REQUESTER, f"revoke {h.people['plain']['email']} phished")
    return str(h.last_seen(REQUESTER)["text"])


def calls(h: BotHarness, method: str) -> int:
    return len(h.slack.calls_to(method))


async def test_a_new_request_claims_and_posts_its_card_once_without_a_lookup(
    tmp_path: Path, server_pg: Optional[PgDatabase]
) -> None:
    async with harness(tmp_path, **pg_store(server_pg)) as h:
        card = await h.request_card()
        request_id = card["metadata"]["event_payload"]["request_id"]
        assert calls(h, "conversations.history") == 0
        stored = card_row(h, request_id)
        assert (stored["status"], stored["attempts"], stored["ts"]) == ("sent", 1, card["ts"])
        assert h.bot.service.get(request_id).message_ts == card["ts"]
        # posting it again (the SOAR API's on_created called twice, a third replica) posts nothing
        await h.bot.flow.post_approval(h.bot.service.get(request_id))
        assert len(h.cards()) == 1 and card_row(h, request_id)["attempts"] == 1


async def test_a_card_slack_refused_is_looked_for_then_posted_when_asked_again(
    tmp_path: Path, server_pg: Optional[PgDatabase]
) -> None:
    async with harness(tmp_path, **pg_store(server_pg)) as h:
        h.slack.fail_next("chat.postMessage", error="not_in_channel")
        shown = await ask_again(h)
        assert "could not be posted" in shown and "not_in_channel" in shown and h.cards() == []
        (request,) = await h.bot.service.pending()
        stored = card_row(h, request.id)
        assert (stored["status"], stored["attempts"]) == ("failed", 1) and "not_in_channel" in stored["error"]
        shown = await ask_again(h)
        assert f"waiting for approval in <#C0APPROVALS> (request {request.id})" in shown
        (card,) = cards_of(h, request.id)
        assert calls(h, "conversations.history") == 1  # looked for first: a failure may hide a post
        stored = card_row(h, request.id)
        assert (stored["status"], stored["attempts"], stored["ts"], stored["error"]) == (
            "sent",
            2,
            card["ts"],
            None,
        )
        assert h.bot.service.get(request.id).message_ts == card["ts"]


async def test_two_servers_re_posting_one_missing_card_at_once_post_it_once(
    tmp_path: Path, server_pg: Optional[PgDatabase]
) -> None:
    async with harness(tmp_path, **pg_store(server_pg)) as h:
        h.slack.fail_next("chat.postMessage", error="not_in_channel")
        await ask_again(h)
        (request,) = await h.bot.service.pending()
        assert h.cards() == [] and card_row(h, request.id)["status"] == "failed"
        async with second_server(h, environ=env_of(server_pg)) as app:
            second = app[BOT]
            flows = (h.bot.flow, second.flow, h.bot.flow, second.flow)
            await asyncio.gather(*(flow.post_approval(request) for flow in flows))
            # and once more, after it settled: nothing more
            await asyncio.gather(*(flow.post_approval(second.service.get(request.id)) for flow in flows))
        (card,) = h.cards()
        assert card["metadata"]["event_payload"]["request_id"] == request.id
        assert calls(h, "chat.postMessage") == 2  # the refused post, then one
        stored = card_row(h, request.id)
        assert (stored["status"], stored["attempts"], stored["ts"]) == ("sent", 2, card["ts"])
        assert h.bot.service.get(request.id).message_ts == card["ts"]


@pytest.mark.parametrize(
    ("point", "by"), [("claimed", "ask"), ("posted", "ask"), ("claimed", "sweep"), ("posted", "sweep")]
)
async def test_a_replica_killed_between_claim_and_record_leaves_one_card(
    tmp_path: Path, server_pg: Optional[PgDatabase], point: str, by: str
) -> None:
    async with harness(tmp_path, **pg_store(server_pg)) as h:
        request = await stored_request(h)
        await killed_at(
            point,
            *(store_of(tmp_path, server_pg), h.slack.api_url, h.slack.bot_token, request.id),
            *(h.clock().isoformat(), point),
            environ=env_of(server_pg),
            module="support.cards",
        )
        assert (card_row(h, request.id)["status"], card_row(h, request.id)["attempts"]) == ("sending", 1)
        assert len(cards_of(h, request.id)) == (1 if point == "posted" else 0)
        assert h.bot.service.get(request.id).message_ts is None

        # within the dead replica's lease nobody posts it (it may still be posting), nor looks for it
        posts, lookups = calls(h, "chat.postMessage"), calls(h, "conversations.history")
        await h.bot.flow.post_approval(h.bot.service.get(request.id))
        assert await h.bot.flow.post_cut_off() == 0
        assert (calls(h, "chat.postMessage"), calls(h, "conversations.history")) == (posts, lookups)

        if by == "ask":  # a lease later, asking again takes it over
            cards = h.bot.flow.cards
            cards.clock = lambda: time.time() + cards.lease + 1
            await h.bot.flow.post_approval(h.bot.service.get(request.id))
        else:  # a lease later, another replica's periodic sweep takes it over
            async with second_server(h, environ=env_of(server_pg)) as app:
                cards = app[BOT].flow.cards
                cards.clock = lambda: time.time() + cards.lease + 1
                await until(lambda: h.bot.service.get(request.id).message_ts is not None)
        (card,) = cards_of(h, request.id)
        assert calls(h, "conversations.history") == lookups + 1  # looked for before posting
        assert calls(h, "chat.postMessage") == posts + (0 if point == "posted" else 1)
        stored = card_row(h, request.id)
        assert (stored["status"], stored["attempts"], stored["ts"]) == ("sent", 2, card["ts"])
        assert h.bot.service.get(request.id).message_ts == card["ts"]
        # settled: asking again, or the sweep, posts nothing more
        await h.bot.flow.post_approval(h.bot.service.get(request.id))
        assert await h.bot.flow.post_cut_off() == 0
        assert len(cards_of(h, request.id)) == 1


async def test_a_card_an_earlier_idops_posted_without_recording_it_is_found_not_posted_again(
    tmp_path: Path, server_pg: Optional[PgDatabase]
) -> None:
    async with harness(tmp_path, **pg_store(server_pg)) as h:
        request = await stored_request(h)
        # an earlier idops (no claims) posted the card, then stopped before recording where it is
        posted = await h.bot.flow.client.chat_postMessage(
            channel="C0APPROVALS",
            metadata={"event_type": EVENT_TYPE, "event_payload": {"request_id": request.id}},
            **approval_cards.approval_card(request),
        )
        h.clock.advance(minutes=10)  # the upgraded idops is asked again, later
        shown = await ask_again(h)
        assert f"waiting for approval in <#C0APPROVALS> (request {request.id})" in shown
        (card,) = cards_of(h, request.id)
        assert card["ts"] == posted["ts"] and calls(h, "conversations.history") == 1
        assert h.bot.service.get(request.id).message_ts == posted["ts"]
        assert (card_row(h, request.id)["status"], card_row(h, request.id)["attempts"]) == ("sent", 1)


async def test_a_soar_retry_and_a_command_on_two_replicas_at_once_post_a_refused_card_once(
    tmp_path: Path, server_pg: Optional[PgDatabase]
) -> None:
    async with harness(tmp_path, **pg_store(server_pg)) as h:
        auth = {"Authorization": "Bearer test-api-token"}
        body = {
            "connector": "homebase",
            "identity": h.people["plain"]["id"],
            "action": "revoke_sessions",
            "reason": "phished",
            "requested_by": REQUESTER,
        }

        async def soar() -> tuple[int, dict[str, Any]]:
            async with h.http.post(f"{h.url}/api/v1/approvals", json=body, headers=auth) as response:
                return response.status, await response.json()

        h.slack.fail_next("chat.postMessage", error="not_in_channel")
        status, created = await soar()
        assert status == 201 and "could not be posted" in created["warning"] and h.cards() == []
        urls: list[str] = []
        async with second_server(h, environ=env_of(server_pg), urls=urls) as app:
            text = f"revoke {h.people['plain']['email']} phished"

            async def command() -> int:
                reply = await h.slack.command(f"{urls[0]}/slack/events", REQUESTER, text, channel_id=COMMAND)
                return int(reply.status)

            # the playbook's retries reach one replica while the requester asks again on another: each
            # finds the request waiting without its card and re-posts it
            answers = await asyncio.gather(soar(), command(), soar(), command())
            await app[BOT].replies.join(timeout=15)
        assert [answer if isinstance(answer, int) else answer[0] for answer in answers] == [409, 200] * 2
        assert all(answer[1]["existing"]["id"] == created["id"] for answer in answers[::2])
        assert all("warning" not in answer[1] for answer in answers[::2])
        (card,) = h.cards()
        assert card["metadata"]["event_payload"]["request_id"] == created["id"]
        assert calls(h, "chat.postMessage") == 2  # the refused post, then one
        assert h.bot.service.get(created["id"]).message_ts == card["ts"]
        told = [message["text"] for message in h.seen(REQUESTER)]
        assert len(told) == 2 and all("<#C0APPROVALS>" in said and "could not" not in said for said in told)


async def test_a_replica_stalled_past_its_claim_posts_nothing_after_a_take_over(
    tmp_path: Path, server_pg: Optional[PgDatabase]
) -> None:
    async with harness(tmp_path, **pg_store(server_pg)) as h:
        request = await stored_request(h)
        stalled = h.bot.flow.cards.claim(request.id, "C0APPROVALS")
        assert stalled is not None
        async with second_server(h, environ=env_of(server_pg)) as app:
            cards = app[BOT].flow.cards
            cards.clock = lambda: time.time() + cards.lease + 1  # it sees the claim a lease old
            await until(lambda: h.bot.service.get(request.id).message_ts is not None)
        (card,) = cards_of(h, request.id)
        posts = calls(h, "chat.postMessage")
        # the stalled replica wakes up with its claim: taken over, it posts nothing and records nothing
        card_message = approval_cards.approval_card(request)
        assert await h.bot.flow.cards.deliver(stalled, card_message, h.bot.service.set_message) is False
        assert calls(h, "chat.postMessage") == posts and cards_of(h, request.id) == [card]
        stored = card_row(h, request.id)
        assert (stored["status"], stored["attempts"], stored["ts"]) == ("sent", 2, card["ts"])
        assert h.bot.service.get(request.id).message_ts == card["ts"]

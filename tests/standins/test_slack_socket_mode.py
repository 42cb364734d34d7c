"""The Slack stand-in's Socket Mode with several connections, through slack_sdk's own Socket Mode client
(aiohttp): each envelope goes to one open connection, in turn; an envelope not acked in time, or whose
connection closes first, is sent again to another connection with `retry_attempt`/`retry_reason`;
closed connections leave the set; `disconnect` makes the SDK open a new connection."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient

from standins.slack import SOCKET_MODE, FakeSlack, SlackUser

ALICE = "U0ALICE"


class App:
    """One SDK connection; it acks what it gets unless `silent`, and keeps what it got."""

    def __init__(self, slack: FakeSlack, *, silent: bool = False) -> None:
        self.slack = slack
        self.silent = silent
        self.requests: list[SocketModeRequest] = []
        self.messages: list[dict[str, Any]] = []
        self.hello = asyncio.Event()
        self.client = SocketModeClient(
            app_token=slack.app_token,
            web_client=AsyncWebClient(token=slack.app_token, base_url=slack.api_url),
            auto_reconnect_enabled=True,
        )
        self.client.socket_mode_request_listeners.append(self._on_request)  # type: ignore[arg-type]
        self.client.message_listeners.append(self._on_message)  # type: ignore[arg-type]

    async def _on_request(self, client: SocketModeClient, request: SocketModeRequest) -> None:
        self.requests.append(request)
        if not self.silent:
            text = f"seen by {id(self)}"
            await client.send_socket_mode_response(
                SocketModeResponse(envelope_id=request.envelope_id, payload={"text": text})
            )

    async def _on_message(self, client: SocketModeClient, message: dict[str, Any], raw: str) -> None:
        self.messages.append(message)
        if message.get("type") == "hello":
            self.hello.set()

    async def connect(self) -> None:
        self.hello.clear()
        await self.client.connect()
        await asyncio.wait_for(self.hello.wait(), 10)

    @property
    def seen(self) -> str:
        return f"seen by {id(self)}"


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    fake = FakeSlack(users=[SlackUser(id=ALICE, name="alice")], ack_timeout=30)
    async with fake.serve():
        yield fake


@contextlib.asynccontextmanager
async def apps(slack: FakeSlack, *silent: bool) -> AsyncIterator[list[App]]:
    made = [App(slack, silent=quiet) for quiet in silent]
    try:
        for app in made:
            await app.connect()
        yield made
    finally:
        for app in made:
            await app.client.close()


async def test_each_envelope_goes_to_one_connection_spread_over_all(slack: FakeSlack) -> None:
    async with apps(slack, False, False, False) as three:
        assert [m["num_connections"] for a in three for m in a.messages if m["type"] == "hello"] == [1, 2, 3]
        replies = [await slack.command(SOCKET_MODE, ALICE, f"help {n}") for n in range(6)]
        home = await slack.open_home(SOCKET_MODE, ALICE)
    assert all(reply.status == 200 for reply in [*replies, home])
    # each command reached exactly one app, and the apps took turns
    texts = [r.payload["text"] for a in three for r in a.requests if r.type == "slash_commands"]
    assert sorted(texts) == [f"help {n}" for n in range(6)]
    assert [len([r for r in a.requests if r.type == "slash_commands"]) for a in three] == [2, 2, 2]
    # the ack of whichever app got it is the answer
    answered_by = collections.Counter(json.loads(reply.body)["text"] for reply in replies)
    assert answered_by == {a.seen: 2 for a in three}
    assert all(d.retry_attempt == 0 and d.acked for d in slack.socket_deliveries)
    # events carry retry_attempt 0 and an empty reason; commands no retry fields on a first sending
    event = next(r for a in three for r in a.requests if r.type == "events_api")
    assert (event.retry_attempt, event.retry_reason) == (0, "")
    assert all(r.retry_attempt is None for a in three for r in a.requests if r.type != "events_api")


async def test_an_envelope_not_acked_in_time_goes_to_another_connection_with_retry_fields(
    slack: FakeSlack,
) -> None:
    slack.ack_timeout = 0.3  # the silent app never acks; nothing waits on the other one
    async with apps(slack, True, False) as (silent, answering):
        replies = [await slack.command(SOCKET_MODE, ALICE, f"whois {n}") for n in range(2)]
    assert [reply.status for reply in replies] == [200, 200]
    assert all(json.loads(reply.body)["text"] == answering.seen for reply in replies)
    # each command went to the silent app in its turn, then to the other one as retry 1 (timeout)
    assert [r.payload["text"] for r in silent.requests] == ["whois 0", "whois 1"]
    assert [(r.retry_attempt, r.retry_reason, r.payload["text"]) for r in answering.requests] == [
        (1, "timeout", "whois 0"),
        (1, "timeout", "whois 1"),
    ]
    assert answering.requests[0].envelope_id != silent.requests[0].envelope_id  # one id per sending
    assert [(d.retry_attempt, d.acked) for d in slack.socket_deliveries] == [(0, False), (1, True)] * 2


async def test_a_closed_connection_is_dropped_and_its_unacked_envelope_sent_again_at_once(
    slack: FakeSlack,
) -> None:
    async with apps(slack, True, False) as (silent, answering):
        first, second = slack.socket_connections
        task = asyncio.ensure_future(slack.command(SOCKET_MODE, ALICE, "whois ada"))
        await slack.wait_for(lambda: slack.socket_unacked(first), 10, "the envelope on the silent app")
        assert not task.done()
        await silent.client.close()  # the app goes away with the envelope unacked
        reply = await task
        assert slack.socket_connections == [second]
    assert reply.status == 200 and json.loads(reply.body)["text"] == answering.seen
    assert [(d.connection, d.retry_attempt, d.retry_reason, d.acked) for d in slack.socket_deliveries] == [
        (first, 0, "", False),
        (second, 1, "connection_failed", True),
    ]
    assert [(r.retry_attempt, r.retry_reason) for r in answering.requests] == [(1, "connection_failed")]


async def test_an_envelope_nobody_acks_is_sent_again_then_fails_like_slack(slack: FakeSlack) -> None:
    slack.ack_timeout, slack.socket_retries = 0.2, 2
    async with apps(slack, True, True) as (one, two):
        reply = await slack.command(SOCKET_MODE, ALICE, "help")
    assert reply.status == 503
    attempts = [(d.retry_attempt, d.retry_reason) for d in slack.socket_deliveries]
    assert attempts == [(0, ""), (1, "timeout"), (2, "timeout")]
    # each re-send went to the other connection
    connections = [d.connection for d in slack.socket_deliveries]
    assert connections[0] != connections[1] and connections[1] != connections[2]
    assert len(one.requests) + len(two.requests) == 3
    assert "dispatch_failed" in slack.responses(ALICE)[-1]["text"]


async def test_disconnect_makes_the_sdk_reconnect_and_new_envelopes_avoid_the_old_connection(
    slack: FakeSlack,
) -> None:
    async with apps(slack, False, False) as (leaving, staying):
        old, other = slack.socket_connections
        await slack.disconnect("refresh_requested", old)
        await slack.wait_for(
            lambda: old not in slack.socket_connections and len(slack.socket_connections) == 2,
            20,
            "the SDK to replace the connection",
        )
        # the SDK handles `disconnect` itself: it asked for a new URL and closed the old connection
        assert len(slack.calls_to("apps.connections.open")) == 3
        replies = [await slack.command(SOCKET_MODE, ALICE, f"help {n}") for n in range(4)]
    assert all(reply.status == 200 for reply in replies)
    used = {d.connection for d in slack.socket_deliveries}
    assert old not in used and other in used and len(used) == 2  # the old one got nothing new
    assert (len(leaving.requests), len(staying.requests)) == (2, 2)  # the SDK's new one took its turns
    with pytest.raises(ValueError, match="refresh_requested"):
        await slack.disconnect("bye")


async def test_a_lost_ack_means_the_envelope_comes_again_on_another_connection(slack: FakeSlack) -> None:
    slack.ack_timeout = 0.3
    async with apps(slack, False, False) as (first, second):
        slack.lost_acks = frozenset({slack.socket_connections[0]})
        reply = await slack.command(SOCKET_MODE, ALICE, "help")
    # the first app got it and acked in vain; the second got it again and its ack answered
    assert [r.payload["text"] for r in first.requests] == ["help"]
    assert [(r.retry_attempt, r.retry_reason, r.payload["text"]) for r in second.requests] == [
        (1, "timeout", "help")
    ]
    assert reply.status == 200 and json.loads(reply.body)["text"] == second.seen
    assert [d.acked for d in slack.socket_deliveries] == [False, True]

"""Slash commands answered exactly once by three `idops serve` replicas (bot/command_log.py) on one
PostgreSQL database or one SQLite file, with the Okta and HomeBase simulators and the Slack stand-in
sending signed requests over HTTP:

- a command Slack sends again (the same payload: trigger_id, response_url) to the other replicas, and a
  command delivered to two replicas at once, are answered once and make one request;
- a replica killed with SIGKILL after its ack, while it reads the provider (a slow Okta read), or after
  it made the request but before its card and answer (the card's post held at the stand-in), is
  answered once, by another replica, with one request and one card;
- a replica stopped (SIGSTOP) after its ack, then woken after another one answered, posts nothing;
- over Socket Mode, the replica that acked a command killed at those two points: answered once too.

Counted where it shows: each command's response_url posts at the stand-in, approval cards, requests and
`slash_commands` rows in the store. Nothing is timed; claims last 3 s, so a take-over takes seconds.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Optional

import aiohttp
from support.alerts import eventually, payload
from support.commands import command_form, deliver
from support.postgres import PgDatabase
from test_replicas import ALICE, APPROVALS, COMMANDS, Cluster, Replica, cluster
from test_replicas_socket_mode import plain_okta_users

from standins.common import Fault
from standins.slack import BotReply
from standins.slack.records import SlackError


def uses(c: Cluster, reply: BotReply) -> int:
    """How often a command was answered on its response_url."""
    return c.slack.response_url_uses(reply.response_url or "")


def requests_for(c: Cluster, target: str) -> list[tuple[Any, ...]]:
    return c.query("SELECT id, trigger_id, message_ts FROM approvals WHERE identity_id = ?", (target,))


def cards_for(c: Cluster, request_id: str) -> int:
    return sum(
        1 for m in c.slack.messages(APPROVALS) if payload(m, "idops_approval").get("request_id") == request_id
    )


def answered_once(c: Cluster, reply: BotReply, target: str) -> str:
    """The command about `target` was answered once, naming its one request, which has one card."""
    assert uses(c, reply) == 1, reply
    ((request_id, trigger_id, ts),) = requests_for(c, target)
    assert trigger_id == reply.trigger_id and ts is not None
    assert cards_for(c, request_id) == 1
    assert any(f"(request {request_id})" in m["text"] for m in c.slack.responses(ALICE))
    return str(request_id)


def slow_okta_read(c: Cluster, user_id: str) -> None:
    """The next read of this Okta user takes 4 s (the connector waits 5): the command is caught there."""
    c.okta.faults.append(Fault("slow", 1, delay=4.0, path=f"/api/v1/users/{user_id}"))


async def command(c: Cluster, replica: Replica, text: str) -> BotReply:
    reply = await c.slack.command(replica.events, ALICE, text, channel_id=COMMANDS)
    assert reply.status == 200 and reply.body == "", reply  # acked; the answer follows
    return reply


async def card_post_held(c: Cluster, then: Callable[[], Awaitable[None]]) -> asyncio.Event:
    """Hold the next approval card posted at the stand-in; once it arrives, run `then` and refuse it
    (the replica that posted it never hears back). Returns the event set when it arrived."""
    real = c.slack._read_params
    arrived = asyncio.Event()

    async def read_params(request: Any) -> tuple[dict[str, Any], Optional[str]]:
        params, token = await real(request)
        if request.match_info.get("method") == "chat.postMessage" and params.get("channel") == APPROVALS:
            c.slack._read_params = real  # type: ignore[method-assign]
            arrived.set()
            await then()
            raise SlackError("fatal_error")
        return params, token

    c.slack._read_params = read_params  # type: ignore[method-assign]
    return arrived


async def run(c: Cluster, seed: int) -> None:
    rng = random.Random(seed)
    users = [c.okta.user(i)["id"] for i in plain_okta_users(c, 6, rng)]
    first, second, third = c.replicas
    replies: dict[str, BotReply] = {}

    async with aiohttp.ClientSession() as http:
        # Slack sends a command again (it missed the ack) to the two other replicas: answered once
        target = users.pop()
        reply = replies[target] = await command(c, first, f"revoke {target}")
        form = command_form(c.slack, reply, ALICE, f"revoke {target}", COMMANDS)
        statuses = await asyncio.gather(
            *(deliver(http, c.slack, r.url + "/slack/events", form, n) for n, r in enumerate(c.replicas))
        )
        assert statuses == [200, 200, 200]
        await eventually(lambda: uses(c, reply) == 1, 30, "the answer")
        # again once it was answered
        assert await deliver(http, c.slack, second.url + "/slack/events", form, 3) == 200
        answered_once(c, reply, target)

        # one command delivered to two replicas at once (a trigger_id and response_url of the stand-in)
        target = users.pop()
        reply = replies[target] = await c.slack.command(first.events, ALICE, "help", channel_id=COMMANDS)
        form = command_form(c.slack, reply, ALICE, f"revoke {target}", COMMANDS)
        at_once = [deliver(http, c.slack, r.url + "/slack/events", form, 0) for r in (second, third)]
        assert await asyncio.gather(*at_once) == [200, 200]
        await eventually(lambda: uses(c, reply) == 1 and requests_for(c, target), 30, "the answer")

    # killed while it reads the provider: another replica's sweep runs the command again, once
    target = users.pop()
    slow_okta_read(c, target)
    reply = replies[target] = await command(c, second, f"revoke {target}")
    await second.kill()
    await eventually(lambda: uses(c, reply) == 1, 60, "another replica to answer the killed one's command")
    assert c.query("SELECT attempts FROM slash_commands WHERE trigger_id = ?", (reply.trigger_id,)) == [(2,)]
    await second.start()

    # killed after it made the request, before its card and its answer: the request is found, not made
    # again, its card posted once and the command answered once, by another replica
    target = users.pop()

    async def kill_it() -> None:
        assert [(t, ts) for _, t, ts in requests_for(c, target)] == [(replies[target].trigger_id, None)]
        await third.kill()

    arrived = await card_post_held(c, kill_it)
    reply = replies[target] = await command(c, third, f"revoke {target}")
    await asyncio.wait_for(arrived.wait(), 60)
    await eventually(lambda: uses(c, reply) == 1, 60, "another replica to answer the killed one's command")
    await third.start()

    # stopped after its ack, woken after another replica answered: it posts nothing
    target = users.pop()
    slow_okta_read(c, target)
    reply = replies[target] = await command(c, first, f"revoke {target}")
    assert first.proc is not None
    os.kill(first.proc.pid, signal.SIGSTOP)
    try:
        await eventually(
            lambda: uses(c, reply) == 1, 60, "another replica to answer the stopped one's command"
        )
    finally:
        os.kill(first.proc.pid, signal.SIGCONT)
    await eventually(
        lambda: "taken over by another replica" in first.log.read_text(errors="replace"),
        60,
        "the woken replica to find its command taken over",
    )

    # every command answered once, with one request and one card; nothing left running
    await eventually(
        lambda: (
            c.query("SELECT status, count(*) FROM slash_commands GROUP BY status")
            == [("answered", len(replies))]
        ),
        30,
        "every command recorded answered",
    )
    for target, reply in replies.items():
        answered_once(c, reply, target)
    assert not c.okta.faults  # each slow read was reached
    assert c.query("SELECT count(*) FROM approvals") == [(len(replies),)]


def acked_by(c: Cluster) -> Replica:
    """The Socket Mode replica whose connection acked the last envelope."""
    last = [d for d in c.slack.socket_deliveries if d.acked][-1]
    return next(r for r in c.replicas if r.connection == last.connection)


async def run_socket_mode(c: Cluster, seed: int) -> None:
    """Over Socket Mode (each command to one connection in turn): the replica that acked a command is
    killed while it reads the provider, then another after making the request but before its card."""
    users = [c.okta.user(i)["id"] for i in plain_okta_users(c, 2, random.Random(seed))]
    replies: dict[str, BotReply] = {}
    target = users.pop()
    slow_okta_read(c, target)
    reply = replies[target] = await command(c, c.replicas[0], f"revoke {target}")
    victim = acked_by(c)
    await victim.kill()
    await eventually(lambda: uses(c, reply) == 1, 60, "another replica to answer the killed one's command")
    await victim.start()

    target = users.pop()
    victims: list[Replica] = []

    async def kill_it() -> None:
        victims.append(acked_by(c))
        await victims[0].kill()

    arrived = await card_post_held(c, kill_it)
    reply = replies[target] = await command(c, c.replicas[0], f"revoke {target}")
    await asyncio.wait_for(arrived.wait(), 60)
    await eventually(lambda: uses(c, reply) == 1, 60, "another replica to answer the killed one's command")
    await victims[0].start()
    for target, reply in replies.items():
        answered_once(c, reply, target)
    assert c.query("SELECT trigger_id, attempts FROM slash_commands ORDER BY created_at") == [
        (reply.trigger_id, 2) for reply in replies.values()
    ]


async def test_three_replicas_answer_each_slash_command_once_through_resends_and_kills(
    tmp_path: Path, server_pg: Optional[PgDatabase]
) -> None:
    async with cluster(tmp_path, trials=2, pg=server_pg) as c:
        await run(c, seed=23)


async def test_three_socket_mode_replicas_answer_a_killed_ones_command_once(
    tmp_path: Path, server_pg: Optional[PgDatabase]
) -> None:
    async with cluster(tmp_path, trials=2, pg=server_pg, socket_mode=True) as c:
        await run_socket_mode(c, seed=29)

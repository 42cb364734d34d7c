"""Three `idops serve --socket-mode` replicas on one store, each with its own Socket Mode connection to
the Slack stand-in, which sends each command and click to one of them in turn and sends an envelope
again to another connection when its connection closes before the ack (as Slack does, see
`standins.slack.socket_mode`).

Commands and concurrent Approve clicks (actions at the Okta simulator) go through the cluster; in some
rounds one replica is stopped (SIGSTOP) so the envelope it is sent stays unacked, then killed
(SIGKILL): that envelope must reach another replica and run there, once. Counted where it shows: the
sendings at the Slack stand-in, each command's response_url answers (one each, a command delivered
twice included), actions at Okta, requests and
`executing` events in the store, and the audit chain, which must verify. Nothing is timed.
"""

from __future__ import annotations

import asyncio
import collections
import os
import random
import signal
from pathlib import Path
from typing import Any

from support.alerts import eventually
from support.postgres import PgDatabase
from test_replicas import ALICE, BOB, CAROL, COMMANDS, Cluster, Replica, cluster

from bot import audit
from standins.slack import BotReply


def plain_okta_users(c: Cluster, count: int, rng: random.Random) -> list[int]:
    """Okta users one approval acts on (active, no admin role, no risk that could hold it back)."""
    users = [
        i
        for i in range(4, c.okta.total)
        if c.okta.status(i) == "ACTIVE" and not c.okta.role_types(i) and c.okta.risk_level(i)[0] == "NONE"
    ]
    assert len(users) >= count, "the Okta simulator has too few plain users for the rounds"
    rng.shuffle(users)
    return users[:count]


def settled(c: Cluster) -> bool:
    return not c.query("SELECT id FROM approvals WHERE status IN ('pending', 'approved', 'executing')")


async def revoke(c: Cluster, user_id: str) -> BotReply:
    return await c.slack.command(c.replicas[0].events, ALICE, f"revoke {user_id}", channel_id=COMMANDS)


async def approve(c: Cluster, user: str, card: dict[str, Any]) -> BotReply:
    return await c.slack.click(c.replicas[0].events, user, card, "approval:approve")


async def kill_round(c: Cluster, victim: Replica, target: str, card: dict[str, Any]) -> list[BotReply]:
    """Stop `victim`, send a command and two concurrent Approve clicks (the stand-in sends one of the
    three to each connection, so one goes to the stopped replica), kill it once that envelope is out,
    and return the three answers (each acked by whichever replica got it in the end)."""
    assert victim.proc is not None
    os.kill(victim.proc.pid, signal.SIGSTOP)
    sent = asyncio.gather(revoke(c, target), approve(c, BOB, card), approve(c, CAROL, card))
    stuck = await c.slack.wait_for(
        lambda: c.slack.socket_unacked(victim.connection), 30, "an envelope on the stopped replica"
    )
    assert [s.retry_attempt for s in stuck] == [0]
    await victim.kill()  # SIGKILL: its connection closes with the envelope unacked
    answers = list(await sent)
    resent = [d for d in c.slack.socket_deliveries if d.envelope == stuck[0].envelope]
    assert [(d.retry_attempt, d.retry_reason, d.acked) for d in resent] == [
        (0, "", False),
        (1, "connection_failed", True),
    ]
    assert resent[1].connection != victim.connection
    await victim.start()
    return answers


async def lost_ack_round(
    c: Cluster, victim: Replica, target: str, card: dict[str, Any]
) -> tuple[list[BotReply], str]:
    """Lose `victim`'s acks: of a command and two concurrent Approve clicks, the one sent to `victim` runs
    there and is acked in vain, so Slack sends it again to another replica after the ack timeout, which
    runs it too. Returns the answers and the kind of the envelope that ran twice."""
    start = len(c.slack.socket_deliveries)
    c.slack.lost_acks, c.slack.ack_timeout = frozenset({victim.connection}), 10.0
    try:
        answers = list(
            await asyncio.gather(revoke(c, target), approve(c, BOB, card), approve(c, CAROL, card))
        )
    finally:
        c.slack.lost_acks, c.slack.ack_timeout = frozenset(), 20.0
    sendings = c.slack.socket_deliveries[start:]
    retried = [d for d in sendings if d.retry_attempt]
    assert [(d.retry_reason, d.acked) for d in retried] == [("timeout", True)]
    first = [d for d in sendings if d.envelope == retried[0].envelope and not d.retry_attempt]
    assert [(d.connection, d.acked) for d in first] == [(victim.connection, False)]
    assert retried[0].connection != victim.connection
    return answers, retried[0].kind


async def run_rounds(c: Cluster, rounds: int, kills: int, lost: int, seed: int) -> None:
    rng = random.Random(seed)
    assert sorted(r.connection for r in c.replicas) == c.slack.socket_connections  # one each
    users = [c.okta.user(i)["id"] for i in plain_okta_users(c, rounds + 2 * kills + 2 * lost, rng)]
    commands: dict[str, BotReply] = {}  # Okta user id -> the answer to `/idops revoke <id>`

    async def card_for(target: str) -> dict[str, Any]:
        rows = await eventually(
            lambda: c.query("SELECT id FROM approvals WHERE identity_id = ?", (target,)),
            30,
            f"the request for {target}",
        )
        return await eventually(lambda: c.card_of(rows[0][0]), 30, f"the card of {rows[0][0]}")

    # commands and concurrent Approve clicks, spread over the three connections
    for _ in range(rounds):
        target = users.pop()
        commands[target] = await revoke(c, target)
        card = await card_for(target)
        await asyncio.gather(approve(c, BOB, card), approve(c, CAROL, card))
        await eventually(lambda: settled(c), 60, "the approval to run")

    # a replica stopped with an envelope on its connection, then killed: the envelope moves on
    for number in range(kills):
        victim = c.replicas[number % len(c.replicas)]
        first, second = users.pop(), users.pop()
        commands[first] = await revoke(c, first)
        card = await card_for(first)
        # its answer first: a replica killed after its ack and before its answer loses the answer
        url = commands[first].response_url or ""
        await eventually(lambda url=url: c.slack.response_url_uses(url), 30, f"the answer about {first}")
        commands[second], *clicks = await kill_round(c, victim, second, card)
        assert [click.status for click in clicks] == [200, 200]
        await approve(c, BOB, await card_for(second))
        await eventually(lambda: settled(c), 60, "the approvals to run")

    # a replica whose acks are lost: what it got runs again on another replica, and nothing runs twice
    twice: set[str] = set()  # commands delivered to two replicas (the first one's ack lost)
    for number in range(lost):
        victim = c.replicas[number % len(c.replicas)]
        first, second = users.pop(), users.pop()
        commands[first] = await revoke(c, first)
        card = await card_for(first)
        (commands[second], *clicks), kind = await lost_ack_round(c, victim, second, card)
        assert [click.status for click in clicks] == [200, 200]
        if kind == "slash_commands":
            twice.add(second)
        await approve(c, BOB, await card_for(second))
        await eventually(lambda: settled(c), 60, "the approvals to run")

    # every envelope acked once; every command answered once, on its response_url
    acked = collections.Counter(d.envelope for d in c.slack.socket_deliveries if d.acked)
    assert set(acked.values()) == {1}
    assert len(acked) == len({d.envelope for d in c.slack.socket_deliveries})
    assert all(reply.status == 200 for reply in commands.values())

    def uses() -> dict[str, int]:
        return {t: c.slack.response_url_uses(reply.response_url or "") for t, reply in commands.items()}

    def statuses() -> dict[str, int]:
        return dict(c.query("SELECT status, count(*) FROM slash_commands GROUP BY status"))

    # every command's answer posted, none left running: nothing more can come (a row is `sending` where
    # a replica was stopped between the post and recording it: never sent again). A command delivered
    # twice ran once (its second delivery found it recorded): one answer each
    await eventually(
        lambda: all(uses().values()) and set(statuses()) <= {"answered", "sending"}, 30, "every answer"
    )
    assert sum(statuses().values()) == len(commands)
    assert uses() == dict.fromkeys(commands, 1)

    # one request per command, each executed once at Okta, one attempt each in the audit trail
    rows = c.query("SELECT id, identity_id, status FROM approvals")
    assert sorted(target for _, target, _ in rows) == sorted(commands)
    assert {status for _, _, status in rows} == {"executed"}
    ran = collections.Counter(user for user, verb in c.okta.actions if verb.startswith("sessions"))
    assert ran == dict.fromkeys(commands, 1)
    executing = collections.Counter(
        row[0] for row in c.query("SELECT request_id FROM audit WHERE event = 'executing'")
    )
    assert executing == collections.Counter(request_id for request_id, _, _ in rows)
    ok, _, said = audit.verify(c.store)
    assert ok, said


async def test_three_socket_mode_replicas_on_postgresql_answer_once_and_survive_a_kill(
    tmp_path: Path, pg_database: PgDatabase
) -> None:
    async with cluster(tmp_path, trials=14, pg=pg_database, socket_mode=True) as c:
        await run_rounds(c, rounds=6, kills=3, lost=3, seed=7)


async def test_three_socket_mode_replicas_on_one_sqlite_file_answer_once_and_survive_a_kill(
    tmp_path: Path,
) -> None:
    async with cluster(tmp_path, trials=14, socket_mode=True) as c:
        await run_rounds(c, rounds=4, kills=3, lost=2, seed=8)

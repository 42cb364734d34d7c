"""PostgreSQL LISTEN/NOTIFY for the alert outbox (bot/store_notify.py): two senders (replicas) on one
database of the throwaway cluster, the Slack stand-in over loopback, polls an hour apart so only a
notification can wake a sender. A row queued on the replica that does not hold its channel's claim is
delivered at once, in order, by the holder; a listener whose connection is terminated listens again and
still wakes. Arrival and order are read from the senders' hooks and the stand-in, never from timing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from slack_sdk.web.async_client import AsyncWebClient
from support.alerts import eventually
from support.postgres import PgDatabase

from bot.alerts.base import queue
from bot.alerts.sender import Sender
from bot.blocks import text_message
from bot.claims import Claims
from bot.store import Store, open_store
from standins.slack import FakeSlack

CHANNEL = "C0ALERTS"
HOUR = 3600.0


class Replica:
    def __init__(self, name: str, db: Store, client: AsyncWebClient, events: asyncio.Queue[Any]) -> None:
        self.name = name
        self.db = db
        self.claims = Claims(db, ttl=30, holder=name)
        self.sender = Sender(
            db,
            client,
            interval=0.01,
            poll=HOUR,
            claims=self.claims,
            hook=lambda point, row: events.put_nowait((point, self.name, row["id"])),
        )
        self.sender.relisten = 0.05

    def queue(self, *texts: str) -> list[int]:
        """Queue notices on this replica, as the detector does: one transaction, then an in-process wake."""
        with self.db.transaction():
            for text in texts:
                queue(self.db, "notice", CHANNEL, None, {"message": text_message(text)}, time.time())
            ids = [
                row[0]
                for row in self.db.execute(
                    "SELECT id FROM alert_outbox ORDER BY id DESC LIMIT ?", [len(texts)]
                )
            ]
        self.sender.notify()
        return sorted(ids)


@pytest.fixture
async def pair(
    pg_database: PgDatabase,
) -> AsyncIterator[tuple[Replica, Replica, FakeSlack, asyncio.Queue[Any]]]:
    slack = FakeSlack(channels={CHANNEL: "alerts"})
    events: asyncio.Queue[Any] = asyncio.Queue()
    async with slack.serve():
        # a call never outlasts a third of the 30 s lease (as the server's client)
        client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url, retry_handlers=[], timeout=10)
        replicas = [Replica(name, open_store(pg_database.url), client, events) for name in ("a", "b")]
        for replica in replicas:
            replica.sender.start()
        try:
            for replica in replicas:
                await asyncio.wait_for(replica.sender.listening.wait(), 30)
            yield replicas[0], replicas[1], slack, events
        finally:
            for replica in replicas:
                await replica.sender.stop()
                replica.db.close()


async def delivered(events: asyncio.Queue[Any], count: int) -> list[tuple[str, str, int]]:
    """The next `count` posts, as the senders' hooks report them (claims are skipped)."""
    posts: list[tuple[str, str, int]] = []
    while len(posts) < count:
        event = await asyncio.wait_for(events.get(), 30)  # a failure bound: the polls are an hour apart
        if event[0] == "posted":
            posts.append(event)
    return posts


def texts(slack: FakeSlack) -> list[str]:
    return [message["text"] for message in slack.messages(CHANNEL)]


async def test_a_row_queued_on_the_replica_without_the_channel_is_sent_at_once_by_the_holder(
    pair: Any,
) -> None:
    a, b, slack, events = pair
    assert a.claims.take(f"outbox:{CHANNEL}") is not None  # a holds the channel; nothing waits there yet
    ids = b.queue("first", "second", "third")  # b can't take the channel: only a notification wakes a
    posts = await delivered(events, 3)
    assert posts == [("posted", "a", row_id) for row_id in ids]  # the holder, in order
    assert texts(slack) == ["first", "second", "third"]
    statuses = {row["id"]: row["status"] for row in a.db.query("SELECT id, status FROM alert_outbox")}
    assert statuses == {row_id: "sent" for row_id in ids}

    # a drained the channel and let it go: the next row is b's own (woken in-process), still at once
    await eventually(lambda: not a.claims.holds(f"outbox:{CHANNEL}"), 10, "a to release the channel")
    (fourth,) = b.queue("fourth")
    assert await delivered(events, 1) == [("posted", "b", fourth)]
    assert texts(slack)[-1] == "fourth"


async def test_a_listener_whose_connection_is_terminated_listens_again(
    pair: Any, pg_database: PgDatabase
) -> None:
    a, b, slack, events = pair
    with pg_database.connect() as admin:
        killed = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s"
            " AND query LIKE 'LISTEN%%'",
            [pg_database.name],
        ).fetchall()
    assert len(killed) == 2  # each replica's listener
    await eventually(lambda: not a.sender.listening.is_set(), 10, "a to notice its listener is gone")
    await asyncio.wait_for(a.sender.listening.wait(), 30)  # and listen again
    await asyncio.wait_for(b.sender.listening.wait(), 30)
    assert a.claims.take(f"outbox:{CHANNEL}") is not None
    ids = b.queue("after the reconnect")
    assert await delivered(events, 1) == [("posted", "a", ids[0])]
    assert texts(slack) == ["after the reconnect"]

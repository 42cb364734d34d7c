"""PostgreSQL LISTEN/NOTIFY over the store: a replica wakes at once when another one queued work for it.

- `notify(db, channel, payload)` inside the write transaction that queues the work: `pg_notify`, which
  PostgreSQL delivers to every listener when the transaction commits (never when it rolls back; equal
  notifications of one transaction are delivered once). On SQLite it does nothing: one file has no
  other process to wake, and replicas on SQLite keep polling.
- `listen(db, channel, on_note, ready)` runs until cancelled on a connection of its own (psycopg's async
  connection, autocommit: the store's connection is synchronous and taken by statements), calling
  `on_note(payload)` for each notification and setting `ready` once it listens (the caller clears it). A
  lost connection ends it with the driver's error (the caller listens again after a pause; its poll
  still runs meanwhile).

A notification only wakes: the rows in the store stay the truth, read under their claims as before, so a
lost or extra notification changes when work is seen, never what is done.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql

from .store import Store


def notify(db: Store, channel: str, payload: str) -> None:
    """Wake the replicas listening on `channel` when the caller's transaction commits (PostgreSQL)."""
    if db.backend == "postgresql":
        db.execute("SELECT pg_notify(?, ?)", [channel, payload])


async def listen(db: Store, channel: str, on_note: Callable[[str], Any], ready: asyncio.Event) -> None:
    """Call `on_note(payload)` for every notification on `channel` until cancelled (PostgreSQL only)."""
    args = db.engine.url.translate_connect_args(database="dbname", username="user")
    conn = await psycopg.AsyncConnection.connect(autocommit=True, connect_timeout=10, **args)
    try:
        await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        ready.set()
        async for note in conn.notifies():
            on_note(note.payload)
    finally:
        await conn.close()

"""The SQLite store holds the audit trail, identities' details and slash commands' response URLs (each
lets whoever holds it answer in Slack as idops for 30 minutes): `idops serve` makes a new one readable by
its owner only, and says once in the log when an existing one is open to other users."""

from __future__ import annotations

import logging
import os
import stat

from support.bot import REQUESTER, harness


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


async def test_a_new_store_is_readable_by_its_owner_only(tmp_path, logged):
    old = os.umask(0o022)  # the usual umask, which made it 0644
    try:
        async with harness(tmp_path) as h:
            await h.command(REQUESTER, "help")
            store = tmp_path / "idops.db"
            assert mode(store) == 0o600
            assert all(mode(f) == 0o600 for f in tmp_path.glob("idops.db-*")), "its -wal and -shm too"
    finally:
        os.umask(old)
    assert [r for r in logged.records if r.name == "bot.store" and r.levelno >= logging.WARNING] == []


async def test_an_existing_store_others_can_read_is_said_in_the_log(tmp_path, logged):
    store = tmp_path / "idops.db"
    store.touch()
    store.chmod(0o644)
    async with harness(tmp_path) as h:
        await h.command(REQUESTER, "help")
    (warning,) = [r.getMessage() for r in logged.records if r.name == "bot.store"]
    assert warning == (
        f"the store {store} can be read or written by other users (mode 0644): it holds the audit trail"
        " and identities' details; chmod 600 it"
    )
    assert mode(store) == 0o644  # said, not changed behind the operator's back

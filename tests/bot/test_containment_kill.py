"""Kill -9 while a due revert is in flight, then restart: a separate process on the bot's store (SQLite,
then PostgreSQL) sweeps a due containment and is killed with SIGKILL while Okta is still working on the
unsuspend (Okta carries it out anyway); a restarted bot on the same store settles it (read back: done,
not sent again), reports it once in the card's thread, and a second sweep sends nothing. Run as a
script, this file is that separate process."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Optional

import pytest
from support.approvals import Clock, MemoryDirectory, make_service, open_store
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

import connectors
from bot.approvals import State, Status
from bot.extension import BOT
from standins.okta_data import OktaState

TESTS = Path(__file__).resolve().parents[1]


async def _sweep_when_told(store_url: str, okta_url: str, now: str) -> str:
    """The process that dies: say "ready", wait for "go", then run the due sweep at clock `now`."""

    connector = connectors.build(
        "okta", "okta", {"base_url": okta_url, "api_token": OKTA_TOKEN, "timeout": 30}
    )
    async with connector:
        db = open_store(store_url)
        service = make_service(
            db, {"okta": connector}, MemoryDirectory({}), Clock(datetime.fromisoformat(now))
        )
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        changed = await service.revert_due()
        db.close()
        return ",".join(changed)


if __name__ == "__main__":  # the process that dies (PYTHONPATH: tests/ and the repo root)
    print(asyncio.run(_sweep_when_told(*sys.argv[1:4])), flush=True)


@pytest.fixture
async def ok(tmp_path, server_pg: Optional[PgDatabase]) -> AsyncIterator[BotHarness]:
    """On SQLite, then on PostgreSQL (`server_pg`)."""
    async with okta_bot(tmp_path, **pg_store(server_pg)) as built:
        yield built


async def test_killed_while_a_revert_is_in_flight_reverts_exactly_once(
    ok: BotHarness, tmp_path, server_pg: Optional[PgDatabase]
) -> None:
    state: OktaState = ok.extra["okta"]
    index = next(
        i
        for i in range(4, state.total)
        if state.status(i) == "ACTIVE" and not state.role_types(i) and state.risk_level(i)[0] == "NONE"
    )
    user_id, email = state.user(index)["id"], state.user(index)["profile"]["email"]
    await ok.command(REQUESTER, f"disable {email} for 1h stolen laptop")
    card = ok.card()
    request_id = card["metadata"]["event_payload"]["request_id"]
    await ok.click(APPROVER, card, "approval:approve")
    assert state.status(index) == "SUSPENDED"
    service = ok.bot.service
    item = service.containment(request_id)
    assert item is not None and item.status is State.ACTIVE

    # another process sweeps at a time past due; Okta is slow to answer its unsuspend; it dies
    async with ok.http.post(
        f"{ok.extra['okta_url']}/_admin/faults",
        json={
            "kind": "slow",
            "delay": 3.0,
            "count": 1,
            "path": f"/api/v1/users/{user_id}/lifecycle/unsuspend",
        },
    ) as answer:
        assert answer.status < 300, await answer.text()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        store_of(tmp_path, server_pg),
        ok.extra["okta_url"],
        (item.due_at + timedelta(minutes=1)).isoformat(),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(TESTS.parent)])},
    )
    assert proc.stdout is not None and proc.stdin is not None
    try:
        async with asyncio.timeout(120):  # a Python start-up and its imports, slow on a loaded machine
            ready = await proc.stdout.readline()
        assert ready == b"ready\n", f"the sweeping process said {ready!r}, not ready"
        proc.stdin.write(b"go\n")
        # kill it once its unsuspend is in Okta's hands: the simulator has taken the slow fault (the
        # request arrived). Not when the store says EXECUTING: that is written before the request is
        # sent, and a process killed in between never reaches Okta. The simulator runs in this event
        # loop, so this 20-ms poll always comes before its 3-s answer.
        await until(lambda: not state.faults, what="Okta received the sweeping process's unsuspend")
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.returncode is None:
            proc.kill()
        await asyncio.wait_for(proc.wait(), timeout=30)
    item = service.containment(request_id)
    assert item is not None and item.status is State.REVERTING and item.revert_id
    revert_id = item.revert_id
    assert service.get(revert_id).status is Status.EXECUTING  # cut off with the request in flight
    assert proc.returncode == -signal.SIGKILL
    await until(lambda: state.status(index) == "ACTIVE")  # Okta did it after the process died
    assert state.actions.count((user_id, "unsuspend")) == 1

    # restart on the same store, its clock past due: start-up settles the cut-off revert by reading
    # Okta, the sweep carries it to the containment and tells the thread, once; nothing is sent again
    ok.clock.advance(hours=2)
    async with second_server(ok, {"TEST_OKTA_TOKEN": OKTA_TOKEN}) as app:
        await until(lambda: service.containment(request_id).status is State.REVERTED)  # type: ignore[union-attr]
        await until(lambda: len(ok.card()["replies"]) == 2)
        await sweeps(app[BOT])  # several more sweeps
    revert = service.get(revert_id)
    assert revert.status is Status.EXECUTED and "not sent again" in (revert.result or {})["message"]
    assert state.actions.count((user_id, "unsuspend")) == 1
    assert len(ok.card()["replies"]) == 2 and "Revert of the containment" in ok.card()["replies"][-1]["text"]
    assert len(service.db.execute("SELECT id FROM approvals WHERE source = 'containment'").fetchall()) == 1

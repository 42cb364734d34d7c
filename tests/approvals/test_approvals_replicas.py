"""Execution across replicas (bot/claims.py): each execution holds `execute:<request id>` while it runs, so
another replica's sweeps leave a live execution alone and give up (UNKNOWN, read back, never re-sent)
only one whose replica stopped; a request approved on a replica that stopped before running it is run
by the sweep, once. Replicas are services with their own connections to one SQLite file and their own
claims (holder, clock); the HomeBase simulator's action log is the witness."""

from __future__ import annotations

import asyncio
from typing import Any

from support.alerts import eventually
from support.approvals import APPROVERS, REQUESTER, MemoryDirectory, make_service, open_store

from bot.approvals import ApprovalService, Decision, Status
from bot.claims import Claims
from connectors import Action


class Seconds:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def replica(h: Any, name: str, clock: Seconds) -> ApprovalService:
    db = open_store(h.db_path)
    service = make_service(db, {"homebase": h.connector}, h.directory, h.clock)
    service.claims = Claims(db, ttl=30, holder=name, clock=clock)
    return service


async def approved(h: Any, service: ApprovalService) -> str:
    request = await service.request(
        connector="homebase",
        identity_id=h.people["plain"]["id"],
        action=Action.REVOKE_SESSIONS,
        reason="phished",
        requested_by=REQUESTER,
    )
    decided = await service.decide(request.id, user_id=APPROVERS[0], decision=Decision.APPROVE)
    assert decided.status is Status.APPROVED
    return request.id


def revokes(h: Any) -> int:
    return sum(1 for action in h.sim.actions if action["action"] == "revoke_sessions")


async def test_a_live_replicas_execution_is_left_alone_and_given_up_once_its_claim_lapses(h) -> None:
    b_clock, c_clock = Seconds(), Seconds()
    b, c = replica(h, "b", b_clock), replica(h, "c", c_clock)
    request_id = await approved(h, b)
    await h.fault(kind="slow", delay=1.5, count=1, method="POST")
    running = asyncio.create_task(b.execute(request_id))
    await eventually(lambda: b.get(request_id).status is Status.EXECUTING, 10, "the execution to start")
    assert b.claims is not None and b.claims.names() == [f"execute:{request_id}"]

    # c's sweeps (start-up and periodic) leave it alone while b's claim lives
    assert [r.id for r in await c.recover()] == []
    assert c.expire_due() == []
    assert c.get(request_id).status is Status.EXECUTING

    # b stops renewing (a dead replica, as c's clock sees it): c gives the execution up as UNKNOWN
    c_clock.now += 31
    (given_up,) = c.expire_due()
    assert given_up.id == request_id and given_up.status is Status.UNKNOWN
    # b was alive after all: its real answer wins, and the action ran once
    done = await running
    assert done.status is Status.EXECUTED
    assert revokes(h) == 1
    assert b.claims.names() == []  # released when the execution ended


async def test_a_request_approved_on_a_replica_that_stopped_is_run_once_by_the_sweep(h) -> None:
    clock = Seconds()
    a = replica(h, "a", clock)
    request_id = await approved(h, a)  # a approved it and stopped before running it
    b, c = replica(h, "b", clock), replica(h, "c", clock)
    assert b.stranded() == []  # just approved: a may be about to run it
    h.clock.advance(seconds=31)
    assert b.stranded() == [request_id] and c.stranded() == [request_id]
    results = await asyncio.gather(b.execute(request_id), c.execute(request_id))
    # one ran it; the other got the state back (still executing then) and ran nothing
    assert sorted(r.status.value for r in results) == ["executed", "executing"]
    assert b.get(request_id).status is Status.EXECUTED
    assert revokes(h) == 1
    assert b.stranded() == []
    single = make_service(open_store(h.db_path), {"homebase": h.connector}, MemoryDirectory({}), h.clock)
    assert single.stranded() == []  # one process without claims: `recover` at start-up does it

"""Claims (bot/claims.py): leases in the store, each change a compare-and-set. Two replicas are two
`Claims` over two connections to one real store, on one fake clock; each test runs on SQLite and on
PostgreSQL (the throwaway cluster)."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from bot import audit, claims
from bot.claims import Claims, LostClaim
from bot.store import open_store


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(store_url: str) -> Iterator[Any]:
    """Opens connections to one store (each replica its own), on each backend."""
    opened: list[Any] = []

    def connect() -> Any:
        db = open_store(store_url)
        opened.append(db)
        return db

    yield connect
    for db in opened:
        db.close()


def replica(store: Any, clock: Clock, name: str, ttl: float = 30.0) -> Claims:
    return Claims(store(), ttl=ttl, holder=name, clock=clock)


def test_one_holder_at_a_time_and_a_take_over_after_expiry_raises_the_fence(store: Any) -> None:
    clock = Clock()
    a, b = replica(store, clock, "a"), replica(store, clock, "b")
    first = a.take("sweep:homebase")
    assert first is not None and first.fence == 1 and first.fresh
    assert b.take("sweep:homebase") is None  # held and live
    again = a.take("sweep:homebase")  # a renewal, not a new holding
    assert again is not None and again.fence == 1 and not again.fresh

    clock.now += 29
    assert a.renew("sweep:homebase") is not None  # renewed in time: still a's
    clock.now += 29
    assert b.take("sweep:homebase") is None
    clock.now += 2  # a stopped renewing: its lease ran out
    taken = b.take("sweep:homebase")
    assert taken is not None and taken.fence == 2 and taken.fresh
    assert b.names() == ["sweep:homebase"]

    # a wakes up: its renew fails, and so does any write it fences
    assert a.renew("sweep:homebase") is None
    assert a.names() == [] and not a.holds("sweep:homebase")
    assert a.take("sweep:homebase") is None  # b's now


def test_release_lets_another_replica_take_at_once(store: Any) -> None:
    clock = Clock()
    a, b = replica(store, clock, "a"), replica(store, clock, "b")
    assert a.take("expiry") is not None
    a.release("expiry")
    taken = b.take("expiry")
    assert taken is not None and taken.fence == 2
    a.release("expiry")  # not a's: changes nothing
    assert b.renew("expiry") is not None


async def test_a_stale_holder_writes_nothing_and_its_work_is_cancelled(store: Any) -> None:
    clock = Clock()
    a, b = replica(store, clock, "a"), replica(store, clock, "b")
    a.db.execute("CREATE TABLE work (what TEXT)")
    assert a.take("outbox:C1") is not None

    started = asyncio.Event()

    async def long_work() -> None:
        started.set()
        await asyncio.sleep(60)

    task = asyncio.create_task(long_work())
    a.attach("outbox:C1", task)
    await started.wait()

    def write(db: Any, what: str) -> None:
        with claims.working_under(a, "outbox:C1"), audit.transaction(db):
            db.execute("INSERT INTO work (what) VALUES (?)", [what])
            claims.check(db)

    write(a.db, "while held")
    clock.now += 31
    assert b.take("outbox:C1") is not None  # b took over while a stalled
    with pytest.raises(LostClaim):
        write(a.db, "after the take-over")  # fenced: rolled back
    assert [row[0] for row in a.db.execute("SELECT what FROM work").fetchall()] == ["while held"]

    assert a.renew("outbox:C1") is None  # the keeper's renew finds it lost: the work stops
    with pytest.raises(asyncio.CancelledError):
        await task
    claims.check(a.db)  # outside any claimed work: nothing to fence


def test_replicas_racing_for_one_claim_get_one_holder(store: Any) -> None:
    clock = Clock()
    racers = [replica(store, clock, f"r{n}") for n in range(8)]
    won: list[str] = []
    gate = threading.Barrier(len(racers))

    def race(claims_: Claims) -> None:
        gate.wait()
        if claims_.take("sweep:sp") is not None:
            won.append(claims_.holder)

    threads = [threading.Thread(target=race, args=(r,)) for r in racers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(won) == 1


class FailingStore:
    """A store whose server went away: every statement fails, until it comes back."""

    def __init__(self, db: Any) -> None:
        self.db = db
        self.down = False

    def execute(self, *args: Any) -> Any:
        if self.down:
            raise ConnectionError("server closed the connection unexpectedly")
        return self.db.execute(*args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.db, name)


async def test_a_replica_that_loses_the_store_stops_claiming_and_says_so_once(
    store: Any, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    flaky = FailingStore(store())
    a = Claims(flaky, ttl=0.3, holder="a", clock=clock)
    assert a.take("sweep:homebase") is not None
    task = asyncio.create_task(asyncio.sleep(60))
    a.attach("sweep:homebase", task)

    flaky.down = True
    caplog.set_level(logging.INFO, logger="bot.claims")
    assert a.take("sweep:sp") is None
    assert a.renew("sweep:homebase") is None
    assert a.take("expiry") is None
    health = a.health()
    assert health["ok"] is False and health["claiming"] is False and health["claims"] == []
    assert "server closed the connection" in health["error"]
    with pytest.raises(asyncio.CancelledError):
        await task
    said = [r.getMessage() for r in caplog.records if "does not answer" in r.getMessage()]
    assert len(said) == 1 and "stops claiming work" in said[0]

    # the store answers again: the keeper notices, says so once, and claiming resumes
    flaky.down = False
    keeper = asyncio.create_task(a.run())
    try:
        for _ in range(100):
            if a.store_ok:
                break
            await asyncio.sleep(0.02)
    finally:
        keeper.cancel()
    assert a.health()["ok"] is True
    assert [r for r in caplog.records if "answers again" in r.getMessage()]
    clock.now += 31
    assert a.take("sweep:homebase") is not None

"""Claims: named leases in the store, so that work which must run once runs on one replica at a time.

A claim is one row of `claims` (made by the store's migration `0002_claims`): `name` (what the work is,
e.g. `sweep:homebase`, `outbox:C0ALERTS`, `expiry`), `holder` (the replica: host:pid:random, new at
every start), `until` (epoch seconds the lease lasts) and `fence`, a number that grows by one on every
take-over. Every change is one compare-and-set statement, so two replicas racing for a claim never both
get it:

- take: insert the row, or take it over when its lease ran out (or it is this replica's own), fence + 1;
- renew: push `until` on while the row still names this holder and fence;
- release: end the lease at once (same condition), so another replica may take it without waiting.

A holder renews what it holds every third of a lease (`run`, one task per replica). When a renew finds
the claim taken over, or the store does not answer, the work attached to it is cancelled (`attach`),
and a replica whose store fails stops claiming anything until it answers again (said once in the log,
and in /healthz). Work that writes under a claim checks its fence inside its write transaction
(`check`, through the claim the running task works under, `working_under`): a holder paused past its
lease (a stopped process, a long stall) that wakes up after a take-over gets `LostClaim` and its
transaction rolls back, so a stale holder never writes. `LostClaim` is a BaseException, like
asyncio's CancelledError, because it ends the work: no `except Exception` in between swallows it.

Times are this process's wall clock (time.time): replicas must keep their clocks in step (NTP); a
skew shortens or lengthens a lease by that much, and fencing still rejects a stale holder's writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any, Optional

from . import audit

log = logging.getLogger(__name__)

DEFAULT_TTL = 30.0

_TAKE = (
    "INSERT INTO claims (name, holder, until, fence, taken_at) VALUES (?, ?, ?, 1, ?)"
    " ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until,"
    " fence = claims.fence + 1, taken_at = excluded.taken_at"
    " WHERE claims.until < ? OR claims.holder = excluded.holder"
    " RETURNING fence"
)
_RENEW = "UPDATE claims SET until = ? WHERE name = ? AND holder = ? AND fence = ?"
_RELEASE = "UPDATE claims SET until = 0 WHERE name = ? AND holder = ? AND fence = ?"
_HOLDS = "SELECT 1 FROM claims WHERE name = ? AND holder = ? AND fence = ?"


class LostClaim(BaseException):
    """The claim the work runs under was taken over (or can't be checked): stop, write nothing."""


@dataclass(frozen=True)
class Lease:
    """A claim as this replica holds it; `fresh` when this take started a new holding (a take-over
    or a first take), not a renewal."""

    name: str
    holder: str
    fence: int
    until: float
    fresh: bool = False


_WORKING_UNDER: contextvars.ContextVar[Optional[tuple[Claims, str]]] = contextvars.ContextVar("idops_claim")


def new_holder() -> str:
    """This replica's holder id: host, pid and a random part (a restarted process is a new holder)."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{secrets.token_hex(4)}"


def check(db: Any) -> None:
    """Inside a write transaction: LostClaim unless the claim the running task works under (if any)
    is still this replica's, with the fence it took it with."""
    current = _WORKING_UNDER.get(None)
    if current is None:
        return
    claims, name = current
    lease = claims.held.get(name)
    if lease is None or db.execute(_HOLDS, [name, lease.holder, lease.fence]).fetchone() is None:
        raise LostClaim(name)


@contextlib.contextmanager
def working_under(claims: Claims, name: str) -> Iterator[None]:
    """Mark the running task's work as done under `name`: `check` then fences its writes."""
    token = _WORKING_UNDER.set((claims, name))
    try:
        yield
    finally:
        _WORKING_UNDER.reset(token)


class Claims:
    """This replica's claims over one store: take, renew, release, and the keeper task (`run`)."""

    def __init__(
        self,
        db: Any,
        *,
        ttl: float = DEFAULT_TTL,
        holder: Optional[str] = None,
        clock: Callable[[], float] = time.time,
        backend: Optional[str] = None,
    ) -> None:
        self.db = db
        self.ttl = float(ttl)
        self.holder = holder or new_holder()
        self.clock = clock
        self.backend = backend or str(getattr(db, "backend", "sqlite"))
        self.held: dict[str, Lease] = {}
        self.store_ok = True
        self.store_error: Optional[str] = None
        self._work: dict[str, set[asyncio.Task[Any]]] = {}

    # --- the three statements -----------------------------------------------------------------

    def take(self, name: str) -> Optional[Lease]:
        """Hold `name` (renewing it when already held); None when another replica holds it, or the
        store does not answer (then nothing is claimed until it does)."""
        held = self.held.get(name)
        if held is not None:
            return self.renew(name)
        now = self.clock()
        try:
            with audit.transaction(self.db):
                rows = self.db.execute(_TAKE, [name, self.holder, now + self.ttl, now, now]).fetchall()
        except Exception as exc:  # any store failure: unreachable, locked for too long, broken
            self._store_failed(exc)
            return None
        self._store_answered()
        if not rows:
            return None
        lease = Lease(name, self.holder, int(rows[0][0]), now + self.ttl, fresh=True)
        self.held[name] = lease
        return lease

    def renew(self, name: str) -> Optional[Lease]:
        """Push the lease on; None (and the work attached to it cancelled) when it was taken over."""
        lease = self.held.get(name)
        if lease is None:
            return None
        now = self.clock()
        try:
            renewed = self.db.execute(_RENEW, [now + self.ttl, name, lease.holder, lease.fence]).rowcount
        except Exception as exc:  # any store failure: stop the work, claim nothing until it answers
            self._store_failed(exc)
            return None
        self._store_answered()
        if renewed != 1:
            log.warning("claim %s was taken over by another replica; its work here stops", name)
            self._drop(name)
            return None
        lease = self.held[name] = replace(lease, until=now + self.ttl, fresh=False)
        return lease

    def release(self, name: str) -> None:
        """Give `name` up now (its work done or stopping), so another replica needn't wait for expiry."""
        lease = self.held.get(name)
        self._drop(name)
        if lease is None:
            return
        try:
            self.db.execute(_RELEASE, [name, lease.holder, lease.fence])
        except Exception as exc:  # the lease then simply runs out
            self._store_failed(exc)

    def release_all(self) -> None:
        for name in list(self.held):
            self.release(name)

    # --- state --------------------------------------------------------------------------------

    def holds(self, name: str) -> bool:
        """Whether this replica believes it holds `name` with time left on the lease."""
        lease = self.held.get(name)
        return lease is not None and lease.until > self.clock()

    def remaining(self, name: str) -> float:
        """Seconds left on this replica's lease of `name` (0 when not held)."""
        lease = self.held.get(name)
        return max(0.0, lease.until - self.clock()) if lease is not None else 0.0

    def names(self, prefix: str = "") -> list[str]:
        return sorted(name for name in self.held if name.startswith(prefix) and self.holds(name))

    def attach(self, name: str, task: asyncio.Task[Any]) -> None:
        """Cancel `task` if `name` is lost (taken over, or the store fails) while it runs."""
        tasks = self._work.setdefault(name, set())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def detach(self, name: str, task: asyncio.Task[Any]) -> None:
        """`task` no longer works under `name` (it goes on with something else)."""
        self._work.get(name, set()).discard(task)

    def health(self) -> dict[str, Any]:
        """The replica's part of /healthz: its id, whether the store answers, and what it holds."""
        body: dict[str, Any] = {"ok": self.store_ok, "id": self.holder, "claims": self.names()}
        if not self.store_ok:
            body["error"] = self.store_error
            body["claiming"] = False
        return body

    # --- the keeper -----------------------------------------------------------------------------

    async def run(self) -> None:
        """Renew every held claim each third of a lease, until cancelled; while the store fails, try
        it at that pace and say once when it answers again."""
        while True:
            await asyncio.sleep(self.ttl / 3)
            if not self.store_ok:
                try:
                    self.db.execute("SELECT count(*) FROM claims").fetchall()
                except Exception as exc:  # still down: the next round tries again
                    self.store_error = f"{type(exc).__name__}: {str(exc)[:200]}"
                    continue
                self._store_answered()
            for name in list(self.held):
                self.renew(name)

    def _drop(self, name: str) -> None:
        self.held.pop(name, None)
        for task in list(self._work.pop(name, ())):
            task.cancel()

    def _store_failed(self, exc: BaseException) -> None:
        problem = f"{type(exc).__name__}: {str(exc)[:200]}"
        if self.store_ok:
            log.error(
                "the store does not answer (%s): this replica stops claiming work (holding %d claims,"
                " now dropped) until it does",
                problem,
                len(self.held),
            )
        self.store_ok, self.store_error = False, problem
        for name in list(self.held):
            self._drop(name)

    def _store_answered(self) -> None:
        if not self.store_ok:
            log.info("the store answers again: this replica claims work again")
        self.store_ok, self.store_error = True, None

"""Shared set-up for the approvals, audit and API tests: the HomeBase simulator on loopback, a real
HomeBase connector pointed at it, a SQLite file, and an ApprovalService over them."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Optional

import aiohttp

import connectors
from bot import store
from bot.approvals import ApprovalService
from bot.config import AccessSettings, ApprovalSettings
from bot.store import Store, open_db
from standins import homebase, serving

API_KEY = "hld_test_simulator"
T0 = datetime(2026, 11, 1, 9, 0, tzinfo=timezone.utc)

REQUESTER = "U0REQ"
APPROVERS = ("U0APPA", "U0APPB", "U0APPC")
OUTSIDER = "U0NOBODY"
TARGET_USER = "U0TARGET"
GROUP_RESPONDER = "U0GRPRESP"
GROUP_APPROVER = "U0GRPAPPR"


class MemoryDirectory:
    """Slack user groups and emails as plain data, for service-level tests (bot/directory.py is the
    Slack-backed one)."""

    def __init__(self, groups: dict[str, Iterable[str]], emails: Optional[dict[str, str]] = None) -> None:
        self.groups = {gid: frozenset(members) for gid, members in groups.items()}
        self.emails = {k.lower(): v for k, v in (emails or {}).items()}

    async def group_members(self, group_id: str) -> frozenset[str]:
        return self.groups.get(group_id, frozenset())

    async def user_id_for_email(self, email: str) -> Optional[str]:
        return self.emails.get(email.lower())


class Clock:
    """An injectable clock that only moves when a test moves it."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class Harness:
    service: ApprovalService
    sim: homebase.HomeBaseState
    sim_url: str
    db: Store
    db_path: str
    directory: MemoryDirectory
    clock: Clock
    connector: connectors.Connector
    http: aiohttp.ClientSession
    people: dict[str, dict[str, Any]] = field(default_factory=dict)

    async def fault(self, **fault: Any) -> None:
        """Inject a fault through the simulator's admin API."""
        async with self.http.post(f"{self.sim_url}/_admin/faults", json=fault) as response:
            assert response.status == 201, await response.text()

    async def actions(self) -> list[dict[str, Any]]:
        """Actions the simulator performed, read over its admin API."""
        async with self.http.get(f"{self.sim_url}/_admin/actions") as response:
            return list((await response.json())["data"])

    def audit_events(self, request_id: str) -> list[str]:
        return [
            r["event"]
            for r in self.db.query("SELECT event FROM audit WHERE request_id = ? ORDER BY id", [request_id])
        ]


def pick_people(state: homebase.HomeBaseState) -> dict[str, dict[str, Any]]:
    """One plain and one privileged active identity from the simulator, plus a spare of each kind."""
    plain: list[dict[str, Any]] = []
    privileged: list[dict[str, Any]] = []
    for index in range(state.size):
        record = state.record(index)
        if record["status"] != "active":
            continue
        (privileged if record["privileged"] else plain).append(record)
    return {"plain": plain[0], "plain2": plain[1], "privileged": privileged[0], "privileged2": privileged[1]}


def make_service(
    db: Store,
    connector_map: dict[str, connectors.Connector],
    directory: MemoryDirectory,
    clock: Clock,
    *,
    responders: Optional[list[str]] = None,
    approvers: Optional[list[str]] = None,
    privileged_approvals: int = 2,
    action_timeout: float = 10.0,
) -> ApprovalService:
    return ApprovalService(
        db,
        connectors=connector_map,
        access=AccessSettings(
            responders=[REQUESTER, "S0RESPONDERS"] if responders is None else responders,
            approvers=[*APPROVERS, REQUESTER, TARGET_USER, "S0APPROVERS"] if approvers is None else approvers,
        ),
        approvals=ApprovalSettings(expire_minutes=30, privileged_approvals=privileged_approvals),
        directory=directory,
        clock=clock,
        action_timeout=action_timeout,
    )


def connector_for(url: str, **settings: Any) -> connectors.Connector:
    return connectors.build("homebase", "homebase", {"base_url": url + "/v1", "api_key": API_KEY, **settings})


def open_store(target: str) -> Store:
    """A SQLite file, or a store URL (`sqlite:///…`, `postgresql+psycopg://…`: the `store_url` fixture)."""
    return store.open_store(target) if "://" in target else open_db(target)


@contextlib.asynccontextmanager
async def harness(
    tmp_path: Any, *, store_url: Optional[str] = None, **service_options: Any
) -> AsyncIterator[Harness]:
    """Simulator + connector + store (`store_url`, else a SQLite file in `tmp_path`) + service;
    `service_options` go to `make_service`."""
    app = homebase.create_app(identities=80, rate_limits=False)
    state = app[homebase.STATE]
    people = pick_people(state)
    directory = MemoryDirectory(
        {"S0RESPONDERS": [GROUP_RESPONDER], "S0APPROVERS": [GROUP_APPROVER]},
        {people["plain"]["email"]: TARGET_USER, people["privileged"]["email"]: TARGET_USER},
    )
    clock = Clock()
    db_path = store_url or str(tmp_path / "idops.db")
    async with serving(app) as url, aiohttp.ClientSession() as http:
        connector = connector_for(url, timeout=2)
        async with connector:
            db = open_store(db_path)
            service = make_service(db, {"homebase": connector}, directory, clock, **service_options)
            try:
                yield Harness(service, state, url, db, db_path, directory, clock, connector, http, people)
            finally:
                db.close()


async def _execute_when_told(db_path: str, sim_url: str, request_id: str) -> str:
    """One competitor in the multi-process race: say "ready", wait for "go" on stdin, then execute."""
    connector = connector_for(sim_url, timeout=5)
    async with connector:
        db = open_store(db_path)
        service = make_service(db, {"homebase": connector}, MemoryDirectory({}), Clock())
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        result = await service.execute(request_id)
        db.close()
        return result.status.value


if __name__ == "__main__":
    # python -m support.approvals DB_PATH SIM_URL REQUEST_ID  (used by the execution tests)
    print(asyncio.run(_execute_when_told(*sys.argv[1:4])), flush=True)

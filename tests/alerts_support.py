"""Shared set-up for the alerts tests: the HomeBase simulator and FakeSlack on loopback, a real HomeBase
connector, a SQLite file, and the alerts' detector and sender over them."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import sqlite_utils
from aiohttp import web
from slack_sdk.web.async_client import AsyncWebClient

from bot.alerts.detector import Detector, Scope
from bot.alerts.sender import Sender
from bot.alerts.store import migrations
from bot.config import AlertSettings
from bot.simulators import homebase, serving
from bot.simulators.slack import FakeSlack
from bot.store import open_db
from connectors import RiskLevel
from connectors.homebase import HomeBaseConnector

API_KEY = "hld_test_simulator"
ALERTS = "C0ALERTS"
# Slack channels exist before idops posts to them (history of an unknown channel is channel_not_found)
CHANNELS = {
    ALERTS: "alerts",
    "C0APPROVALS": "approvals",
    "C0CRIT": "critical",
    "C0TENANT1": "tenant-one",
    "C0OKTA": "okta",
}
T0 = 1_800_000_000.0


class Clock:
    """Epoch seconds that only move when a test moves them (cooldowns, snoozes)."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def fail_listing_from(app: web.Application, page: int, kind: str = "malformed", count: int = 1) -> None:
    """From the `page`-th identity listing request on, inject the simulator's own fault `kind`.

    Installed before the simulator starts, ahead of its middleware, so a sweep fails exactly there.
    """
    state = app[homebase.STATE]
    seen = 0

    @web.middleware
    async def trip(request: web.Request, handler: Callable[[web.Request], Awaitable[Any]]) -> Any:
        nonlocal seen
        if request.method == "GET" and request.path == "/v1/identity":
            seen += 1
            if seen == page:
                state.faults.append(homebase.Fault(kind=kind, count=count, path="/v1/identity"))
        return await handler(request)

    app.middlewares.insert(0, trip)


@dataclass
class Alerts:
    """Everything one test needs, live on loopback."""

    sim: homebase.HomeBaseState
    sim_url: str
    slack: FakeSlack
    client: AsyncWebClient
    connector: HomeBaseConnector
    db: sqlite_utils.Database
    db_path: Path
    clock: Clock
    detector: Detector
    sender: Sender

    def index_at(self, level: RiskLevel, *, privileged: Optional[bool] = None, skip: int = 0) -> int:
        """The index of the (skip+1)-th simulated identity currently at `level`."""
        for index in range(self.sim.size):
            if homebase.risk_level(self.sim.risk_score(index)) != level.value:
                continue
            if privileged is not None and self.sim.person(index).privileged != privileged:
                continue
            if skip == 0:
                return index
            skip -= 1
        raise LookupError(f"no simulated identity at {level.value}")

    def set_risk(self, index: int, score: int) -> str:
        """Change an identity's score in the simulator; returns its id."""
        identity_id = self.sim.identity_id(index)
        self.sim.set_risk(identity_id, score)
        return identity_id

    def alerting_count(self, levels: tuple[str, ...] = ("high", "critical")) -> int:
        """How many simulated identities are at `levels`, computed from the simulator itself."""
        return sum(homebase.risk_level(self.sim.risk_score(i)) in levels for i in range(self.sim.size))

    async def sweep(self, scope: Optional[Scope] = None) -> Any:
        result = await self.detector.sweep(scope or Scope("hld"))
        await self.sender.wait_idle(timeout=10)
        return result

    def cards(self, channel: str = ALERTS) -> list[dict[str, Any]]:
        """Alert cards in a channel (top-level messages carrying the card metadata), oldest first."""
        return [m for m in self.slack.messages(channel) if _part(m) == "card"]

    def notices(self, channel: str = ALERTS) -> list[dict[str, Any]]:
        return [m for m in self.slack.messages(channel) if _part(m) == "notice"]

    def outbox(self) -> list[dict[str, Any]]:
        return list(self.db.query("SELECT * FROM alert_outbox ORDER BY id"))


def _part(message: dict[str, Any]) -> Optional[str]:
    metadata = message.get("metadata") or {}
    if metadata.get("event_type") != "idops_alert":
        return None
    return (metadata.get("event_payload") or {}).get("part")


def action_ids(message: dict[str, Any]) -> list[str]:
    return [
        element["action_id"]
        for block in message.get("blocks") or []
        if block["type"] == "actions"
        for element in block["elements"]
    ]


def all_text(message: dict[str, Any]) -> str:
    """Every string in a message (text, blocks), for assertions about what a reader sees."""
    out: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, str):
            out.append(node)
        elif isinstance(node, dict):
            for key, value in node.items():
                if key not in ("metadata", "action_id", "block_id", "value"):
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk({k: message.get(k) for k in ("text", "blocks")})
    return "\n".join(out)


@contextlib.asynccontextmanager
async def running(
    tmp_path: Path,
    *,
    identities: int = 60,
    settings: Optional[AlertSettings] = None,
    page_size: int = 20,
    sim_app: Optional[web.Application] = None,
    slack: Optional[FakeSlack] = None,
    start_sender: bool = True,
) -> AsyncIterator[Alerts]:
    app = sim_app or homebase.create_app(identities=identities, rate_limits=False, api_keys=(API_KEY,))
    slack = slack or FakeSlack(channels=CHANNELS)
    async with serving(app) as sim_url, slack.serve():
        client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url, retry_handlers=[])
        connector = HomeBaseConnector("hld", api_key=API_KEY, base_url=f"{sim_url}/v1", page_size=page_size)
        db_path = tmp_path / "idops.db"
        db = open_db(str(db_path), [migrations])
        clock = Clock()
        sender = Sender(db, client, interval=0.01, backoff=0.05, backoff_cap=0.3, poll=0.2)
        detector = Detector(
            db, {"hld": connector}, settings or AlertSettings(), ALERTS, clock=clock, on_outbox=sender.notify
        )
        if start_sender:
            sender.start()
        try:
            yield Alerts(
                sim=app[homebase.STATE],
                sim_url=sim_url,
                slack=slack,
                client=client,
                connector=connector,
                db=db,
                db_path=db_path,
                clock=clock,
                detector=detector,
                sender=sender,
            )
        finally:
            await sender.stop()
            await connector.close()
            db.close()


async def eventually(check: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
    """Poll `check` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)

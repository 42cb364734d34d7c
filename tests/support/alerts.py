"""Shared set-up for the alerts tests: the HomeBase simulator and FakeSlack on loopback, a real HomeBase
connector, a SQLite file, and the alerts' detector and sender over them."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import aiohttp
from aiohttp import web
from pydantic import SecretStr
from slack_sdk.web.async_client import AsyncWebClient

from bot.alerts.detector import Detector, Scope
from bot.alerts.scheduler import ALERTS as SERVICE
from bot.alerts.scheduler import Timings, install
from bot.alerts.sender import Sender
from bot.config import AlertSettings, Config
from bot.extension import BOT
from bot.server import build_web_app
from bot.services import Bot
from bot.store import Store, open_db, open_store
from connectors import RiskLevel
from connectors.homebase import HomeBaseConnector
from standins import homebase, sailpoint, serving
from standins.slack import FakeSlack
from support.approvals import pick_people
from support.bot import (
    APPROVER,
    APPROVER2,
    COMMAND_CHANNEL,
    GROUP_RESPONDER,
    assert_all_sent_inert,
    assert_scoped,
    make_config,
    slack_secrets,
    slack_users,
)

API_KEY = "hld_test_simulator"
API_TOKEN = "alerts-api-token"
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


def on_listing(app: web.Application, page: int, action: Callable[[], Awaitable[None]]) -> None:
    """Await `action` when the `page`-th identity listing request arrives, before it is answered.

    Installed before the simulator starts, ahead of its middleware, so a sweep meets it exactly there.
    """
    seen = 0

    @web.middleware
    async def trip(request: web.Request, handler: Callable[[web.Request], Awaitable[Any]]) -> Any:
        nonlocal seen
        if request.method == "GET" and request.path == "/v1/identity":
            seen += 1
            if seen == page:
                await action()
        return await handler(request)

    app.middlewares.insert(0, trip)


def fail_listing_from(app: web.Application, page: int, kind: str = "malformed", count: int = 1) -> None:
    """From the `page`-th identity listing request on, inject the simulator's own fault `kind`."""
    state = app[homebase.STATE]

    async def fail() -> None:
        state.faults.append(homebase.Fault(kind=kind, count=count, path="/v1/identity"))

    on_listing(app, page, fail)


@dataclass
class Alerts:
    """Everything one test needs, live on loopback."""

    sim: homebase.HomeBaseState
    sim_url: str
    slack: FakeSlack
    client: AsyncWebClient
    connector: HomeBaseConnector
    db: Store
    db_path: Path | str  # the SQLite file, or the store URL
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
        return posted(self.slack, "card", channel)

    def notices(self, channel: str = ALERTS) -> list[dict[str, Any]]:
        return posted(self.slack, "notice", channel)

    def outbox(self) -> list[dict[str, Any]]:
        return list(self.db.query("SELECT * FROM alert_outbox ORDER BY id"))


def payload(message: dict[str, Any], event_type: str = "idops_alert") -> dict[str, Any]:
    """The metadata idops put on a message of `event_type` (an alert's: alert id, part, delivery); {} for
    any other message."""
    metadata = message.get("metadata") or {}
    if metadata.get("event_type") != event_type:
        return {}
    return metadata.get("event_payload") or {}


def posted(slack: FakeSlack, part: str, channel: str = ALERTS) -> list[dict[str, Any]]:
    """The top-level alert messages of one `part` (card, notice, digest) in a channel, oldest first."""
    return [m for m in slack.messages(channel) if payload(m).get("part") == part]


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


#: the store `running` opens instead of a SQLite file in tmp_path: set per test by tests/alerts/conftest.py
#: from the `store_url` fixture, in the modules marked `usefixtures("store_url")` (both backends)
STORE_URL: Optional[str] = None


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
    db_name: str = "idops.db",
) -> AsyncIterator[Alerts]:
    app = sim_app or homebase.create_app(identities=identities, rate_limits=False, api_keys=(API_KEY,))
    slack = slack or FakeSlack(channels=CHANNELS)
    async with serving(app) as sim_url, slack.serve():
        client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url, retry_handlers=[])
        connector = HomeBaseConnector("hld", api_key=API_KEY, base_url=f"{sim_url}/v1", page_size=page_size)
        db_path = STORE_URL or tmp_path / db_name
        db = open_store(STORE_URL) if STORE_URL else open_db(str(db_path))
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
        # every card, reply and notice had a text fallback (Slack warns otherwise), and was inert
        assert slack.warnings == [], slack.warnings
        assert_all_sent_inert(slack)
        assert_scoped(slack)


async def eventually(
    check: Callable[[], Any], timeout: float = 30.0, what: str = "condition", every: float = 0.02
) -> Any:
    """Poll `check` (a function, or a coroutine function) `every` so many seconds until it returns
    something truthy; fail after `timeout` seconds, naming `what`. The default ceiling is generous for a
    loaded machine: a check that comes true returns at once."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(every)


# --- the whole server ---------------------------------------------------------------------------

HOOK_SECRET = "whsec-test-homebase"
SP_TOKEN = "sp-trigger-token"
SP_ID, SP_SECRET = "sim-client", "sim-secret"
FAST = Timings(interval=0.01, backoff=0.05, backoff_cap=0.3, poll=0.2, snoozes=0.05)


@dataclass
class Served:
    """`idops serve`'s web app with alerts installed, the simulators and FakeSlack, all on loopback."""

    url: str
    web_app: web.Application
    service: Any  # AlertService, or None when alerts are off
    slack: FakeSlack
    hb: homebase.HomeBaseState
    hb_url: str
    sp: sailpoint.SailPointState
    http: aiohttp.ClientSession
    clock: Clock
    people: dict[str, dict[str, Any]]

    @property
    def events_url(self) -> str:
        return self.url + "/slack/events"

    @property
    def db(self) -> Store:
        return self.service.detector.db

    async def settle(self) -> None:
        """Wait for the bot's work after acks, webhook re-checks, and the outbox to drain."""
        await self.web_app[BOT].replies.join(timeout=15)
        await self.service.join(timeout=15)
        await self.service.sender.wait_idle(timeout=15)

    async def started(self) -> None:
        """Wait for the start-up sweep of every scope and its delivery."""
        scopes = [scope.key for scope in self.service.detector.scopes()]
        await eventually(lambda: all(key in self.service.results for key in scopes), 15, "start-up sweeps")
        await self.settle()

    async def click(
        self, user: str, message: dict[str, Any], action_id: str, value: Optional[str] = None
    ) -> Any:
        reply = await self.slack.click(self.events_url, user, message, action_id, value)
        await self.settle()
        return reply

    def cards(self, channel: str = ALERTS) -> list[dict[str, Any]]:
        return posted(self.slack, "card", channel)

    def notices(self, channel: str = ALERTS) -> list[dict[str, Any]]:
        return posted(self.slack, "notice", channel)

    def hb_low(self, skip: int = 0, privileged: Optional[bool] = None) -> int:
        found = [
            i
            for i in range(self.hb.size)
            if homebase.risk_level(self.hb.risk_score(i)) == "low"
            and self.hb.record(i)["status"] == "active"
            and (privileged is None or self.hb.person(i).privileged == privileged)
        ]
        return found[skip]


def server_config(
    tmp_path: Path,
    hb_url: str,
    sp_url: str,
    *,
    sp_risk: Optional[str] = "attributes.riskScore",
    **sections: Any,
) -> Config:
    connectors = [
        {"name": "homebase", "kind": "homebase", "base_url": hb_url + "/v1", "api_key_env": "TEST_HLD_KEY"},
        {
            "name": "sp",
            "kind": "sailpoint",
            "base_url": sp_url,
            "client_id_env": "TEST_SP_ID",
            "client_secret_env": "TEST_SP_SECRET",
            **({"risk_attribute": sp_risk} if sp_risk else {}),
        },
    ]
    sections.setdefault(
        "webhooks", {"homebase_secret_env": "HLD_HOOK_SECRET", "sailpoint_token_env": "SP_TOKEN"}
    )
    sections.setdefault("alerts", {"poll_seconds": 3600})
    return make_config(tmp_path, hb_url, connectors=connectors, **sections)


ENVIRON = {
    "TEST_HLD_KEY": API_KEY,
    "TEST_SP_ID": SP_ID,
    "TEST_SP_SECRET": SP_SECRET,
    "HLD_HOOK_SECRET": HOOK_SECRET,
    "SP_TOKEN": SP_TOKEN,
}


@contextlib.asynccontextmanager
async def served(
    tmp_path: Path,
    *,
    identities: int = 80,
    environ: Optional[dict[str, str]] = None,
    sp_risk: Optional[str] = "attributes.riskScore",
    **sections: Any,
) -> AsyncIterator[Served]:
    hb_app = homebase.create_app(identities=identities, rate_limits=False, api_keys=(API_KEY,))
    sp_app = sailpoint.create_app(identities=40, rate_limit=False, client_id=SP_ID, client_secret=SP_SECRET)
    hb = hb_app[homebase.STATE]
    people = pick_people(hb)
    slack = FakeSlack(
        users=slack_users(people),
        usergroups={"S0APPROVERS": [APPROVER, APPROVER2], "S0RESPONDERS": [GROUP_RESPONDER]},
        channels={**CHANNELS, COMMAND_CHANNEL: "secops"},
    )
    clock = Clock()
    env = environ or ENVIRON
    async with (
        serving(hb_app) as hb_url,
        serving(sp_app) as sp_url,
        slack.serve(),
        aiohttp.ClientSession() as http,
    ):
        config = server_config(tmp_path, hb_url, sp_url, sp_risk=sp_risk, **sections)
        # the API token: /healthz shows its details to its bearer only
        secrets = slack_secrets(slack).model_copy(update={"IDOPS_API_TOKEN": SecretStr(API_TOKEN)})

        def extension(web_app: web.Application, bot: Bot, environ: Mapping[str, str]) -> None:
            assert environ is env  # the server hands its extensions the environment it was given
            install(web_app, bot, environ=environ, clock=clock, timings=FAST)

        web_app = build_web_app(config, secrets, environ=env, extensions=[extension], expiry_seconds=3600)
        async with serving(web_app) as url:
            hb.webhook_url = url + "/webhooks/homebase"
            hb.webhook_secret = HOOK_SECRET
            yield Served(
                url,
                web_app,
                web_app[SERVICE] if SERVICE in web_app else None,  # None: [alerts] enabled = false
                slack,
                hb,
                hb_url,
                sp_app[sailpoint.STATE],
                http,
                clock,
                people,
            )
        assert slack.warnings == [], slack.warnings  # every message idops sent had a text fallback
        assert_all_sent_inert(slack)
        assert_scoped(slack)

"""Shared set-up for the bot tests: the real server (`build_web_app`) on loopback, FakeSlack as its Web
API and as the Slack that sends it signed requests, the HomeBase simulator as the provider, and a
SQLite file in tmp_path."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import re
import time
import urllib.parse
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

import aiohttp
from aiohttp import web

from bot import manifest
from bot.alerts.scheduler import ALERTS, Timings, install
from bot.config import Config, Secrets, parse_config
from bot.extension import BOT
from bot.server import EXPIRY_CLAIM, build_web_app
from bot.services import Bot
from connectors import Connector
from connectors.homebase import HomeBaseConnector
from standins import entra, homebase, okta, sailpoint, serving
from standins.seed import HOSTILE_NAMES
from standins.slack import SOCKET_MODE, BotReply, FakeSlack, SlackUser
from support.approvals import API_KEY, Clock, pick_people
from support.postgres import PgDatabase

APPROVAL_CHANNEL = "C0APPROVALS"
ALERT_CHANNEL = "C0ALERTS"
COMMAND_CHANNEL = "C0SECOPS"

REQUESTER = "U0ALICE"  # responder and approver
APPROVER = "U0BOB"  # approver through the S0APPROVERS group
APPROVER2 = "U0CAROL"  # approver through the group
OUTSIDER = "U0MALLORY"  # neither
TARGET = "U0TED"  # approver whose email is the `plain` identity's
GROUP_RESPONDER = "U0DAVE"  # responder through the S0RESPONDERS group
OKTA_TOKEN = "00okta-bot-harness-token"  # the Okta simulator's made-up API token (`okta_bot`)


@dataclass
class BotHarness:
    slack: FakeSlack
    sim: homebase.HomeBaseState
    sim_url: str
    url: str  # the bot's base URL
    web_app: web.Application
    clock: Clock
    people: dict[str, dict[str, Any]]
    http: aiohttp.ClientSession
    config: Config
    extra: dict[str, Any] = field(default_factory=dict)
    socket_mode: bool = False
    store_env: dict[str, str] = field(default_factory=dict)  # the store's password variable (PostgreSQL)

    @property
    def bot(self) -> Bot:
        return self.web_app[BOT]

    @property
    def events_url(self) -> str:
        """Where FakeSlack's driver sends what Slack sends: the HTTP endpoint, or the Socket Mode link."""
        return SOCKET_MODE if self.socket_mode else self.url + "/slack/events"

    async def settle(self) -> None:
        """Wait for the work the bot does after its acks."""
        await self.bot.replies.join(timeout=15)

    async def command(self, user: str, text: str, **signing: Any) -> BotReply:
        reply = await self.slack.command(self.events_url, user, text, channel_id=COMMAND_CHANNEL, **signing)
        await self.settle()
        return reply

    async def click(
        self, user: str, target: dict[str, Any], action_id: str, value: Optional[str] = None, **signing: Any
    ) -> BotReply:
        reply = await self.slack.click(self.events_url, user, target, action_id, value, **signing)
        await self.settle()
        return reply

    async def submit(self, user: str, view: dict[str, Any], reason: str) -> BotReply:
        reply = await self.slack.submit_view(
            self.events_url, user, view["id"], {"reason": {"reason": reason}}
        )
        await self.settle()
        return reply

    def seen(self, user: str) -> list[dict[str, Any]]:
        """Everything shown to `user` only (acks, response_url posts, ephemerals), oldest first."""
        return self.slack.visible_ephemerals(user)

    def last_seen(self, user: str) -> dict[str, Any]:
        seen = self.seen(user)
        assert seen, f"nothing was shown to {user}"
        return seen[-1]

    def cards(self) -> list[dict[str, Any]]:
        """Top-level messages in the approval channel (with their thread replies)."""
        return self.slack.messages(APPROVAL_CHANNEL)

    def card(self) -> dict[str, Any]:
        cards = self.cards()
        assert len(cards) == 1, f"expected one approval card, found {len(cards)}"
        return cards[0]

    def actions(self) -> list[dict[str, Any]]:
        """Response actions the HomeBase simulator performed."""
        return list(self.sim.actions)

    async def fault(self, **fault: Any) -> None:
        async with self.http.post(f"{self.sim_url}/_admin/faults", json=fault) as response:
            assert response.status == 201, await response.text()

    async def request_card(self, who: str = "plain", action: str = "revoke", reason: str = "phished") -> dict:
        """Have the requester ask for an action on one of `people`; returns the approval card."""
        before = len(self.cards())
        await self.command(REQUESTER, f"{action} {self.people[who]['email']} {reason}")
        cards = self.cards()
        assert len(cards) == before + 1, f"no approval card; the requester saw {self.last_seen(REQUESTER)}"
        return cards[-1]


def text_of(message: dict[str, Any]) -> str:
    """The fallback text and every text in the blocks, as one string (for assertions)."""
    return message.get("text", "") + "\n" + json.dumps(message.get("blocks", []), ensure_ascii=False)


# What must never reach Slack unescaped: any <…> control sequence (mentions, broadcasts, links, channel
# references) other than the ones idops itself makes: dates, user and channel ids, the on-call group.
RAW = re.compile(
    r"<(?!!date\^\d+\^[^|>]*\|[^>]*>|@[UW][A-Z0-9]+>|#[CGD][A-Z0-9]+>|!subteam\^S[A-Z0-9]+>)[^>]*>"
)
# Web API methods (and response_url posts) that carry text idops wrote
SENDS = frozenset(
    {
        "chat.postMessage",
        "chat.update",
        "chat.postEphemeral",
        "response_url",
        "views.open",
        "views.push",
        "views.update",
        "views.publish",
    }
)


def _texts(node: Any) -> list[str]:
    """Every `text` string in a message, block or view tree."""
    if isinstance(node, dict):
        out = [node["text"]] if isinstance(node.get("text"), str) else []
        return out + [t for value in node.values() for t in _texts(value)]
    if isinstance(node, list):
        return [t for value in node for t in _texts(value)]
    return []


def assert_inert(message: dict[str, Any]) -> None:
    """No Slack control sequence other than the ones idops itself makes, in the fallback or any block."""
    for text in _texts(message):
        found = RAW.search(text)
        assert found is None, f"unescaped {found.group(0)!r} in {text!r}"


def assert_scoped(slack: FakeSlack) -> None:
    """Every Web API method idops called has its scopes in the manifest (checked after each test)."""
    scopes = set(manifest.bot_scopes())
    for method in {method for method, _ in slack.calls if method != "response_url"}:
        assert method in manifest.METHOD_SCOPES, f"{method} has no entry in bot.manifest.METHOD_SCOPES"
        assert set(manifest.METHOD_SCOPES[method]) <= scopes


def assert_all_sent_inert(slack: FakeSlack) -> None:
    """Everything idops sent Slack, and every ack shown to a user, is inert (checked after each test)."""
    for method, params in slack.calls:
        if method not in SENDS:
            continue
        sent = {key: params[key] for key in ("text", "blocks", "view") if key in params}
        for key in ("blocks", "view"):
            if isinstance(sent.get(key), str):  # form-encoded calls carry JSON strings
                sent[key] = json.loads(sent[key])
        assert_inert(sent)
    for user in slack.users:
        for message in slack.visible_ephemerals(user):
            assert_inert(message)


def status_of(card: dict[str, Any]) -> str:
    """An approval card's Status field."""
    for block in card["blocks"]:
        for item in block.get("fields", []):
            if item["text"].startswith("*Status*"):
                return str(item["text"].split("\n", 1)[1])
    raise AssertionError("no Status field on the card")


def buttons(message: dict[str, Any]) -> list[tuple[str, str]]:
    """(action_id, value) of every button in a message or view."""
    found = []
    for block in message.get("blocks", []):
        elements = block.get("elements", []) if block.get("type") == "actions" else []
        accessory = block.get("accessory")
        for element in [*elements, *([accessory] if isinstance(accessory, dict) else [])]:
            if element.get("type") == "button":
                found.append((element["action_id"], element.get("value", "")))
    return found


def hostile_people(state: homebase.HomeBaseState) -> list[dict[str, Any]]:
    return [state.record(i) for i in range(state.size) if state.record(i)["display_name"] in HOSTILE_NAMES]


def slack_users(people: dict[str, dict[str, Any]]) -> list[SlackUser]:
    return [
        SlackUser(id=REQUESTER, name="alice", email="alice@secops.example"),
        SlackUser(id=APPROVER, name="bob", email="bob@secops.example"),
        SlackUser(id=APPROVER2, name="carol", email="carol@secops.example"),
        SlackUser(id=OUTSIDER, name="mallory", email="mallory@elsewhere.example"),
        SlackUser(id=TARGET, name="ted", email=people["plain"]["email"]),
        SlackUser(id=GROUP_RESPONDER, name="dave", email="dave@secops.example"),
    ]


def sailpoint_entry(url: str) -> dict[str, Any]:
    return {
        "name": "sailpoint",
        "kind": "sailpoint",
        "base_url": url,
        "client_id_env": "TEST_SP_ID",
        "client_secret_env": "TEST_SP_SECRET",
        "risk_attribute": "attributes.riskScore",
        "timeout": 1,
    }


def _alerts(web_app: web.Application, bot: Bot, environ: Mapping[str, str]) -> None:
    """The alerts extension with a sender fast enough for tests."""
    install(
        web_app, bot, environ=environ, timings=Timings(interval=0.01, backoff=0.05, backoff_cap=0.3, poll=0.2)
    )


def slack_secrets(slack: FakeSlack) -> Secrets:
    """The Slack secrets of a server that FakeSlack signs requests for and answers the Web API of."""
    return Secrets(
        SLACK_BOT_TOKEN=slack.bot_token,
        SLACK_SIGNING_SECRET=slack.signing_secret,
        SLACK_API_URL=slack.api_url,
    )


def make_config(tmp_path: Any, sim_url: str, **sections: Any) -> Config:
    data: dict[str, Any] = {
        "slack": {"alert_channel": ALERT_CHANNEL, "approval_channel": APPROVAL_CHANNEL},
        "access": {
            "responders": [REQUESTER, "S0RESPONDERS"],
            "approvers": [REQUESTER, TARGET, "S0APPROVERS"],
        },
        "approvals": {"expire_minutes": 30, "privileged_approvals": 2},
        "store": {"path": str(tmp_path / "idops.db")},
        "connectors": [
            {
                "name": "homebase",
                "kind": "homebase",
                "base_url": sim_url + "/v1",
                "api_key_env": "TEST_HLD_KEY",
                "timeout": 1,
            }
        ],
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    if "url" in data["store"]:  # a PostgreSQL store (`pg_store`) instead of the SQLite file
        data["store"].pop("path", None)
    return parse_config(data, "test config")


@contextlib.asynccontextmanager
async def harness(
    tmp_path: Any,
    *,
    identities: int = 120,
    expiry_seconds: float = 3600.0,
    with_sailpoint: bool = False,
    socket_mode: bool = False,
    environ: Optional[dict[str, str]] = None,
    pacing: bool = True,
    with_alerts: bool = False,
    more_connectors: Sequence[dict[str, Any]] = (),
    **sections: Any,
) -> AsyncIterator[BotHarness]:
    """Simulators, FakeSlack and the bot's real web app, all on loopback; `sections` override config.

    With `with_sailpoint`, a SailPoint simulator (other people: seed 7) is a second connector, and
    `extra["sailpoint"]` is its state (`extra["sailpoint_url"]` its address). With `socket_mode`, the
    bot connects to FakeSlack over Socket Mode and the driver talks to it there. With `pacing=False` the
    HomeBase connector skips its client-side rate limits (the simulator has its own off), for tests that
    send thousands of requests.
    `more_connectors` are config entries added after HomeBase's. With `with_alerts`, risk alerts are
    installed too (`extra["alerts"]` is the AlertService; real time,
    fast sender timings).
    """
    sim_app = homebase.create_app(identities=identities, rate_limits=False)
    state = sim_app[homebase.STATE]
    people = pick_people(state)
    slack = FakeSlack(
        users=slack_users(people),
        usergroups={"S0APPROVERS": [APPROVER, APPROVER2], "S0RESPONDERS": [GROUP_RESPONDER]},
        channels={APPROVAL_CHANNEL: "approvals", ALERT_CHANNEL: "alerts", COMMAND_CHANNEL: "secops"},
    )
    clock = Clock()
    sp_app = sailpoint.create_app(identities=60, seed=7, rate_limit=False)
    async with contextlib.AsyncExitStack() as stack:
        sim_url = await stack.enter_async_context(serving(sim_app))
        await stack.enter_async_context(slack.serve())
        http = await stack.enter_async_context(aiohttp.ClientSession())
        extra: dict[str, Any] = {}
        if with_sailpoint:
            sp_url = await stack.enter_async_context(serving(sp_app))
            hb_entry = make_config(tmp_path, sim_url).connectors[0].model_dump()
            sections.setdefault("connectors", [hb_entry, sailpoint_entry(sp_url)])
            extra["sailpoint"], extra["sailpoint_url"] = sp_app[sailpoint.STATE], sp_url
        if more_connectors:
            hb_entry = make_config(tmp_path, sim_url).connectors[0].model_dump()
            sections.setdefault("connectors", [hb_entry, *more_connectors])
        config = make_config(tmp_path, sim_url, **sections)
        # a PostgreSQL store's password variable, which `second_server` passes on too
        password_env = config.store.password_env
        store_env = {password_env: (environ or {})[password_env]} if password_env else {}
        connectors: Optional[dict[str, Connector]] = None
        if not pacing:
            unpaced = HomeBaseConnector(
                "homebase", api_key=API_KEY, base_url=sim_url + "/v1", timeout=10, pacing=False
            )
            stack.push_async_callback(unpaced.close)
            connectors = {unpaced.name: unpaced}
        secrets = Secrets(
            SLACK_BOT_TOKEN=slack.bot_token,
            SLACK_SIGNING_SECRET=None if socket_mode else slack.signing_secret,
            SLACK_APP_TOKEN=slack.app_token if socket_mode else None,
            SLACK_API_URL=slack.api_url,
            IDOPS_API_TOKEN="test-api-token",
        )
        web_app = build_web_app(
            config,
            secrets,
            socket_mode=socket_mode,
            clock=clock,
            environ={
                "TEST_HLD_KEY": API_KEY,
                "TEST_SP_ID": "sim-client",
                "TEST_SP_SECRET": "sim-secret",
                **(environ or {}),  # more connectors' variables
            },
            extensions=[_alerts] if with_alerts else [],
            expiry_seconds=expiry_seconds,
            connectors=connectors,
        )
        url = await stack.enter_async_context(serving(web_app))
        if with_alerts:
            extra["alerts"] = web_app[ALERTS]
        yield BotHarness(
            slack, state, sim_url, url, web_app, clock, people, http, config, extra, socket_mode, store_env
        )
    assert slack.warnings == [], slack.warnings  # every message idops sent had a text fallback
    assert_all_sent_inert(slack)
    assert_scoped(slack)


def pg_store(database: Optional[PgDatabase]) -> dict[str, Any]:
    """`harness` options for a store on `database` (None: the SQLite file): its `[store]` and the
    password's variable in `environ`."""
    if database is None:
        return {}
    return {
        "store": {"url": database.config_url, "password_env": "TEST_PG_PASSWORD"},
        "environ": {"TEST_PG_PASSWORD": database.password},
    }


def store_of(tmp_path: Any, database: Optional[PgDatabase]) -> str:
    """The store a harness with `pg_store(database)` opens, for `open_store` in another connection or
    process: the database's URL, or the SQLite file in `tmp_path`."""
    return database.url if database is not None else f"sqlite:///{tmp_path / 'idops.db'}"


@dataclass
class Provider:
    """A provider's simulator on loopback as the bot sees it: its `[[connectors]]` entry, the environment
    that entry reads, and what a test finds in `BotHarness.extra`."""

    entry: dict[str, Any]
    environ: dict[str, str]
    extra: dict[str, Any]


@contextlib.asynccontextmanager
async def okta_provider() -> AsyncIterator[Provider]:
    """The Okta simulator (60 users, rate limits off, API token `OKTA_TOKEN`) as connector `okta`;
    `extra["okta"]` is its state, `extra["okta_url"]` its address."""
    sim = okta.create_app(identities=60, rate_limits=False, api_token=OKTA_TOKEN)
    async with serving(sim) as url:
        entry = {"name": "okta", "kind": "okta", "base_url": url, "api_token_env": "TEST_OKTA_TOKEN"}
        yield Provider(entry, {"TEST_OKTA_TOKEN": OKTA_TOKEN}, {"okta": sim[okta.STATE], "okta_url": url})


@contextlib.asynccontextmanager
async def entra_provider(
    sim: Optional[dict[str, Any]] = None, entry: Optional[dict[str, Any]] = None
) -> AsyncIterator[Provider]:
    """The Graph simulator as connector `entra` (`sim`: its `create_app` arguments, 120 users by default;
    `entry`: settings added to the connector's); `extra["entra"]` is its state, `extra["entra_url"]` its
    address."""
    app = entra.create_app(**{"users": 120, **(sim or {})})
    state = app[entra.STATE]
    async with serving(app) as url:
        settings = {
            "name": "entra",
            "kind": "entra",
            "tenant_id": state.tenant_id,
            "client_id": state.client_id,
            "client_secret_env": "TEST_ENTRA_SECRET",
            "authority_url": url,
            "graph_url": url,
            **(entry or {}),
        }
        yield Provider(
            settings, {"TEST_ENTRA_SECRET": state.client_secret}, {"entra": state, "entra_url": url}
        )


@contextlib.asynccontextmanager
async def harness_with(
    tmp_path: Any, *providers: Provider, with_homebase: bool = False, **options: Any
) -> AsyncIterator[BotHarness]:
    """`harness` whose connectors are the `providers` (after HomeBase's with `with_homebase`), their
    environment given and their `extra` merged; `options` go to `harness`."""
    entries = [provider.entry for provider in providers]
    environ = dict(options.pop("environ", None) or {})  # e.g. a PostgreSQL store's (`pg_store`)
    environ.update(pair for provider in providers for pair in provider.environ.items())
    sections = {"more_connectors": entries} if with_homebase else {"connectors": entries}
    async with harness(tmp_path, environ=environ, **sections, **options) as built:
        for provider in providers:
            built.extra.update(provider.extra)
        yield built


@contextlib.asynccontextmanager
async def okta_bot(tmp_path: Any, **options: Any) -> AsyncIterator[BotHarness]:
    """`harness` with the Okta connector of `okta_provider` alone; `options` go to `harness`."""
    async with okta_provider() as provider, harness_with(tmp_path, provider, **options) as built:
        yield built


@contextlib.asynccontextmanager
async def entra_bot(
    tmp_path: Any,
    *,
    sim: Optional[dict[str, Any]] = None,
    entry: Optional[dict[str, Any]] = None,
    **options: Any,
) -> AsyncIterator[BotHarness]:
    """`harness` with the Entra ID connector of `entra_provider(sim, entry)` alone; `options` go to
    `harness`."""
    async with entra_provider(sim, entry) as provider, harness_with(tmp_path, provider, **options) as built:
        yield built


def request_buttons(ref: str) -> set[tuple[str, str]]:
    """The Revoke, Reset and Disable request buttons of an identity card for `ref` (connector:id)."""
    return {
        ("request:revoke_sessions", ref),
        ("request:force_password_reset", ref),
        ("request:disable", ref),
    }


async def until(check: Any, timeout: float = 30.0, what: str = "") -> None:
    """Poll `check` (every 20 ms) until it is true; fail after `timeout` seconds, naming the check (`what`,
    else its source). The ceiling is generous for a loaded machine (a true check returns at once)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() >= deadline:
            raise AssertionError(f"still not true after {timeout:g} s: {what or _described(check)}")
        await asyncio.sleep(0.02)


def _described(check: Any) -> str:
    """The source line of a check (a lambda: what was awaited), else its repr."""
    try:
        return inspect.getsource(check).strip()
    except (OSError, TypeError):  # no source to show (built in, or made at run time): say what it is
        return repr(check)


async def sweeps(bot: Bot, count: int = 3, timeout: float = 30.0) -> None:
    """Wait until the server's periodic job has run `count` whole containment sweeps that started after
    this call: "more sweeps change nothing" checked after sweeps that happened, not after a sleep."""
    done = 0
    real = bot.containment.sweep

    async def counted() -> list[str]:
        nonlocal done
        try:
            return await real()
        finally:
            done += 1

    bot.containment.sweep = counted  # type: ignore[method-assign]
    try:
        await until(
            lambda: done >= count, timeout, f"{count} sweeps by the server (it holds the timers' claim?)"
        )
    finally:
        del bot.containment.sweep  # the class's method again


async def forged_click(h: Any, user: str, action_id: str, value: str) -> int:
    """A validly signed click whose button is not (or no longer) on any message: a made-up value or a
    stale card; the HTTP status of its ack. `h` is a BotHarness or an alerts `Served` (slack, http,
    events_url, settle)."""
    payload = {
        "type": "block_actions",
        "user": {"id": user, "username": "x", "team_id": h.slack.team_id},
        "api_app_id": h.slack.app_id,
        "token": h.slack.verification_token,
        "team": {"id": h.slack.team_id, "domain": h.slack.team_domain},
        "container": {"type": "message", "message_ts": "1.000001", "channel_id": COMMAND_CHANNEL},
        "channel": {"id": COMMAND_CHANNEL, "name": "secops"},
        "trigger_id": "1.2.forged",
        "actions": [
            {"action_id": action_id, "block_id": "b", "value": value, "type": "button", "action_ts": "1"}
        ],
    }
    body = "payload=" + urllib.parse.quote(json.dumps(payload))
    headers = h.slack.signed_headers(body, "application/x-www-form-urlencoded")
    async with h.http.post(h.events_url, data=body.encode(), headers=headers) as response:
        status = response.status
    await h.settle()
    return status


@contextlib.asynccontextmanager
async def second_server(
    h: BotHarness, environ: Optional[dict[str, str]] = None, urls: Optional[list[str]] = None
) -> AsyncIterator[web.Application]:
    """Another server on the harness's store, Slack and clock (a replica, or the process after a
    restart), its periodic sweep running every 50 ms; `environ` adds connector variables; its base URL
    is appended to `urls` when given."""
    # the harness's server (its timers run hourly) stands aside: this one takes the timers' claim
    assert h.bot.service.claims is not None
    h.bot.service.claims.release(EXPIRY_CLAIM)
    app = build_web_app(
        h.config,
        slack_secrets(h.slack),
        environ={"TEST_HLD_KEY": API_KEY, **h.store_env, **(environ or {})},
        extensions=[],
        clock=h.clock,
        expiry_seconds=0.05,
    )
    async with serving(app) as url:
        if urls is not None:
            urls.append(url)
        yield app

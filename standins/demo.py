"""`idops demo` (`make demo`): the whole loop on one machine, in one process.

HomeBase, SailPoint, Google Workspace (domain acme.example) and Entra ID simulators, the idops server
(standins/demo.toml, a store in a temporary directory) and the Slack stand-in with its web page at
http://127.0.0.1:3000. A drift task moves risk scores through the simulators' admin APIs (Workspace:
Alert Center alerts opened and closed) so alerts, escalations and resolves happen in the first minutes.
The terminal shows where to point the browser and one line per event; Ctrl-C stops everything.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import random
import secrets
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import aiohttp

from bot import tasks
from bot.config import ConfigError, Secrets, StoreSettings, load_config
from bot.server import build_web_app
from connectors.entra_api import risk_band

from . import entra, entra_state, google_workspace, homebase, okta, sailpoint, serving
from .slack import FakeSlack
from .slack.page import PEOPLE, USERS, SlackUI, demo_workspace

CONFIG = Path(__file__).with_name("demo.toml")
# identities nudged within their band each tick: over a few minutes hundreds drift without alerting
WANDER_PER_TICK = 12
MAX_RAISED = 6


@dataclass
class Source:
    """One simulated platform as the drift sees it: ids, names and current scores by person index."""

    label: str
    admin_url: str
    size: int
    identity_id: Callable[[int], str]
    score: Callable[[int], Optional[int]]
    name: Callable[[int], str]
    eligible: Callable[[int], bool]


@dataclass
class Spotlight:
    """The identity the demo makes critical first (HomeBase, not privileged): the one to act on."""

    connector: str
    identity_id: str
    name: str
    email: str


def _homebase_source(app: aiohttp.web.Application, url: str) -> Source:
    state = app[homebase.STATE]

    def eligible(index: int) -> bool:
        person = state.person(index)
        return person.status == "active" and state.risk_score(index, person) <= 20

    return Source(
        label="HomeBase",
        admin_url=url,
        size=state.size,
        identity_id=state.identity_id,
        score=lambda i: state.risk_score(i),
        name=lambda i: state.person(i).display_name,
        eligible=eligible,
    )


def _sailpoint_source(app: aiohttp.web.Application, url: str) -> Source:
    state = app[sailpoint.STATE]

    def attributes(index: int) -> dict:
        return state.identity(index)["attributes"]

    def eligible(index: int) -> bool:
        attrs = attributes(index)
        return attrs["cloudStatus"] == "ACTIVE" and (attrs["riskScore"] or 0) <= 20

    return Source(
        label="SailPoint",
        admin_url=url,
        size=state.identities,
        identity_id=state.identity_id,
        score=lambda i: attributes(i)["riskScore"],
        name=lambda i: attributes(i)["displayName"],
        eligible=eligible,
    )


def _workspace_source(app: aiohttp.web.Application, url: str) -> Source:
    state = app[google_workspace.STATE]
    return Source(
        label="Google Workspace",
        admin_url=url,
        size=state.identities,
        identity_id=state.user_id,
        score=state.risk_score,  # what Alert Center's open alerts mean; the drift opens and closes them
        name=lambda i: state.user(i)["name"]["fullName"],
        eligible=lambda i: not state.user(i)["suspended"] and state.risk_score(i) == 0,
    )


def _entra_source(app: aiohttp.web.Application, url: str) -> Source:
    state = app[entra_state.STATE]

    def score(index: int) -> int:
        level, risk_state = (state.risk_of(index) or ("none", "none"))[:2]
        return risk_band(risk_state, level)[0] or 0  # the connector's own rule

    return Source(
        label="Entra ID",
        admin_url=url,
        size=state.users,
        identity_id=state.user_id,
        score=score,
        name=lambda i: state.user(i)["displayName"],
        eligible=lambda i: state.user(i)["accountEnabled"] and score(i) <= 20,
    )


def _okta_source(app: aiohttp.web.Application, url: str) -> Source:
    state = app[okta.STATE]

    def score(index: int) -> Optional[int]:
        # the connector's rule: an ITP level's band score, HIGH on an admin is critical
        level = state.risk_level(index)[0]
        return {"NONE": 0, "LOW": 20, "MEDIUM": 50, "HIGH": 100 if state.role_types(index) else 75}[level]

    return Source(
        label="Okta",
        admin_url=url,
        size=state.identities,
        identity_id=state.user_id,
        score=score,
        name=lambda i: state.user(i)["profile"]["displayName"],
        eligible=lambda i: state.status(i) == "ACTIVE" and state.risk_level(i)[0] in ("NONE", "LOW"),
    )


def pick_spotlight(app: aiohttp.web.Application) -> tuple[int, Spotlight]:
    """The first active, unprivileged, low-risk HomeBase person with a plain name."""
    state = app[homebase.STATE]
    for index in range(state.size):
        person = state.person(index)
        plain = person.display_name == f"{person.first} {person.last}"
        if person.status == "active" and not person.privileged and plain and state.risk_score(index) <= 20:
            return index, Spotlight("homebase", state.identity_id(index), person.display_name, person.email)
    raise RuntimeError("no HomeBase identity fits the demo's spotlight; use more identities")


@dataclass
class Drift:
    """Moves risk scores through the simulators' admin APIs: raises, escalations, resolves, wandering."""

    session: aiohttp.ClientSession
    sources: list[Source]
    log: Callable[[str], None]
    rng: random.Random
    spotlight: tuple[Source, int]
    raised: list[tuple[Source, int]] = field(default_factory=list)
    ticks: int = 0

    async def set(self, source: Source, index: int, score: int, why: str) -> None:
        before = source.score(index)
        url = f"{source.admin_url}/_admin/identity/{source.identity_id(index)}/risk"
        async with self.session.post(url, json={"risk_score": score}) as response:
            if response.status != 200:
                self.log(f"drift: {source.label} refused a risk change (HTTP {response.status})")
                return
        if why:
            self.log(f"drift: {source.label} {source.name(index)!r} risk {before} -> {score} ({why})")

    async def start(self) -> None:
        source, index = self.spotlight
        await self.set(source, index, 92, "the identity to act on")

    def _fresh(self, source: Source) -> int:
        taken = {i for s, i in [*self.raised, self.spotlight] if s is source}
        for _ in range(200):
            index = self.rng.randrange(source.size)
            if index not in taken and source.eligible(index):
                return index
        raise RuntimeError(f"{source.label}: no low-risk identity left to drift")

    async def tick(self) -> None:
        """One step: a dozen identities wander inside their band, and one alert-worthy change."""
        self.ticks += 1
        for _ in range(WANDER_PER_TICK):
            source = self.rng.choice(self.sources)
            index = self._fresh(source)
            await self.set(source, index, self.rng.randint(0, 20), "")
        source = self.sources[self.ticks % len(self.sources)]
        step = ("high", "critical", "escalate", "resolve")[self.ticks % 4]
        mine = [(s, i) for s, i in self.raised if s is source]
        if step == "escalate" and mine:
            target = self.rng.choice(mine)
            await self.set(*target, self.rng.randint(80, 99), "escalates to critical")
        elif (step == "resolve" and mine) or len(self.raised) >= MAX_RAISED:
            target = self.rng.choice(mine or self.raised)
            self.raised.remove(target)
            await self.set(*target, self.rng.randint(3, 15), "back to low")
        else:
            index = self._fresh(source)
            self.raised.append((source, index))
            score = self.rng.randint(56, 72) if step != "critical" else self.rng.randint(78, 95)
            await self.set(source, index, score, "rises")


@dataclass
class Demo:
    """What is running: URLs, the Slack stand-in, the simulator apps and the identity to act on."""

    slack: FakeSlack
    slack_url: str
    bot_url: str
    homebase: aiohttp.web.Application
    sailpoint: aiohttp.web.Application
    spotlight: Spotlight
    workspace: Optional[aiohttp.web.Application] = None
    okta: Optional[aiohttp.web.Application] = None
    workspace_url: str = ""
    entra: Optional[aiohttp.web.Application] = None
    entra_url: str = ""


async def _drive(drift: Drift, slack: FakeSlack, first_wait: float, every: float, log: Callable[[str], None]):
    # the first sweep only records a baseline; a change before it ends would not alert
    try:
        await slack.wait_for(lambda: slack.messages("C0ALERTS"), timeout=first_wait, what="the first sweep")
    except TimeoutError:
        log("demo: no baseline message from the alerts sweep yet; drifting anyway")
    await drift.start()
    while True:
        await asyncio.sleep(every)
        try:
            await drift.tick()
        except (aiohttp.ClientError, asyncio.TimeoutError, RuntimeError) as exc:
            log(f"drift: skipped a step ({exc or type(exc).__name__})")


@contextlib.asynccontextmanager
async def running(
    workdir: Path,
    *,
    slack_port: int = 3000,
    identities: int = 300,
    seed: int = 7,
    first_wait: float = 15.0,
    drift_seconds: float = 4.0,
    log: Callable[[str], None] = print,
) -> AsyncIterator[Demo]:
    """Start every part on loopback (port 0 = any free one); stop them all on exit."""
    token, signing_secret = "xoxb-demo-" + secrets.token_hex(8), secrets.token_hex(16)
    hb_key = "hld_test_" + secrets.token_urlsafe(16)
    sp_id, sp_secret = "demo-" + secrets.token_hex(4), secrets.token_urlsafe(16)
    hb_app = homebase.create_app(identities=identities, seed=seed, tenants=2, api_keys=(hb_key,))
    sp_app = sailpoint.create_app(
        identities=identities, seed=seed + 1, client_id=sp_id, client_secret=sp_secret, tenant="acme"
    )
    gw_key = google_workspace.generate_key()
    gw_app = google_workspace.create_app(
        key=gw_key, identities=identities, seed=seed + 2, domain="acme.example"
    )
    en_id, en_secret = "00000000-0000-4000-8000-" + secrets.token_hex(6), secrets.token_urlsafe(24)
    en_app = entra.create_app(users=identities, seed=seed + 3, client_id=en_id, client_secret=en_secret)
    okta_token = "00" + secrets.token_urlsafe(24)
    okta_app = okta.create_app(identities=identities, seed=seed + 4, api_token=okta_token)
    slack = demo_workspace(
        bot_token=token,
        signing_secret=signing_secret,
        on_event=lambda line: log(f"slack: {line}"),
    )
    page = SlackUI(slack, "", PEOPLE)
    page.attach()
    config = load_config(CONFIG)
    config = config.model_copy(update={"store": StoreSettings(path=str(workdir / "idops-demo.db"))})
    async with (
        serving(hb_app) as hb_url,
        serving(sp_app) as sp_url,
        serving(gw_app) as gw_url,
        serving(en_app) as en_url,
        serving(okta_app) as okta_url,
        slack.serve(port=slack_port) as slack_url,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
    ):
        environ = {
            "HOMEBASE_BASE_URL": f"{hb_url}/v1",
            "HOMEBASE_API_KEY": hb_key,
            "SAILPOINT_BASE_URL": sp_url,
            "SAILPOINT_CLIENT_ID": sp_id,
            "SAILPOINT_CLIENT_SECRET": sp_secret,
            "GOOGLE_WORKSPACE_BASE_URL": gw_url,
            "GOOGLE_SERVICE_ACCOUNT_JSON": json.dumps({**gw_key, "token_uri": f"{gw_url}/token"}),
            "ENTRA_AUTHORITY_URL": en_url,
            "ENTRA_GRAPH_URL": en_url,
            "ENTRA_TENANT_ID": en_app[entra_state.STATE].tenant_id,
            "ENTRA_CLIENT_ID": en_id,
            "ENTRA_CLIENT_SECRET": en_secret,
            "OKTA_BASE_URL": okta_url,
            "OKTA_API_TOKEN": okta_token,
        }
        bot_secrets = Secrets(
            SLACK_BOT_TOKEN=token,  # type: ignore[arg-type]
            SLACK_SIGNING_SECRET=signing_secret,  # type: ignore[arg-type]
            SLACK_API_URL=slack.api_url,
            SLACK_APP_TOKEN=None,
            IDOPS_API_TOKEN=None,
        )
        bot_app = build_web_app(config, bot_secrets, environ=environ)
        async with serving(bot_app) as bot_base:
            page.bot_url = f"{bot_base}/slack/events"
            spot_index, spotlight = pick_spotlight(hb_app)
            sources = [
                _homebase_source(hb_app, hb_url),
                _sailpoint_source(sp_app, sp_url),
                _workspace_source(gw_app, gw_url),
                _entra_source(en_app, en_url),
                _okta_source(okta_app, okta_url),
            ]
            drift = Drift(session, sources, log, random.Random(seed), (sources[0], spot_index))
            task = asyncio.create_task(_drive(drift, slack, first_wait, drift_seconds, log), name="drift")
            try:
                yield Demo(
                    slack,
                    slack_url,
                    page.bot_url,
                    hb_app,
                    sp_app,
                    spotlight,
                    gw_app,
                    okta_app,
                    workspace_url=gw_url,
                    entra=en_app,
                    entra_url=en_url,
                )
            finally:
                # cancelled until it ends: a cancellation that lands as the drift's request times out
                # comes back as a TimeoutError, which the drift skips (a stop then waited forever)
                await tasks.stop(task)


def _stamp(line: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)


async def _run(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    with tempfile.TemporaryDirectory(prefix="idops-demo-") as workdir:
        async with running(
            Path(workdir),
            slack_port=args.port,
            identities=args.identities,
            seed=args.seed,
            drift_seconds=args.drift_seconds,
            log=_stamp,
        ) as demo:
            print(f"\n  idops demo is running. Open {demo.slack_url}/ in a browser.\n", flush=True)
            print(
                f"  You are {USERS[0].real_name} (responder); switch to an approver in the page\n"
                f"  Try: /idops whois {demo.spotlight.email}    (Ctrl-C stops everything)\n",
                flush=True,
            )
            await stop.wait()
    print("idops demo stopped", flush=True)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="idops demo", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=3000, help="port of the Slack page (default 3000)")
    parser.add_argument("--identities", type=int, default=300, help="identities per simulator (default 300)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--drift-seconds", type=float, default=4.0, help="seconds between risk changes")
    args = parser.parse_args(argv)
    if args.identities < 20 or args.drift_seconds <= 0:
        parser.error("--identities must be at least 20 and --drift-seconds more than 0")
    # one line per event comes from the demo itself; library logs only when something is wrong
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(_run(args))
    except ConfigError as exc:
        print(f"idops demo: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"idops demo: cannot listen on port {args.port} ({exc.strerror})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`idops serve`: the Slack bot over HTTP (`POST /slack/events`) or Socket Mode, plus `/healthz` and the
SOAR API, on one aiohttp application.

`/healthz` answers 200 while the process serves, with `{"ok": bool}` only: what a load balancer needs,
and nothing a stranger could use (no replica id with its host and pid, connectors, store backend or
channel errors). The details (store, replica, claims, alerts) come with `Authorization: Bearer
<IDOPS_API_TOKEN>`, the SOAR API's token; a wrong token there is 401.

Requests are checked before anything reads them: a body over `MAX_BODY` is refused with 413 from its
Content-Length (or once that many bytes arrived), a `/slack/events` request whose timestamp or
signature is wrong gets 401 before its body is parsed, and a signed body Bolt can't parse gets 400.
Each refusal is one short log line without the body.

`build_web_app` is the factory tests and the demo use; `main(argv)` is the command. Other parts (risk
alerts) plug in through `EXTENSIONS`: `setup(web_app, bot, environ)` functions that may add routes,
Bolt listeners, migrations and start-up/clean-up callbacks (`bot.extension` has the keys they use).
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import hashlib
import hmac
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Optional

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from connectors import Connector, ConnectorError

from . import api, slack_shapes, tasks
from .alerts import scheduler
from .app import create_app
from .approvals import ApprovalService, utcnow
from .claims import Claims
from .config import Config, ConfigError, Secrets, load_config
from .directory import SlackDirectory
from .extension import BOLT, BOT, HEALTH, Extension
from .services import Bot
from .slack_api import describe
from .store import open_configured

log = logging.getLogger("idops.server")

#: set up in order after the bot's own routes and listeners
EXTENSIONS: tuple[Extension, ...] = (scheduler.setup,)

_EXPIRY = web.AppKey("idops_expiry", asyncio.Task)
_SOCKET = web.AppKey("idops_socket", AsyncSocketModeHandler)
_KEEPER = web.AppKey("idops_claims_keeper", asyncio.Task)
_COMMANDS = web.AppKey("idops_commands", asyncio.Task)
#: the claim under which one replica at a time runs the timers (expiry, reverts, reminders)
EXPIRY_CLAIM = "expiry"
EXPIRY_SECONDS = 30.0
SOCKET_CONNECT_SECONDS = 30.0
#: the largest request body read, on every route: a Slack request (a command, a click with the message
#: it was on, a view submission) is tens of KB, a SOAR call or a webhook less; anything bigger is 413
MAX_BODY = 512 * 1024
#: Slack's replay window: a request whose timestamp is further from now is refused
SIGNATURE_WINDOW = 300
_TIMESTAMP = re.compile(r"[0-9]{1,12}")


class StartupError(Exception):
    """The server could not start (e.g. Slack refused Socket Mode); `str()` is one line for the operator."""


class _OneLine(logging.Filter):
    """Socket Mode's reconnect loop logs every failed attempt with a traceback: keep the one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info:
            error = record.exc_info[1]
            record.msg = f"{record.getMessage()} ({type(error).__name__})"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


async def connect_socket_mode(handler: AsyncSocketModeHandler) -> None:
    """Open the Socket Mode connection; StartupError naming what Slack (or the network) said."""
    client = handler.client
    timeout = SOCKET_CONNECT_SECONDS
    where = client.web_client.base_url
    try:
        # asked here, not inside the client's endless retry loop, so a refusal stops start-up
        client.wss_uri = await client.issue_new_wss_url()
    except SlackApiError as exc:
        error = describe(exc.response)
        wrong_token = error in ("invalid_auth", "not_allowed_token_type")
        hint = " (SLACK_APP_TOKEN must be an app-level token, xapp-…)" if wrong_token else ""
        raise StartupError(f"Slack refused Socket Mode: apps.connections.open said {error}{hint}") from None
    except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
        raise StartupError(f"cannot reach Slack at {where} for Socket Mode ({type(exc).__name__})") from None
    try:
        async with asyncio.timeout(timeout):
            await handler.connect_async()
    except TimeoutError:
        raise StartupError(
            f"Slack's Socket Mode endpoint did not accept a connection within {timeout:.0f} s"
        ) from None


def unverified(secret: str, body: bytes, headers: Mapping[str, str], now: float) -> Optional[str]:
    """Why a request is not from Slack (None when its timestamp and `v0=` signature check out).

    Works on the raw bytes and the header strings as received, so nothing unverified is ever parsed.
    """
    timestamp = headers.get("X-Slack-Request-Timestamp", "")
    signature = headers.get("X-Slack-Signature", "")
    if not timestamp or not signature:
        return "no signature"
    if not _TIMESTAMP.fullmatch(timestamp):
        return "unreadable timestamp"
    if abs(now - int(timestamp)) > SIGNATURE_WINDOW:
        return "timestamp outside Slack's 5-minute window"
    base = b"v0:" + timestamp.encode() + b":" + body
    expected = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    # headers arrive decoded with surrogateescape: compared as bytes, anything not ASCII just differs
    if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "surrogateescape")):
        return "wrong signature"
    return None


def _where(request: web.Request) -> str:
    """The refused request in a log line: method, path (as sent, so no decoded control characters), peer."""
    return f"{request.method} {request.rel_url.raw_path[:100]} from {request.remote}"


@web.middleware
async def limit_body(request: web.Request, handler: Callable[[web.Request], Any]) -> web.StreamResponse:
    """413 for a body announced bigger than MAX_BODY, before a byte of it is read (a chunked one is
    stopped by `client_max_size` once MAX_BODY bytes arrived)."""
    length = request.content_length
    if length is not None and length > MAX_BODY:
        log.info("refused %s: a body of %d bytes (the limit is %d)", _where(request), length, MAX_BODY)
        return web.json_response({"error": f"body over {MAX_BODY} bytes"}, status=413)
    try:
        return await handler(request)
    except web.HTTPRequestEntityTooLarge:
        log.info("refused %s: a body over %d bytes", _where(request), MAX_BODY)
        return web.json_response({"error": f"body over {MAX_BODY} bytes"}, status=413)


def _secret(value: object) -> Optional[str]:
    getter = getattr(value, "get_secret_value", None)
    return getter() if getter else None


def require(secrets: Secrets, *names: str) -> dict[str, str]:
    """The named secrets' values; ConfigError naming the first one that is not set."""
    out = {}
    for name in names:
        value = _secret(getattr(secrets, name))
        if not value:
            raise ConfigError(f"environment variable {name} is not set")
        out[name] = value
    return out


def build_connectors(
    config: Config, environ: Mapping[str, str], session: Optional[aiohttp.ClientSession] = None
) -> dict[str, Connector]:
    """Every configured connector, secrets resolved from `environ`."""
    return {entry.name: entry.build(environ, session) for entry in config.connectors}


def build_web_app(
    config: Config,
    secrets: Secrets,
    *,
    connectors: Optional[Mapping[str, Connector]] = None,
    session: Optional[aiohttp.ClientSession] = None,
    clock: Callable[[], datetime] = utcnow,
    socket_mode: bool = False,
    extensions: Optional[Sequence[Extension]] = None,
    environ: Optional[Mapping[str, str]] = None,
    expiry_seconds: Optional[float] = None,
) -> web.Application:
    """The bot's aiohttp application: Slack events (HTTP mode), /healthz, the SOAR API, extensions.

    Connectors given by the caller are left open; those built here are closed on clean-up.
    ConfigError names a missing environment variable or bad connector setting.
    """
    environ = os.environ if environ is None else environ
    names = ["SLACK_BOT_TOKEN"] + (["SLACK_APP_TOKEN"] if socket_mode else ["SLACK_SIGNING_SECRET"])
    values = require(secrets, *names)
    owned = connectors is None
    if connectors is None:
        try:
            connectors = build_connectors(config, environ, session)
        except ConnectorError as exc:
            raise ConfigError(str(exc)) from None
    api_url = secrets.SLACK_API_URL or config.slack.api_url
    client = AsyncWebClient(token=values["SLACK_BOT_TOKEN"], base_url=api_url.rstrip("/") + "/")
    db = open_configured(config, environ)
    claims = Claims(db, ttl=config.replicas.lease_seconds)
    # the timers run on the replica holding their claim; others look again each third of a lease
    expiry_seconds = min(EXPIRY_SECONDS, claims.ttl / 3) if expiry_seconds is None else expiry_seconds
    service = ApprovalService(
        db,
        connectors=connectors,
        access=config.access,
        approvals=config.approvals,
        directory=SlackDirectory(client),
        clock=clock,
    )
    service.claims = claims
    bot = Bot(config, client=client, connectors=connectors, service=service)
    # Socket Mode has no signing secret; Bolt only verifies HTTP requests, which that mode never gets.
    bolt = create_app(bot, signing_secret=values.get("SLACK_SIGNING_SECRET", ""), verify=not socket_mode)

    web_app = web.Application(client_max_size=MAX_BODY, middlewares=[limit_body])
    web_app[BOT] = bot
    web_app[BOLT] = bolt
    web_app[HEALTH] = {"replica": claims.health}

    signing_secret = values.get("SLACK_SIGNING_SECRET", "")
    api_token = _secret(secrets.IDOPS_API_TOKEN)

    async def slack_events(request: web.Request) -> web.Response:
        body = await request.read()
        headers = request.headers
        problem = unverified(signing_secret, body, headers, time.time())
        if problem:
            log.info("refused %s: %s (%d bytes, not logged)", _where(request), problem, len(body))
            return web.json_response({"error": "invalid request"}, status=401)
        try:
            parsed = AsyncBoltRequest(
                body=body.decode("utf-8"), query=request.query_string, headers=dict(headers)
            )
        except Exception as exc:  # Bolt's parser fails in many ways on bodies Slack never sends: all are 400
            log.info("refused %s: signed but unreadable (%s)", _where(request), type(exc).__name__)
            return web.json_response({"error": "unreadable request"}, status=400)
        shape = slack_shapes.problem(parsed.body)
        if shape:
            log.info("refused %s: signed but not shaped as Slack sends it (%s)", _where(request), shape[:120])
            return web.json_response({"error": "unreadable request"}, status=400)
        return await to_aiohttp_response(await bolt.async_dispatch(parsed))

    async def healthz(request: web.Request) -> web.Response:
        store: dict[str, Any] = {"ok": True, "backend": claims.backend}
        try:
            db.execute("SELECT 1").fetchall()
        except Exception as exc:  # any store failure is what this part reports
            store.update(ok=False, error=type(exc).__name__)
        body: dict[str, Any] = {"ok": store["ok"], "connectors": sorted(connectors), "store": store}
        for name, check in web_app[HEALTH].items():
            body[name] = part = check()
            body["ok"] = body["ok"] and part.get("ok", True)
        if api.bearer_matches(request, api_token):
            return web.json_response(body)
        if "Authorization" in request.headers:  # asked for the details with a wrong (or no configured) token
            return api.unauthorized()
        # anyone else (a load balancer's probe, a stranger): whether it is well, no host, pid or channel
        return web.json_response({"ok": body["ok"]})

    if not socket_mode:
        web_app.router.add_post("/slack/events", slack_events)
    web_app.router.add_get("/healthz", healthz)
    api.add_routes(web_app, service, api_token, on_created=bot.flow.post_approval)

    async def expiry_loop() -> None:
        try:  # first, what a stopped process left running: settled in seconds, not at the time limit
            await bot.flow.recover()
        except Exception:  # a bug here must not stop expiry; the periodic sweep gives those up later
            log.exception("settling actions interrupted by a stop failed")
        while True:
            if claims.take(EXPIRY_CLAIM) is None:  # another replica runs the timers (or the store is down)
                await asyncio.sleep(expiry_seconds)
                continue
            try:
                await bot.flow.expire_due()
            except Exception:
                log.exception("expiring overdue requests failed; trying again in %ss", expiry_seconds)
            try:  # due reverts: timers are rows in the store, claimed by compare-and-set
                await bot.containment.sweep()
            except (
                Exception
            ):  # a bug or a store fault must not stop the loop; due rows wait for the next round
                log.exception("reverting due containments failed; trying again in %ss", expiry_seconds)
            await asyncio.sleep(expiry_seconds)

    async def start(_: web.Application) -> None:
        loop = asyncio.get_running_loop()
        web_app[_KEEPER] = loop.create_task(claims.run(), name="claims")
        web_app[_EXPIRY] = loop.create_task(expiry_loop(), name="expiry")
        # every replica answers slash commands a stopped one left unanswered (bot/command_log.py)
        web_app[_COMMANDS] = loop.create_task(bot.commands.run(), name="commands")
        if socket_mode:
            socket_log = logging.getLogger("idops.socket_mode")
            if not any(isinstance(f, _OneLine) for f in socket_log.filters):
                socket_log.addFilter(_OneLine())
            handler = AsyncSocketModeHandler(bolt, values["SLACK_APP_TOKEN"], logger=socket_log)
            try:
                await connect_socket_mode(handler)
            except StartupError:
                # aiohttp runs no clean-up when start-up fails
                await handler.close_async()
                raise
            web_app[_SOCKET] = handler

    async def stop(_: web.Application) -> None:
        await tasks.stop(web_app.get(_EXPIRY), web_app.get(_KEEPER), web_app.get(_COMMANDS))
        if _SOCKET in web_app:
            await web_app[_SOCKET].close_async()
        try:
            await bot.replies.join(timeout=30)
        except TimeoutError:
            log.warning("stopped with %d background tasks unfinished", len(bot.replies.tasks))
        if owned:
            for connector in connectors.values():
                await connector.close()
        claims.release_all()  # another replica takes this one's work at once, not at lease end
        db.close()

    web_app.on_startup.append(start)
    web_app.on_cleanup.append(stop)
    for extension in EXTENSIONS if extensions is None else extensions:
        extension(web_app, bot, environ)
    return web_app


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="idops serve", description="Run the idops Slack bot.")
    parser.add_argument("--config", required=True, help="the idops TOML config file")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080)")
    parser.add_argument(
        "--socket-mode", action="store_true", help="connect to Slack over Socket Mode (needs SLACK_APP_TOKEN)"
    )
    return parser


def _listening(text: str) -> None:
    for url in re.findall(r"https?://[^\s,]+", text):
        log.info("idops listening on %s", url)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(args.config)
        web_app = build_web_app(config, Secrets(), socket_mode=args.socket_mode)
    except ConfigError as exc:
        print(f"idops serve: {exc}", file=sys.stderr)
        return 2
    mode = "Socket Mode" if args.socket_mode else f"POST http://{args.host}:{args.port}/slack/events"
    log.info("idops serving (%s, GET /healthz)", mode)
    try:
        # the address as bound (with --port 0, the port the system chose), once the server listens
        web.run_app(web_app, host=args.host, port=args.port, print=_listening, access_log=None)
    except StartupError as exc:
        print(f"idops serve: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno not in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES):
            raise
        print(
            f"idops serve: cannot listen on {args.host}:{args.port} ({os.strerror(exc.errno)})",
            file=sys.stderr,
        )
        return 2
    return 0

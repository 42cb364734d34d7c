"""A web page over FakeSlack that shows channels, threads, modals and App Home as a Slack user sees them.

The page (static/: plain HTML + JS, no build step) reads the stand-in's state from `/_ui/state` and
sends commands, clicks and submissions to `/_ui/...`, which hand them to FakeSlack's own driver, so
the bot receives exactly the signed requests the tests send.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Sequence
from pathlib import Path
from typing import Any, Callable, Optional

import aiohttp
from aiohttp import web

from .fake import FakeSlack
from .records import BotReply, SlackUser

STATIC = Path(__file__).parent / "static"
LONG_POLL_SECONDS = 20.0

# The demo workspace (standins/demo.toml names these ids): a responder, two approvers, two channels.
RESPONDER, APPROVER_1, APPROVER_2 = "U0ALICE", "U0BOB", "U0CAROL"
USERS = (
    SlackUser(id=RESPONDER, name="alice", email="alice@idops-demo.example", real_name="Alice Responder"),
    SlackUser(id=APPROVER_1, name="bob", email="bob@idops-demo.example", real_name="Bob Approver"),
    SlackUser(id=APPROVER_2, name="carol", email="carol@idops-demo.example", real_name="Carol Approver"),
)
PEOPLE = ((RESPONDER, "responder"), (APPROVER_1, "approver"), (APPROVER_2, "approver"))
USERGROUPS = {"S0APPROVERS": [APPROVER_1, APPROVER_2], "S0ONCALL": [APPROVER_1]}
HANDLES = {"S0APPROVERS": "idops-approvers", "S0ONCALL": "secops-oncall"}
CHANNELS = {"C0ALERTS": "idops-alerts", "C0APPROVALS": "idops-approvals"}


def demo_workspace(**settings: Any) -> FakeSlack:
    """A FakeSlack with the demo's people, groups and channels (`settings` go to FakeSlack)."""
    return FakeSlack(
        users=USERS, usergroups=USERGROUPS, usergroup_handles=HANDLES, channels=CHANNELS, **settings
    )


class BadRequest(Exception):
    """Something the page sent that can't be acted on; shown on the page as is."""


class SlackUI:
    """The page's JSON endpoints; `people` are the demo users the page can switch between."""

    def __init__(self, slack: FakeSlack, bot_url: str, people: Sequence[tuple[str, str]]) -> None:
        self.slack = slack
        self.bot_url = bot_url
        self.people = list(people)

    def attach(self) -> None:
        """Add the page and its endpoints to the stand-in's app (before it is served)."""
        router = self.slack.app.router
        router.add_get("/", self.index)
        router.add_static("/ui/", STATIC)
        router.add_get("/_ui/state", self.state)
        router.add_get("/_ui/people", self.people_list)
        router.add_post("/_ui/command", self._action(self.command))
        router.add_post("/_ui/click", self._action(self.click))
        router.add_post("/_ui/submit", self._action(self.submit))
        router.add_post("/_ui/close", self._action(self.close))
        router.add_post("/_ui/home", self._action(self.open_home))

    async def index(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html")

    async def people_list(self, request: web.Request) -> web.Response:
        return web.json_response({"people": [{"id": uid, "role": role} for uid, role in self.people]})

    def _user(self, value: Any) -> str:
        if not isinstance(value, str) or value not in self.slack.users:
            raise BadRequest(f"unknown user {value!r}")
        return value

    async def state(self, request: web.Request) -> web.Response:
        """Everything the page shows for one user; waits (bounded) until something changes."""
        try:
            user = self._user(request.query.get("user"))
            seen = int(request.query.get("version", "-1"))
        except (BadRequest, ValueError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        if seen == self.slack.version:
            with contextlib.suppress(TimeoutError):
                await self.slack.wait_for(lambda: self.slack.version != seen, timeout=LONG_POLL_SECONDS)
        slack = self.slack
        users = {uid: {"name": u.name, "real_name": u.real_name or u.name} for uid, u in slack.users.items()}
        channels = [
            {"id": cid, "name": name, "messages": slack.messages(cid)}
            for cid, name in (slack.channels or {}).items()
        ]
        return web.json_response(
            {
                "version": slack.version,
                "team": slack.team_domain,
                "me": user,
                "people": [{"id": uid, "role": role} for uid, role in self.people],
                "users": users,
                "usergroups": slack.usergroup_handles,
                "channels": channels,
                "ephemerals": slack.visible_ephemerals(user),
                "modals": slack.views(user),
                "home": slack.home(user),
            }
        )

    def _action(
        self, handler: Callable[[dict[str, Any]], Awaitable[Optional[BotReply]]]
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def endpoint(request: web.Request) -> web.Response:
            try:
                body = await request.json()
                if not isinstance(body, dict):
                    raise BadRequest("send a JSON object")
                reply = await handler(body)
            except ValueError as exc:  # also JSON decoding errors
                return web.json_response({"error": str(exc) or "not valid JSON"}, status=400)
            except (BadRequest, LookupError) as exc:
                return web.json_response({"error": str(exc)}, status=400)
            except (aiohttp.ClientError, TimeoutError) as exc:
                error = f"the bot at {self.bot_url} did not answer ({type(exc).__name__})"
                return web.json_response({"error": error}, status=502)
            return web.json_response({"status": reply.status if reply else None})

        return endpoint

    async def command(self, body: dict[str, Any]) -> BotReply:
        user = self._user(body.get("user"))
        line = str(body.get("line", "")).strip()
        command, _, text = line.partition(" ")
        if not command.startswith("/") or len(command) < 2:
            raise BadRequest("type a slash command, e.g. /idops help")
        channel = str(body.get("channel") or "")
        return await self.slack.command(self.bot_url, user, text.strip(), command=command, channel_id=channel)

    async def click(self, body: dict[str, Any]) -> BotReply:
        user = self._user(body.get("user"))
        where = body.get("where")
        if not isinstance(where, dict):
            raise BadRequest("where must say which message or view was clicked")
        if where.get("kind") == "view":
            target = {"type": where.get("view_type"), "id": where.get("view_id")}
        else:
            target = {"channel": where.get("channel"), "ts": where.get("ts")}
        action_id, value = body.get("action_id"), body.get("value")
        if not isinstance(action_id, str) or not (value is None or isinstance(value, str)):
            raise BadRequest("action_id must be a string and value a string or null")
        return await self.slack.click(self.bot_url, user, target, action_id, value)

    async def submit(self, body: dict[str, Any]) -> BotReply:
        user = self._user(body.get("user"))
        values = body.get("values")
        if not isinstance(values, dict) or not all(isinstance(v, dict) for v in values.values()):
            raise BadRequest("values must be {block_id: {action_id: value}}")
        return await self.slack.submit_view(self.bot_url, user, str(body.get("view_id")), values)

    async def close(self, body: dict[str, Any]) -> Optional[BotReply]:
        user = self._user(body.get("user"))
        return await self.slack.close_view(self.bot_url, user, str(body.get("view_id")))

    async def open_home(self, body: dict[str, Any]) -> BotReply:
        return await self.slack.open_home(self.bot_url, self._user(body.get("user")))

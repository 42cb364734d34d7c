"""A local Slack: the Web API the bot calls, and a driver that sends the bot what Slack would send.

`FakeSlack.app` serves `/api/<method>` (point the bot's `api_url` at `<base>/api/`) and the
`/response/<id>` URLs handed out with commands and clicks. It keeps channels, threads, ephemerals,
modals and App Home per user, validates Block Kit the way Slack does, records every call, and can be
told to fail. The driver methods (`command`, `click`, `submit_view`, `open_home`) sign their requests
with the signing secret exactly as Slack does, so the bot under test runs its real verification.
Given `SOCKET_MODE` instead of the bot's URL, they send the same payloads as Socket Mode envelopes
over the websocket `apps.connections.open` (app-level token) hands out, and read the bot's ack there.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import itertools
import json
import os
import secrets
import sys
import time
import urllib.parse
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

import aiohttp
from aiohttp import web
from slack_sdk.errors import SlackObjectFormationError
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View
from slack_sdk.signature import SignatureVerifier

from . import serving

MAX_TEXT = 40_000
MAX_MESSAGE_BLOCKS = 50
MAX_VIEW_BLOCKS = 100
MAX_MODAL_STACK = 3
RESPONSE_URL_USES = 5
RESPONSE_URL_TTL = 30 * 60
TEXT_TYPES = ("plain_text", "mrkdwn")
# Block Kit keys whose text object Slack accepts only as plain_text.
PLAIN_ONLY_KEYS = frozenset({"label", "placeholder", "title", "deny", "confirm", "submit", "close", "hint"})
PLAIN_ONLY_TEXT_PARENTS = frozenset({"header", "button"})
#: the driver's "bot URL" for a bot connected over Socket Mode
SOCKET_MODE = "socket-mode:"
# Web API methods that take the app-level token (xapp-…) instead of the bot token
APP_TOKEN_METHODS = frozenset({"apps.connections.open"})


class SlackError(Exception):
    """A Web API failure: `code` is Slack's error string, `messages` its response_metadata.messages."""

    def __init__(self, code: str, messages: Sequence[str] = (), status: int = 200) -> None:
        super().__init__(code)
        self.code = code
        self.messages = list(messages)
        self.status = status


@dataclass(frozen=True)
class SlackUser:
    """A workspace member as users.info describes it."""

    id: str
    name: str
    email: Optional[str] = None
    real_name: Optional[str] = None
    is_admin: bool = False
    is_owner: bool = False
    is_bot: bool = False
    deleted: bool = False
    tz: str = "UTC"

    def to_api(self, team_id: str) -> dict[str, Any]:
        real_name = self.real_name or self.name
        profile: dict[str, Any] = {"real_name": real_name, "display_name": self.name}
        if self.email:
            profile["email"] = self.email
        return {
            "id": self.id,
            "team_id": team_id,
            "name": self.name,
            "real_name": real_name,
            "deleted": self.deleted,
            "is_admin": self.is_admin,
            "is_owner": self.is_owner,
            "is_bot": self.is_bot,
            "tz": self.tz,
            "profile": profile,
        }


@dataclass
class BotReply:
    """What the bot answered one driver request with (Slack's side of the HTTP exchange)."""

    status: int
    body: str
    trigger_id: Optional[str] = None
    response_url: Optional[str] = None

    @property
    def json(self) -> Any:
        """The body as JSON, or None when it is empty or not JSON."""
        try:
            return json.loads(self.body) if self.body else None
        except ValueError:
            return None


@dataclass
class _Fault:
    status: Optional[int]
    error: Optional[str]
    retry_after: Optional[float]
    count: int


@dataclass
class _ResponseUrl:
    user: str
    channel: str
    # what the user interacted with: a channel message ts, an ephemeral ts, or None (slash command)
    message_ts: Optional[str]
    ephemeral: bool
    created: float
    uses: int = 0


@dataclass
class _Trigger:
    user: str
    expires: float
    used: bool = False


@dataclass
class _State:
    channels: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    ephemeral: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    modals: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    home: dict[str, dict[str, Any]] = field(default_factory=dict)


# --- Block Kit validation ------------------------------------------------------------------------


def _not_kept(raw: Any, parsed: Any, where: str) -> Optional[str]:
    """The first place where `raw` holds something the slack_sdk model dropped or changed."""
    if isinstance(raw, dict):
        if not isinstance(parsed, dict):
            return where
        for key, value in raw.items():
            if key not in parsed:
                return f"{where}/{key}"
            problem = _not_kept(value, parsed[key], f"{where}/{key}")
            if problem:
                return problem
        return None
    if isinstance(raw, list):
        if not isinstance(parsed, list) or len(parsed) != len(raw):
            return where
        for index, (item, kept) in enumerate(zip(raw, parsed)):
            problem = _not_kept(item, kept, f"{where}/{index}")
            if problem:
                return problem
        return None
    return None if raw == parsed else where


def _text_problems(node: Any, where: str, parent_type: str = "") -> list[str]:
    """Text objects Slack rejects though slack_sdk's models let them through."""
    problems: list[str] = []
    if isinstance(node, list):
        for index, item in enumerate(node):
            problems += _text_problems(item, f"{where}/{index}", parent_type)
        return problems
    if not isinstance(node, dict):
        return problems
    node_type = str(node.get("type", ""))
    if node_type in TEXT_TYPES:
        text = node.get("text")
        if not isinstance(text, str) or not text:
            problems.append(f"[ERROR] must be more than 0 characters [json-pointer:{where}/text]")
        return problems
    for key, value in node.items():
        child = f"{where}/{key}"
        if isinstance(value, dict) and value.get("type") in TEXT_TYPES:
            plain_only = key in PLAIN_ONLY_KEYS or (key == "text" and node_type in PLAIN_ONLY_TEXT_PARENTS)
            if plain_only and value.get("type") != "plain_text":
                problems.append(f"[ERROR] must be a plain_text text object [json-pointer:{child}/type]")
        if key == "text" and isinstance(value, str) and node_type and node_type not in TEXT_TYPES:
            problems.append(f"[ERROR] must be a text object, not a string [json-pointer:{child}]")
            continue
        problems += _text_problems(value, child, node_type)
    return problems


def block_problems(blocks: Any, limit: int = MAX_MESSAGE_BLOCKS, pointer: str = "/blocks") -> list[str]:
    """Why Slack would answer `invalid_blocks` for this block list (empty when it is valid Block Kit)."""
    if not isinstance(blocks, list):
        return [f"[ERROR] must provide an array [json-pointer:{pointer}]"]
    if len(blocks) > limit:
        return [f"[ERROR] no more than {limit} items allowed [json-pointer:{pointer}]"]
    problems: list[str] = []
    for index, raw in enumerate(blocks):
        where = f"{pointer}/{index}"
        if not isinstance(raw, dict) or not isinstance(raw.get("type"), str):
            problems.append(f"[ERROR] missing required field: type [json-pointer:{where}]")
            continue
        try:
            model = Block.parse(copy.deepcopy(raw))
            if model is None:
                problems.append(f"[ERROR] unsupported type: {raw['type']} [json-pointer:{where}/type]")
                continue
            model.validate_json()
            dropped = _not_kept(raw, model.to_dict(), where)
        except SlackObjectFormationError as exc:
            problems.append(f"[ERROR] {exc} [json-pointer:{where}]")
            continue
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            problems.append(f"[ERROR] not a valid {raw['type']} block ({exc}) [json-pointer:{where}]")
            continue
        if dropped:
            problems.append(f"[ERROR] unknown or malformed field [json-pointer:{dropped}]")
        problems += _text_problems(raw, where)
    return problems


def view_problems(view: Any) -> list[str]:
    """Why Slack would reject this view (empty when views.open/update/push/publish would accept it)."""
    if not isinstance(view, dict):
        return ["[ERROR] must provide an object [json-pointer:/view]"]
    if view.get("type") not in ("modal", "home"):
        return ["[ERROR] must be one of: modal, home [json-pointer:/view/type]"]
    problems = block_problems(view.get("blocks"), MAX_VIEW_BLOCKS, "/view/blocks")
    if problems:
        return problems
    try:
        View(**copy.deepcopy(view)).validate_json()
    except SlackObjectFormationError as exc:
        return [f"[ERROR] {exc} [json-pointer:/view]"]
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        return [f"[ERROR] not a valid view ({exc}) [json-pointer:/view]"]
    if view["type"] == "modal":
        title = view.get("title")
        if not isinstance(title, dict) or title.get("type") != "plain_text":
            return ["[ERROR] missing required field: title [json-pointer:/view/title]"]
        has_input = any(b.get("type") == "input" for b in view["blocks"])
        if has_input and not view.get("submit"):
            return ["[ERROR] must provide submit when using input blocks [json-pointer:/view/submit]"]
    return _text_problems({k: v for k, v in view.items() if k != "blocks"}, "/view")


# --- the fake ------------------------------------------------------------------------------------


def _flag(value: Any) -> bool:
    return value is True or str(value).lower() in ("1", "true")


def _strip(message: dict[str, Any]) -> dict[str, Any]:
    """A stored message as Slack's own payloads show it (without the helper-only keys)."""
    return {k: v for k, v in message.items() if k not in ("channel", "replies", "source")}


class FakeSlack:
    """Slack's Web API and response URLs on loopback, plus the driver that plays Slack towards the bot."""

    def __init__(
        self,
        *,
        users: Sequence[SlackUser] = (),
        usergroups: Optional[Mapping[str, Sequence[str]]] = None,
        usergroup_handles: Optional[Mapping[str, str]] = None,
        channels: Optional[Mapping[str, str]] = None,
        bot_token: str = "xoxb-fake-idops",  # noqa: S107 - a stand-in's well-known test value
        app_token: str = "xapp-fake-idops",  # noqa: S107
        signing_secret: str = "fake-signing-secret",  # noqa: S107
        verification_token: str = "fake-verification-token",  # noqa: S107
        team_id: str = "T0IDOPS",
        team_domain: str = "idops-demo",
        app_id: str = "A0IDOPS",
        bot_user_id: str = "U0IDOPSBOT",
        bot_id: str = "B0IDOPS",
        trigger_ttl: float = 3.0,
        ack_timeout: float = 10.0,
        on_event: Optional[Callable[[str], None]] = None,
    ) -> None:
        self.users = {user.id: user for user in users}
        self.usergroups = {gid: list(members) for gid, members in (usergroups or {}).items()}
        # id -> handle (@oncall); the lower-cased id when not given
        self.usergroup_handles = {
            gid: (usergroup_handles or {}).get(gid, gid.lower()) for gid in self.usergroups
        }
        # id -> name; None means any channel id is accepted and created on first use
        self.channels = dict(channels) if channels is not None else None
        self.bot_token = bot_token
        self.app_token = app_token
        self.signing_secret = signing_secret
        self.verification_token = verification_token
        self.team_id = team_id
        self.team_domain = team_domain
        self.app_id = app_id
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.trigger_ttl = trigger_ttl
        self.ack_timeout = ack_timeout
        self.on_event = on_event
        self.base_url: Optional[str] = None
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.warnings: list[tuple[str, str]] = []
        self._state = _State()
        self._faults: dict[str, deque[_Fault]] = defaultdict(deque)
        self._down: Optional[str] = None
        self._triggers: dict[str, _Trigger] = {}
        self._response_urls: dict[str, _ResponseUrl] = {}
        self._last_ts = 0
        self._ids = itertools.count(1)
        self._changed: Optional[asyncio.Event] = None
        # bumped on every change, so a page can wait for the next one
        self.version = 0
        self.app = web.Application()
        self.app.router.add_route("*", "/api/{method}", self._api)
        self.app.router.add_post("/response/{rid}", self._response)
        self.app.router.add_get("/socket", self._socket)
        self._tickets: set[str] = set()
        self._socket_ws: Optional[web.WebSocketResponse] = None
        self._socket_acks: dict[str, asyncio.Future[Any]] = {}
        #: when set, the websocket URLs apps.connections.open hands out refuse the connection
        self.refuse_sockets = False

    # --- serving and switches -------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def serve(self, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
        """Serve on loopback and remember the base URL (response_urls are built from it)."""
        async with serving(self.app, host, port) as url:
            self.base_url = url
            try:
                yield url
            finally:
                self.base_url = None
                if self._socket_ws is not None:
                    await self._socket_ws.close()  # a connected app must not hold shutdown up
                self._touch()  # wake long-polling pages, so shutdown need not wait for them

    @property
    def api_url(self) -> str:
        """What the bot's `slack.api_url` should be."""
        return f"{self._base()}/api/"

    def fail_next(
        self,
        method: str,
        status: Optional[int] = None,
        *,
        error: Optional[str] = None,
        retry_after: Optional[float] = 1,
        count: int = 1,
    ) -> None:
        """Make the next `count` calls of `method` fail: HTTP `status` (429 sends Retry-After), or
        HTTP 200 with `{"ok": false, "error": error}`. With neither, a 429 like Slack's rate limit."""
        if status is None and error is None:
            status = 429
        self._faults[method].append(_Fault(status, error, retry_after, count))

    def down(self, mode: str = "503") -> None:
        """Make the Web API and response URLs unreachable: `"503"` answers 503, `"drop"` closes the
        connection without an answer (what the client sees when Slack cannot be reached)."""
        if mode not in ("503", "drop"):
            raise ValueError("down() mode must be '503' or 'drop'")
        self._down = mode

    def up(self) -> None:
        self._down = None

    # --- what happened --------------------------------------------------------------------------

    def calls_to(self, method: str) -> list[dict[str, Any]]:
        """Params of every call to `method`, in order (failed and injected-fault attempts included)."""
        return [params for name, params in self.calls if name == method]

    def messages(self, channel: str) -> list[dict[str, Any]]:
        """Top-level messages of a channel, oldest first, as they are now, each with its `replies`."""
        channel = self._resolve_channel(channel, create=False) or channel
        stored = self._state.channels.get(channel, [])
        out = []
        for message in stored:
            if not _top_level(message):
                continue
            item = copy.deepcopy(message)
            item["channel"] = channel
            item["replies"] = [
                {**copy.deepcopy(reply), "channel": channel}
                for reply in stored
                if reply.get("thread_ts") == message["ts"] and reply["ts"] != message["ts"]
            ]
            out.append(item)
        return out

    def message(self, channel: str, ts: str) -> dict[str, Any]:
        """One stored message (top-level or reply) as it is now; KeyError if there is none."""
        channel = self._resolve_channel(channel, create=False) or channel
        for message in self._state.channels.get(channel, []):
            if message["ts"] == ts:
                return {**copy.deepcopy(message), "channel": channel}
        raise KeyError(f"no message {ts} in {channel}")

    def ephemerals(self, user: str) -> list[dict[str, Any]]:
        """Messages sent to `user` with chat.postEphemeral."""
        return [copy.deepcopy(m) for m in self._state.ephemeral[user] if m["source"] == "chat.postEphemeral"]

    def responses(self, user: str) -> list[dict[str, Any]]:
        """What `user` saw in answer to commands and clicks: acks and response_url posts still shown."""
        return [copy.deepcopy(m) for m in self._state.ephemeral[user] if m["source"] != "chat.postEphemeral"]

    def visible_ephemerals(self, user: str) -> list[dict[str, Any]]:
        """Every ephemeral message `user` can see, oldest first."""
        return copy.deepcopy(self._state.ephemeral[user])

    def views(self, user: str) -> list[dict[str, Any]]:
        """The modal stack open for `user`, bottom first."""
        return copy.deepcopy(self._state.modals[user])

    def home(self, user: str) -> Optional[dict[str, Any]]:
        """The App Home view published for `user`, if any."""
        view = self._state.home.get(user)
        return copy.deepcopy(view) if view else None

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 5.0, what: str = "") -> Any:
        """Wait until `predicate()` is truthy (checked after every Web API call and response_url post)
        and return its value; TimeoutError naming `what` after `timeout` seconds.

        Bolt runs listeners after it acks, so what a handler posts arrives after the driver returns.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not (result := predicate()):
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"FakeSlack: waited {timeout}s for {what or 'a condition'} in vain")
            if self._changed is None:
                self._changed = asyncio.Event()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)
        return result

    def _touch(self) -> None:
        self.version += 1
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    # --- helpers --------------------------------------------------------------------------------

    def _base(self) -> str:
        if not self.base_url:
            raise RuntimeError("FakeSlack is not being served: use `async with slack.serve() as url:`")
        return self.base_url

    def _event(self, line: str) -> None:
        self._touch()
        if self.on_event is not None:
            # provider and user text reaches a terminal here: no escape sequences or control characters
            self.on_event("".join(ch if ch.isprintable() else "?" for ch in line))

    def _ts(self) -> str:
        now = int(time.time() * 1_000_000)
        self._last_ts = max(now, self._last_ts + 1)
        return f"{self._last_ts // 1_000_000}.{self._last_ts % 1_000_000:06d}"

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):08X}"

    def _resolve_channel(self, channel: Any, *, create: bool = True) -> Optional[str]:
        """A channel id from an id, `#name`, name, or a user id (their DM with the bot)."""
        if not isinstance(channel, str) or not channel:
            return None
        if channel.startswith("U") and channel in self.users:
            return "D" + channel[1:]
        if channel.startswith("D"):
            return channel
        if self.channels is None:
            # without a declared workspace, a channel exists once something was posted to it
            return channel if create or channel in self._state.channels else None
        if channel in self.channels:
            return channel
        name = channel.lstrip("#")
        for cid, cname in self.channels.items():
            if cname == name:
                return cid
        return None

    def _channel_param(self, params: Mapping[str, Any], *, create: bool = True) -> str:
        channel = self._resolve_channel(params.get("channel"), create=create)
        if channel is None:
            raise SlackError("channel_not_found")
        return channel

    def _channel_name(self, channel: str) -> str:
        if self.channels and channel in self.channels:
            return self.channels[channel]
        return "directmessage" if channel.startswith("D") else channel.lower()

    def _find(self, channel: str, ts: Any) -> dict[str, Any]:
        for message in self._state.channels.get(channel, []):
            if message["ts"] == ts:
                return message
        raise SlackError("message_not_found")

    def _content(self, params: Mapping[str, Any], method: str) -> dict[str, Any]:
        """Validated text, blocks and metadata of a message-posting call."""
        text = params.get("text")
        blocks = params.get("blocks")
        if isinstance(blocks, str):
            try:
                blocks = json.loads(blocks)
            except ValueError:
                raise SlackError("invalid_blocks_format") from None
        if text is not None and not isinstance(text, str):
            text = str(text)
        if not text and not blocks:
            raise SlackError("no_text")
        if text and len(text) > MAX_TEXT:
            raise SlackError("msg_too_long")
        out: dict[str, Any] = {"text": text or ""}
        if blocks:
            problems = block_problems(blocks)
            if problems:
                raise SlackError("invalid_blocks", problems)
            out["blocks"] = blocks
            if not text:
                self.warnings.append((method, "missing_text_or_fallback"))
        metadata = params.get("metadata")
        if isinstance(metadata, str) and metadata:
            try:
                metadata = json.loads(metadata)
            except ValueError:
                raise SlackError("invalid_metadata_format") from None
        if metadata:
            if (
                not isinstance(metadata, dict)
                or not isinstance(metadata.get("event_type"), str)
                or not isinstance(metadata.get("event_payload", {}), dict)
            ):
                raise SlackError("invalid_metadata_format")
            out["metadata"] = {
                "event_type": metadata["event_type"],
                "event_payload": metadata.get("event_payload", {}),
            }
        return out

    # --- HTTP: the Web API ----------------------------------------------------------------------

    async def _read_params(self, request: web.Request) -> tuple[dict[str, Any], Optional[str]]:
        params: dict[str, Any] = dict(request.query)
        if request.method == "POST" and request.can_read_body:
            if request.content_type == "application/json":
                try:
                    body = await request.json()
                except ValueError:
                    raise SlackError("invalid_json") from None
                if not isinstance(body, dict):
                    raise SlackError("invalid_json")
                params.update(body)
            else:
                params.update({k: v for k, v in (await request.post()).items() if isinstance(v, str)})
        token = params.pop("token", None)
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            token = auth[len("Bearer ") :]
        return params, token

    def _unavailable(self, request: web.Request) -> web.StreamResponse:
        if self._down == "drop" and request.transport is not None:
            request.transport.close()
        return web.Response(status=503, text="Slack is unavailable")

    async def _api(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        if self._down:
            return self._unavailable(request)
        try:
            params, token = await self._read_params(request)
        except SlackError as exc:
            return web.json_response({"ok": False, "error": exc.code})
        self.calls.append((method, copy.deepcopy(params)))
        faults = self._faults.get(method)
        if faults:
            fault = faults[0]
            fault.count -= 1
            if fault.count <= 0:
                faults.popleft()
            return self._fault_response(fault)
        handler = self._methods.get(method)
        if handler is None:
            return web.json_response({"ok": False, "error": "unknown_method"})
        if not token:
            return web.json_response({"ok": False, "error": "not_authed"})
        expected = self.app_token if method in APP_TOKEN_METHODS else self.bot_token
        if not secrets.compare_digest(token, expected):
            known = secrets.compare_digest(token, self.bot_token) or secrets.compare_digest(
                token, self.app_token
            )
            return web.json_response(
                {"ok": False, "error": "not_allowed_token_type" if known else "invalid_auth"}
            )
        try:
            result = handler(self, params)
        except SlackError as exc:
            self._touch()
            body: dict[str, Any] = {"ok": False, "error": exc.code}
            if exc.messages:
                body["response_metadata"] = {"messages": exc.messages}
            return web.json_response(body, status=exc.status)
        self._touch()
        body = {"ok": True, **result}
        if body.pop("_warned", False):
            body["warning"] = "missing_text_or_fallback"
            body["response_metadata"] = {"warnings": ["missing_text_or_fallback"]}
        return web.json_response(body)

    @staticmethod
    def _fault_response(fault: _Fault) -> web.Response:
        if fault.status is None:
            return web.json_response({"ok": False, "error": fault.error})
        headers = {}
        if fault.status == 429 and fault.retry_after is not None:
            headers["Retry-After"] = str(int(fault.retry_after))
        error = fault.error or ("ratelimited" if fault.status == 429 else "fatal_error")
        return web.json_response({"ok": False, "error": error}, status=fault.status, headers=headers)

    # --- Web API methods ------------------------------------------------------------------------

    def _auth_test(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": f"https://{self.team_domain}.slack.com/",
            "team": self.team_domain,
            "user": "idops",
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _bot_message(self, content: dict[str, Any], ts: str) -> dict[str, Any]:
        return {
            "type": "message",
            "user": self.bot_user_id,
            "bot_id": self.bot_id,
            "app_id": self.app_id,
            "team": self.team_id,
            "ts": ts,
            **content,
        }

    def _post(self, channel: str, content: dict[str, Any], thread_ts: Any = None, broadcast: bool = False):
        ts = self._ts()
        message = self._bot_message(content, ts)
        if thread_ts:
            try:
                parent = self._find(channel, thread_ts)
            except SlackError:
                raise SlackError("thread_not_found") from None
            if parent.get("thread_ts") not in (None, parent["ts"]):
                parent = self._find(channel, parent["thread_ts"])
            message["thread_ts"] = parent["ts"]
            parent["thread_ts"] = parent["ts"]
            parent["reply_count"] = parent.get("reply_count", 0) + 1
            parent["latest_reply"] = ts
            if broadcast:
                message["subtype"] = "thread_broadcast"
        self._state.channels[channel].append(message)
        where = "a thread in " if thread_ts else ""
        self._event(f"bot posted in {where}#{self._channel_name(channel)}: {_summary(message)}")
        return message

    def _chat_post_message(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel_param(params)
        content = self._content(params, "chat.postMessage")
        message = self._post(
            channel, content, params.get("thread_ts"), _flag(params.get("reply_broadcast", False))
        )
        return {
            "channel": channel,
            "ts": message["ts"],
            "message": _strip(message),
            "_warned": not content["text"],
        }

    def _chat_update(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel_param(params)
        message = self._find(channel, params.get("ts"))
        if message.get("bot_id") != self.bot_id:
            raise SlackError("cant_update_message")
        merged = {"text": message.get("text", ""), **params}
        if "blocks" not in params and message.get("blocks"):
            merged["blocks"] = message["blocks"]
        content = self._content(merged, "chat.update")
        if params.get("blocks") in ([], "[]"):
            content.pop("blocks", None)
            message.pop("blocks", None)
        if "metadata" not in content and message.get("metadata"):
            content["metadata"] = message["metadata"]
        message.update(content)
        message["edited"] = {"user": self.bot_user_id, "ts": self._ts()}
        self._event(f"bot updated a message in #{self._channel_name(channel)}: {_summary(message)}")
        return {
            "channel": channel,
            "ts": message["ts"],
            "text": message["text"],
            "message": _strip(message),
            "_warned": not content["text"],
        }

    def _chat_delete(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel_param(params)
        message = self._find(channel, params.get("ts"))
        if message.get("bot_id") != self.bot_id:
            raise SlackError("cant_delete_message")
        self._state.channels[channel].remove(message)
        return {"channel": channel, "ts": message["ts"]}

    def _chat_post_ephemeral(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel_param(params)
        user = params.get("user")
        if user not in self.users:
            raise SlackError("user_not_in_channel")
        content = self._content(params, "chat.postEphemeral")
        entry = self._ephemeral(user, channel, content, "chat.postEphemeral", params.get("thread_ts"))
        return {"message_ts": entry["ts"], "_warned": not content["text"]}

    def _ephemeral(
        self, user: str, channel: str, content: dict[str, Any], source: str, thread_ts: Any = None
    ) -> dict[str, Any]:
        entry = {
            **self._bot_message(content, self._ts()),
            "channel": channel,
            "is_ephemeral": True,
            "source": source,
        }
        if thread_ts:
            entry["thread_ts"] = thread_ts
        self._state.ephemeral[user].append(entry)
        self._event(f"only {user} sees ({source}): {_summary(entry)}")
        return entry

    def _chat_get_permalink(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel_param(params)
        message = self._find(channel, params.get("message_ts"))
        link = f"https://{self.team_domain}.slack.com/archives/{channel}/p{message['ts'].replace('.', '')}"
        return {"channel": channel, "permalink": link}

    def _history_window(self, params: dict[str, Any], messages: list[dict[str, Any]]) -> list:
        inclusive = _flag(params.get("inclusive", False))
        oldest, latest = params.get("oldest"), params.get("latest")

        def inside(ts: str) -> bool:
            if oldest and (float(ts) < float(oldest) or (not inclusive and ts == str(oldest))):
                return False
            return not (latest and (float(ts) > float(latest) or (not inclusive and ts == str(latest))))

        try:
            return [m for m in messages if inside(m["ts"])]
        except ValueError:
            raise SlackError("invalid_ts_oldest") from None

    def _page(self, params: dict[str, Any], items: list, default: int = 100) -> tuple[list, dict]:
        try:
            limit = int(params.get("limit") or default)
            start = int(params.get("cursor") or 0)
        except ValueError:
            raise SlackError("invalid_cursor") from None
        limit = max(1, min(limit, 999))
        page = items[start : start + limit]
        more = start + limit < len(items)
        return page, {
            "has_more": more,
            "response_metadata": {"next_cursor": str(start + limit) if more else ""},
        }

    def _shown(self, message: dict[str, Any], with_metadata: bool) -> dict[str, Any]:
        shown = _strip(copy.deepcopy(message))
        if not with_metadata:
            shown.pop("metadata", None)
        return shown

    def _conversations_history(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel_param(params, create=False)
        top = [m for m in self._state.channels.get(channel, []) if _top_level(m)]
        window = self._history_window(params, list(reversed(top)))
        page, more = self._page(params, window)
        with_metadata = _flag(params.get("include_all_metadata", False))
        return {"messages": [self._shown(m, with_metadata) for m in page], **more}

    def _conversations_replies(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel_param(params, create=False)
        try:
            parent = self._find(channel, params.get("ts"))
        except SlackError:
            raise SlackError("thread_not_found") from None
        root = parent.get("thread_ts") or parent["ts"]
        thread = [m for m in self._state.channels[channel] if m["ts"] == root or m.get("thread_ts") == root]
        page, more = self._page(params, self._history_window(params, thread))
        with_metadata = _flag(params.get("include_all_metadata", False))
        return {"messages": [self._shown(m, with_metadata) for m in page], **more}

    def _conversations_info(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel_param(params, create=False)
        return {
            "channel": {
                "id": channel,
                "name": self._channel_name(channel),
                "is_channel": channel.startswith("C"),
                "is_im": channel.startswith("D"),
                "is_member": True,
            }
        }

    def _conversations_open(self, params: dict[str, Any]) -> dict[str, Any]:
        users = [u for u in str(params.get("users") or "").split(",") if u]
        if len(users) != 1 or users[0] not in self.users:
            raise SlackError("user_not_found")
        return {"channel": {"id": "D" + users[0][1:]}}

    def _user(self, user_id: Any) -> SlackUser:
        user = self.users.get(user_id) if isinstance(user_id, str) else None
        if user is None:
            raise SlackError("user_not_found")
        return user

    def _users_info(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"user": self._user(params.get("user")).to_api(self.team_id)}

    def _users_lookup_by_email(self, params: dict[str, Any]) -> dict[str, Any]:
        email = str(params.get("email") or "").lower()
        for user in self.users.values():
            if user.email and user.email.lower() == email and not user.deleted:
                return {"user": user.to_api(self.team_id)}
        raise SlackError("users_not_found")

    def _usergroups_list(self, params: dict[str, Any]) -> dict[str, Any]:
        include_users = _flag(params.get("include_users", False))
        groups = []
        for gid, members in self.usergroups.items():
            group: dict[str, Any] = {
                "id": gid,
                "team_id": self.team_id,
                "handle": self.usergroup_handles[gid],
                "name": self.usergroup_handles[gid],
                "user_count": len(members),
            }
            if include_users:
                group["users"] = list(members)
            groups.append(group)
        return {"usergroups": groups}

    def _usergroups_users_list(self, params: dict[str, Any]) -> dict[str, Any]:
        group = params.get("usergroup")
        if group not in self.usergroups:
            raise SlackError("no_such_subteam")
        return {"users": list(self.usergroups[group])}

    # --- views ----------------------------------------------------------------------------------

    def _view_arg(self, params: dict[str, Any]) -> dict[str, Any]:
        view = params.get("view")
        if isinstance(view, str):
            try:
                view = json.loads(view)
            except ValueError:
                raise SlackError("invalid_arguments", ["[ERROR] view must be a JSON object"]) from None
        problems = view_problems(view)
        if problems:
            code = "invalid_blocks" if any("/blocks" in p for p in problems) else "invalid_arguments"
            raise SlackError(code, problems)
        assert isinstance(view, dict)
        return view

    def _stored_view(self, view: dict[str, Any], user: str, view_id: Optional[str] = None) -> dict[str, Any]:
        stored = copy.deepcopy(view)
        stored.update(
            {
                "id": view_id or self._new_id("V"),
                "team_id": self.team_id,
                "app_id": self.app_id,
                "bot_id": self.bot_id,
                "hash": secrets.token_hex(8),
                "private_metadata": view.get("private_metadata", ""),
                "callback_id": view.get("callback_id", ""),
                "external_id": view.get("external_id", ""),
                "state": {"values": {}},
                "user": user,
            }
        )
        return stored

    def _use_trigger(self, trigger_id: Any) -> str:
        trigger = self._triggers.get(trigger_id) if isinstance(trigger_id, str) else None
        if trigger is None:
            raise SlackError("invalid_trigger_id")
        if trigger.used:
            raise SlackError("exchanged_trigger_id")
        if time.monotonic() > trigger.expires:
            raise SlackError("expired_trigger_id")
        trigger.used = True
        return trigger.user

    def _views_open(self, params: dict[str, Any]) -> dict[str, Any]:
        view = self._view_arg(params)
        user = self._use_trigger(params.get("trigger_id"))
        if view["type"] != "modal":
            raise SlackError(
                "invalid_arguments", ["[ERROR] views.open needs a modal [json-pointer:/view/type]"]
            )
        stored = self._stored_view(view, user)
        stored["root_view_id"] = stored["id"]
        self._state.modals[user] = [stored]
        self._event(f"modal opened for {user}: {_plain(view.get('title'))}")
        return {"view": _public_view(stored)}

    def _views_push(self, params: dict[str, Any]) -> dict[str, Any]:
        view = self._view_arg(params)
        user = self._use_trigger(params.get("trigger_id"))
        stack = self._state.modals[user]
        if not stack:
            raise SlackError("not_found")
        if len(stack) >= MAX_MODAL_STACK:
            raise SlackError("push_limit_reached")
        stored = self._stored_view(view, user)
        stored["root_view_id"] = stack[0]["id"]
        stored["previous_view_id"] = stack[-1]["id"]
        stack.append(stored)
        return {"view": _public_view(stored)}

    def _views_update(self, params: dict[str, Any]) -> dict[str, Any]:
        view = self._view_arg(params)
        view_id, external_id = params.get("view_id"), params.get("external_id")
        for user, stack in self._state.modals.items():
            for index, current in enumerate(stack):
                if (view_id and current["id"] == view_id) or (
                    external_id and current.get("external_id") == external_id
                ):
                    if params.get("hash") and params["hash"] != current["hash"]:
                        raise SlackError("hash_conflict")
                    stored = self._stored_view(view, user, current["id"])
                    for key in ("root_view_id", "previous_view_id"):
                        if key in current:
                            stored[key] = current[key]
                    stack[index] = stored
                    return {"view": _public_view(stored)}
        raise SlackError("not_found")

    def _views_publish(self, params: dict[str, Any]) -> dict[str, Any]:
        view = self._view_arg(params)
        user = self._user(params.get("user_id")).id
        if view["type"] != "home":
            raise SlackError("invalid_arguments", ["[ERROR] views.publish needs a home view"])
        current = self._state.home.get(user)
        if current and params.get("hash") and params["hash"] != current["hash"]:
            raise SlackError("hash_conflict")
        stored = self._stored_view(view, user, current["id"] if current else None)
        self._state.home[user] = stored
        self._event(f"App Home published for {user}")
        return {"view": _public_view(stored)}

    def _apps_connections_open(self, params: dict[str, Any]) -> dict[str, Any]:
        ticket = secrets.token_hex(8)
        self._tickets.add(ticket)
        return {"url": f"ws{self._base().removeprefix('http')}/socket?ticket={ticket}"}

    _methods: dict[str, Callable[[FakeSlack, dict[str, Any]], dict[str, Any]]] = {
        "apps.connections.open": _apps_connections_open,
        "auth.test": _auth_test,
        "chat.postMessage": _chat_post_message,
        "chat.update": _chat_update,
        "chat.delete": _chat_delete,
        "chat.postEphemeral": _chat_post_ephemeral,
        "chat.getPermalink": _chat_get_permalink,
        "conversations.history": _conversations_history,
        "conversations.replies": _conversations_replies,
        "conversations.info": _conversations_info,
        "conversations.open": _conversations_open,
        "users.info": _users_info,
        "users.lookupByEmail": _users_lookup_by_email,
        "usergroups.list": _usergroups_list,
        "usergroups.users.list": _usergroups_users_list,
        "views.open": _views_open,
        "views.push": _views_push,
        "views.update": _views_update,
        "views.publish": _views_publish,
    }

    # --- Socket Mode ----------------------------------------------------------------------------

    async def _socket(self, request: web.Request) -> web.StreamResponse:
        """The websocket a Socket Mode app holds open: `hello`, then envelopes out and acks back."""
        ticket = request.query.get("ticket", "")
        if ticket not in self._tickets or self.refuse_sockets:
            return web.Response(status=401, text="unknown or used ticket")
        self._tickets.discard(ticket)
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self._socket_ws = ws
        await ws.send_json(
            {"type": "hello", "num_connections": 1, "connection_info": {"app_id": self.app_id}}
        )
        self._event("the bot connected over Socket Mode")
        try:
            async for message in ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    continue
                try:
                    ack = json.loads(message.data)
                except ValueError:
                    continue
                waiter = (
                    self._socket_acks.pop(str(ack.get("envelope_id")), None)
                    if isinstance(ack, dict)
                    else None
                )
                if waiter is not None and not waiter.done():
                    waiter.set_result(ack.get("payload"))
        finally:
            if self._socket_ws is ws:
                self._socket_ws = None
        return ws

    @property
    def socket_connected(self) -> bool:
        return self._socket_ws is not None and not self._socket_ws.closed

    async def drop_socket(self) -> None:
        """Close the app's Socket Mode connection, as Slack does now and then (the app reconnects)."""
        if self._socket_ws is not None:
            await self._socket_ws.close()
            self._touch()

    async def _send_socket(self, body: str, content_type: str) -> tuple[int, str]:
        """Deliver what would have been POSTed as a Socket Mode envelope; (200, ack payload as JSON),
        or (503, "") when no app is connected or it does not ack in time (Slack's dispatch_failed)."""
        ws = self._socket_ws
        if ws is None or ws.closed:
            return 503, ""
        envelope_id = secrets.token_hex(8)
        envelope: dict[str, Any] = {"envelope_id": envelope_id, "accepts_response_payload": True}
        if content_type == "application/json":
            envelope.update(type="events_api", payload=json.loads(body), accepts_response_payload=False)
        else:
            form = dict(urllib.parse.parse_qsl(body, keep_blank_values=True))
            if "payload" in form:
                envelope.update(type="interactive", payload=json.loads(form["payload"]))
            else:
                envelope.update(type="slash_commands", payload=form)
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._socket_acks[envelope_id] = waiter
        try:
            await ws.send_json(envelope)
            payload = await asyncio.wait_for(waiter, self.ack_timeout)
        except (asyncio.TimeoutError, ConnectionError):
            return 503, ""
        finally:
            self._socket_acks.pop(envelope_id, None)
        return 200, json.dumps(payload) if payload else ""

    # --- HTTP: response_url ---------------------------------------------------------------------

    async def _response(self, request: web.Request) -> web.StreamResponse:
        if self._down:
            return self._unavailable(request)
        target = self._response_urls.get(request.match_info["rid"])
        if target is None or time.monotonic() - target.created > RESPONSE_URL_TTL:
            return web.json_response({"ok": False, "error": "expired_url"}, status=404)
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"ok": False, "error": "invalid_payload"}, status=400)
        if not isinstance(body, dict):
            return web.json_response({"ok": False, "error": "invalid_payload"}, status=400)
        self.calls.append(("response_url", copy.deepcopy(body)))
        target.uses += 1
        if target.uses > RESPONSE_URL_USES:
            return web.json_response({"ok": False, "error": "used_too_many_times"}, status=404)
        try:
            self._respond(target, body)
        except SlackError as exc:
            self._touch()
            payload: dict[str, Any] = {"ok": False, "error": exc.code}
            if exc.messages:
                payload["response_metadata"] = {"messages": exc.messages}
            return web.json_response(payload, status=400)
        self._touch()
        return web.json_response({"ok": True})

    def _respond(self, target: _ResponseUrl, body: dict[str, Any], source: str = "response_url") -> None:
        """Apply a response_url post (or a command's ack body) as Slack does."""
        ephemerals = self._state.ephemeral[target.user]
        original: Optional[dict[str, Any]] = None
        if target.message_ts is not None:
            pool = ephemerals if target.ephemeral else self._state.channels.get(target.channel, [])
            original = next((m for m in pool if m["ts"] == target.message_ts), None)
        if _flag(body.get("delete_original", False)):
            if original is None:
                raise SlackError("message_not_found")
            if target.ephemeral:
                ephemerals.remove(original)
            else:
                self._state.channels[target.channel].remove(original)
            return
        content = self._content(body, "response_url")
        if _flag(body.get("replace_original", False)):
            if original is None:
                raise SlackError("message_not_found")
            if "blocks" not in content:
                original.pop("blocks", None)
            original.update(content)
            if not target.ephemeral:
                original["edited"] = {"user": self.bot_user_id, "ts": self._ts()}
            self._event(f"message replaced for {target.user}: {_summary(original)}")
            return
        if body.get("response_type") == "in_channel":
            self._post(target.channel, content, body.get("thread_ts"))
            return
        self._ephemeral(target.user, target.channel, content, source, body.get("thread_ts"))

    # --- the driver: Slack -> bot ---------------------------------------------------------------

    def _issue_trigger(self, user: str) -> str:
        trigger_id = f"{next(self._ids)}.{self.team_id}.{secrets.token_hex(12)}"
        self._triggers[trigger_id] = _Trigger(user, time.monotonic() + self.trigger_ttl)
        return trigger_id

    def _issue_response_url(self, user: str, channel: str, message_ts: Optional[str], ephemeral: bool) -> str:
        rid = secrets.token_hex(12)
        self._response_urls[rid] = _ResponseUrl(user, channel, message_ts, ephemeral, time.monotonic())
        return f"{self._base()}/response/{rid}"

    def _user_or_fail(self, user_id: str) -> SlackUser:
        user = self.users.get(user_id)
        if user is None:
            raise ValueError(f"no Slack user {user_id!r} in this FakeSlack (known: {', '.join(self.users)})")
        return user

    def signed_headers(
        self,
        body: str,
        content_type: str,
        *,
        sign: bool = True,
        timestamp_offset: int = 0,
        secret: Optional[str] = None,
    ) -> dict[str, str]:
        """The headers Slack sends with `body`: a timestamp and `v0=` HMAC-SHA256 of `v0:{ts}:{body}`."""
        timestamp = str(int(time.time()) + timestamp_offset)
        headers = {"Content-Type": content_type, "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)"}
        if sign:
            verifier = SignatureVerifier(secret if secret is not None else self.signing_secret)
            signature = verifier.generate_signature(timestamp=timestamp, body=body)
            assert signature is not None
            headers["X-Slack-Request-Timestamp"] = timestamp
            headers["X-Slack-Signature"] = signature
        return headers

    async def _send(self, bot_url: str, body: str, content_type: str, **signing: Any) -> tuple[int, str]:
        if bot_url == SOCKET_MODE:
            return await self._send_socket(body, content_type)
        timeout = aiohttp.ClientTimeout(total=self.ack_timeout)
        headers = self.signed_headers(body, content_type, **signing)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.post(bot_url, data=body.encode(), headers=headers) as response:
                return response.status, await response.text()

    async def command(
        self,
        bot_url: str,
        user_id: str,
        text: str,
        *,
        command: str = "/idops",
        channel_id: str = "C0IDOPS",
        **signing: Any,
    ) -> BotReply:
        """Run a slash command as `user_id` types it; the bot's ack body is shown to the user."""
        user = self._user_or_fail(user_id)
        channel = self._resolve_channel(channel_id) or channel_id
        trigger_id = self._issue_trigger(user_id)
        response_url = self._issue_response_url(user_id, channel, None, False)
        form = {
            "token": self.verification_token,
            "team_id": self.team_id,
            "team_domain": self.team_domain,
            "channel_id": channel,
            "channel_name": self._channel_name(channel),
            "user_id": user_id,
            "user_name": user.name,
            "command": command,
            "text": text,
            "api_app_id": self.app_id,
            "is_enterprise_install": "false",
            "response_url": response_url,
            "trigger_id": trigger_id,
        }
        self._event(f"{user.name} ran {command} {text}")
        status, body = await self._send(
            bot_url, urllib.parse.urlencode(form), "application/x-www-form-urlencoded", **signing
        )
        reply = BotReply(status, body, trigger_id, response_url)
        target = _ResponseUrl(user_id, channel, None, False, time.monotonic())
        self._show_ack(target, reply, f'{command} failed with the error "dispatch_failed"')
        return reply

    def _show_ack(self, target: _ResponseUrl, reply: BotReply, failure: str) -> None:
        """An ack with a body is shown to the user like a response_url post; a failed one as Slack's error."""
        if reply.status != 200:
            self._ephemeral(target.user, target.channel, {"text": failure}, "slack")
            return
        if not reply.body:
            return
        body = reply.json if isinstance(reply.json, dict) else {"text": reply.body}
        try:
            self._respond(target, body, source="ack")
        except SlackError as exc:
            self._ephemeral(target.user, target.channel, {"text": f"{failure} ({exc.code})"}, "slack")

    def _locate(self, user_id: str, target: Mapping[str, Any]) -> tuple[str, str, dict[str, Any]]:
        """The current stored message or view behind `target` (a message or view a test was given)."""
        if target.get("type") in ("modal", "home") and "id" in target:
            for view in [*self._state.modals[user_id], self._state.home.get(user_id)]:
                if view and view["id"] == target["id"]:
                    return "view", "", view
            raise LookupError(f"view {target['id']} is not open for {user_id}")
        ts = target.get("ts")
        for message in self._state.ephemeral[user_id]:
            if message["ts"] == ts:
                return "ephemeral", message["channel"], message
        channel = self._resolve_channel(target.get("channel"), create=False)
        if channel is None:
            raise LookupError(
                "click() needs a message from messages()/responses() or a view from views()/home()"
            )
        for message in self._state.channels.get(channel, []):
            if message["ts"] == ts:
                return "message", channel, message
        raise LookupError(f"message {ts} is no longer in {channel}")

    async def click(
        self,
        bot_url: str,
        user_id: str,
        message_or_view: Mapping[str, Any],
        action_id: str,
        value: Optional[str] = None,
        **signing: Any,
    ) -> BotReply:
        """Click the button `action_id` (and `value`, when several share it) as `user_id` would.

        The button is looked up in the message or view as it is *now*, so a button that an update
        removed cannot be clicked; its value comes from the block, never from the caller.
        """
        user = self._user_or_fail(user_id)
        where, channel, container_obj = self._locate(user_id, message_or_view)
        block_id, button = _find_button(container_obj.get("blocks") or [], action_id, value)
        trigger_id = self._issue_trigger(user_id)
        payload: dict[str, Any] = {
            "type": "block_actions",
            "user": {"id": user_id, "username": user.name, "name": user.name, "team_id": self.team_id},
            "api_app_id": self.app_id,
            "token": self.verification_token,
            "trigger_id": trigger_id,
            "team": {"id": self.team_id, "domain": self.team_domain},
            "enterprise": None,
            "is_enterprise_install": False,
            "state": {"values": {}},
            "actions": [
                {
                    "action_id": action_id,
                    "block_id": block_id,
                    "text": button.get("text"),
                    "value": button.get("value"),
                    "type": "button",
                    "action_ts": self._ts(),
                    **({"style": button["style"]} if "style" in button else {}),
                }
            ],
        }
        response_url = None
        if where == "view":
            payload["container"] = {"type": "view", "view_id": container_obj["id"]}
            payload["view"] = _public_view(container_obj)
        else:
            response_url = self._issue_response_url(
                user_id, channel, container_obj["ts"], where == "ephemeral"
            )
            payload["container"] = {
                "type": "message",
                "message_ts": container_obj["ts"],
                "channel_id": channel,
                "is_ephemeral": where == "ephemeral",
            }
            if container_obj.get("thread_ts"):
                payload["container"]["thread_ts"] = container_obj["thread_ts"]
            payload["channel"] = {"id": channel, "name": self._channel_name(channel)}
            if where == "message":
                payload["message"] = _strip(copy.deepcopy(container_obj))
            payload["response_url"] = response_url
        self._event(f"{user.name} clicked {_plain(button.get('text'))!r} ({action_id})")
        body = "payload=" + urllib.parse.quote(json.dumps(payload))
        status, text = await self._send(bot_url, body, "application/x-www-form-urlencoded", **signing)
        return BotReply(status, text, trigger_id, response_url)

    async def submit_view(
        self,
        bot_url: str,
        user_id: str,
        view_id: str,
        values: Mapping[str, Mapping[str, Any]],
        **signing: Any,
    ) -> BotReply:
        """Submit the open modal `view_id` with `values` = {block_id: {action_id: value}}.

        A plain string value fills a text input (or picks the option with that value in a select or
        radio group); a dict is used as the Slack state entry itself. Required inputs left out are
        refused here, as Slack's client refuses to submit them.
        """
        user = self._user_or_fail(user_id)
        stack = self._state.modals[user_id]
        view = next((v for v in stack if v["id"] == view_id), None)
        if view is None:
            raise LookupError(f"view {view_id} is not open for {user_id}")
        view["state"] = {"values": _state_values(view, values)}
        trigger_id = self._issue_trigger(user_id)
        payload = {
            "type": "view_submission",
            "team": {"id": self.team_id, "domain": self.team_domain},
            "user": {"id": user_id, "username": user.name, "name": user.name, "team_id": self.team_id},
            "api_app_id": self.app_id,
            "token": self.verification_token,
            "trigger_id": trigger_id,
            "view": _public_view(view),
            "response_urls": [],
            "is_enterprise_install": False,
            "enterprise": None,
        }
        self._event(f"{user.name} submitted {_plain(view.get('title'))!r}")
        body = "payload=" + urllib.parse.quote(json.dumps(payload))
        status, text = await self._send(bot_url, body, "application/x-www-form-urlencoded", **signing)
        reply = BotReply(status, text, trigger_id)
        if status == 200:
            self._apply_submission_ack(user_id, view, reply.json)
        return reply

    def _apply_submission_ack(self, user_id: str, view: dict[str, Any], ack: Any) -> None:
        stack = self._state.modals[user_id]
        action = ack.get("response_action") if isinstance(ack, dict) else None
        if action == "errors":
            view["errors"] = ack.get("errors", {})
        elif action == "update" and not view_problems(ack.get("view")):
            stack[stack.index(view)] = self._stored_view(ack["view"], user_id, view["id"])
        elif action == "push" and not view_problems(ack.get("view")) and len(stack) < MAX_MODAL_STACK:
            stack.append(self._stored_view(ack["view"], user_id))
        elif action == "clear":
            stack.clear()
        else:
            stack.remove(view)
        self._touch()

    async def close_view(
        self, bot_url: str, user_id: str, view_id: str, **signing: Any
    ) -> Optional[BotReply]:
        """Cancel the modal `view_id`; tells the bot (view_closed) only if the view asked for it."""
        stack = self._state.modals[user_id]
        view = next((v for v in stack if v["id"] == view_id), None)
        if view is None:
            raise LookupError(f"view {view_id} is not open for {user_id}")
        stack.remove(view)
        self._touch()
        if not view.get("notify_on_close"):
            return None
        user = self._user_or_fail(user_id)
        payload = {
            "type": "view_closed",
            "team": {"id": self.team_id, "domain": self.team_domain},
            "user": {"id": user_id, "username": user.name, "name": user.name, "team_id": self.team_id},
            "api_app_id": self.app_id,
            "token": self.verification_token,
            "view": _public_view(view),
            "is_cleared": False,
        }
        body = "payload=" + urllib.parse.quote(json.dumps(payload))
        status, text = await self._send(bot_url, body, "application/x-www-form-urlencoded", **signing)
        return BotReply(status, text)

    async def open_home(self, bot_url: str, user_id: str, **signing: Any) -> BotReply:
        """Open the App Home tab as `user_id`: the `app_home_opened` event in an Events API envelope."""
        user = self._user_or_fail(user_id)
        now = time.time()
        event: dict[str, Any] = {
            "type": "app_home_opened",
            "user": user_id,
            "channel": "D" + user_id[1:],
            "tab": "home",
            "event_ts": f"{now:.6f}",
        }
        if user_id in self._state.home:
            event["view"] = _public_view(self._state.home[user_id])
        envelope = {
            "token": self.verification_token,
            "team_id": self.team_id,
            "api_app_id": self.app_id,
            "event": event,
            "type": "event_callback",
            "event_id": self._new_id("Ev"),
            "event_time": int(now),
            "authorizations": [
                {
                    "team_id": self.team_id,
                    "user_id": self.bot_user_id,
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
            "is_ext_shared_channel": False,
        }
        self._event(f"{user.name} opened the App Home")
        status, text = await self._send(bot_url, json.dumps(envelope), "application/json", **signing)
        return BotReply(status, text)


# --- small pure helpers --------------------------------------------------------------------------


def _top_level(message: Mapping[str, Any]) -> bool:
    """Shown in the channel itself: not a thread reply, unless it was also sent to the channel."""
    return message.get("thread_ts") in (None, message["ts"]) or message.get("subtype") == "thread_broadcast"


def _plain(text_obj: Any) -> str:
    return str(text_obj.get("text", "")) if isinstance(text_obj, dict) else str(text_obj or "")


def _summary(message: Mapping[str, Any]) -> str:
    text = str(message.get("text") or "")
    if not text:
        header = next((b for b in message.get("blocks") or [] if b.get("type") == "header"), None)
        text = _plain(header.get("text")) if header else "(blocks)"
    text = " ".join(text.split())
    return text if len(text) <= 100 else text[:99] + "…"


def _public_view(view: Mapping[str, Any]) -> dict[str, Any]:
    return {k: copy.deepcopy(v) for k, v in view.items() if k not in ("user", "errors")}


def _buttons(blocks: Sequence[Mapping[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for block in blocks:
        block_id = str(block.get("block_id", ""))
        if block.get("type") == "actions":
            found += [(block_id, e) for e in block.get("elements", []) if e.get("type") == "button"]
        accessory = block.get("accessory")
        if (
            block.get("type") == "section"
            and isinstance(accessory, dict)
            and accessory.get("type") == "button"
        ):
            found.append((block_id, accessory))
    return found


def _find_button(
    blocks: Sequence[Mapping[str, Any]], action_id: str, value: Optional[str]
) -> tuple[str, dict[str, Any]]:
    buttons = _buttons(blocks)
    matches = [
        (block_id, b)
        for block_id, b in buttons
        if b.get("action_id") == action_id and (value is None or b.get("value") == value)
    ]
    if not matches:
        shown = ", ".join(f"{b.get('action_id')}={b.get('value')!r}" for _, b in buttons) or "none"
        raise LookupError(f"no button {action_id!r} (value {value!r}) here; buttons: {shown}")
    if len(matches) > 1:
        raise LookupError(f"{len(matches)} buttons {action_id!r}: pass value= to pick one")
    return matches[0]


def _state_values(view: Mapping[str, Any], values: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Slack's `view.state.values` for a submission, checked against the view's input blocks."""
    inputs = {
        (b.get("block_id", ""), b["element"].get("action_id", "")): b
        for b in view.get("blocks", [])
        if b.get("type") == "input" and isinstance(b.get("element"), dict)
    }
    state: dict[str, dict[str, Any]] = {}
    for block_id, actions in values.items():
        for action_id, value in actions.items():
            block = inputs.get((block_id, action_id))
            if block is None:
                known = ", ".join(f"{b}/{a}" for b, a in inputs) or "none"
                raise LookupError(f"no input {block_id}/{action_id} in this view (inputs: {known})")
            state.setdefault(block_id, {})[action_id] = _state_entry(block["element"], value)
    for (block_id, action_id), block in inputs.items():
        filled = state.get(block_id, {}).get(action_id)
        if not block.get("optional") and (filled is None or filled.get("value") == ""):
            raise ValueError(f"input {block_id}/{action_id} ({_plain(block.get('label'))}) is required")
        if filled is None:
            state.setdefault(block_id, {})[action_id] = _state_entry(block["element"], None)
    return state


def _state_entry(element: Mapping[str, Any], value: Any) -> dict[str, Any]:
    kind = element.get("type", "plain_text_input")
    if isinstance(value, dict):
        return {"type": kind, **value}
    if kind in ("static_select", "radio_buttons"):
        key = "selected_option"
        option = next((o for o in element.get("options", []) if o.get("value") == value), None)
        if value is not None and option is None:
            raise LookupError(f"no option {value!r} in {element.get('action_id')}")
        return {"type": kind, key: option}
    return {"type": kind, "value": value}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """`idops sim slack`: the demo workspace and its page, for a bot run separately with `idops serve`.

    The bot token and signing secret come from SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET, or are
    made up for this run and printed (they are the stand-in's own, good for nothing else). With
    `--socket-mode` the page talks to a bot run with `idops serve --socket-mode` over its websocket,
    and SLACK_APP_TOKEN is read or made up the same way.
    """
    from .slack_ui import PEOPLE, SlackUI, demo_workspace

    parser = argparse.ArgumentParser(prog="idops sim slack", description="Serve the local Slack stand-in.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3000, help="0 picks a free port (default 3000)")
    parser.add_argument(
        "--bot-url",
        default="http://127.0.0.1:8080/slack/events",
        help="where the page sends commands and clicks (default: idops serve's default address)",
    )
    parser.add_argument(
        "--socket-mode",
        action="store_true",
        help="for a bot run with `idops serve --socket-mode`: commands and clicks go over its websocket",
    )
    args = parser.parse_args(argv)
    token = os.environ.get("SLACK_BOT_TOKEN") or ""
    secret = os.environ.get("SLACK_SIGNING_SECRET") or ""
    app_token = os.environ.get("SLACK_APP_TOKEN") or ""
    made_up = not (token and secret and (app_token or not args.socket_mode))
    if made_up:
        token, secret = "xoxb-sim-" + secrets.token_hex(8), secrets.token_hex(16)
        app_token = "xapp-sim-" + secrets.token_hex(8)
    slack = demo_workspace(
        bot_token=token,
        signing_secret=secret,
        app_token=app_token or "xapp-sim-unused",
        on_event=lambda line: print(line, flush=True),
    )
    bot_url = SOCKET_MODE if args.socket_mode else args.bot_url
    SlackUI(slack, bot_url, PEOPLE).attach()

    async def run() -> None:
        async with slack.serve(args.host, args.port) as url:
            print(
                f"Slack stand-in: page at {url}/ , Web API (the bot's SLACK_API_URL) at {url}/api/",
                flush=True,
            )
            where = "the bot's Socket Mode connection" if args.socket_mode else args.bot_url
            print(f"Commands and clicks go to {where}", flush=True)
            if made_up:
                # printed on purpose: made up for this run so the bot can be started against it
                print(f"SLACK_BOT_TOKEN={token}\nSLACK_SIGNING_SECRET={secret}", flush=True)
                if args.socket_mode:
                    print(f"SLACK_APP_TOKEN={app_token}", flush=True)
            await asyncio.Event().wait()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print(f"idops sim slack: cannot listen on {args.host}:{args.port} ({exc.strerror})", file=sys.stderr)
        return 1
    return 0

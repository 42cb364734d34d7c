"""The Slack stand-in's workspace: users, channels, messages, ephemerals, modals and App Home.

`SlackCore` holds the state and what every part changes it through (posting, ephemerals,
response_url posts, stored views); the Web API, views, Socket Mode and the driver build on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import itertools
import json
import secrets
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, ClassVar, Optional

from aiohttp import web

from .. import serving
from .blocks import block_problems
from .records import (
    Fault,
    InFlight,
    ResponseUrl,
    SlackError,
    SlackUser,
    SocketConnection,
    SocketDelivery,
    State,
    Trigger,
    flag,
    summary,
    top_level,
)

MAX_TEXT = 40_000
# a Web API method: (the stand-in, the call's parameters) -> the answer's fields
Method = Callable[[Any, dict[str, Any]], dict[str, Any]]


class SlackCore:
    """The workspace and its state; what the Web API, views, Socket Mode and the driver share."""

    #: Web API method name -> handler; the assembled stand-in (FakeSlack) joins every part's table
    _methods: ClassVar[Mapping[str, Method]] = {}

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
        self._state = State()
        self._faults: dict[str, deque[Fault]] = defaultdict(deque)
        self._down: Optional[str] = None
        self._triggers: dict[str, Trigger] = {}
        self._response_urls: dict[str, ResponseUrl] = {}
        self._last_ts = 0
        self._ids = itertools.count(1)
        self._changed: Optional[asyncio.Event] = None
        # bumped on every change, so a page can wait for the next one
        self.version = 0
        self._tickets: set[str] = set()
        # Socket Mode (see socket_mode): the app's open connections, oldest first; sending
        # envelope_id -> the envelope in flight; every sending, in order
        self._sockets: list[SocketConnection] = []
        self._socket_numbers = itertools.count(1)
        self._socket_turn = 0
        self._in_flight: dict[str, InFlight] = {}
        self.socket_deliveries: list[SocketDelivery] = []
        #: when set, the websocket URLs apps.connections.open hands out refuse the connection
        self.refuse_sockets = False
        self.app = web.Application()
        self._add_routes(self.app.router)

    def _add_routes(self, router: web.UrlDispatcher) -> None:
        """Each part adds its HTTP endpoints here (and calls super())."""

    async def _close_sockets(self) -> None:
        """Close the app's Socket Mode connections (the Socket Mode part does)."""

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
                await self._close_sockets()  # a connected app must not hold shutdown up
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
        self._faults[method].append(Fault(status, error, retry_after, count))

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
            if not top_level(message):
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

    def response_url_uses(self, url: str) -> int:
        """How often the bot posted to a response_url handed out with a command or click."""
        target = self._response_urls.get(url.rsplit("/", 1)[-1])
        return target.uses if target is not None else 0

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

    # --- what every part changes the workspace through ----------------------------------------

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
        self._event(f"bot posted in {where}#{self._channel_name(channel)}: {summary(message)}")
        return message

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
        self._event(f"only {user} sees ({source}): {summary(entry)}")
        return entry

    def _respond(self, target: ResponseUrl, body: dict[str, Any], source: str = "response_url") -> None:
        """Apply a response_url post (or a command's ack body) as Slack does."""
        ephemerals = self._state.ephemeral[target.user]
        original: Optional[dict[str, Any]] = None
        if target.message_ts is not None:
            pool = ephemerals if target.ephemeral else self._state.channels.get(target.channel, [])
            original = next((m for m in pool if m["ts"] == target.message_ts), None)
        if flag(body.get("delete_original", False)):
            if original is None:
                raise SlackError("message_not_found")
            if target.ephemeral:
                ephemerals.remove(original)
            else:
                self._state.channels[target.channel].remove(original)
            return
        content = self._content(body, "response_url")
        if flag(body.get("replace_original", False)):
            if original is None:
                raise SlackError("message_not_found")
            if "blocks" not in content:
                original.pop("blocks", None)
            original.update(content)
            if not target.ephemeral:
                original["edited"] = {"user": self.bot_user_id, "ts": self._ts()}
            self._event(f"message replaced for {target.user}: {summary(original)}")
            return
        if body.get("response_type") == "in_channel":
            self._post(target.channel, content, body.get("thread_ts"))
            return
        self._ephemeral(target.user, target.channel, content, source, body.get("thread_ts"))

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

    def _user(self, user_id: Any) -> SlackUser:
        user = self.users.get(user_id) if isinstance(user_id, str) else None
        if user is None:
            raise SlackError("user_not_found")
        return user

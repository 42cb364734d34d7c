"""The Slack stand-in's records: users, the driver's replies, Web API errors, and its state.

Plain data and pure helpers only; every module of the stand-in shares them.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

from aiohttp import web

#: the driver's "bot URL" for a bot connected over Socket Mode
SOCKET_MODE = "socket-mode:"


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
class Fault:
    """An injected failure of a Web API method (`FakeSlack.fail_next`), for its next `count` calls."""

    status: Optional[int]
    error: Optional[str]
    retry_after: Optional[float]
    count: int


@dataclass
class ResponseUrl:
    """A response_url handed out with a command or click: whose, where, and how often it was used."""

    user: str
    channel: str
    # what the user interacted with: a channel message ts, an ephemeral ts, or None (slash command)
    message_ts: Optional[str]
    ephemeral: bool
    created: float
    uses: int = 0


@dataclass
class Trigger:
    """A trigger_id: single-use, for one user, expiring as Slack's do."""

    user: str
    expires: float
    used: bool = False


@dataclass
class State:
    """The workspace's content: messages per channel, and ephemerals, modal stacks and App Home per user."""

    channels: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    ephemeral: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    modals: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    home: dict[str, dict[str, Any]] = field(default_factory=dict)


# --- small pure helpers --------------------------------------------------------------------------


def flag(value: Any) -> bool:
    """A Web API boolean parameter (JSON true, or "1"/"true" in a form)."""
    return value is True or str(value).lower() in ("1", "true")


def as_sent(message: dict[str, Any]) -> dict[str, Any]:
    """A stored message as Slack's own payloads show it (without the helper-only keys)."""
    return {k: v for k, v in message.items() if k not in ("channel", "replies", "source")}


def top_level(message: Mapping[str, Any]) -> bool:
    """Shown in the channel itself: not a thread reply, unless it was also sent to the channel."""
    return message.get("thread_ts") in (None, message["ts"]) or message.get("subtype") == "thread_broadcast"


def plain(text_obj: Any) -> str:
    """The text of a text object (or a string), for log lines."""
    return str(text_obj.get("text", "")) if isinstance(text_obj, dict) else str(text_obj or "")


def summary(message: Mapping[str, Any]) -> str:
    """One line about a message for the event log: its text, else its header."""
    text = str(message.get("text") or "")
    if not text:
        header = next((b for b in message.get("blocks") or [] if b.get("type") == "header"), None)
        text = plain(header.get("text")) if header else "(blocks)"
    text = " ".join(text.split())
    return text if len(text) <= 100 else text[:99] + "…"


def public_view(view: Mapping[str, Any]) -> dict[str, Any]:
    """A stored view as Slack's payloads and answers show it."""
    return {k: copy.deepcopy(v) for k, v in view.items() if k not in ("user", "errors")}


@dataclass
class SocketDelivery:
    """One sending of a Socket Mode envelope: `envelope` names the command, click or event (the same
    across its re-sends), `envelope_id` this sending, `connection` the socket it went to, and
    `acked` whether the app acked this sending (a late ack of an earlier sending counts too)."""

    envelope: str
    envelope_id: str
    kind: str
    connection: int
    retry_attempt: int
    retry_reason: str
    acked: bool = False


@dataclass(eq=False)
class SocketConnection:
    """One open Socket Mode websocket of the app."""

    number: int
    ws: web.WebSocketResponse
    #: resolved when the connection closes
    gone: asyncio.Future[None]
    #: told to disconnect: takes no new envelopes while another connection is open
    leaving: bool = False


@dataclass(eq=False)
class InFlight:
    """A Socket Mode envelope the driver waits on: its ack (the first one wins) and its sendings."""

    answer: asyncio.Future[Any]
    sendings: list[SocketDelivery] = field(default_factory=list)

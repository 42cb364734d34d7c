"""The driver: Slack -> bot. Slash commands, clicks and App Home opens, sent as Slack sends them.

Each request is signed with the signing secret exactly as Slack signs it (`v0=` HMAC-SHA256), so the
bot under test runs its real verification; given `SOCKET_MODE` instead of the bot's URL, the same
payload goes as a Socket Mode envelope. Triggers and response URLs are issued as Slack issues them.
"""

from __future__ import annotations

import copy
import json
import secrets
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any, Optional

import aiohttp
from slack_sdk.signature import SignatureVerifier

from .records import (
    SOCKET_MODE,
    BotReply,
    ResponseUrl,
    SlackError,
    SlackUser,
    Trigger,
    as_sent,
    plain,
    public_view,
)
from .socket_mode import SocketMode


class Driver(SocketMode):
    """What Slack sends the bot; replies come back as `BotReply`."""

    def _issue_trigger(self, user: str) -> str:
        trigger_id = f"{next(self._ids)}.{self.team_id}.{secrets.token_hex(12)}"
        self._triggers[trigger_id] = Trigger(user, time.monotonic() + self.trigger_ttl)
        return trigger_id

    def _issue_response_url(self, user: str, channel: str, message_ts: Optional[str], ephemeral: bool) -> str:
        rid = secrets.token_hex(12)
        self._response_urls[rid] = ResponseUrl(user, channel, message_ts, ephemeral, time.monotonic())
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
        target = ResponseUrl(user_id, channel, None, False, time.monotonic())
        self._show_ack(target, reply, f'{command} failed with the error "dispatch_failed"')
        return reply

    def _show_ack(self, target: ResponseUrl, reply: BotReply, failure: str) -> None:
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
            payload["view"] = public_view(container_obj)
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
                payload["message"] = as_sent(copy.deepcopy(container_obj))
            payload["response_url"] = response_url
        self._event(f"{user.name} clicked {plain(button.get('text'))!r} ({action_id})")
        body = "payload=" + urllib.parse.quote(json.dumps(payload))
        status, text = await self._send(bot_url, body, "application/x-www-form-urlencoded", **signing)
        return BotReply(status, text, trigger_id, response_url)

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
            event["view"] = public_view(self._state.home[user_id])
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

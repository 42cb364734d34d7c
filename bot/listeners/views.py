"""Modal submissions: the reason for a request that needs one, and the reason for a denial."""

from __future__ import annotations

import json
from collections.abc import Awaitable
from datetime import timedelta
from typing import Any, Optional

from slack_bolt.async_app import AsyncAck, AsyncApp

from connectors import Action

from ..approvals import DENY_NEEDS_REASON, InvalidRequest, checked_reason, parse_duration
from ..blocks import FORM_DURATIONS, Message, esc, split_ref
from ..services import Bot

DAMAGED = "This form is damaged; run the command again."


def reason_of(view: dict[str, Any]) -> str:
    """The text typed in the modal's `reason` input."""
    value = view.get("state", {}).get("values", {}).get("reason", {}).get("reason", {}).get("value")
    return (value or "").strip()


def duration_choice(view: dict[str, Any]) -> Optional[timedelta]:
    """The request form's duration choice: None for "until reverted" or no choice; ValueError for a value
    the form never offered."""
    entry = view.get("state", {}).get("values", {}).get("duration", {}).get("duration") or {}
    value = (entry.get("selected_option") or {}).get("value")
    if value is None or value == "never":
        return None
    if value not in FORM_DURATIONS:
        raise ValueError("a duration the form does not offer")
    return parse_duration(value)


def register(app: AsyncApp, bot: Bot) -> None:
    replies, lookups, flow = bot.replies, bot.lookups, bot.flow

    @app.view("request:reason")
    async def on_reason(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        user = body["user"]["id"]
        reason = reason_of(view)
        if not reason:
            await ack(response_action="errors", errors={"reason": "Give a reason for the approvers."})
            return
        try:
            meta = json.loads(view.get("private_metadata") or "")
            action = Action(meta["action"])
            channel: Optional[str] = meta.get("channel")
            ref = split_ref(str(meta["ref"])) if meta.get("ref") else None
            who = str(meta.get("who") or "")
            seconds = meta.get("duration")
            duration = timedelta(seconds=int(seconds)) if seconds else duration_choice(view)
            if ref is None and not who:
                raise ValueError("nothing to request")
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError):  # a duration of 1e400
            await ack(response_action="errors", errors={"reason": DAMAGED})
            return
        await ack()
        work: Awaitable[Message]
        if ref is not None:
            work = flow.start_request(
                user=user,
                connector=ref[0],
                identity_id=ref[1],
                action=action,
                reason=reason,
                duration=duration,
            )
        else:
            work = lookups.request_for(user, action, who, reason, duration)
        replies.run(work, user=user, channel=channel, name="reason form")

    @app.view("approval:deny")
    async def on_deny(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        user = body["user"]["id"]
        try:
            reason = checked_reason(reason_of(view), DENY_NEEDS_REASON)
        except InvalidRequest as exc:
            await ack(response_action="errors", errors={"reason": esc(exc.message, 2000)})
            return
        # The policy may ask Slack (user groups, the target's email), which may be slower than the 3 s
        # Slack gives a submission: close the form now, decide after, and tell a refusal like a click's.
        await ack()
        work = flow.deny(view.get("private_metadata") or "", user, reason)
        replies.run(work, user=user, channel=flow.channel, name="deny form")

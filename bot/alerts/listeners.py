"""The alert card's own buttons: Acknowledge, Snooze, the baseline summary's "List them", and Undo of
an automatic action (bot/alerts/auto.py).

The `request:<action>` buttons on alert cards are the bot's (bot/listeners/actions.py). Each handler
acks at once and hands off to `AlertResponses`, whose answer goes to the clicking user only; the card
itself is re-rendered through the outbox.
"""

from __future__ import annotations

from typing import Any, Optional

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond

from ..services import Bot
from .auto import AutoContainment
from .responses import AlertResponses


def clicked(body: dict[str, Any]) -> tuple[str, str]:
    """(user id, the button's value) of a click."""
    return body["user"]["id"], str((body.get("actions") or [{}])[0].get("value") or "")


def register(
    app: AsyncApp, bot: Bot, responses: AlertResponses, auto: Optional[AutoContainment] = None
) -> None:
    run = bot.replies.run

    @app.action("auto:undo")
    async def on_undo(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        await ack()
        user, value = clicked(body)
        if auto is None:  # a stale card after the rules were removed from the config
            work = responses.no_auto()
        else:
            work = auto.undo(user, value)
        # without a response_url (a click Slack sent from elsewhere) the answer goes as an ephemeral
        channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id")
        answer = respond if body.get("response_url") else None
        run(work, user=user, respond=answer, channel=channel, name="auto:undo")

    @app.action("alert:ack")
    async def on_ack(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        await ack()
        user, value = clicked(body)
        run(responses.acknowledge(user, value), user=user, respond=respond, name="alert:ack")

    @app.action("alert:snooze")
    async def on_snooze(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        await ack()
        user, value = clicked(body)
        run(responses.snooze(user, value), user=user, respond=respond, name="alert:snooze")

    @app.action("alert:list")
    async def on_list(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        await ack()
        user, value = clicked(body)
        run(responses.list_them(user, value), user=user, respond=respond, name="alert:list")

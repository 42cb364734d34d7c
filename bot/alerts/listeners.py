"""The alert card's own buttons: Acknowledge, Snooze, the baseline summary's "List them" (and a storm
digest's, from bot/alerts/digests.py).

The `request:<action>` buttons on alert cards are the bot's (bot/listeners/actions.py). Each handler
acks at once and answers the clicking user only; the card itself is re-rendered through the outbox.
"""

from __future__ import annotations

import json
from typing import Any, Optional

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond

from connectors import Identity

from ..blocks import Message, esc, text_message, user_ref
from ..services import Bot
from . import cards, digests
from .detector import Detector, Scope

LIST_LIMIT = 15
NOT_ALLOWED = text_message(":no_entry: Only responders and approvers can act on risk alerts.")
GONE = text_message(":warning: idops has no such alert; nothing was done.")
OWN_ALERT = text_message(
    ":no_entry: This alert is about your own account: someone else must acknowledge or snooze it."
)


def register(app: AsyncApp, bot: Bot, detector: Detector) -> None:
    digests.register(app, bot, detector)  # a storm digest's *List them* pages

    def clicked(body: dict[str, Any]) -> tuple[str, str]:
        return body["user"]["id"], str((body.get("actions") or [{}])[0].get("value") or "")

    async def refusal(user: str, alert_id: str, attempted: str) -> Optional[Message]:
        """Why `user` may not acknowledge or snooze this alert, or None when they may."""
        if not await bot.lookups.may_look(user):
            return NOT_ALLOWED
        alert = detector.alert(alert_id)
        if alert is None:
            return GONE
        # like approvals: the person the alert is about never silences it (matched by email in Slack)
        email = Identity.from_dict(json.loads(alert["identity"])).email
        if email and await bot.service.directory.user_id_for_email(email) == user:
            detector.refused(alert, user, attempted, "own_alert")
            return OWN_ALERT
        return None

    async def acknowledge(user: str, alert_id: str) -> Optional[Message]:
        refused = await refusal(user, alert_id, "acknowledge")
        if refused is not None:
            return refused
        alert = detector.acknowledge(alert_id, user)
        if alert is None:
            return GONE
        if alert["acked_by"] != user:
            return text_message(f"Already acknowledged by {user_ref(alert['acked_by'])}.")
        return None  # the card itself now says who took it

    async def snooze(user: str, alert_id: str) -> Optional[Message]:
        refused = await refusal(user, alert_id, "snooze")
        if refused is not None:
            return refused
        before = detector.alert(alert_id)
        alert = detector.snooze(alert_id, user)
        if alert is None or before is None:
            return GONE
        if alert["status"] != "open":
            return text_message("This alert is already resolved; nothing to snooze.")
        if before["snoozed_until"] == alert["snoozed_until"]:
            return text_message(f"Already snoozed by {user_ref(alert['snoozed_by'])}.")
        return text_message(
            f"Snoozed for {detector.settings.snooze_minutes} minutes: no new alerts for"
            f" *{esc(cards.alert_name(alert), 200)}* until then, escalations update the card quietly."
        )

    async def list_them(user: str, scope_key: str) -> Optional[Message]:
        if not await bot.lookups.may_look(user):
            return NOT_ALLOWED
        scope = Scope.parse(scope_key)
        connector = detector.connectors.get(scope.connector)
        if connector is None:
            return text_message(f":warning: No connector named {esc(scope.connector, 100)} any more.")
        total, rows = detector.summary_scope_rows(scope, LIST_LIMIT)
        source = detector.source(connector, scope.tenant_id)
        return cards.risky_list(source, rows, total, detector.settings.levels)

    @app.action("alert:ack")
    async def on_ack(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        await ack()
        user, value = clicked(body)
        bot.replies.run(acknowledge(user, value), user=user, respond=respond, name="alert:ack")

    @app.action("alert:snooze")
    async def on_snooze(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        await ack()
        user, value = clicked(body)
        bot.replies.run(snooze(user, value), user=user, respond=respond, name="alert:snooze")

    @app.action("alert:list")
    async def on_list(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        await ack()
        user, value = clicked(body)
        bot.replies.run(list_them(user, value), user=user, respond=respond, name="alert:list")

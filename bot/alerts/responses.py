"""The answers to people acting on alert cards: Acknowledge, Snooze, and the baseline summary's
"List them". Each returns the private reply for the clicking person (None when the redrawn card says
it all); the alert rows change through the detector (`Triage`), the card is redrawn through the outbox.

Rules, as for approvals: only responders and approvers act on alerts, and the person an alert is
about (matched by email in Slack) never silences it.
"""

from __future__ import annotations

import json
from typing import Optional

from connectors import Identity

from ..approvals import Directory
from ..blocks import Message, esc, text_message, user_ref
from ..lookups import Lookups
from . import cards
from .detector import Detector, Scope

LIST_LIMIT = 15
NOT_ALLOWED = text_message(":no_entry: Only responders and approvers can act on risk alerts.")
GONE = text_message(":warning: idops has no such alert; nothing was done.")
OWN_ALERT = text_message(
    ":no_entry: This alert is about your own account: someone else must acknowledge or snooze it."
)


class AlertResponses:
    def __init__(self, detector: Detector, lookups: Lookups, directory: Directory) -> None:
        self.detector = detector
        self.lookups = lookups
        self.directory = directory

    async def refusal(self, user: str, alert_id: str, attempted: str) -> Optional[Message]:
        """Why `user` may not acknowledge or snooze this alert, or None when they may."""
        if not await self.lookups.may_look(user):
            return NOT_ALLOWED
        alert = self.detector.alert(alert_id)
        if alert is None:
            return GONE
        email = Identity.from_dict(json.loads(alert["identity"])).email
        if email and await self.directory.user_id_for_email(email) == user:
            self.detector.refused(alert, user, attempted, "own_alert")
            return OWN_ALERT
        return None

    async def acknowledge(self, user: str, alert_id: str) -> Optional[Message]:
        refused = await self.refusal(user, alert_id, "acknowledge")
        if refused is not None:
            return refused
        alert = self.detector.acknowledge(alert_id, user)
        if alert is None:
            return GONE
        if alert["acked_by"] != user:
            return text_message(f"Already acknowledged by {user_ref(alert['acked_by'])}.")
        return None  # the card itself now says who took it

    async def snooze(self, user: str, alert_id: str) -> Optional[Message]:
        refused = await self.refusal(user, alert_id, "snooze")
        if refused is not None:
            return refused
        before = self.detector.alert(alert_id)
        alert = self.detector.snooze(alert_id, user)
        if alert is None or before is None:
            return GONE
        if alert["status"] != "open":
            return text_message("This alert is already resolved; nothing to snooze.")
        if before["snoozed_until"] == alert["snoozed_until"]:
            return text_message(f"Already snoozed by {user_ref(alert['snoozed_by'])}.")
        return text_message(
            f"Snoozed for {self.detector.settings.snooze_minutes} minutes: no new alerts for"
            f" *{esc(cards.alert_name(alert), 200)}* until then, escalations update the card quietly."
        )

    async def no_auto(self) -> Optional[Message]:
        """Undo clicked while no auto-containment rule is configured (the config changed since)."""
        return text_message(":warning: Auto-containment is not configured any more; nothing was done.")

    async def list_them(self, user: str, scope_key: str) -> Optional[Message]:
        if not await self.lookups.may_look(user):
            return NOT_ALLOWED
        scope = Scope.parse(scope_key)
        connector = self.detector.connectors.get(scope.connector)
        if connector is None:
            return text_message(f":warning: No connector named {esc(scope.connector, 100)} any more.")
        total, rows = self.detector.summary_scope_rows(scope, LIST_LIMIT)
        source = self.detector.source(connector, scope.tenant_id)
        return cards.risky_list(source, rows, total, self.detector.settings.levels)

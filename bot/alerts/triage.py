"""People acting on alert cards: acknowledge, snooze (and its end), and the audit trail of both.

Each action changes the alert row, queues the card's redraw and writes its audit row in one
transaction (BEGIN IMMEDIATE); the first click wins.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Optional

from .. import audit
from .base import AlertsBase


class Triage(AlertsBase):
    def alert(self, alert_id: str) -> Optional[dict[str, Any]]:
        return next(self.db.query("SELECT * FROM alerts WHERE id = ?", [alert_id]), None)

    def acknowledge(self, alert_id: str, user_id: str) -> Optional[dict[str, Any]]:
        """Record who took the alert (the first click wins); returns the alert as it now stands."""
        now = self.clock()
        with audit.transaction(self.db):
            taken = self.db.execute(
                "UPDATE alerts SET acked_by = ?, acked_at = ? WHERE id = ? AND acked_by IS NULL",
                [user_id, now, alert_id],
            ).rowcount
            alert = self.alert(alert_id)
            if taken and alert is not None:
                self._outbox("refresh", alert["channel"], alert_id, {}, now)
                self._audit(alert, user_id, "alert_acknowledged", now, {})
        if taken:
            self.on_outbox()
        return alert

    def snooze(self, alert_id: str, user_id: str) -> Optional[dict[str, Any]]:
        """Silence the alert's identity for `snooze_minutes`: no new alerts, quiet escalations."""
        now = self.clock()
        until = now + self.settings.snooze_minutes * 60.0
        with audit.transaction(self.db):
            taken = self.db.execute(
                "UPDATE alerts SET snoozed_by = ?, snoozed_until = ? WHERE id = ? AND status = 'open'"
                " AND (snoozed_until IS NULL OR snoozed_until < ?)",
                [user_id, until, alert_id, now],
            ).rowcount
            alert = self.alert(alert_id)
            if taken and alert is not None:
                self.db.execute(
                    "UPDATE alert_identities SET snoozed_until = ? WHERE connector = ? AND identity_id = ?",
                    [until, alert["connector"], alert["identity_id"]],
                )
                self._outbox("refresh", alert["channel"], alert_id, {}, now)
                self._audit(alert, user_id, "alert_snoozed", now, {"minutes": self.settings.snooze_minutes})
        if taken:
            self.on_outbox()
        return alert

    def end_snoozes(self) -> int:
        """Open alerts whose snooze ran out: clear it and redraw the card (no "snoozed until" left
        behind, Snooze offered again). Returns how many ended."""
        now = self.clock()
        with self.db.atomic():
            ended = self.db.execute(
                "SELECT id, channel FROM alerts WHERE status = 'open' AND snoozed_until <= ?", [now]
            ).fetchall()
            for alert_id, channel in ended:
                self.db.execute(
                    "UPDATE alerts SET snoozed_by = NULL, snoozed_until = NULL WHERE id = ?", [alert_id]
                )
                self._outbox("refresh", channel, alert_id, {}, now)
        if ended:
            self.on_outbox()
        return len(ended)

    def refused(self, alert: dict[str, Any], user_id: str, attempted: str, rule: str) -> None:
        """Audit a refused acknowledge or snooze: who tried it on which alert, and the rule."""
        with audit.transaction(self.db):
            self._audit(alert, user_id, "refused", self.clock(), {"attempted": attempted, "rule": rule})

    def _audit(
        self, alert: dict[str, Any], user_id: str, event: str, now: float, detail: dict[str, Any]
    ) -> None:
        """Who took or silenced an alert goes into the audit trail, next to the approvals about it."""
        audit.append(
            self.db,
            at=datetime.fromtimestamp(now, timezone.utc),
            actor=user_id,
            event=event,
            connector=alert["connector"],
            identity_id=alert["identity_id"],
            detail={"alert_id": alert["id"], "level": alert["level"], "score": alert["score"], **detail},
        )

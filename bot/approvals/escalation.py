"""Escalation of requests nobody decides: the due steps, each claimed once in the store.

A PENDING request whose rule has `escalate_after_minutes` (and whose card is in Slack) reaches step 1
that long after it was made, step 2 twice that long after, and so on until it expires (bot/approvals/
rules.py). `escalate_due` claims each due step with a compare-and-set on `approvals.escalation_step`
(from the step stored to the step due) in the transaction that audits it (`escalation`), so a restart,
two sweeps or two processes on one store claim a step once; a sweep that missed steps claims only the
latest. The caller (bot/approval_flow.py) then mentions the rule's `escalate_to` group, or the current
members of its `escalate_oncall` group, in the card's thread, once per step across replicas
(bot/thread_replies.py: a reply Slack refuses is sent again by the next sweep, once).
"""

from __future__ import annotations

from .. import audit
from .execution import ApprovalService as Execution
from .records import SYSTEM, ApprovalRequest, from_row


class ApprovalService(Execution):
    """The approval service with escalation of undecided requests."""

    def escalate_due(self) -> list[ApprovalRequest]:
        """Claim the escalation step due for each PENDING, unexpired request with a card; returns
        those whose step this call claimed (`escalation_step` is the step to announce)."""
        now = self.clock()
        claimed: list[ApprovalRequest] = []
        rows = self.db.query(
            "SELECT * FROM approvals WHERE status = 'pending' AND expires_at > ? AND rule IS NOT NULL"
            " AND message_ts IS NOT NULL ORDER BY created_at",
            [audit.iso(now)],
        )
        for request in [from_row(row) for row in rows]:
            rule = self.rule_of(request)
            step = rule.escalation_due(request.created_at, now)
            if step <= request.escalation_step:
                continue
            with audit.transaction(self.db):
                cursor = self.db.execute(
                    "UPDATE approvals SET escalation_step = ? WHERE id = ? AND status = 'pending'"
                    " AND escalation_step = ?",
                    (step, request.id, request.escalation_step),
                )
                if cursor.rowcount == 1:
                    audit.append(
                        self.db,
                        at=now,
                        actor=SYSTEM,
                        event="escalation",
                        detail={
                            "step": step,
                            "rule": rule.name,
                            "escalate_to": rule.escalate_to,
                            "escalate_oncall": rule.escalate_oncall,
                        },
                        **request.audit_fields(),
                    )
                    claimed.append(self.get(request.id))
        return claimed

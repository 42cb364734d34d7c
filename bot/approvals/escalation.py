"""Escalation of requests nobody decides: the due steps, each claimed once in the store.

A PENDING request whose rule has `escalate_after_minutes` (and whose card is in Slack) reaches step 1
that long after it was made, step 2 twice that long after, and so on until it expires (bot/approvals/
rules.py). `escalations_due` lists the steps due; `claim_escalation` claims one with a compare-and-set
on `approvals.escalation_step` (from the step stored to the step due) in the transaction that audits it
(`escalation`), so a restart, two sweeps or two processes on one store claim a step once; a sweep that
missed steps claims only the latest. The caller (bot/approval_flow.py) claims the step's thread reply
(bot/thread_replies.py: it mentions the rule's `escalate_to` group, or the current members of its
`escalate_oncall` group) in that same transaction (`on_claim`), so no stop can come between the step and
its reply: the reply is posted exactly once (one Slack refuses is sent again by the next sweep, once).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Optional

from .. import audit
from .execution import ApprovalService as Execution
from .records import SYSTEM, ApprovalRequest, from_row

#: called inside the transaction that claims a step, with the request as claimed (`escalation_step` is
#: the step to announce): the caller claims the step's thread reply there
OnEscalation = Callable[[ApprovalRequest], None]


class ApprovalService(Execution):
    """The approval service with escalation of undecided requests."""

    def escalations_due(self) -> list[tuple[ApprovalRequest, int]]:
        """Each PENDING, unexpired request with a card whose due escalation step is past the one stored,
        with that step (oldest request first). Claims nothing."""
        now = self.clock()
        rows = self.db.query(
            "SELECT * FROM approvals WHERE status = 'pending' AND expires_at > ? AND rule IS NOT NULL"
            " AND message_ts IS NOT NULL ORDER BY created_at",
            [audit.iso(now)],
        )
        due = []
        for request in [from_row(row) for row in rows]:
            step = self.rule_of(request).escalation_due(request.created_at, now)
            if step > request.escalation_step:
                due.append((request, step))
        return due

    def escalate_due(self, on_claim: OnEscalation) -> list[ApprovalRequest]:
        """Claim every step due (`claim_escalation` each, `on_claim` in each step's transaction); returns
        the requests whose step this call claimed (`escalation_step` is the step to announce)."""
        claimed = (self.claim_escalation(request, step, on_claim) for request, step in self.escalations_due())
        return [request for request in claimed if request is not None]

    def claim_escalation(
        self, request: ApprovalRequest, step: int, on_claim: OnEscalation
    ) -> Optional[ApprovalRequest]:
        """Claim `step` of `request` (as read by `escalations_due`), audited, with `on_claim` in the same
        transaction; the request as claimed, or None when it changed meanwhile (decided, or the step
        claimed elsewhere)."""
        rule = self.rule_of(request)
        with audit.transaction(self.db):
            cursor = self.db.execute(
                "UPDATE approvals SET escalation_step = ? WHERE id = ? AND status = 'pending'"
                " AND escalation_step = ?",
                (step, request.id, request.escalation_step),
            )
            if cursor.rowcount != 1:
                return None
            audit.append(
                self.db,
                at=self.clock(),
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
            claimed = self.get(request.id)
            on_claim(claimed)
        return claimed

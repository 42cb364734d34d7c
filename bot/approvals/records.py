"""The approval request as stored (table `approvals`, bot/migrations/): states, record, errors, parsing.

Nothing here talks to a provider or to Slack; `policy.py` and `execution.py` change the rows.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Optional, Protocol

from connectors import Action, Identity

from .. import audit
from ..action_names import named_action

SYSTEM = "idops"  # the audit actor for what idops does by itself (execution, expiry)
MAX_REASON = 1000
# An execution still EXECUTING this long after its time limit was cut off by a stopped process.
INTERRUPTED_AFTER = 60.0
INTERRUPTED = (
    "idops stopped while the action was running, so the outcome is unknown: it may or may not have been done"
)
DENY_NEEDS_REASON = "Denying a request needs a reason."


class Directory(Protocol):
    """Who is in a Slack user group and which Slack user has an email (bot/directory.py over Slack)."""

    async def group_members(self, group_id: str) -> frozenset[str]: ...

    async def user_id_for_email(self, email: str) -> Optional[str]: ...


class Decision(str, enum.Enum):
    APPROVE = "approve"
    DENY = "deny"


class Status(str, enum.Enum):
    PENDING = "pending"
    APPROVED = "approved"  # enough approvals; about to execute
    EXECUTING = "executing"
    EXECUTED = "executed"
    FAILED = "failed"
    # sent, but no answer came back (timeout, lost connection, 5xx, idops stopped): maybe done, maybe
    # not; never run again except by a confirmed "Run again"
    UNKNOWN = "unknown"
    DENIED = "denied"
    EXPIRED = "expired"


@dataclass(frozen=True)
class ApprovalRequest:
    """One request as stored; `target` is the identity snapshot taken when it was made (what cards show)."""

    id: str
    connector: str
    identity_id: str
    action: Action
    reason: str
    requested_by: str
    source: str
    status: Status
    created_at: datetime
    expires_at: datetime
    #: name, email, privileged, risk_score, risk_level, tenant_id, provider, status, provider_label
    target: Mapping[str, Any]
    approvals_needed: int
    approvers: tuple[str, ...]
    decided_by: Optional[str]
    decided_at: Optional[datetime]
    decision_reason: str
    result: Optional[Mapping[str, Any]]
    error: Optional[str]
    message_channel: Optional[str]
    message_ts: Optional[str]
    attempts: int
    #: after an unknown outcome, what idops read at the provider (None before it looked)
    outcome_check: Optional[str] = None
    #: time-boxed: how long the action lasts once done, then idops undoes it (None: until undone)
    duration_seconds: Optional[int] = None
    #: the approval rule chosen for it (name, approvals, groups, break_glass, escalation; see rules.py)
    rule: Optional[Mapping[str, Any]] = None
    #: the last escalation step mentioned in the card's thread (0: none yet)
    escalation_step: int = 0
    #: who approved it alone under the rule's break-glass group (critical risk only)
    break_glass_by: Optional[str] = None

    @property
    def retryable(self) -> bool:
        """FAILED after running; one closed before it ran (its target was gone) can't be retried."""
        return self.status is Status.FAILED and self.attempts > 0

    @property
    def outcome_unknown(self) -> bool:
        """Sent without an answer: only a confirmed "Run again" (`rerun`) sends it again."""
        return self.status is Status.UNKNOWN

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the SOAR API's body)."""
        data = {name: getattr(self, name) for name in self.__dataclass_fields__}
        data.update(
            action=self.action.value,
            status=self.status.value,
            created_at=audit.iso(self.created_at),
            expires_at=audit.iso(self.expires_at),
            decided_at=audit.iso(self.decided_at) if self.decided_at else None,
            target=dict(self.target),
            approvers=list(self.approvers),
            result=dict(self.result) if self.result is not None else None,
            rule=dict(self.rule) if self.rule is not None else None,
        )
        return data

    def audit_fields(self) -> dict[str, Any]:
        """The columns an audit row about this request carries."""
        return {
            "request_id": self.id,
            "connector": self.connector,
            "identity_id": self.identity_id,
            "action": self.action.value,
        }


class PolicyError(Exception):
    """A refusal or bad input, as one plain-text sentence for the user (escape it before mrkdwn).

    `request` is the request's state after the refusal when there is one, e.g. EXPIRED, so the caller
    can refresh its card.
    """

    def __init__(self, message: str, *, request: Optional[ApprovalRequest] = None) -> None:
        super().__init__(message)
        self.message = message
        self.request = request


class InvalidRequest(PolicyError):
    """The input names something that doesn't exist or lacks a required value; `field` says which."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


class RequestNotFound(PolicyError):
    """No request has this id."""


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def expired_message(request: ApprovalRequest, done: str) -> str:
    """The refusal of a click on an expired request; `done` fits the button (approved, denied, retried)."""
    return f"This request expired at {request.expires_at:%Y-%m-%d %H:%M} UTC and can't be {done}."


def checked_reason(reason: str, missing: Optional[str] = None) -> str:
    """`reason` stripped; InvalidRequest when it is too long, or empty when `missing` (the message) says
    one is needed. Needs neither the store nor Slack, so a form can check it before its ack."""
    reason = reason.strip()
    if missing and not reason:
        raise InvalidRequest(missing, field="reason")
    if len(reason) > MAX_REASON:
        raise InvalidRequest(f"The reason is longer than {MAX_REASON} characters.", field="reason")
    return reason


def parse_action(value: str) -> Action:
    """An Action from its name (`disable`) or its word (`reset`, `revoke`, see `bot.action_names`);
    InvalidRequest otherwise."""
    action = named_action(value)
    if action is None:
        valid = ", ".join(a.value for a in Action)
        raise InvalidRequest(f"Unknown action '{value}' (expected one of: {valid}).", field="action")
    return action


def snapshot(identity: Identity, provider_label: str) -> dict[str, Any]:
    """What an approval card shows about the target, frozen at request time."""
    return {
        "name": identity.name,
        "email": identity.email,
        "privileged": identity.privileged,
        "risk_score": identity.risk_score,
        "risk_level": identity.risk_level.value if identity.risk_level else None,
        "tenant_id": identity.tenant_id,
        "provider": identity.provider,
        "status": identity.status,
        "provider_label": provider_label,
    }


def _time(value: Optional[str]) -> Optional[datetime]:
    return datetime.fromisoformat(value) if value else None


def from_row(row: Mapping[str, Any]) -> ApprovalRequest:
    created_at, expires_at = _time(row["created_at"]), _time(row["expires_at"])
    assert created_at is not None and expires_at is not None
    return ApprovalRequest(
        id=row["id"],
        connector=row["connector"],
        identity_id=row["identity_id"],
        action=Action(row["action"]),
        reason=row["reason"],
        requested_by=row["requested_by"],
        source=row["source"],
        status=Status(row["status"]),
        created_at=created_at,
        expires_at=expires_at,
        target=json.loads(row["target"]),
        approvals_needed=row["approvals_needed"],
        approvers=tuple(json.loads(row["approvers"])),
        decided_by=row["decided_by"],
        decided_at=_time(row["decided_at"]),
        decision_reason=row["decision_reason"],
        result=json.loads(row["result"]) if row["result"] else None,
        error=row["error"],
        message_channel=row["message_channel"],
        message_ts=row["message_ts"],
        attempts=row["attempts"],
        outcome_check=row.get("outcome_check"),
        duration_seconds=row.get("duration_seconds"),
        rule=json.loads(row["rule"]) if row.get("rule") else None,
        escalation_step=row.get("escalation_step") or 0,
        break_glass_by=row.get("break_glass_by"),
    )

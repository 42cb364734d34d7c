"""Approval requests for response actions: who may ask and decide, and execution exactly once.

Every state change is one compare-and-set UPDATE inside a `BEGIN IMMEDIATE` transaction together with
its audit row, so double clicks, concurrent clicks, redelivered events and a second process sharing the
SQLite file can never run an action twice. No `await` happens inside a transaction.

Life of a request::

    PENDING --approve (enough approvers)--> APPROVED --execute--> EXECUTING --> EXECUTED | FAILED
    PENDING --deny--> DENIED          PENDING --past expires_at--> EXPIRED
    FAILED --retry--> APPROVED (then executed again)
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Optional, Protocol

import sqlite_utils
from sqlite_utils.migrations import Migrations

from connectors import Action, Connector, ConnectorError, Identity, NotFoundError

from . import audit
from .config import AccessSettings, ApprovalSettings

log = logging.getLogger(__name__)

MIGRATIONS = Migrations("idops.approvals")


@MIGRATIONS()
def m001_approvals(db: sqlite_utils.Database) -> None:
    db.execute(
        """
        CREATE TABLE approvals (
            id TEXT PRIMARY KEY,
            connector TEXT NOT NULL,
            identity_id TEXT NOT NULL,
            action TEXT NOT NULL,
            reason TEXT NOT NULL DEFAULT '',
            requested_by TEXT NOT NULL,
            source TEXT NOT NULL DEFAULT 'slack',
            status TEXT NOT NULL,
            created_at TEXT NOT NULL,
            expires_at TEXT NOT NULL,
            target TEXT NOT NULL,
            approvals_needed INTEGER NOT NULL,
            approvers TEXT NOT NULL DEFAULT '[]',
            decided_by TEXT,
            decided_at TEXT,
            decision_reason TEXT NOT NULL DEFAULT '',
            result TEXT,
            error TEXT,
            message_channel TEXT,
            message_ts TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            version INTEGER NOT NULL DEFAULT 0
        )
        """
    )
    db.execute("CREATE INDEX approvals_status ON approvals (status, expires_at)")
    db.execute("CREATE INDEX approvals_identity ON approvals (connector, identity_id)")


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
    DENIED = "denied"
    EXPIRED = "expired"

    @property
    def final(self) -> bool:
        """No click can change this state any more (FAILED can still be retried)."""
        return self in (Status.EXECUTED, Status.DENIED, Status.EXPIRED)


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

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the SOAR API's body)."""
        raise NotImplementedError


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


class ApprovalService:
    """The approval state machine and its policy over one SQLite store (see the module docstring)."""

    def __init__(
        self,
        db: sqlite_utils.Database,
        *,
        connectors: Mapping[str, Connector],
        access: AccessSettings,
        approvals: ApprovalSettings,
        directory: Directory,
        clock: Callable[[], datetime] = utcnow,
        action_timeout: float = 120.0,
    ) -> None:
        self.db = db
        self.connectors = connectors
        self.access = access
        self.settings = approvals
        self.directory = directory
        self.clock = clock
        self.action_timeout = action_timeout

    async def is_responder(self, user_id: str) -> bool:
        """Listed in [access] responders, directly or through a user group (S…)."""
        raise NotImplementedError

    async def is_approver(self, user_id: str) -> bool:
        """Listed in [access] approvers, directly or through a user group (S…)."""
        raise NotImplementedError

    async def request(
        self,
        *,
        connector: str,
        identity_id: str,
        action: Action,
        reason: str,
        requested_by: str,
        source: str = "slack",
    ) -> ApprovalRequest:
        """Create a PENDING request after the requester and input checks; snapshots the target.

        `identity_id` may also be an exact email. Raises PolicyError (refusal), InvalidRequest (bad
        connector, action, identity or missing reason) or ConnectorError (provider fault).
        """
        raise NotImplementedError

    def set_message(self, request_id: str, channel: str, ts: str) -> None:
        """Remember where the approval card was posted, so later updates edit it."""
        raise NotImplementedError

    async def decide(
        self, request_id: str, *, user_id: str, decision: Decision, reason: str = ""
    ) -> ApprovalRequest:
        """Record one approver's click; APPROVED when enough distinct approvers agreed (then call
        `execute`). Raises PolicyError naming the rule that refused it."""
        raise NotImplementedError

    async def execute(self, request_id: str) -> ApprovalRequest:
        """Run an APPROVED request's action exactly once; concurrent callers get the state unchanged."""
        raise NotImplementedError

    async def retry(self, request_id: str, *, user_id: str) -> ApprovalRequest:
        """FAILED -> APPROVED (approvers only) and execute again; repeating it runs nothing twice."""
        raise NotImplementedError

    def get(self, request_id: str) -> ApprovalRequest:
        """The stored request; RequestNotFound if there is none."""
        raise NotImplementedError

    async def pending(self, *, for_user: Optional[str] = None) -> list[ApprovalRequest]:
        """Pending, unexpired requests, oldest first; with `for_user`, only those that user may approve
        now (an approver, not the requester, not yet approved by them)."""
        raise NotImplementedError

    def expire_due(self) -> list[ApprovalRequest]:
        """Mark overdue PENDING requests EXPIRED and return them (the caller updates their cards)."""
        raise NotImplementedError

    def history(self, connector: Optional[str], identity_id: str, *, limit: int = 20) -> list[dict]:
        """Audit rows about one identity, newest first (for `/idops audit <who>`)."""
        raise NotImplementedError


# Keep these names importable for the implementation to come without unused-import noise.
_ = (asyncio, json, secrets, timedelta, ConnectorError, Identity, NotFoundError, audit)

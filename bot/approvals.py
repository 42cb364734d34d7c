"""Approval requests for response actions: who may ask and decide, and execution exactly once.

Every state change is one compare-and-set UPDATE inside a `BEGIN IMMEDIATE` transaction together with
its audit row, so double clicks, concurrent clicks, redelivered events and a second process sharing the
SQLite file can never run an action twice. No `await` happens inside a transaction.

Life of a request::

    PENDING --approve (enough approvers)--> APPROVED --execute--> EXECUTING --> EXECUTED | FAILED
    PENDING --deny--> DENIED          PENDING --past expires_at--> EXPIRED
    FAILED --retry--> APPROVED (then executed again)
    PENDING --last approval, target gone--> FAILED (closed, attempts 0: no retry)

The approval that would complete a request re-reads the target first: one that became privileged
raises approvals_needed to `privileged_approvals` (still PENDING).
"""

from __future__ import annotations

import asyncio
import enum
import functools
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

SYSTEM = "idops"  # the audit actor for what idops does by itself (execution, expiry)
MAX_REASON = 1000
# An execution still EXECUTING this long after its time limit was cut off by a stopped process.
INTERRUPTED_AFTER = 60.0
INTERRUPTED = (
    "idops stopped while the action was running; check the provider before retrying,"
    " the action may or may not have been done"
)
DENY_NEEDS_REASON = "Denying a request needs a reason."
DISABLE_NEEDS_REASON = "Disabling an account needs a reason."
ACTION_ALIASES = {"reset": Action.FORCE_PASSWORD_RESET, "revoke": Action.REVOKE_SESSIONS}


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


@MIGRATIONS()
def m002_executing_since(db: sqlite_utils.Database) -> None:
    # when the current execution was claimed, so a sweep can tell a crashed run from a running one
    db.execute("ALTER TABLE approvals ADD COLUMN executing_since TEXT")


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

    @property
    def retryable(self) -> bool:
        """FAILED after running; one closed before it ran (its target was gone) can't be retried."""
        return self.status is Status.FAILED and self.attempts > 0

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

    async def _member(self, user_id: str, entries: list[str]) -> bool:
        if user_id in entries:
            return True
        for entry in entries:
            # Slack user group ids start with S; anything else listed is a user id
            if entry.startswith("S") and user_id in await self.directory.group_members(entry):
                return True
        return False

    async def is_responder(self, user_id: str) -> bool:
        """Listed in [access] responders, directly or through a user group (S…)."""
        return await self._member(user_id, self.access.responders)

    async def is_approver(self, user_id: str) -> bool:
        """Listed in [access] approvers, directly or through a user group (S…)."""
        return await self._member(user_id, self.access.approvers)

    async def _require_role(
        self,
        role: str,
        user_id: str,
        *,
        request: Optional[ApprovalRequest] = None,
        where: Optional[dict[str, Any]] = None,
    ) -> None:
        """Refuse unless `user_id` is in [access] `role` (responders or approvers); empty denies all."""
        entries: list[str] = getattr(self.access, role)
        doing = "request actions" if role == "responders" else "decide requests"
        if not entries:
            message = f"Nobody may {doing} yet: no {role} are configured ([access] {role})."
            raise self._refuse(message, actor=user_id, rule=f"no_{role}", request=request, where=where)
        if not await self._member(user_id, entries):
            message = f"Only {role} can {doing}, and you are not one ([access] {role})."
            raise self._refuse(message, actor=user_id, rule=f"not_{role}", request=request, where=where)

    async def _is_target(self, request: ApprovalRequest, user_id: str) -> bool:
        """The Slack user is the person the action is aimed at (matched by the identity's email)."""
        email = request.target.get("email")
        return bool(email) and await self.directory.user_id_for_email(str(email)) == user_id

    def _refuse(
        self,
        message: str,
        *,
        actor: str,
        rule: str,
        request: Optional[ApprovalRequest] = None,
        where: Optional[dict[str, Any]] = None,
    ) -> PolicyError:
        """Audit a refused attempt (who tried what) and return the error to raise."""
        fields = request.audit_fields() if request else (where or {})
        with audit.transaction(self.db):
            audit.append(
                self.db, at=self.clock(), actor=actor, event="refused", detail={"rule": rule}, **fields
            )
        return PolicyError(message, request=request)

    def _connector(self, name: str) -> Connector:
        connector = self.connectors.get(name)
        if connector is None:
            known = ", ".join(sorted(self.connectors)) or "none configured"
            raise InvalidRequest(f"No connector named '{name}' (known: {known}).", field="connector")
        return connector

    async def _identity(self, connector: Connector, identity_id: str) -> Identity:
        """The identity by id, or by exact email; InvalidRequest when the provider has neither."""
        try:
            return await connector.get_identity(identity_id)
        except NotFoundError:
            if "@" in identity_id:
                matches = await connector.find_identities(identity_id, limit=5)
                exact = [i for i in matches if (i.email or "").lower() == identity_id.lower()]
                if len(exact) == 1:
                    return exact[0]
            raise InvalidRequest(
                f"{connector.label} has no identity '{identity_id}'.", field="identity"
            ) from None

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

        `identity_id` may also be an exact email. Raises PolicyError (refusal, or a request for the same
        action on the same identity already pending: `.request` is that one), InvalidRequest (bad
        connector, action, identity or reason) or ConnectorError (provider fault).
        """
        where = {"connector": connector, "identity_id": identity_id, "action": action.value}
        await self._require_role("responders", requested_by, where=where)
        provider = self._connector(connector)
        if not provider.supports(action):
            raise InvalidRequest(f"{provider.label} has no '{action.label}' action.", field="action")
        reason = checked_reason(reason, DISABLE_NEEDS_REASON if action is Action.DISABLE else None)
        identity = await self._identity(provider, identity_id)
        now = self.clock()
        request_id = "apr_" + secrets.token_hex(8)
        row = {
            "id": request_id,
            "connector": connector,
            "identity_id": identity.id,
            "action": action.value,
            "reason": reason,
            "requested_by": requested_by,
            "source": source,
            "status": Status.PENDING.value,
            "created_at": audit.iso(now),
            "expires_at": audit.iso(now + timedelta(minutes=self.settings.expire_minutes)),
            "target": json.dumps(_snapshot(identity, provider.label)),
            "approvals_needed": self.settings.privileged_approvals if identity.privileged else 1,
        }
        with audit.transaction(self.db):
            duplicate = self.db.execute(
                "SELECT id FROM approvals WHERE connector = ? AND identity_id = ? AND action = ?"
                " AND status = 'pending' AND expires_at > ?",
                (connector, identity.id, action.value, audit.iso(now)),
            ).fetchone()
            if duplicate is None:
                self.db.table("approvals").insert(row)
                created = self.get(request_id)
                audit.append(
                    self.db,
                    at=now,
                    actor=requested_by,
                    event="requested",
                    detail={"reason": reason, "source": source, "approvals_needed": created.approvals_needed},
                    **created.audit_fields(),
                )
        if duplicate is not None:
            existing = self.get(duplicate[0])
            raise PolicyError(
                f"A '{action.label}' request for {identity.name} is already waiting for approval.",
                request=existing,
            )
        return created

    def set_message(self, request_id: str, channel: str, ts: str) -> None:
        """Remember where the approval card was posted, so later updates edit it."""
        self.db.execute(
            "UPDATE approvals SET message_channel = ?, message_ts = ? WHERE id = ?", (channel, ts, request_id)
        )

    async def decide(
        self, request_id: str, *, user_id: str, decision: Decision, reason: str = ""
    ) -> ApprovalRequest:
        """Record one approver's click; APPROVED when enough distinct approvers agreed (then call
        `execute`). Raises PolicyError naming the rule that refused it."""
        request = self.get(request_id)
        reason = checked_reason(reason, DENY_NEEDS_REASON if decision is Decision.DENY else None)
        await self._check_decider(request, user_id, decision)
        # The approval that completes a request is checked against the identity as it is now (it may
        # have become privileged, or gone). The provider is read outside the transaction; the write
        # then applies to whatever state the transaction finds, reading again only if that state
        # would now complete without a fresh read (another approval landed meanwhile).
        fresh: Optional[Identity] = None
        gone: Optional[str] = None
        while not self._check_state(
            request_id,
            user_id,
            decision,
            functools.partial(self._write_decision, user_id, decision, reason, fresh, gone),
        ):
            fresh, gone = await self._reread(self.get(request_id), user_id)
        if gone is not None:
            raise PolicyError(
                f"Not approved: {gone}, so the request is closed without running.",
                request=self.get(request_id),
            )
        return self.get(request_id)

    async def check_decision(self, request_id: str, *, user_id: str, decision: Decision) -> ApprovalRequest:
        """Refuse now, recording nothing but the refusal, what `decide` would refuse about this user
        and the request's state (so a form opens only for someone who may submit it)."""
        await self._check_decider(self.get(request_id), user_id, decision)
        self._check_state(request_id, user_id, decision)
        return self.get(request_id)

    async def _check_decider(self, request: ApprovalRequest, user_id: str, decision: Decision) -> None:
        await self._check_approver(request, user_id)
        if decision is Decision.APPROVE and user_id == request.requested_by:
            raise self._refuse(
                "You can't approve your own request.", actor=user_id, rule="own_request", request=request
            )

    def _check_state(
        self,
        request_id: str,
        user_id: str,
        decision: Decision,
        write: Optional[Callable[[ApprovalRequest, datetime], bool]] = None,
    ) -> bool:
        """Refuse what the current state refuses, else `write` the decision: both under one write lock,
        since the state can change between clicks. Returns what `write` returned (True without one)."""
        now = self.clock()
        done = True
        with audit.transaction(self.db):
            current = self.get(request_id)
            refusal = self._state_refusal(current, user_id, decision, now)
            if refusal is None and write is not None:
                done = write(current, now)
        if refusal is not None:
            message, rule = refusal
            raise self._refuse(message, actor=user_id, rule=rule, request=self.get(request_id))
        return done

    async def _check_approver(self, request: ApprovalRequest, user_id: str) -> None:
        """Refuse non-approvers and the target person (who must not decide about their own account)."""
        await self._require_role("approvers", user_id, request=request)
        if await self._is_target(request, user_id):
            raise self._refuse(
                "You can't decide on an action against your own account.",
                actor=user_id,
                rule="target",
                request=request,
            )

    def _state_refusal(
        self, request: ApprovalRequest, user_id: str, decision: Decision, now: datetime
    ) -> Optional[tuple[str, str]]:
        """Why the current state refuses this click (message, rule), or None; expires it if overdue."""
        if request.status is not Status.PENDING:
            return f"This request is already {request.status.value}.", "not_pending"
        if now >= request.expires_at:
            self._expire(request, now)
            done = "approved" if decision is Decision.APPROVE else "denied"
            return _expired(request, done), "expired"
        if user_id in request.approvers:
            return (
                f"You already approved this request; it needs {request.approvals_needed} different"
                " approvers.",
                "already_approved",
            )
        return None

    def _write_decision(
        self,
        user_id: str,
        decision: Decision,
        reason: str,
        fresh: Optional[Identity],
        gone: Optional[str],
        current: ApprovalRequest,
        now: datetime,
    ) -> bool:
        """Write one click on `current` (inside the transaction); False, writing nothing, when it would
        complete the request before the target was re-read (`fresh`, or `gone` saying why it is not)."""
        if gone is not None:
            self._close(current, user_id, gone, now)
            return True
        completes = len(current.approvers) + 1 >= current.approvals_needed
        if decision is Decision.APPROVE and fresh is None and completes:
            return False
        self._apply(current, user_id, decision, reason, now, fresh)
        return True

    async def _reread(
        self, request: ApprovalRequest, user_id: str
    ) -> tuple[Optional[Identity], Optional[str]]:
        """The target as its provider has it now, or (None, why) when it is gone; refuses the click
        (nothing recorded, still pending) when the provider can't answer."""
        label = request.target.get("provider_label") or request.connector
        try:
            provider = self.connectors.get(request.connector)
            if provider is None:
                raise ConnectorError(f"connector '{request.connector}' is no longer configured")
            return await provider.get_identity(request.identity_id), None
        except NotFoundError:
            name = request.target.get("name") or request.identity_id
            return None, f"{label} no longer has {name} ({request.identity_id})"
        except ConnectorError as exc:
            message = (
                "Not approved: idops checks the target again before the last approval, and that"
                f" failed ({exc}). The request is still waiting; approve again later."
            )
            raise self._refuse(message, actor=user_id, rule="reread_failed", request=request) from None

    def _close(self, request: ApprovalRequest, user_id: str, why: str, now: datetime) -> None:
        """FAILED without running, as the target is gone (inside the caller's transaction); never
        retryable, so a target that comes back can't skip the policy."""
        if self._cas(request, Status.PENDING, status=Status.FAILED.value, error=why):
            audit.append(
                self.db,
                at=now,
                actor=user_id,
                event="refused",
                detail={"rule": "target_gone"},
                **request.audit_fields(),
            )
            audit.append(
                self.db, at=now, actor=SYSTEM, event="failed", detail={"error": why}, **request.audit_fields()
            )

    def _apply(
        self,
        request: ApprovalRequest,
        user_id: str,
        decision: Decision,
        reason: str,
        now: datetime,
        fresh: Optional[Identity] = None,
    ) -> None:
        """Write one decision with its audit row (inside the caller's transaction); `fresh` is the target
        re-read for a completing approval: its snapshot replaces the stored one, and a target that became
        privileged raises the approvals needed, keeping the request pending."""
        approvers = request.approvers
        needed = request.approvals_needed
        changes: dict[str, Any] = {}
        if fresh is not None:
            changes["target"] = json.dumps(_snapshot(fresh, request.target.get("provider_label") or ""))
            if fresh.privileged and needed < self.settings.privileged_approvals:
                needed = self.settings.privileged_approvals
                changes["approvals_needed"] = needed
                audit.append(
                    self.db,
                    at=now,
                    actor=SYSTEM,
                    event="escalated",
                    detail={
                        "reason": "the target is now privileged",
                        "approvals_needed": needed,
                        "was": request.approvals_needed,
                    },
                    **request.audit_fields(),
                )
        if decision is Decision.APPROVE:
            approvers = (*approvers, user_id)
            status = Status.APPROVED if len(approvers) >= needed else Status.PENDING
        else:
            status = Status.DENIED
        self._cas(
            request,
            Status.PENDING,
            status=status.value,
            approvers=json.dumps(list(approvers)),
            decided_by=user_id if status is not Status.PENDING else None,
            decided_at=audit.iso(now) if status is not Status.PENDING else None,
            decision_reason=reason,
            **changes,
        )
        audit.append(
            self.db,
            at=now,
            actor=user_id,
            event="approved" if decision is Decision.APPROVE else "denied",
            detail={
                "reason": reason,
                "approvals": len(approvers),
                "approvals_needed": needed,
                "status": status.value,
            },
            **request.audit_fields(),
        )

    def _cas(self, request: ApprovalRequest, expected: Status, **changes: Any) -> bool:
        """Compare-and-set: change the row only if it is still in `expected` state; True if it was."""
        assignments = ", ".join(f"{column} = ?" for column in changes)
        cursor = self.db.execute(
            f"UPDATE approvals SET {assignments}, version = version + 1 WHERE id = ? AND status = ?",  # noqa: S608
            (*changes.values(), request.id, expected.value),
        )
        return cursor.rowcount == 1

    def _expire(self, request: ApprovalRequest, now: datetime) -> None:
        if self._cas(request, Status.PENDING, status=Status.EXPIRED.value):
            audit.append(
                self.db,
                at=now,
                actor=SYSTEM,
                event="expired",
                detail={"expires_at": audit.iso(request.expires_at)},
                **request.audit_fields(),
            )

    async def execute(self, request_id: str) -> ApprovalRequest:
        """Run an APPROVED request's action exactly once; concurrent callers get the state unchanged."""
        with audit.transaction(self.db):
            request = self.get(request_id)
            claimed = self._cas(
                request,
                Status.APPROVED,
                status=Status.EXECUTING.value,
                error=None,
                executing_since=audit.iso(self.clock()),
            )
            if claimed:
                self.db.execute("UPDATE approvals SET attempts = attempts + 1 WHERE id = ?", (request_id,))
                request = self.get(request_id)
                audit.append(
                    self.db,
                    at=self.clock(),
                    actor=SYSTEM,
                    event="executing",
                    detail={"attempt": request.attempts, "approvers": list(request.approvers)},
                    **request.audit_fields(),
                )
        if not claimed:
            return request
        result: Optional[dict[str, Any]] = None
        error: Optional[str] = None
        try:
            provider = self.connectors.get(request.connector)
            if provider is None:
                raise ConnectorError(f"connector '{request.connector}' is no longer configured")
            outcome = await asyncio.wait_for(
                provider.run_action(request.action, request.identity_id, request.reason), self.action_timeout
            )
            result = outcome.to_dict()
        except ConnectorError as exc:
            error = str(exc)
        except asyncio.CancelledError:  # shutting down mid-action: leave it retryable, not EXECUTING
            self._finish(request, None, INTERRUPTED)
            raise
        except asyncio.TimeoutError:
            label = request.target.get("provider_label") or request.connector
            error = f"{label} did not finish the action within {self.action_timeout:g} s"
        except Exception as exc:  # an unforeseen bug must still leave the request FAILED, never EXECUTING
            log.exception("action for approval %s raised", request_id)
            error = f"unexpected error ({type(exc).__name__}); see the idops log"
        self._finish(request, result, error)
        return self.get(request_id)

    def _finish(
        self, request: ApprovalRequest, result: Optional[dict[str, Any]], error: Optional[str]
    ) -> None:
        """Store an execution's outcome (EXECUTED with its result, or FAILED with the error), audited."""
        status = Status.EXECUTED if error is None else Status.FAILED
        with audit.transaction(self.db):
            if self._cas(
                request,
                Status.EXECUTING,
                status=status.value,
                result=json.dumps(result) if result is not None else None,
                error=error,
            ):
                audit.append(
                    self.db,
                    at=self.clock(),
                    actor=SYSTEM,
                    event=status.value,
                    detail={"result": result} if error is None else {"error": error},
                    **request.audit_fields(),
                )

    async def retry(self, request_id: str, *, user_id: str) -> ApprovalRequest:
        """FAILED -> APPROVED (approvers only) and execute again; repeating it runs nothing twice."""
        request = self.get(request_id)
        await self._check_approver(request, user_id)
        with audit.transaction(self.db):
            current = self.get(request_id)
            if current.retryable and self._cas(current, Status.FAILED, status=Status.APPROVED.value):
                audit.append(
                    self.db,
                    at=self.clock(),
                    actor=user_id,
                    event="retried",
                    detail={"previous_error": current.error},
                    **current.audit_fields(),
                )
        if current.status is Status.FAILED and not current.retryable:
            raise self._refuse(
                f"This request was closed without running ({current.error}); ask for a new one if it"
                " is still needed.",
                actor=user_id,
                rule="closed",
                request=current,
            )
        if current.status in (Status.FAILED, Status.APPROVED):
            return await self.execute(request_id)
        if current.status in (Status.EXECUTING, Status.EXECUTED):
            return current  # someone else's retry got there first; nothing to do
        raise self._refuse(
            _expired(current, "retried")
            if current.status is Status.EXPIRED
            else f"Only a failed request can be retried; this one is {current.status.value}.",
            actor=user_id,
            rule="not_failed",
            request=current,
        )

    def get(self, request_id: str) -> ApprovalRequest:
        """The stored request; RequestNotFound if there is none."""
        for row in self.db.query("SELECT * FROM approvals WHERE id = ?", [request_id]):
            return _from_row(row)
        raise RequestNotFound(f"No approval request '{request_id}'.")

    async def pending(self, *, for_user: Optional[str] = None) -> list[ApprovalRequest]:
        """Pending, unexpired requests, oldest first; with `for_user`, only those that user may approve
        now (an approver, not the requester, not the target, not yet approved by them)."""
        requests = [
            _from_row(row)
            for row in self.db.query(
                "SELECT * FROM approvals WHERE status = 'pending' AND expires_at > ? ORDER BY created_at",
                [audit.iso(self.clock())],
            )
        ]
        if for_user is None:
            return requests
        if not await self.is_approver(for_user):
            return []
        return [
            r
            for r in requests
            if for_user != r.requested_by
            and for_user not in r.approvers
            and not await self._is_target(r, for_user)
        ]

    def expire_due(self) -> list[ApprovalRequest]:
        """The periodic sweep: overdue PENDING requests become EXPIRED, and executions interrupted by a
        stopped process (EXECUTING for longer than the action time limit allows) become FAILED, so
        their cards offer Retry. Returns what changed (the caller updates those cards)."""
        now = self.clock()
        stale = now - timedelta(seconds=self.action_timeout + INTERRUPTED_AFTER)
        with audit.transaction(self.db):
            due = [
                _from_row(row)
                for row in self.db.query(
                    "SELECT * FROM approvals WHERE status = 'pending' AND expires_at <= ?", [audit.iso(now)]
                )
            ]
            for request in due:
                self._expire(request, now)
            interrupted = [
                _from_row(row)
                for row in self.db.query(
                    "SELECT * FROM approvals WHERE status = 'executing' AND executing_since <= ?",
                    [audit.iso(stale)],
                )
            ]
            for request in interrupted:
                self._finish(request, None, INTERRUPTED)
        return [self.get(request.id) for request in (*due, *interrupted)]

    def history(self, connector: Optional[str], identity_id: str, *, limit: int = 20) -> list[dict]:
        """Audit rows about one identity, newest first (for `/idops audit <who>`)."""
        return audit.for_identity(self.db, connector, identity_id, limit=limit)


def _expired(request: ApprovalRequest, done: str) -> str:
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
    """An Action from its name (`disable`) or a short alias (`reset`, `revoke`); InvalidRequest otherwise."""
    text = str(value).strip().lower()
    action = ACTION_ALIASES.get(text)
    if action is None:
        try:
            action = Action(text)
        except ValueError:
            valid = ", ".join(a.value for a in Action)
            raise InvalidRequest(
                f"Unknown action '{value}' (expected one of: {valid}).", field="action"
            ) from None
    return action


def _snapshot(identity: Identity, provider_label: str) -> dict[str, Any]:
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


def _from_row(row: Mapping[str, Any]) -> ApprovalRequest:
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
    )

"""Who may request and decide, and how decisions are written: the policy half of the approval service.

Every state change is one compare-and-set UPDATE inside a `BEGIN IMMEDIATE` transaction together with
its audit row; no `await` happens inside a transaction. Each request carries the approval rule chosen
for it (bot/approvals/rules.py: how many approvers, from which groups, break-glass). The approval that
would complete a request re-reads the target first: one that now matches a rule asking more approvals
switches to it (still PENDING); one that is gone closes the request (FAILED, attempts 0).
"""

from __future__ import annotations

import functools
import json
import secrets
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, Optional

from connectors import Action, Connector, ConnectorError, Identity, NotFoundError

from .. import audit
from ..action_names import needs_reason
from ..config import AccessSettings, ApprovalSettings
from ..store import Store
from .deciders import Deciders
from .records import (
    DENY_NEEDS_REASON,
    SYSTEM,
    ApprovalRequest,
    Decision,
    Directory,
    InvalidRequest,
    PolicyError,
    RequestNotFound,
    Status,
    checked_reason,
    expired_message,
    from_row,
    snapshot,
    utcnow,
)
from .rules import Click, Rules, deciders, escalation_reason
from .timebox import MAX_DURATION, MIN_DURATION


class Policy(Deciders):
    """Who may ask and decide, and the decisions themselves, over one SQLite store (the state machine
    is in bot/approvals/__init__.py; execution in execution.py)."""

    def __init__(
        self,
        db: Store,
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
        self.rules = Rules.from_settings(approvals)
        self.directory = directory
        self.clock = clock
        self.action_timeout = action_timeout

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
        duration: Optional[timedelta] = None,
        trigger_id: Optional[str] = None,
    ) -> ApprovalRequest:
        """Create a PENDING request after the requester and input checks; snapshots the target.

        `trigger_id`: Slack's id of the slash command asking (stored with the request, unique). A request
        that command made already (a delivery Slack sent again, a sweep running the command again after
        its replica stopped) is returned as it is now, whatever its state: never a second one.

        With `duration` the action is time-boxed: undone that long after it ran (bot/approvals/timebox.py);
        refused (InvalidRequest, field `duration`) when the provider can't undo it.

        `identity_id` may also be an exact email. Raises PolicyError (refusal, or a request for the same
        action on the same identity already pending: `.request` is that one), InvalidRequest (bad
        connector, action, identity or reason) or ConnectorError (provider fault).
        """
        where = {"connector": connector, "identity_id": identity_id, "action": action.value}
        await self._require_role("responders", requested_by, where=where)
        provider = self._connector(connector)
        if not provider.supports(action):
            raise InvalidRequest(f"{provider.label} has no '{action.label}' action.", field="action")
        if duration is not None and not MIN_DURATION <= duration <= MAX_DURATION:
            raise InvalidRequest("A time-boxed action lasts from 1 minute to 30 days.", field="duration")
        if duration is not None and not provider.can_undo(action):
            raise InvalidRequest(
                f"{provider.label} can't undo '{action.label}', so idops can't time-box it: it could not"
                " restore access at the end. Ask without a duration, and undo it by hand later.",
                field="duration",
            )
        reason = checked_reason(reason, needs_reason(action))
        identity = await self._identity(provider, identity_id)
        target = snapshot(identity, provider.label)
        rule = self.rules.select(action, connector, target)
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
            "target": json.dumps(target),
            "approvals_needed": rule.approvals,
            "rule": rule.to_json(),
            "duration_seconds": int(duration.total_seconds()) if duration is not None else None,
            "trigger_id": trigger_id,
        }
        with audit.transaction(self.db):
            made = self.by_trigger(trigger_id)
            duplicate = self.db.execute(
                "SELECT id FROM approvals WHERE connector = ? AND identity_id = ? AND action = ?"
                " AND status = 'pending' AND expires_at > ? ORDER BY created_at DESC",
                (connector, identity.id, action.value, audit.iso(now)),
            ).fetchone()
            if made is None and duplicate is None:
                self.db.insert("approvals", row)
                created = self.get(request_id)
                audit.append(
                    self.db,
                    at=now,
                    actor=requested_by,
                    event="requested",
                    detail={
                        "reason": reason,
                        "source": source,
                        "approvals_needed": created.approvals_needed,
                        "rule": rule.name,
                        "duration_seconds": created.duration_seconds,
                    },
                    **created.audit_fields(),
                )
        if made is not None:
            return made
        if duplicate is not None:
            existing = self.get(duplicate[0])
            raise PolicyError(
                f"A '{action.label}' request for {identity.name} is already waiting for approval.",
                request=existing,
            )
        return created

    def by_trigger(self, trigger_id: Optional[str]) -> Optional[ApprovalRequest]:
        """The request the slash command `trigger_id` made, if it made one."""
        if not trigger_id:
            return None
        row = self.db.execute("SELECT id FROM approvals WHERE trigger_id = ?", (trigger_id,)).fetchone()
        return self.get(row[0]) if row is not None else None

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
        click = await self._check_decider(request, user_id, decision)
        # The approval that completes a request is checked against the identity as it is now (it may
        # have become privileged, or gone). The provider is read outside the transaction; the write
        # then applies to whatever state the transaction finds, reading again only if that state
        # would now complete without a fresh read (another approval landed meanwhile).
        fresh: Optional[Identity] = None
        gone: Optional[str] = None
        settled: list[Click] = []  # the click as written (or refused), with the target re-read
        while not self._check_state(
            request_id,
            user_id,
            decision,
            functools.partial(self._write_decision, user_id, decision, reason, click, fresh, gone, settled),
        ):
            current = self.get(request_id)
            fresh, gone = await self._reread(current, user_id)
            if fresh is not None:  # a stricter rule the target matches now, and this user's part in it
                rule = self.rules.select(current.action, current.connector, snapshot(fresh, ""))
                if rule.approvals > current.approvals_needed:
                    click = await self._click(rule, user_id)
        if gone is not None:
            raise PolicyError(
                f"Not approved: {gone}, so the request is closed without running.",
                request=self.get(request_id),
            )
        if settled and settled[-1].refusal:
            raise self._refuse(
                settled[-1].refusal, actor=user_id, rule="rule_groups", request=self.get(request_id)
            )
        return self.get(request_id)

    async def check_decision(self, request_id: str, *, user_id: str, decision: Decision) -> ApprovalRequest:
        """Refuse now, recording nothing but the refusal, what `decide` would refuse about this user
        and the request's state (so a form opens only for someone who may submit it)."""
        await self._check_decider(self.get(request_id), user_id, decision)
        self._check_state(request_id, user_id, decision)
        return self.get(request_id)

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

    def _state_refusal(
        self, request: ApprovalRequest, user_id: str, decision: Decision, now: datetime
    ) -> Optional[tuple[str, str]]:
        """Why the current state refuses this click (message, rule), or None; expires it if overdue."""
        if request.status is not Status.PENDING:
            return f"This request is already {request.status.value}.", "not_pending"
        if now >= request.expires_at:
            self._expire(request, now)
            done = "approved" if decision is Decision.APPROVE else "denied"
            return expired_message(request, done), "expired"
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
        click: Click,
        fresh: Optional[Identity],
        gone: Optional[str],
        settled: list[Click],
        current: ApprovalRequest,
        now: datetime,
    ) -> bool:
        """Write one click on `current` (inside the transaction); False, writing nothing, when it would
        complete the request before the target was re-read (`fresh`, or `gone` saying why it is not).
        A break-glass click that finds the target below critical writes nothing (`click.refusal`)."""
        if gone is not None:
            self._close(current, user_id, gone, now)
            return True
        completes = len(current.approvers) + 1 >= current.approvals_needed or click.glass
        if decision is Decision.APPROVE and fresh is None and completes:
            return False
        if decision is Decision.APPROVE and fresh is not None:
            click = click.decided(current, snapshot(fresh, ""))
            settled.append(click)
            if not click.write:
                return True
        self._apply(current, user_id, decision, reason, now, fresh, click)
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
        click: Optional[Click] = None,
    ) -> None:
        """Write one decision with its audit row (inside the caller's transaction); `fresh` is the target
        re-read for a completing approval: its snapshot replaces the stored one, and a target that now
        matches a rule asking more approvals switches to it, keeping the request pending; `click` says
        whether this approval counts and whether it is a break-glass one."""
        approvers = request.approvers
        needed = request.approvals_needed
        changes: dict[str, Any] = {}
        event = "approved" if decision is Decision.APPROVE else "denied"
        if fresh is not None:
            changes["target"] = json.dumps(snapshot(fresh, request.target.get("provider_label") or ""))
        if click is not None and click.switched(request):
            needed = click.rule.approvals
            changes.update(approvals_needed=needed, rule=click.rule.to_json())
            audit.append(
                self.db,
                at=now,
                actor=SYSTEM,
                event="escalated",
                detail={
                    "reason": escalation_reason(click.rule),
                    "rule": click.rule.name,
                    "approvals_needed": needed,
                    "was": request.approvals_needed,
                },
                **request.audit_fields(),
            )
        if decision is Decision.APPROVE and click is not None and click.break_glass:
            approvers, status, event = (*approvers, user_id), Status.APPROVED, "approved_break_glass"
            changes["break_glass_by"] = user_id
        elif decision is Decision.APPROVE and (click is None or not click.refusal):
            approvers = (*approvers, user_id)
            status = Status.APPROVED if len(approvers) >= needed else Status.PENDING
        elif decision is Decision.APPROVE:  # not one of the new rule's deciders: the switch only
            self._cas(request, Status.PENDING, **changes)
            return
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
            event=event,
            detail={
                "reason": reason,
                "approvals": len(approvers),
                "approvals_needed": needed,
                "status": status.value,
                "rule": (click.rule if click else self.rule_of(request)).name,
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

    def get(self, request_id: str) -> ApprovalRequest:
        """The stored request; RequestNotFound if there is none."""
        for row in self.db.query("SELECT * FROM approvals WHERE id = ?", [request_id]):
            return from_row(row)
        raise RequestNotFound(f"No approval request '{request_id}'.")

    async def pending(self, *, for_user: Optional[str] = None) -> list[ApprovalRequest]:
        """Pending, unexpired requests, oldest first; with `for_user`, only those that user may approve
        now (an approver, not the requester, not the target, not yet approved by them)."""
        requests = [
            from_row(row)
            for row in self.db.query(
                "SELECT * FROM approvals WHERE status = 'pending' AND expires_at > ? ORDER BY created_at",
                [audit.iso(self.clock())],
            )
        ]
        if for_user is None:
            return requests
        return [
            r
            for r in requests
            if for_user != r.requested_by
            and for_user not in r.approvers
            and await self._member(for_user, deciders(self.rule_of(r), self.access))
            and not await self._is_target(r, for_user)
        ]

    def history(self, connector: Optional[str], identity_id: str, *, limit: int = 20) -> list[dict]:
        """Audit rows about one identity, newest first (for `/idops audit <who>`)."""
        return audit.for_identity(self.db, connector, identity_id, limit=limit)

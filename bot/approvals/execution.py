"""Running an approved request's action exactly once, retries, and the periodic sweep."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import timedelta
from typing import Any, Optional

from connectors import ConnectorError

from .. import audit
from .policy import Policy
from .records import (
    INTERRUPTED,
    INTERRUPTED_AFTER,
    SYSTEM,
    ApprovalRequest,
    Status,
    expired_message,
    from_row,
)

log = logging.getLogger(__name__)


def idempotency_key(request: ApprovalRequest) -> str:
    """The Idempotency-Key of every attempt at this request's action: the same for each retry, so a
    provider that honours it never acts twice for one request."""
    return f"idops-{request.id}"


class ApprovalService(Policy):
    """The approval state machine and its policy over one SQLite store (see bot/approvals/__init__.py)."""

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
                provider.run_action(
                    request.action,
                    request.identity_id,
                    request.reason,
                    idempotency_key=idempotency_key(request),
                ),
                self.action_timeout,
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
            expired_message(current, "retried")
            if current.status is Status.EXPIRED
            else f"Only a failed request can be retried; this one is {current.status.value}.",
            actor=user_id,
            rule="not_failed",
            request=current,
        )

    def expire_due(self) -> list[ApprovalRequest]:
        """The periodic sweep: overdue PENDING requests become EXPIRED, and executions interrupted by a
        stopped process (EXECUTING for longer than the action time limit allows) become FAILED, so
        their cards offer Retry. Returns what changed (the caller updates those cards)."""
        now = self.clock()
        stale = now - timedelta(seconds=self.action_timeout + INTERRUPTED_AFTER)
        with audit.transaction(self.db):
            due = [
                from_row(row)
                for row in self.db.query(
                    "SELECT * FROM approvals WHERE status = 'pending' AND expires_at <= ?", [audit.iso(now)]
                )
            ]
            for request in due:
                self._expire(request, now)
            interrupted = [
                from_row(row)
                for row in self.db.query(
                    "SELECT * FROM approvals WHERE status = 'executing' AND executing_since <= ?",
                    [audit.iso(stale)],
                )
            ]
            for request in interrupted:
                self._finish(request, None, INTERRUPTED)
        return [self.get(request.id) for request in (*due, *interrupted)]

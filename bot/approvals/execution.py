"""Running an approved request's action exactly once, retries, unknown outcomes, and the sweeps.

An action that was sent but whose answer never came back (the connector's OutcomeUnknownError, the
action time limit, a cancelled or crashed execution) is UNKNOWN, never FAILED: it may have run. idops
then reads the provider where it can (`Connector.action_in_effect`, e.g. the account is disabled) and
records the request EXECUTED without a second call when the effect shows. Otherwise the request stays
UNKNOWN: `retry` refuses it, and only `rerun` (a separate, confirmed and audited "Run again" for the
attempt the person saw) sends the action again, with the same Idempotency-Key, so a provider that
honours it still does not act twice. At start-up, `recover` settles what a stopped process left
EXECUTING (UNKNOWN, then read back) and runs what was approved but never started.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import timedelta
from typing import Any, Optional

from connectors import ConnectorError, OutcomeUnknownError

from .. import audit
from ..claims import Claims
from . import timebox
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

# an execution whose replica still holds its claim (bot/claims.py): alive, not to be given up
_LIVE_EXECUTION = "SELECT 1 FROM claims WHERE claims.name = 'execute:' || approvals.id AND claims.until >= ?"


def idempotency_key(request: ApprovalRequest) -> str:
    """The Idempotency-Key of every attempt at this request's action: the same for each retry and
    re-run, so a provider that honours it never acts twice for one request."""
    return f"idops-{request.id}"


class ApprovalService(Policy):
    """The approval state machine and its policy over one SQLite store (see bot/approvals/__init__.py).

    With `claims` (the server sets it), each execution holds the claim `execute:<request id>` while it
    runs, taken in the transaction that marks it EXECUTING: another replica gives up (UNKNOWN, read
    back) only executions whose claim lapsed, i.e. whose replica died or lost the store."""

    claims: Optional[Claims] = None

    def _label(self, request: ApprovalRequest) -> str:
        return str(request.target.get("provider_label") or request.connector)

    async def execute(self, request_id: str) -> ApprovalRequest:
        """Run an APPROVED request's action exactly once; concurrent callers get the state unchanged."""
        with audit.transaction(self.db):
            request = self.get(request_id)
            claimed = self._cas(
                request,
                Status.APPROVED,
                status=Status.EXECUTING.value,
                error=None,
                outcome_check=None,
                executing_since=audit.iso(self.clock()),
            )
            if claimed:
                if self.claims is not None:
                    self.claims.take(f"execute:{request_id}")
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
        try:
            return await self._run(request)
        finally:
            if self.claims is not None:
                self.claims.release(f"execute:{request_id}")

    async def _run(self, request: ApprovalRequest) -> ApprovalRequest:
        """Send the claimed attempt's action and store its outcome (see `execute`)."""
        request_id = request.id
        result: Optional[dict[str, Any]] = None
        error: Optional[str] = None
        unknown = True  # until the provider's answer (or a refusal that proves nothing ran) is in
        try:
            provider = self.connectors.get(request.connector)
            if provider is None:
                unknown = False
                raise ConnectorError(f"connector '{request.connector}' is no longer configured")
            # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a cancellation that
            # arrives as the action finishes, and a stopping server would then wait on this task forever
            async with asyncio.timeout(self.action_timeout):
                outcome = await provider.run_action(
                    request.action,
                    request.identity_id,
                    request.reason,
                    idempotency_key=idempotency_key(request),
                )
            result, unknown = outcome.to_dict(), False
        except OutcomeUnknownError as exc:
            error = str(exc)
        except ConnectorError as exc:  # the provider refused it: nothing was done
            error, unknown = str(exc), False
        except asyncio.CancelledError:  # shutting down mid-action: it may have been sent
            self._finish(request, None, INTERRUPTED, unknown=True)
            raise
        except TimeoutError:
            error = (
                f"{self._label(request)} did not finish the action within {self.action_timeout:g} s,"
                " so the outcome is unknown: it may or may not have been done"
            )
        except Exception as exc:  # an unforeseen bug after sending: never EXECUTING, never plain FAILED
            log.exception("action for approval %s raised", request_id)
            error = (
                f"unexpected error ({type(exc).__name__}) while the action was running, so the outcome"
                " is unknown; see the idops log"
            )
        self._finish(request, result, error, unknown=unknown)
        if unknown:
            return await self.reconcile(request_id)
        return self.get(request_id)

    def _finish(
        self,
        request: ApprovalRequest,
        result: Optional[dict[str, Any]],
        error: Optional[str],
        *,
        unknown: bool = False,
    ) -> None:
        """Store the outcome of attempt `request.attempts` (EXECUTED with its result, FAILED or UNKNOWN
        with the error), audited. It applies while that attempt is EXECUTING, or UNKNOWN because a
        restart gave it up while it was in fact still running: its real answer then wins."""
        status = Status.EXECUTED if error is None else Status.UNKNOWN if unknown else Status.FAILED
        with audit.transaction(self.db):
            cursor = self.db.execute(
                "UPDATE approvals SET status = ?, result = ?, error = ?, version = version + 1"
                " WHERE id = ? AND attempts = ? AND status IN ('executing', 'unknown')",
                (
                    status.value,
                    json.dumps(result) if result is not None else None,
                    error,
                    request.id,
                    request.attempts,
                ),
            )
            if cursor.rowcount == 1:
                audit.append(
                    self.db,
                    at=self.clock(),
                    actor=SYSTEM,
                    event="outcome_unknown" if status is Status.UNKNOWN else status.value,
                    detail={"result": result} if error is None else {"error": error},
                    **request.audit_fields(),
                )
                if status is Status.EXECUTED:
                    timebox.start(self.db, request, self.clock())

    async def reconcile(self, request_id: str) -> ApprovalRequest:
        """Settle an UNKNOWN request by reading the provider, never by acting: EXECUTED when the action's
        effect shows (no second call); otherwise it stays UNKNOWN with what was read in `outcome_check`."""
        request = self.get(request_id)
        if request.status is not Status.UNKNOWN:
            return request
        label, provider = self._label(request), self.connectors.get(request.connector)
        try:
            if provider is None:
                raise ConnectorError(f"connector '{request.connector}' is no longer configured")
            in_effect = await provider.action_in_effect(request.action, request.identity_id)
        except ConnectorError as exc:
            in_effect, check = None, f"idops could not check {label} ({exc})."
        else:
            check = {
                True: "",
                False: f"{label} does not show it done yet (it may still be processing it).",
                None: f"{label} has no way to read whether '{request.action.label}' was done.",
            }[in_effect]
        with audit.transaction(self.db):
            current = self.get(request_id)
            if current.status is not Status.UNKNOWN or current.attempts != request.attempts:
                return current  # settled meanwhile (the real answer, a re-run)
            if in_effect:
                result = {
                    "action": request.action.value,
                    "identity_id": request.identity_id,
                    "connector": request.connector,
                    "status": "completed",
                    "reference": None,
                    "message": f"{label} shows it done (read back after its answer was lost; not sent again)",
                }
                if self._cas(
                    current, Status.UNKNOWN, status=Status.EXECUTED.value, result=json.dumps(result)
                ):
                    timebox.start(self.db, current, self.clock())
                detail: dict[str, Any] = {"result": result, "previous_error": current.error}
            else:
                self._cas(current, Status.UNKNOWN, outcome_check=check)
                detail = {"in_effect": in_effect, "check": check}
            audit.append(
                self.db,
                at=self.clock(),
                actor=SYSTEM,
                event="reconciled",
                detail=detail,
                **request.audit_fields(),
            )
        return self.get(request_id)

    async def rerun(self, request_id: str, *, user_id: str, attempt: Optional[int] = None) -> ApprovalRequest:
        """ "Run again" after an unknown outcome: a deliberate, confirmed step (approvers only, never the
        target), audited as `rerun`. `attempt` is the attempt the person saw on the card: a redelivered
        or stale click for an earlier attempt runs nothing."""
        request = self.get(request_id)
        await self._check_approver(request, user_id)
        with audit.transaction(self.db):
            current = self.get(request_id)
            fresh = attempt is None or attempt == current.attempts
            started = (
                current.status is Status.UNKNOWN
                and fresh
                and self._cas(current, Status.UNKNOWN, status=Status.APPROVED.value)
            )
            if started:
                audit.append(
                    self.db,
                    at=self.clock(),
                    actor=user_id,
                    event="rerun",
                    detail={"previous_error": current.error, "attempt": current.attempts},
                    **current.audit_fields(),
                )
        if started:
            return await self.execute(request_id)
        if not fresh and current.status is not Status.PENDING:
            return current  # a redelivered or stale click: that run happened already, nothing more
        raise self._refuse(
            f"Only a request whose outcome is unknown can be run again; this one is {current.status.value}.",
            actor=user_id,
            rule="not_unknown",
            request=current,
        )

    async def retry(self, request_id: str, *, user_id: str) -> ApprovalRequest:
        """FAILED -> APPROVED (approvers only) and execute again; repeating it runs nothing twice. An
        UNKNOWN outcome is refused: that takes a confirmed `rerun`."""
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
        if current.status is Status.UNKNOWN:
            raise self._refuse(
                f"Not retried: the outcome is unknown, {self._label(current)} may already have done it."
                f" Check {self._label(current)}; if it was not done, use *Run again* on the card.",
                actor=user_id,
                rule="outcome_unknown",
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

    def _give_up(self, where: str, params: list[Any]) -> list[ApprovalRequest]:
        """EXECUTING rows matching `where` were cut off by a stopped process: UNKNOWN (in a transaction).
        With claims, only those whose execution claim lapsed (a live replica's stay its own)."""
        if self.claims is not None:
            where = f"({where}) AND NOT EXISTS ({_LIVE_EXECUTION})"
            params = [*params, self.claims.clock()]
        cut_off = [from_row(row) for row in self.db.query(f"SELECT * FROM approvals WHERE {where}", params)]  # noqa: S608
        for request in cut_off:
            self._finish(request, None, INTERRUPTED, unknown=True)
        return cut_off

    def expire_due(self) -> list[ApprovalRequest]:
        """The periodic sweep: overdue PENDING requests become EXPIRED, and executions interrupted by a
        stopped process (EXECUTING for longer than the action time limit allows) become UNKNOWN (the
        caller then `reconcile`s them). Returns what changed (the caller updates those cards)."""
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
            if self.claims is not None:  # cut off: its replica's claim lapsed (died, or lost the store)
                interrupted = self._give_up("status = 'executing'", [])
            else:
                interrupted = self._give_up(
                    "status = 'executing' AND executing_since <= ?", [audit.iso(stale)]
                )
        return [self.get(request.id) for request in (*due, *interrupted)]

    def stranded(self) -> list[str]:
        """With claims (replicas): APPROVED requests nobody started, approved over a lease ago, i.e. the
        replica that approved them stopped before it ran the action; the periodic sweep `execute`s them
        (a compare-and-set: one runs, whoever else tries). One process settles these in `recover`."""
        if self.claims is None:
            return []
        before = audit.iso(self.clock() - timedelta(seconds=self.claims.ttl))
        rows = self.db.query(
            "SELECT id FROM approvals WHERE status = 'approved' AND decided_at <= ? ORDER BY decided_at",
            [before],
        )
        return [row["id"] for row in rows]

    async def recover(self) -> list[ApprovalRequest]:
        """At start-up, before the periodic sweep would notice: every EXECUTING request was cut off by a
        stopped process (UNKNOWN, then read back), every UNKNOWN one is read back again, and every
        APPROVED one that never started runs now. Returns the requests whose cards need redrawing.

        A second process still running one of those actions on the same store keeps its say: its
        answer replaces UNKNOWN when it arrives (see `_finish`)."""
        with audit.transaction(self.db):
            cut_off = self._give_up("status = 'executing'", [])
        changed = {request.id for request in cut_off}
        for row in self.db.query("SELECT id FROM approvals WHERE status = 'unknown'"):
            before = self.get(row["id"])
            after = await self.reconcile(row["id"])
            if after.status is not before.status or after.outcome_check != before.outcome_check:
                changed.add(after.id)
        for row in self.db.query("SELECT id FROM approvals WHERE status = 'approved'"):
            await self.execute(row["id"])
            changed.add(row["id"])
        return [self.get(request_id) for request_id in sorted(changed)]

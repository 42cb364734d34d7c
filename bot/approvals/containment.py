"""Reverting time-boxed containments: the due sweep, the risk hold, and the people's decisions.

The revert is itself an approval request (source `containment`, action the undo, e.g. ENABLE), created
APPROVED in the same transaction that claims the containment row (compare-and-set ACTIVE|HELD ->
REVERTING), then run by `execute`: so it runs exactly once whoever sweeps, and goes through the same
outcome-unknown rules as any action (UNKNOWN, read back by `reconcile`; a process stopped after the
claim leaves it APPROVED or EXECUTING, which `recover` settles at start-up). Its audit rows name who
asked (the original requester, or whoever pressed Revert now) and who approved (the original approvers).

Before an automatic revert idops reads the identity: high or critical risk holds it (HELD) until a
person decides (Revert now, Make permanent, Extend). Policy of those clicks:

- Revert now: the requester or any responder; never the target.
- Extend, Make permanent: a decider of the original request's approval rule (its groups, else an
  approver) who is neither the requester nor the target (four eyes).

An identity the provider no longer has (NotFoundError on that read) closes the containment as GONE,
audited (`revert_closed`) and told in the thread once, instead of being read again at every sweep.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Optional

from connectors import ConnectorError, NotFoundError, RiskLevel

from .. import audit
from . import timebox
from .escalation import ApprovalService as Execution
from .records import SYSTEM, ApprovalRequest, PolicyError, Status
from .timebox import Containment, State

log = logging.getLogger(__name__)

HOLD_LEVELS = (RiskLevel.HIGH, RiskLevel.CRITICAL)
#: what a finished revert request makes of its containment
_SETTLED = {Status.EXECUTED: State.REVERTED, Status.FAILED: State.FAILED, Status.UNKNOWN: State.UNKNOWN}
#: reminders are claimed as thread replies ('claimed': bot/thread_replies.py posts each once). An
#: earlier idops (one still running during a rolling upgrade, or before it) posted them itself and left
#: 'sending' or 'resending' while posting, then 'posted' or 'failed': one of its claims still 'sending'
#: this long after is taken over (it was cut off), a 'failed' one at once; both are looked for in the
#: thread before they are posted
REMINDER_LEASE = timedelta(minutes=2)
#: called inside the transaction that claims a reminder, with the containment as it was read and whether
#: an earlier idops may have posted it already: the caller claims the reminder's thread reply there
OnReminder = Callable[[Containment, bool], None]


class ApprovalService(Execution):
    """The approval service with time-boxed containment (see bot/approvals/timebox.py)."""

    def containment(self, request_id: str) -> Optional[Containment]:
        """The containment a time-boxed request started, or None (not time-boxed, or not done yet)."""
        return timebox.load(self.db, request_id)

    def open_containments(self) -> list[tuple[Containment, ApprovalRequest]]:
        """Containments still holding access back, soonest end first (for `/idops pending`, App Home)."""
        marks = ", ".join("?" for _ in timebox.OPEN)
        rows = self.db.query(
            f"SELECT * FROM containments WHERE status IN ({marks}) ORDER BY due_at",  # noqa: S608
            [state.value for state in timebox.OPEN],
        )
        return [(item, self.get(item.request_id)) for item in map(timebox.from_row, rows)]

    async def revert_due(self) -> list[str]:
        """The periodic sweep: revert every ACTIVE containment past its due time (or hold it when the
        identity's risk is high or critical), and settle reverts that finished or were cut off.
        Returns the ids of the original requests whose cards and threads need an update."""
        now = self.clock()
        changed: list[str] = []
        due = self.db.query(
            "SELECT * FROM containments WHERE status = 'active' AND due_at <= ? ORDER BY due_at",
            [audit.iso(now)],
        )
        for item in list(map(timebox.from_row, due)):
            held = await self._risk_hold(item)
            if held is None:
                continue  # the identity could not be read: the next sweep tries again
            if held:
                changed.append(item.request_id)
                continue
            original = self.get(item.request_id)
            length = timebox.duration_text(original.duration_seconds or 0)
            reason = f"end of the {length} containment ({original.id})"
            if await self._revert(item, actor=SYSTEM, requested_by=original.requested_by, reason=reason):
                changed.append(item.request_id)
        changed += await self.settle_reverts()
        return list(dict.fromkeys(changed))

    async def _risk_hold(self, item: Containment) -> Optional[bool]:
        """Read the identity: True (and HELD, audited) when its risk is high or critical, False when the
        revert may go ahead, None when it can't be read now (nothing recorded)."""
        original = self.get(item.request_id)
        provider = self.connectors.get(item.connector)
        if provider is None:
            return False  # the revert itself then fails, naming the missing connector
        try:
            identity = await provider.get_identity(item.identity_id)
        except NotFoundError:
            self._close_gone(item, original, provider.label)
            return True
        except ConnectorError as exc:
            log.warning("revert of %s waits: the identity could not be read (%s)", item.request_id, exc)
            return None
        if identity.risk_level not in HOLD_LEVELS:
            return False
        level = identity.risk_level.value if identity.risk_level else "high"
        score = identity.risk_score if identity.risk_score is not None else "?"
        note = (
            f"Not restored automatically: the identity's risk is still {level} ({score}). It stays"
            " contained until someone decides: Revert now, Extend or Make permanent."
        )
        with audit.transaction(self.db):
            current = timebox.load(self.db, item.request_id)
            if (
                current
                and current.status is State.ACTIVE
                and timebox.cas(self.db, current, status="held", note=note)
            ):
                audit.append(
                    self.db,
                    at=self.clock(),
                    actor=SYSTEM,
                    event="revert_held",
                    detail={"risk_level": level, "risk_score": identity.risk_score},
                    **original.audit_fields(),
                )
        return True

    def _close_gone(self, item: Containment, original: ApprovalRequest, label: str) -> None:
        """The provider says the identity no longer exists: close the containment (GONE), audited, instead
        of trying again at every sweep; nothing is sent."""
        note = f"The identity no longer exists at {label}, so there is no access to restore."
        with audit.transaction(self.db):
            current = timebox.load(self.db, item.request_id)
            if (
                current
                and current.status is State.ACTIVE
                and timebox.cas(self.db, current, status=State.GONE.value, note=note)
            ):
                audit.append(
                    self.db,
                    at=self.clock(),
                    actor=SYSTEM,
                    event="revert_closed",
                    detail={"outcome": "identity no longer exists", "due_at": audit.iso(item.due_at)},
                    **original.audit_fields(),
                )

    async def _revert(self, item: Containment, *, actor: str, requested_by: str, reason: str) -> bool:
        """Claim the containment (CAS on its version) and create its revert request APPROVED, in one
        transaction; then run it. False when someone else claimed it first."""
        original = self.get(item.request_id)
        now = self.clock()
        revert_id = "apr_" + secrets.token_hex(8)
        row = {
            "id": revert_id,
            "connector": item.connector,
            "identity_id": item.identity_id,
            "action": item.undo.value,
            "reason": reason,
            "requested_by": requested_by,
            "source": "containment",
            "status": Status.APPROVED.value,
            "created_at": audit.iso(now),
            "expires_at": audit.iso(now),
            "target": json.dumps(dict(original.target)),
            "approvals_needed": max(1, len(original.approvers)),
            "approvers": json.dumps(list(original.approvers)),
            "decided_by": original.decided_by,
            "decided_at": audit.iso(now),
        }
        with audit.transaction(self.db):
            current = timebox.load(self.db, item.request_id)
            claimed = (
                current is not None
                and current.version == item.version
                and timebox.cas(
                    self.db,
                    current,
                    status=State.REVERTING.value,
                    revert_id=revert_id,
                    note="",
                    reported=None,
                )
            )
            if claimed:
                self.db.insert("approvals", row)
                audit.append(
                    self.db,
                    at=now,
                    actor=actor,
                    event="revert_started",
                    detail={
                        "revert_id": revert_id,
                        "reason": reason,
                        "requested_by": requested_by,
                        "approved_by": list(original.approvers),
                        "due_at": audit.iso(item.due_at),
                    },
                    **original.audit_fields(),
                )
        if claimed:
            await self.execute(revert_id)
            await self.settle_reverts()
        return claimed

    def remind_due(self, on_claim: OnReminder) -> list[str]:
        """ACTIVE containments whose reminder time came (`remind_minutes_before` before the end, or at half
        the duration when that is shorter), each claimed by compare-and-set (`reminder_state` 'claimed',
        `reminded_at`; so one reminder per end time, whoever sweeps) and audited `reminded`, with
        `on_claim(item, False)` in the same transaction, so no stop comes between the claim and the
        thread reply's (which then posts it exactly once). Reminders an earlier idops left undone (see
        `REMINDER_LEASE`) are claimed the same way, audited `reminder_resent`, with `on_claim(item, True)`:
        it may have posted them. Returns the original request ids claimed."""
        now = self.clock()
        lead = timedelta(minutes=self.settings.remind_minutes_before)
        rows = self.db.query(
            "SELECT * FROM containments WHERE status = 'active'"
            " AND (reminded_at IS NULL OR reminder_state IN ('failed', 'sending', 'resending'))"
        )
        due = []
        for item in map(timebox.from_row, list(rows)):
            earlier = item.reminded_at is not None
            if earlier and item.reminder_state != "failed" and item.reminded_at is not None:
                if now - item.reminded_at < REMINDER_LEASE:
                    continue  # an earlier idops may be posting it right now
            if earlier or now >= item.due_at - min(lead, (item.due_at - item.started_at) / 2):
                with audit.transaction(self.db):
                    if timebox.cas(self.db, item, reminder_state="claimed", reminded_at=audit.iso(now)):
                        detail = {"due_at": audit.iso(item.due_at)}
                        if earlier:
                            detail["earlier"] = (
                                f"an earlier idops left it {item.reminder_state}: looked for in the thread"
                                " before it is posted"
                            )
                        audit.append(
                            self.db,
                            at=now,
                            actor=SYSTEM,
                            event="reminder_resent" if earlier else "reminded",
                            detail=detail,
                            **self.get(item.request_id).audit_fields(),
                        )
                        on_claim(item, earlier)
                        due.append(item.request_id)
        return due

    async def settle_reverts(self) -> list[str]:
        """Carry each finished revert request's outcome to its containment (REVERTED, FAILED or UNKNOWN);
        an UNKNOWN one is read back first (never sent again). Returns the original ids that changed."""
        changed = []
        rows = self.db.query("SELECT * FROM containments WHERE status IN ('reverting', 'unknown')")
        for item in list(map(timebox.from_row, rows)):
            if item.revert_id is None:
                continue
            revert = self.get(item.revert_id)
            if revert.status is Status.UNKNOWN:
                revert = await self.reconcile(revert.id)
            state = _SETTLED.get(revert.status)
            if state is None or state is item.status:
                continue
            with audit.transaction(self.db):
                current = timebox.load(self.db, item.request_id)
                if current is not None and timebox.cas(self.db, current, status=state.value):
                    changed.append(item.request_id)
        return changed

    def unreported(self, since: datetime) -> list[str]:
        """Original request ids of containments in a state worth telling (not ACTIVE or REVERTING) that
        was never told in the thread (`take_report`): a process stopped between the change and its
        report. Only those whose request was audited since `since`, so an old store's leftovers stay
        quiet."""
        rows = self.db.query(
            "SELECT c.request_id FROM containments AS c JOIN approvals AS a ON a.id = c.request_id"
            " WHERE c.status NOT IN ('active', 'reverting')"
            " AND (c.reported IS NULL OR c.reported <> c.status)"
            " AND EXISTS (SELECT 1 FROM audit AS u WHERE u.connector = a.connector"
            " AND u.identity_id = a.identity_id AND u.request_id = a.id AND u.at >= ?)"
            " ORDER BY c.due_at",
            [audit.iso(since)],
        )
        return [row["request_id"] for row in rows]

    def take_report(self, request_id: str) -> Optional[Containment]:
        """The containment when its state was not yet told in the thread, marking it told (so each state
        is posted at most once, whichever process gets here first); None otherwise."""
        with audit.transaction(self.db):
            item = timebox.load(self.db, request_id)
            quiet = (State.ACTIVE, State.REVERTING)
            if item is None or item.status in quiet or item.status.value == item.reported:
                return None
            if not timebox.cas(self.db, item, reported=item.status.value):
                return None
        return timebox.load(self.db, request_id)

    # --- the people's decisions -------------------------------------------------------------

    def _open(self, request_id: str, user_id: str, *states: State) -> Containment:
        item = timebox.load(self.db, request_id)
        if item is None or item.status not in states:
            shown = item.status.value if item else "not started"
            raise self._refuse(
                f"This containment is {shown}; nothing to change.",
                actor=user_id,
                rule="containment_closed",
                request=self.get(request_id),
            )
        return item

    async def revert_now(self, request_id: str, *, user_id: str) -> Optional[Containment]:
        """Revert early (or after a hold): the requester or any responder, never the target."""
        original = self.get(request_id)
        if user_id != original.requested_by and not await self.is_responder(user_id):
            raise self._refuse(
                "Only the requester or a responder can revert this containment ([access] responders).",
                actor=user_id,
                rule="not_responders",
                request=original,
            )
        if await self._is_target(original, user_id):
            raise self._refuse(
                "You can't restore access to your own account.",
                actor=user_id,
                rule="target",
                request=original,
            )
        item = self._open(request_id, user_id, State.ACTIVE, State.HELD, State.FAILED, State.UNKNOWN)
        # False: someone else's click or the sweep claimed it first; either way one revert runs
        await self._revert(
            item, actor=user_id, requested_by=user_id, reason=f"reverted early ({original.id})"
        )
        return timebox.load(self.db, request_id)

    async def _four_eyes(self, original: ApprovalRequest, user_id: str, doing: str) -> None:
        await self._require_rule_decider(original, user_id)  # as for the original request
        if user_id == original.requested_by or await self._is_target(original, user_id):
            raise self._refuse(
                f"{doing} needs an approver who is neither the requester nor the target.",
                actor=user_id,
                rule="four_eyes",
                request=original,
            )

    async def extend(self, request_id: str, *, user_id: str, by: timedelta) -> Containment:
        """Push the end back by `by` (from the later of now and the current end); at once, audited."""
        original = self.get(request_id)
        await self._four_eyes(original, user_id, "Extending a containment")
        if not timebox.MIN_DURATION <= by <= timebox.MAX_DURATION:
            raise PolicyError("An extension lasts from 1 minute to 30 days.", request=original)
        return self._decide(original, user_id, "extended", by=by)

    async def make_permanent(self, request_id: str, *, user_id: str) -> Containment:
        """Keep it contained: idops will never revert it by itself. At once, audited."""
        original = self.get(request_id)
        await self._four_eyes(original, user_id, "Making a containment permanent")
        return self._decide(original, user_id, "made_permanent")

    def _decide(
        self, original: ApprovalRequest, user_id: str, event: str, by: Optional[timedelta] = None
    ) -> Containment:
        """Write an Extend or Make permanent (CAS on the version read, audited in the same transaction);
        refusals are audited outside it, so a rollback never drops them."""
        now = self.clock()
        item = self._open(original.id, user_id, State.ACTIVE, State.HELD, State.FAILED)
        changes: dict[str, Any] = {"decided_by": user_id, "note": "", "reported": None}
        detail: dict[str, Any] = {"was_due_at": audit.iso(item.due_at)}
        if by is not None:
            due: datetime = max(item.due_at, now) + by
            changes.update(status=State.ACTIVE.value, due_at=audit.iso(due), reminded_at=None)
            detail.update(due_at=audit.iso(due), by_seconds=int(by.total_seconds()))
        else:
            changes["status"] = State.PERMANENT.value
        with audit.transaction(self.db):
            done = timebox.cas(self.db, item, **changes)
            if done:
                audit.append(
                    self.db, at=now, actor=user_id, event=event, detail=detail, **original.audit_fields()
                )
        if not done:
            current = timebox.load(self.db, original.id)
            raise self._refuse(
                f"This containment changed meanwhile (it is {current.status.value if current else 'gone'});"
                " nothing was done. Look at the card again.",
                actor=user_id,
                rule="containment_changed",
                request=original,
            )
        found = timebox.load(self.db, original.id)
        assert found is not None
        return found

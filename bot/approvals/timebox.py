"""Time-boxed containment as stored: durations, the `containments` table and its record.

A request made `for 4h` carries `duration_seconds`. When its action is done (EXECUTED, by the provider's
answer or by reconciliation), `start` writes one containment row in the same transaction, due
`duration` after that moment. Timers live here, in the store, never in a process's memory: the periodic
sweep (`ApprovalService.revert_due`, bot/approvals/containment.py) reads due rows, and every change to
a row is a compare-and-set on its `status` and `version`, so two sweeps (or a restart) never revert
twice.

Life of a containment::

    ACTIVE --due, risk not high--> REVERTING (the revert request runs) --> REVERTED | FAILED | UNKNOWN
    ACTIVE --due, risk high or critical--> HELD (waits for Revert now or Make permanent)
    ACTIVE | HELD --Revert now--> REVERTING        ACTIVE | HELD --Make permanent--> PERMANENT
    ACTIVE --Extend--> ACTIVE (later due time)     UNKNOWN --read back, in effect--> REVERTED
    ACTIVE --due, the provider no longer has the identity--> GONE (closed, nothing sent)
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Optional

from connectors import Action

from .. import audit
from ..store import Store
from .records import SYSTEM, ApprovalRequest, InvalidRequest

MIN_DURATION = timedelta(minutes=1)
MAX_DURATION = timedelta(days=30)
_DURATION = re.compile(r"([0-9]{1,6})\s*(m|min|mins|minutes?|h|hr|hrs|hours?|d|days?)", re.IGNORECASE)
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


class State(str, enum.Enum):
    ACTIVE = "active"  # contained, reverts at due_at
    HELD = "held"  # due, but the identity's risk was high or critical: waits for a person
    REVERTING = "reverting"  # the revert request (revert_id) was created and claimed
    REVERTED = "reverted"
    FAILED = "failed"  # the provider refused the revert: still contained
    UNKNOWN = "unknown"  # the revert was sent, no answer: read back by the sweep
    PERMANENT = "permanent"  # an approver made it permanent: never reverted by idops
    GONE = "gone"  # due, but the identity no longer exists at the provider: nothing left to restore


#: still holding access back, shown in `/idops pending` and on the App Home
OPEN = (State.ACTIVE, State.HELD, State.REVERTING, State.FAILED, State.UNKNOWN)


@dataclass(frozen=True)
class Containment:
    request_id: str
    connector: str
    identity_id: str
    undo: Action
    started_at: datetime
    due_at: datetime
    status: State
    revert_id: Optional[str]
    decided_by: Optional[str]
    note: str
    reminded_at: Optional[datetime]
    reported: Optional[str]  # the last state told in the card's thread
    version: int
    #: None (not reminded yet) or 'claimed' (its thread reply claimed: bot/thread_replies.py posts it);
    #: an earlier idops left 'sending', 'resending', 'failed' or 'posted' (bot/approvals/containment.py)
    reminder_state: Optional[str] = None


def parse_duration(text: str) -> timedelta:
    """`15m`, `4h`, `3d` (also `90 minutes`, `2 hours`) → timedelta, from 1 minute to 30 days;
    InvalidRequest (field `duration`) naming what is wrong otherwise."""
    match = _DURATION.fullmatch(str(text).strip())
    if not match:
        raise InvalidRequest(
            f"'{str(text)[:40]}' is not a duration: use minutes, hours or days, e.g. 15m, 4h or 3d.",
            field="duration",
        )
    value = timedelta(**{_UNITS[match.group(2)[0].lower()]: int(match.group(1))})
    if not MIN_DURATION <= value <= MAX_DURATION:
        raise InvalidRequest(
            f"'{text}' is out of range: a time-boxed action lasts from 1 minute to 30 days.", field="duration"
        )
    return value


def duration_text(seconds: int) -> str:
    """A duration as people say it: 4 h, 3 d, 15 min, 1 h 30 min."""
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    parts = [f"{days} d" if days else "", f"{hours} h" if hours else "", f"{minutes} min" if minutes else ""]
    return " ".join(p for p in parts if p) or f"{seconds} s"


def from_row(row: Mapping[str, Any]) -> Containment:
    return Containment(
        request_id=row["request_id"],
        connector=row["connector"],
        identity_id=row["identity_id"],
        undo=Action(row["undo"]),
        started_at=datetime.fromisoformat(row["started_at"]),
        due_at=datetime.fromisoformat(row["due_at"]),
        status=State(row["status"]),
        revert_id=row["revert_id"],
        decided_by=row["decided_by"],
        note=row["note"],
        reminded_at=datetime.fromisoformat(row["reminded_at"]) if row["reminded_at"] else None,
        reported=row["reported"],
        version=row["version"],
        reminder_state=row.get("reminder_state"),
    )


def start(db: Store, request: ApprovalRequest, now: datetime) -> None:
    """Inside the transaction that records `request` EXECUTED: when it was time-boxed, its containment
    row, due `duration` from now (once: a second call for the same request changes nothing)."""
    if not request.duration_seconds or request.action.undo is None:
        return
    due = now + timedelta(seconds=request.duration_seconds)
    cursor = db.execute(
        "INSERT INTO containments (request_id, connector, identity_id, undo, started_at, due_at,"
        " status) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (
            request.id,
            request.connector,
            request.identity_id,
            request.action.undo.value,
            audit.iso(now),
            audit.iso(due),
            State.ACTIVE.value,
        ),
    )
    if cursor.rowcount == 1:
        audit.append(
            db,
            at=now,
            actor=SYSTEM,
            event="contained",
            detail={"due_at": audit.iso(due), "duration_seconds": request.duration_seconds},
            **request.audit_fields(),
        )


def load(db: Store, request_id: str) -> Optional[Containment]:
    for row in db.query("SELECT * FROM containments WHERE request_id = ?", [request_id]):
        return from_row(row)
    return None


def cas(db: Store, item: Containment, **changes: Any) -> bool:
    """Change the row only if nobody changed it since `item` was read (its version); True if it was."""
    values = [json.dumps(v) if isinstance(v, (dict, list)) else v for v in changes.values()]
    assignments = ", ".join(f"{column} = ?" for column in changes)
    cursor = db.execute(
        f"UPDATE containments SET {assignments}, version = version + 1"  # noqa: S608
        " WHERE request_id = ? AND version = ?",
        (*values, item.request_id, item.version),
    )
    return cursor.rowcount == 1

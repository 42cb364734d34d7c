"""Approval requests for response actions: who may ask and decide, and execution exactly once.

Every state change is one compare-and-set UPDATE inside a write transaction (`Store.transaction`)
together with its audit row, so double clicks, concurrent clicks, redelivered events and other processes
sharing the store can never run an action twice. No `await` happens inside a transaction.

Life of a request::

    PENDING --approve (enough approvers)--> APPROVED --execute--> EXECUTING --> EXECUTED | FAILED | UNKNOWN
    PENDING --deny--> DENIED          PENDING --past expires_at--> EXPIRED
    FAILED --retry--> APPROVED (then executed again)
    UNKNOWN --reconcile (the provider shows it done)--> EXECUTED, without sending it again
    UNKNOWN --rerun (confirmed "Run again", audited)--> APPROVED (then executed again, same key)
    PENDING --last approval, target gone--> FAILED (closed, attempts 0: no retry)

FAILED means the provider refused it (nothing was done); UNKNOWN means it was sent and no answer came
back (timeout, lost connection, 5xx, idops stopped mid-action), so it may have run: `retry` refuses
it. Every attempt carries the same Idempotency-Key (`idops-<request id>`). At start-up `recover`
settles what a stopped process left EXECUTING. Each request carries its approval rule (`rules`: how many
distinct approvers, from which groups, escalation, break-glass), chosen when it is made. The approval
that would complete a request re-reads the target first: one that now matches a rule asking more
approvals switches to it (still PENDING).

Modules: `records` (table, states, the request record, errors), `rules` (approval rules),
`deciders` (roles, four eyes, refusals), `policy` (requests and decisions), `execution` (running
the action, retry, unknown outcomes, sweeps), `timebox` (time-boxed containment rows) and
`containment` (`ApprovalService`: reverting them, exactly once).
"""

from __future__ import annotations

from .automatic import actor as auto_actor
from .containment import ApprovalService
from .records import (
    DENY_NEEDS_REASON,
    INTERRUPTED,
    INTERRUPTED_AFTER,
    MAX_REASON,
    SYSTEM,
    ApprovalRequest,
    Decision,
    Directory,
    InvalidRequest,
    PolicyError,
    RequestNotFound,
    Status,
    checked_reason,
    parse_action,
    utcnow,
)
from .timebox import Containment, State, duration_text, parse_duration

__all__ = [
    "DENY_NEEDS_REASON",
    "INTERRUPTED",
    "INTERRUPTED_AFTER",
    "MAX_REASON",
    "SYSTEM",
    "ApprovalRequest",
    "ApprovalService",
    "Containment",
    "Decision",
    "Directory",
    "InvalidRequest",
    "PolicyError",
    "RequestNotFound",
    "State",
    "Status",
    "auto_actor",
    "checked_reason",
    "duration_text",
    "parse_action",
    "parse_duration",
    "utcnow",
]

"""Auto-containment as stored: one `auto_actions` row per identity's entry into critical risk.

A rule in `[[auto_containment]]` runs one action by itself when an identity *enters* critical. The row
is written with `INSERT ... ON CONFLICT DO NOTHING` on (connector, identity_id, entry), where `entry`
names the stored observation the identity left (so two sweeps, two replicas or a restart that see the
same entry write one row), in the same transaction as the approval request (APPROVED, actor the rule)
that runs the action: the approvals' execution then runs it exactly once.
"""

from __future__ import annotations

import sqlite_utils

from .records import MIGRATIONS


@MIGRATIONS()
def m013_auto_actions(db: sqlite_utils.Database) -> None:
    db.execute(
        """
        CREATE TABLE auto_actions (
            connector TEXT NOT NULL,
            identity_id TEXT NOT NULL,
            entry TEXT NOT NULL,
            rule TEXT NOT NULL,
            alert_id TEXT,
            request_id TEXT NOT NULL,
            undo_id TEXT,
            reported TEXT,
            created_at TEXT NOT NULL,
            version INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (connector, identity_id, entry)
        )
        """
    )
    db.execute("CREATE UNIQUE INDEX auto_actions_request ON auto_actions (request_id)")
    db.execute("CREATE INDEX auto_actions_alert ON auto_actions (alert_id)")


def actor(rule: str) -> str:
    """The audit actor of what a rule runs by itself: `auto-containment:<rule name>`."""
    return f"auto-containment:{rule}"

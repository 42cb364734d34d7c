"""FROZEN: the sqlite-utils migration sets idops used before Alembic, kept only to upgrade such stores.

A SQLite store made before `bot/migrations/` has sqlite-utils' `_sqlite_migrations` table. `bot.store`
applies whatever of these sets that store still lacks (so it reaches the schema of the Alembic baseline,
`0001_baseline`), stamps it at the baseline and upgrades it to the head like any other store.

Never change or add to these functions: new tables and columns are Alembic revisions
(`bot/migrations/versions/`, see `bot/store.py`). The set names, function names and statements are
exactly those of the releases that wrote them, since sqlite-utils records each by set and name.
"""

from __future__ import annotations

import sqlite3

import sqlite_utils
from sqlite_utils.migrations import Migrations

AUDIT = Migrations("idops.audit")
APPROVALS = Migrations("idops.approvals")
ALERTS = Migrations("idops.alerts")
#: in the order the server applied them
SETS = (APPROVALS, AUDIT, ALERTS)
TABLE = "_sqlite_migrations"


@AUDIT()
def m001_audit(db: sqlite_utils.Database) -> None:
    db.execute(
        """
        CREATE TABLE audit (
            id INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            actor TEXT NOT NULL,
            event TEXT NOT NULL,
            request_id TEXT,
            connector TEXT,
            identity_id TEXT,
            action TEXT,
            detail TEXT NOT NULL DEFAULT '{}',
            prev_hash TEXT NOT NULL,
            hash TEXT NOT NULL
        )
        """
    )
    db.execute("CREATE INDEX audit_identity ON audit (connector, identity_id)")
    db.execute("CREATE INDEX audit_at ON audit (at)")


@APPROVALS()
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


@APPROVALS()
def m002_executing_since(db: sqlite_utils.Database) -> None:
    db.execute("ALTER TABLE approvals ADD COLUMN executing_since TEXT")


@APPROVALS()
def m003_outcome_check(db: sqlite_utils.Database) -> None:
    db.execute("ALTER TABLE approvals ADD COLUMN outcome_check TEXT")


@APPROVALS()
def m004_approval_rules(db: sqlite_utils.Database) -> None:
    db.execute("ALTER TABLE approvals ADD COLUMN rule TEXT")
    db.execute("ALTER TABLE approvals ADD COLUMN escalation_step INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE approvals ADD COLUMN break_glass_by TEXT")


@APPROVALS()
def m010_containment_duration(db: sqlite_utils.Database) -> None:
    db.execute("ALTER TABLE approvals ADD COLUMN duration_seconds INTEGER")


@APPROVALS()
def m011_containments(db: sqlite_utils.Database) -> None:
    db.execute(
        """
        CREATE TABLE containments (
            request_id TEXT PRIMARY KEY REFERENCES approvals (id),
            connector TEXT NOT NULL,
            identity_id TEXT NOT NULL,
            undo TEXT NOT NULL,
            started_at TEXT NOT NULL,
            due_at TEXT NOT NULL,
            status TEXT NOT NULL,
            revert_id TEXT,
            decided_by TEXT,
            note TEXT NOT NULL DEFAULT '',
            reminded_at TEXT,
            reported TEXT,
            version INTEGER NOT NULL DEFAULT 0
        )
        """
    )
    db.execute("CREATE INDEX containments_due ON containments (status, due_at)")


@APPROVALS()
def m012_reminder_state(db: sqlite_utils.Database) -> None:
    db.execute("ALTER TABLE containments ADD COLUMN reminder_state TEXT")
    db.execute("UPDATE containments SET reminder_state = 'posted' WHERE reminded_at IS NOT NULL")


@APPROVALS()
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


@ALERTS()
def m001_tables(db: sqlite_utils.Database) -> None:
    db.execute(
        """CREATE TABLE alert_identities (
            connector TEXT NOT NULL,
            identity_id TEXT NOT NULL,
            tenant_id TEXT,
            level TEXT NOT NULL,
            score INTEGER,
            name TEXT,
            email TEXT,
            observed_at REAL NOT NULL,
            alert_id TEXT,
            resolved_at REAL,
            snoozed_until REAL,
            PRIMARY KEY (connector, identity_id)
        ) WITHOUT ROWID"""
    )
    db.execute("CREATE INDEX alert_identities_level ON alert_identities (connector, level, score)")
    db.execute(
        """CREATE TABLE alerts (
            id TEXT PRIMARY KEY,
            connector TEXT NOT NULL,
            connector_label TEXT NOT NULL,
            identity_id TEXT NOT NULL,
            tenant_id TEXT,
            channel TEXT NOT NULL,
            ts TEXT,
            status TEXT NOT NULL,
            from_level TEXT,
            from_score INTEGER,
            level TEXT NOT NULL,
            score INTEGER,
            identity TEXT NOT NULL,
            actions TEXT NOT NULL,
            mention TEXT,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            acked_by TEXT,
            acked_at REAL,
            snoozed_by TEXT,
            snoozed_until REAL,
            resolved_at REAL
        )"""
    )
    db.execute("CREATE INDEX alerts_identity ON alerts (connector, identity_id)")
    db.execute(
        """CREATE TABLE alert_outbox (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            kind TEXT NOT NULL,
            channel TEXT NOT NULL,
            alert_id TEXT,
            payload TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'pending',
            attempts INTEGER NOT NULL DEFAULT 0,
            attempt_id TEXT,
            not_before REAL NOT NULL DEFAULT 0,
            created_at REAL NOT NULL,
            sent_at REAL,
            ts TEXT,
            error TEXT
        )"""
    )
    db.execute("CREATE INDEX alert_outbox_queue ON alert_outbox (status, channel, id)")
    db.execute(
        """CREATE TABLE alert_sweeps (
            scope TEXT PRIMARY KEY,
            connector TEXT NOT NULL,
            tenant_id TEXT,
            baseline_done INTEGER NOT NULL DEFAULT 0,
            failing INTEGER NOT NULL DEFAULT 0,
            last_error TEXT,
            last_started_at REAL,
            last_success_at REAL
        )"""
    )
    db.execute(
        """CREATE TABLE alert_webhook_events (
            source TEXT NOT NULL,
            event_id TEXT NOT NULL,
            received_at REAL NOT NULL,
            PRIMARY KEY (source, event_id)
        )"""
    )


@ALERTS()
def m002_gone(db: sqlite_utils.Database) -> None:
    db.execute("CREATE TABLE alert_seen (scope TEXT NOT NULL, identity_id TEXT NOT NULL)")
    db.execute("ALTER TABLE alerts ADD COLUMN gone INTEGER NOT NULL DEFAULT 0")


@ALERTS()
def m003_digests_and_cursors(db: sqlite_utils.Database) -> None:
    db.execute("ALTER TABLE alerts ADD COLUMN digest INTEGER")
    db.execute("CREATE INDEX alerts_digest ON alerts (digest) WHERE digest IS NOT NULL")
    db.execute("ALTER TABLE alert_sweeps ADD COLUMN cursor TEXT")
    db.execute("ALTER TABLE alert_sweeps ADD COLUMN since_full INTEGER NOT NULL DEFAULT 0")


@ALERTS()
def m004_auto_action(db: sqlite_utils.Database) -> None:
    db.execute("ALTER TABLE alerts ADD COLUMN auto TEXT")


def is_legacy(conn: sqlite3.Connection) -> bool:
    """Whether this SQLite store was made by sqlite-utils' migrations (before Alembic)."""
    found = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", [TABLE]).fetchone()
    return found is not None


def complete(conn: sqlite3.Connection) -> None:
    """Apply every legacy migration the store lacks (inside the caller's transaction: savepoints)."""
    db = sqlite_utils.Database(conn)
    for migration_set in SETS:
        migration_set.apply(db)

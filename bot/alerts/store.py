"""The alerts' tables in the shared SQLite store: last known risk per identity, alerts, outbox, sweeps."""

from __future__ import annotations

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

migrations = Migrations("idops.alerts")


@migrations()
def m001_tables(db: Database) -> None:
    # One row per identity ever seen: the last observed risk, and the open alert if any.
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
    # Every Slack write the alerts make, written in the same transaction as its cause.
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


@migrations()
def m002_gone(db: Database) -> None:
    # The ids each running sweep has listed, appended page by page (cheap: no stored row is rewritten);
    # a complete sweep forgets the identities of its scope missing here, resolving their alerts as gone.
    db.execute("CREATE TABLE alert_seen (scope TEXT NOT NULL, identity_id TEXT NOT NULL)")
    db.execute("ALTER TABLE alerts ADD COLUMN gone INTEGER NOT NULL DEFAULT 0")


@migrations()
def m003_digests_and_cursors(db: Database) -> None:
    # An alert folded into a digest (during a storm) instead of getting a card of its own: the outbox row
    # id of the digest message naming it. Its card ts stays NULL until it escalates.
    db.execute("ALTER TABLE alerts ADD COLUMN digest INTEGER")
    db.execute("CREATE INDEX alerts_digest ON alerts (digest) WHERE digest IS NOT NULL")
    # Incremental sweeps: the provider's change-feed cursor per scope (NULL: the next sweep lists in full)
    # and how many changes-only sweeps ran since the last full one.
    db.execute("ALTER TABLE alert_sweeps ADD COLUMN cursor TEXT")
    db.execute("ALTER TABLE alert_sweeps ADD COLUMN since_full INTEGER NOT NULL DEFAULT 0")


@migrations()
def m004_auto_action(db: Database) -> None:
    # The action an auto-containment rule ran on entering critical, as the card shows it (JSON: request
    # id, action, rule, status, message, undo id and status); NULL when no rule ran.
    db.execute("ALTER TABLE alerts ADD COLUMN auto TEXT")

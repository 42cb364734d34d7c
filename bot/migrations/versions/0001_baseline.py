"""Baseline: the schema of every area as the sqlite-utils migrations left it (bot/store_legacy.py), in
types both backends read the same way.

- Timestamps: ISO text (approvals, audit, containments) or epoch seconds as DOUBLE PRECISION (alerts;
  SQLite stores them as REAL either way).
- Flags (`gone`, `failing`, `baseline_done`): INTEGER 0/1.
- `alert_outbox.id` counts up and is never reused: AUTOINCREMENT on SQLite, an identity (BIGSERIAL) on
  PostgreSQL. `audit.id` is set by `audit.append` (the chain's next number).

Revision ID: 0001_baseline
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_baseline"
down_revision = None
branch_labels = None
depends_on = None

# BIGINT on PostgreSQL; INTEGER on SQLite, where only `INTEGER PRIMARY KEY` is the rowid
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Seconds: sa.Double[float] = sa.Double()


def _text(name: str, *, nullable: bool = True, default: str | None = None) -> sa.Column:
    server_default = sa.text(f"'{default}'") if default is not None else None
    return sa.Column(name, sa.Text(), nullable=nullable, server_default=server_default)


def _int(name: str, *, nullable: bool = True, default: int | None = None) -> sa.Column:
    server_default = sa.text(str(default)) if default is not None else None
    return sa.Column(name, sa.Integer(), nullable=nullable, server_default=server_default)


def upgrade() -> None:
    op.create_table(
        "audit",
        sa.Column("id", BigId, primary_key=True, autoincrement=False),
        _text("at", nullable=False),
        _text("actor", nullable=False),
        _text("event", nullable=False),
        _text("request_id"),
        _text("connector"),
        _text("identity_id"),
        _text("action"),
        _text("detail", nullable=False, default="{}"),
        _text("prev_hash", nullable=False),
        _text("hash", nullable=False),
    )
    op.create_index("audit_identity", "audit", ["connector", "identity_id"])
    op.create_index("audit_at", "audit", ["at"])

    op.create_table(
        "approvals",
        sa.Column("id", sa.Text(), primary_key=True),
        _text("connector", nullable=False),
        _text("identity_id", nullable=False),
        _text("action", nullable=False),
        _text("reason", nullable=False, default=""),
        _text("requested_by", nullable=False),
        _text("source", nullable=False, default="slack"),
        _text("status", nullable=False),
        _text("created_at", nullable=False),
        _text("expires_at", nullable=False),
        _text("target", nullable=False),
        _int("approvals_needed", nullable=False),
        _text("approvers", nullable=False, default="[]"),
        _text("decided_by"),
        _text("decided_at"),
        _text("decision_reason", nullable=False, default=""),
        _text("result"),
        _text("error"),
        _text("message_channel"),
        _text("message_ts"),
        _int("attempts", nullable=False, default=0),
        _int("version", nullable=False, default=0),
        _text("executing_since"),
        _text("outcome_check"),
        _int("duration_seconds"),
        _text("rule"),
        _int("escalation_step", nullable=False, default=0),
        _text("break_glass_by"),
    )
    op.create_index("approvals_status", "approvals", ["status", "expires_at"])
    op.create_index("approvals_identity", "approvals", ["connector", "identity_id"])

    op.create_table(
        "containments",
        sa.Column("request_id", sa.Text(), sa.ForeignKey("approvals.id"), primary_key=True),
        _text("connector", nullable=False),
        _text("identity_id", nullable=False),
        _text("undo", nullable=False),
        _text("started_at", nullable=False),
        _text("due_at", nullable=False),
        _text("status", nullable=False),
        _text("revert_id"),
        _text("decided_by"),
        _text("note", nullable=False, default=""),
        _text("reminded_at"),
        _text("reported"),
        _int("version", nullable=False, default=0),
        _text("reminder_state"),
    )
    op.create_index("containments_due", "containments", ["status", "due_at"])

    op.create_table(
        "auto_actions",
        _text("connector", nullable=False),
        _text("identity_id", nullable=False),
        _text("entry", nullable=False),
        _text("rule", nullable=False),
        _text("alert_id"),
        _text("request_id", nullable=False),
        _text("undo_id"),
        _text("reported"),
        _text("created_at", nullable=False),
        _int("version", nullable=False, default=0),
        sa.PrimaryKeyConstraint("connector", "identity_id", "entry"),
    )
    op.create_index("auto_actions_request", "auto_actions", ["request_id"], unique=True)
    op.create_index("auto_actions_alert", "auto_actions", ["alert_id"])

    op.create_table(
        "alert_identities",
        _text("connector", nullable=False),
        _text("identity_id", nullable=False),
        _text("tenant_id"),
        _text("level", nullable=False),
        _int("score"),
        _text("name"),
        _text("email"),
        sa.Column("observed_at", Seconds, nullable=False),
        _text("alert_id"),
        sa.Column("resolved_at", Seconds),
        sa.Column("snoozed_until", Seconds),
        sa.PrimaryKeyConstraint("connector", "identity_id"),
    )
    op.create_index("alert_identities_level", "alert_identities", ["connector", "level", "score"])

    op.create_table(
        "alerts",
        sa.Column("id", sa.Text(), primary_key=True),
        _text("connector", nullable=False),
        _text("connector_label", nullable=False),
        _text("identity_id", nullable=False),
        _text("tenant_id"),
        _text("channel", nullable=False),
        _text("ts"),
        _text("status", nullable=False),
        _text("from_level"),
        _int("from_score"),
        _text("level", nullable=False),
        _int("score"),
        _text("identity", nullable=False),
        _text("actions", nullable=False),
        _text("mention"),
        sa.Column("created_at", Seconds, nullable=False),
        sa.Column("updated_at", Seconds, nullable=False),
        _text("acked_by"),
        sa.Column("acked_at", Seconds),
        _text("snoozed_by"),
        sa.Column("snoozed_until", Seconds),
        sa.Column("resolved_at", Seconds),
        _int("gone", nullable=False, default=0),
        sa.Column("digest", BigId),
        _text("auto"),
    )
    op.create_index("alerts_identity", "alerts", ["connector", "identity_id"])
    op.create_index(
        "alerts_digest",
        "alerts",
        ["digest"],
        sqlite_where=sa.text("digest IS NOT NULL"),
        postgresql_where=sa.text("digest IS NOT NULL"),
    )

    op.create_table(
        "alert_outbox",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        _text("kind", nullable=False),
        _text("channel", nullable=False),
        _text("alert_id"),
        _text("payload", nullable=False),
        _text("status", nullable=False, default="pending"),
        _int("attempts", nullable=False, default=0),
        _text("attempt_id"),
        sa.Column("not_before", Seconds, nullable=False, server_default=sa.text("0")),
        sa.Column("created_at", Seconds, nullable=False),
        sa.Column("sent_at", Seconds),
        _text("ts"),
        _text("error"),
        sqlite_autoincrement=True,
    )
    op.create_index("alert_outbox_queue", "alert_outbox", ["status", "channel", "id"])

    op.create_table(
        "alert_sweeps",
        sa.Column("scope", sa.Text(), primary_key=True),
        _text("connector", nullable=False),
        _text("tenant_id"),
        _int("baseline_done", nullable=False, default=0),
        _int("failing", nullable=False, default=0),
        _text("last_error"),
        sa.Column("last_started_at", Seconds),
        sa.Column("last_success_at", Seconds),
        _text("cursor"),
        _int("since_full", nullable=False, default=0),
    )

    op.create_table(
        "alert_webhook_events",
        _text("source", nullable=False),
        _text("event_id", nullable=False),
        sa.Column("received_at", Seconds, nullable=False),
        sa.PrimaryKeyConstraint("source", "event_id"),
    )

    op.create_table(
        "alert_seen",
        _text("scope", nullable=False),
        _text("identity_id", nullable=False),
    )


def downgrade() -> None:
    raise NotImplementedError("idops stores only move forward")

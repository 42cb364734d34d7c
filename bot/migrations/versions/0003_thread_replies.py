"""Thread replies: one row per reply idops posts in an approval card's thread (bot/thread_replies.py),
claimed before it is posted, so each is posted once across replicas.

Revision ID: 0003_thread_replies
Revises: 0002_claims
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_thread_replies"
down_revision = "0002_claims"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "thread_replies",
        sa.Column("key", sa.Text(), primary_key=True),
        sa.Column("channel", sa.Text(), nullable=False),
        sa.Column("thread_ts", sa.Text(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("attempt_id", sa.Text()),
        sa.Column("claimed_at", sa.Double(), nullable=False),
        sa.Column("ts", sa.Text()),
        sa.Column("error", sa.Text()),
        sa.Column("created_at", sa.Double(), nullable=False),
    )
    op.create_index("thread_replies_status", "thread_replies", ["status", "claimed_at"])


def downgrade() -> None:
    raise NotImplementedError("idops stores only move forward")

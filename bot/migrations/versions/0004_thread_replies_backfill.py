"""Thread replies: the outcome of every finished request with a card counts as told, so the sweep that
reports outcomes whose reply was never claimed (bot/approval_flow.py `report_missed`) says nothing twice
that an earlier idops said before this table existed.

Revision ID: 0004_thread_replies_backfill
Revises: 0003_thread_replies
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from alembic import op

revision = "0004_thread_replies_backfill"
down_revision = "0003_thread_replies"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        sa.text(
            "INSERT INTO thread_replies (key, channel, thread_ts, message, status, attempts, claimed_at,"
            " created_at) SELECT 'result:' || id || ':' || CAST(attempts AS TEXT) || ':' || status,"
            " message_channel, message_ts, '{}', 'sent', 1, :now, :now FROM approvals"
            " WHERE status IN ('executed', 'failed', 'unknown') AND message_channel IS NOT NULL"
            " AND message_ts IS NOT NULL ON CONFLICT (key) DO NOTHING"
        ).bindparams(now=time.time())
    )


def downgrade() -> None:
    raise NotImplementedError("idops stores only move forward")

"""Thread replies: what an earlier idops (one that posted replies without claiming them, so without the
`idops_reply` metadata) would have said, so a reply it may have posted is recognised in the thread
before it is posted again (bot/thread_replies.py `Legacy`): the start of its text and the time after
which it was posted.

Revision ID: 0005_thread_replies_legacy
Revises: 0004_thread_replies_backfill
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_thread_replies_legacy"
down_revision = "0004_thread_replies_backfill"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("thread_replies", sa.Column("legacy_head", sa.Text()))
    op.add_column("thread_replies", sa.Column("legacy_after", sa.Double()))


def downgrade() -> None:
    raise NotImplementedError("idops stores only move forward")

"""Approval cards: one row per approval request whose card idops posts (bot/card_posts.py), claimed
before it is posted, so each card is posted once across replicas.

Revision ID: 0007_approval_cards
Revises: 0006_slash_commands
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_approval_cards"
down_revision = "0006_slash_commands"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "approval_cards",
        sa.Column("request_id", sa.Text(), primary_key=True),
        sa.Column("channel", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="1"),
        sa.Column("attempt_id", sa.Text(), nullable=False),
        sa.Column("claimed_at", sa.Double(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("ts", sa.Text()),
        sa.Column("error", sa.Text()),
    )
    op.create_index("approval_cards_status", "approval_cards", ["status", "claimed_at"])


def downgrade() -> None:
    raise NotImplementedError("idops stores only move forward")

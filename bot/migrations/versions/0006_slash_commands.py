"""Slash commands answered exactly once across replicas (bot/command_log.py): one row per accepted
command, keyed by Slack's trigger_id, and the trigger_id of the command that made an approval request
(unique where present), so a command Slack sent again, or run again by a sweep, finds its request.

Revision ID: 0006_slash_commands
Revises: 0005_thread_replies_legacy
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_slash_commands"
down_revision = "0005_thread_replies_legacy"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "slash_commands",
        sa.Column("trigger_id", sa.Text(), primary_key=True),
        sa.Column("response_url", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("channel_id", sa.Text(), nullable=False),
        sa.Column("command", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("holder", sa.Text(), nullable=False),
        sa.Column("attempt_id", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="1"),
        sa.Column("until", sa.Double(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("answered_at", sa.Double()),
        sa.Column("error", sa.Text()),
    )
    op.create_index("slash_commands_status", "slash_commands", ["status", "until"])
    op.create_index("slash_commands_created", "slash_commands", ["created_at"])
    # NULLs are distinct in a unique index on both backends: requests made without a command share none
    op.add_column("approvals", sa.Column("trigger_id", sa.Text()))
    op.create_index("approvals_trigger_id", "approvals", ["trigger_id"], unique=True)


def downgrade() -> None:
    raise NotImplementedError("idops stores only move forward")

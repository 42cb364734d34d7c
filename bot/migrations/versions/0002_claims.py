"""Claims: named leases in the store (bot/claims.py), one row per piece of work that runs once.

Revision ID: 0002_claims
Revises: 0001_baseline
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_claims"
down_revision = "0001_baseline"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "claims",
        sa.Column("name", sa.Text(), primary_key=True),
        sa.Column("holder", sa.Text(), nullable=False),
        sa.Column("until", sa.Double(), nullable=False),
        sa.Column("fence", sa.Integer(), nullable=False),
        sa.Column("taken_at", sa.Double(), nullable=False),
        if_not_exists=True,  # a SQLite store that ran the claims before they were a revision has it
    )


def downgrade() -> None:
    raise NotImplementedError("idops stores only move forward")

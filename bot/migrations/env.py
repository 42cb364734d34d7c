"""Alembic's environment: always run by `bot.store` on the connection it holds, inside its write
transaction (so two processes upgrading one store at once take turns), never from the alembic CLI."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, render_as_batch=True, transaction_per_migration=False)
with context.begin_transaction():
    context.run_migrations()

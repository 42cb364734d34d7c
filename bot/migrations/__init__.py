"""Alembic's script directory for the store's schema (`bot.store.open_store` runs it); the revisions are
in `versions/`. How to add one: see `bot/store.py`."""

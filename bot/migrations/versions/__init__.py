"""The store's Alembic revisions, oldest first by their `NNNN_` prefix (a package, so the wheel has them)."""

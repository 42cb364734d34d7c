"""The SQLite store: one file, WAL mode, and named migration sets (one per area) applied at open."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

import sqlite_utils
from sqlite_utils.migrations import Migrations


def open_db(path: str, migrations: Iterable[Migrations] = ()) -> sqlite_utils.Database:
    """Open (creating if needed) the database at `path` and apply each migration set in order.

    WAL lets the sender, the sweeps and the Slack handlers read while one of them writes; the busy
    timeout makes a second writer wait instead of failing.
    """
    conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    db = sqlite_utils.Database(conn)
    if path != ":memory:":
        db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA foreign_keys=ON")
    for migration_set in migrations:
        migration_set.apply(db)
    return db

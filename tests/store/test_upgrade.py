"""A SQLite store made before Alembic (sqlite-utils migrations, bot/store_legacy.py) upgrades in place:
its rows survive, the audit chain still verifies, and its schema ends as a new store's."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
import sqlite_utils

from bot import audit, store, store_legacy
from bot.approvals import Status
from bot.store import open_db

T0 = datetime(2026, 11, 20, 8, 0, tzinfo=timezone.utc)


def _old_store(path: Path, *, release: str) -> None:
    """A store as an older idops left it: `release` "containment" stops the approvals set before its
    time-boxing migrations (a store from before issue 13), "last" applies every legacy migration."""
    db = sqlite_utils.Database(sqlite3.connect(path, isolation_level=None))
    stop = {"m004_approval_rules", "m010_containment_duration"} if release == "containment" else None
    store_legacy.APPROVALS.apply(db, stop_before=stop)
    store_legacy.AUDIT.apply(db)
    store_legacy.ALERTS.apply(db, stop_before="m004_auto_action" if stop else None)
    db["approvals"].insert(
        {
            "id": "apr_old",
            "connector": "homebase",
            "identity_id": "hb-7",
            "action": "disable_account",
            "reason": "phished",
            "requested_by": "U1",
            "status": "executed",
            "created_at": audit.iso(T0),
            "expires_at": audit.iso(T0 + timedelta(minutes=30)),
            "target": json.dumps({"name": "Ada"}),
            "approvals_needed": 1,
            "approvers": json.dumps(["U2"]),
            "result": json.dumps({"status": "completed"}),
        }
    )
    prev = audit.GENESIS
    for n, event in enumerate(["requested", "approved", "executed"], start=1):
        row = {
            "id": n,
            "at": audit.iso(T0 + timedelta(minutes=n)),
            "actor": "U1" if n == 1 else "U2",
            "event": event,
            "request_id": "apr_old",
            "connector": "homebase",
            "identity_id": "hb-7",
            "action": "disable_account",
            "detail": "{}",
        }
        row["prev_hash"], row["hash"] = prev, audit.row_hash(row, prev)
        db["audit"].insert(row)
        prev = row["hash"]
    db["alert_outbox"].insert({"kind": "notice", "channel": "C1", "payload": "{}", "created_at": 1.0e9})
    db["alerts"].insert(
        {
            "id": "al1",
            "connector": "homebase",
            "connector_label": "HomeBase",
            "identity_id": "hb-7",
            "channel": "C1",
            "status": "open",
            "level": "critical",
            "identity": "{}",
            "actions": "[]",
            "created_at": 1.0e9,
            "updated_at": 1.0e9,
        }
    )
    db.conn.close()


def _schema(engine_conn: sa.Connection) -> dict[str, set[str]]:
    inspector = sa.inspect(engine_conn)
    return {
        table: {column["name"] for column in inspector.get_columns(table)}
        for table in inspector.get_table_names()
        if table not in ("alembic_version", store_legacy.TABLE, "sqlite_sequence")
    }


def test_a_store_from_before_containment_upgrades_in_place(tmp_path: Path) -> None:
    path = tmp_path / "idops.db"
    _old_store(path, release="containment")
    db = open_db(path)
    try:
        assert store.revisions(db) == store.heads()
        request = next(db.query("SELECT * FROM approvals WHERE id = 'apr_old'"))
        assert (request["status"], request["reason"], request["duration_seconds"]) == (
            Status.EXECUTED,
            "phished",
            None,
        )
        assert request["escalation_step"] == 0  # a column the old store lacked, with its default
        assert audit.verify(db) == (True, None, "audit chain intact: 3 rows")
        # the chain goes on from the old head
        with audit.transaction(db):
            audit.append(db, at=T0 + timedelta(hours=1), actor="idops", event="expired")
        assert audit.verify(db) == (True, None, "audit chain intact: 4 rows")
        # the outbox id keeps counting from the old rows
        new_id = db.execute(
            "INSERT INTO alert_outbox (kind, channel, payload, created_at) VALUES ('notice', 'C1', '{}', 2)"
            " RETURNING id"
        ).scalar()
        assert new_id == 2
        assert db.count("containments") == 0 and db.count("auto_actions") == 0
        assert next(db.query("SELECT gone, digest, auto FROM alerts WHERE id = 'al1'")) == {
            "gone": 0,
            "digest": None,
            "auto": None,
        }
        legacy = {(r["migration_set"], r["name"]) for r in db.query("SELECT * FROM _sqlite_migrations")}
        assert ("idops.approvals", "m011_containments") in legacy and (
            "idops.alerts",
            "m004_auto_action",
        ) in legacy
    finally:
        db.close()
    # opened again (a restart): nothing to do, nothing lost
    again = open_db(path)
    try:
        assert again.count("audit") == 4 and audit.verify(again)[0] is True
    finally:
        again.close()


def test_an_upgraded_store_has_the_schema_of_a_new_one(tmp_path: Path) -> None:
    _old_store(tmp_path / "old.db", release="last")
    old, new = open_db(tmp_path / "old.db"), open_db(tmp_path / "new.db")
    try:
        assert _schema(old.conn) == _schema(new.conn)
        assert store.revisions(old) == store.revisions(new) == store.heads()
    finally:
        old.close()
        new.close()


def test_a_file_that_is_not_a_store_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"these are my notes, not a database" * 100)
    with pytest.raises(store.StoreError, match="file is not a database"):
        open_db(path)
    assert path.read_bytes().startswith(b"these are my notes")

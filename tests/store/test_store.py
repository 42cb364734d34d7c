"""The store layer (bot/store.py) on both backends: statements, placeholders, transactions, the write lock
across connections, and the schema Alembic makes."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from bot import store
from bot.store import Store, open_store


@pytest.fixture
def db(store_url: str):
    opened = open_store(store_url)
    yield opened
    opened.close()


def _outbox(db: Store, kind: str = "notice", channel: str = "C1") -> int:
    return int(
        db.execute(
            "INSERT INTO alert_outbox (kind, channel, payload, created_at) VALUES (?, ?, '{}', ?)"
            " RETURNING id",
            [kind, channel, 1.5],
        ).scalar()
    )


def test_placeholders_rows_and_counts(db: Store) -> None:
    first, second = _outbox(db), _outbox(db, "alert")
    assert second > first
    # a `?` or a `:word` inside a literal is text, not a parameter
    rows = list(
        db.query(
            "SELECT id, kind, 'what? :not_a_param' AS note FROM alert_outbox WHERE kind = ? ORDER BY id",
            ["alert"],
        )
    )
    assert rows == [{"id": second, "kind": "alert", "note": "what? :not_a_param"}]
    assert db.execute("SELECT count(*) FROM alert_outbox WHERE id >= :low", {"low": first}).scalar() == 2
    assert db.count("alert_outbox") == 2
    changed = db.execute("UPDATE alert_outbox SET status = 'sent' WHERE status = ?", ["pending"])
    assert changed.rowcount == 2
    (row,) = db.execute("SELECT kind, status FROM alert_outbox WHERE id = ?", [first]).fetchall()
    kind, status = row
    assert (kind, status, row[0]) == ("notice", "sent", "notice")
    with pytest.raises(ValueError, match="2 placeholders but 1 parameters"):
        db.execute("SELECT ? + ?", [1])


def test_insert_executemany_and_on_conflict(db: Store) -> None:
    db.executemany(
        "INSERT INTO alert_webhook_events (source, event_id, received_at) VALUES (?, ?, ?)",
        [("homebase", f"e{i}", float(i)) for i in range(3)],
    )
    again = db.execute(
        "INSERT INTO alert_webhook_events (source, event_id, received_at) VALUES (?, ?, ?)"
        " ON CONFLICT DO NOTHING",
        ["homebase", "e1", 9.0],
    )
    assert again.rowcount == 0
    db.insert("alert_sweeps", {"scope": "hb", "connector": "homebase"})
    db.execute(
        "INSERT INTO alert_sweeps (scope, connector, cursor) VALUES (?, ?, ?)"
        " ON CONFLICT (scope) DO UPDATE SET cursor = excluded.cursor",
        ["hb", "homebase", "c-2"],
    )
    row = next(db.query("SELECT * FROM alert_sweeps"))
    assert (row["cursor"], row["baseline_done"], row["since_full"]) == ("c-2", 0, 0)
    assert db.count("alert_webhook_events") == 3


def test_a_transaction_rolls_back_on_error_and_nests_as_a_savepoint(db: Store) -> None:
    with pytest.raises(ZeroDivisionError), db.transaction():
        _outbox(db)
        1 / 0  # noqa: B018
    assert db.count("alert_outbox") == 0
    with db.transaction():
        _outbox(db, "kept")
        with pytest.raises(KeyError), db.transaction():
            _outbox(db, "dropped")
            raise KeyError("inner")
        assert db.in_transaction
    assert not db.in_transaction
    assert [r["kind"] for r in db.query("SELECT kind FROM alert_outbox")] == ["kept"]


def test_write_transactions_take_turns_across_connections(store_url: str) -> None:
    """Two connections (as two processes or replicas would hold) run a read-then-write at once: the second
    waits until the first commits, so no increment is lost."""
    first, second = open_store(store_url), open_store(store_url)
    try:
        second.insert("alert_sweeps", {"scope": "counter", "connector": "x", "since_full": 0})
        inside, done = threading.Event(), threading.Event()
        errors: list[BaseException] = []

        def increment(conn: Store, hold: bool) -> None:
            try:
                with conn.transaction():
                    value = conn.execute(
                        "SELECT since_full FROM alert_sweeps WHERE scope = 'counter'"
                    ).scalar()
                    if hold:
                        inside.set()
                        # the other connection must still be waiting for the lock
                        assert not done.wait(0.5)
                    conn.execute(
                        "UPDATE alert_sweeps SET since_full = ? WHERE scope = 'counter'", [value + 1]
                    )
            except BaseException as exc:
                errors.append(exc)

        holder = threading.Thread(target=increment, args=(first, True))
        holder.start()
        assert inside.wait(10)
        waiter = threading.Thread(target=lambda: (increment(second, False), done.set()))
        waiter.start()
        holder.join(20)
        waiter.join(20)
        assert errors == []
        assert done.is_set()
        assert second.execute("SELECT since_full FROM alert_sweeps WHERE scope = 'counter'").scalar() == 2
    finally:
        first.close()
        second.close()


def test_the_schema_is_at_the_one_head(db: Store) -> None:
    assert len(store.heads()) == 1, "two migrations share a parent: point the newer one at the other"
    assert store.revisions(db) == store.heads()
    tables = set(sa.inspect(db.conn).get_table_names())
    assert {"approvals", "audit", "containments", "auto_actions", "alerts", "alert_outbox"} <= tables
    # opening again changes nothing
    open_store(db.engine.url).close()
    assert store.revisions(db) == store.heads()


def test_two_processes_opening_a_new_store_at_once(store_url: str) -> None:
    """Replicas starting together on an empty database: one creates the schema, the others wait for it."""
    opened: list[Store] = []
    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            opened.append(open_store(store_url))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    try:
        assert errors == []
        assert [store.revisions(s) for s in opened] == [store.heads()] * 3
    finally:
        for s in opened:
            s.close()


def test_a_lost_postgresql_connection_fails_one_call_then_reconnects(pg_database) -> None:
    db = open_store(pg_database.url)
    try:
        db.insert("alert_sweeps", {"scope": "s", "connector": "x"})
        with pg_database.connect() as admin:
            # what a database restart or a dropped network path does to the store's connection
            killed = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchone()
        assert killed == (1,)
        with pytest.raises(sa.exc.OperationalError):
            db.execute("SELECT count(*) FROM alert_sweeps")
        assert not db.in_transaction
        assert db.count("alert_sweeps") == 1
        with db.transaction():
            db.execute("UPDATE alert_sweeps SET failing = 1 WHERE scope = 's'")
        assert next(db.query("SELECT failing FROM alert_sweeps"))["failing"] == 1
    finally:
        db.close()

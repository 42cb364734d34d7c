"""The hash-chained audit trail: appending, verifying, catching tampering, exporting, and its CLI."""

from __future__ import annotations

import csv
import io
import json
import threading
from datetime import datetime, timedelta, timezone

import pytest

from bot import audit
from bot.audit_cli import main as audit_main
from bot.cli import main as cli_main
from bot.store import Store, open_db, open_store

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=timezone.utc)


def _open(target):
    return open_store(target) if "://" in str(target) else open_db(str(target))


def _append(db, n, *, start=T0, identity="hb-1"):
    for i in range(n):
        with audit.transaction(db):
            audit.append(
                db,
                at=start + timedelta(minutes=i),
                actor=f"U{i}",
                event="requested" if i % 2 == 0 else "approved",
                request_id=f"apr_{i}",
                connector="homebase",
                identity_id=identity,
                action="disable",
                detail={"reason": f"reason {i}", "n": i},
            )


@pytest.fixture
def db(store_url):
    """The store, once on SQLite and once on PostgreSQL."""
    database = open_store(store_url)
    yield database
    database.close()


def test_rows_link_to_the_previous_hash(db):
    _append(db, 3)
    rows = list(db.query("SELECT * FROM audit ORDER BY id"))
    assert [r["id"] for r in rows] == [1, 2, 3]
    assert rows[0]["prev_hash"] == audit.GENESIS
    assert rows[1]["prev_hash"] == rows[0]["hash"] and rows[2]["prev_hash"] == rows[1]["hash"]
    assert len({r["hash"] for r in rows}) == 3
    assert audit.verify(db) == (True, None, "audit chain intact: 3 rows")


def test_empty_trail_verifies(db):
    assert audit.verify(db)[0] is True


def test_append_outside_a_transaction_is_refused(db):
    with pytest.raises(RuntimeError, match=r"inside audit\.transaction"):
        audit.append(db, at=T0, actor="U1", event="requested")


def test_a_failed_transaction_leaves_no_row(db):
    with pytest.raises(ZeroDivisionError), audit.transaction(db):
        audit.append(db, at=T0, actor="U1", event="requested")
        1 / 0  # noqa: B018
    assert db.count("audit") == 0


@pytest.mark.parametrize(
    ("sql", "bad_id", "why"),
    [
        ("UPDATE audit SET actor = 'U_MALLORY' WHERE id = 3", 3, "contents do not match its hash"),
        (
            'UPDATE audit SET detail = \'{"reason":"nothing to see"}\' WHERE id = 2',
            2,
            "contents do not match",
        ),
        ("UPDATE audit SET at = '2020-01-01T00:00:00.000000+00:00' WHERE id = 4", 4, "contents do not match"),
        ("DELETE FROM audit WHERE id = 3", 4, "row 3 is missing"),
    ],
)
def test_tampering_is_caught_and_names_the_row(db, sql, bad_id, why):
    _append(db, 5)
    db.execute(sql)
    ok, first_bad, message = audit.verify(db)
    assert not ok
    assert first_bad == bad_id
    assert f"audit row {bad_id}" in message and why in message


def test_rewriting_a_row_and_its_hash_breaks_the_next_link(db):
    _append(db, 4)
    row = next(db.query("SELECT * FROM audit WHERE id = 2"))
    row["actor"] = "U_MALLORY"
    forged = audit.row_hash(row, row["prev_hash"])
    db.execute("UPDATE audit SET actor = 'U_MALLORY', hash = ? WHERE id = 2", [forged])
    ok, first_bad, message = audit.verify(db)
    assert (ok, first_bad) == (False, 3)
    assert "does not link to row 2" in message


def test_two_connections_appending_at_once_keep_one_chain(store_url):
    path = store_url
    _open(path).close()
    errors: list[BaseException] = []

    def writer(tag):
        conn = _open(path)
        try:
            for i in range(40):
                with audit.transaction(conn):
                    audit.append(conn, at=T0, actor=tag, event="requested", detail={"i": i})
        except BaseException as exc:
            errors.append(exc)
        finally:
            conn.close()

    threads = [threading.Thread(target=writer, args=(f"U{t}",)) for t in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    db = _open(path)
    assert db.count("audit") == 120
    assert audit.verify(db)[0] is True


def test_export_jsonl_since(db):
    _append(db, 4)
    out = io.StringIO()
    count = audit.export(db, out, since=T0 + timedelta(minutes=2), fmt="jsonl")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert count == 2 and [r["id"] for r in lines] == [3, 4]
    assert lines[0]["detail"] == {"reason": "reason 2", "n": 2}
    assert set(lines[0]) == set(audit.EXPORT_COLUMNS)


def test_export_since_a_naive_or_other_zone_time_means_that_instant(db):
    _append(db, 4)
    out = io.StringIO()
    plus_two = timezone(timedelta(hours=2))
    assert audit.export(db, out, since=(T0 + timedelta(minutes=3)).astimezone(plus_two)) == 1
    assert audit.export(db, io.StringIO(), since=datetime(2026, 11, 1, 9, 1)) == 3


def test_export_csv_round_trips(db):
    _append(db, 3)
    out = io.StringIO()
    assert audit.export(db, out, fmt="csv") == 3
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [r["event"] for r in rows] == ["requested", "approved", "requested"]
    assert json.loads(rows[1]["detail"])["n"] == 1
    # the exported text carries everything needed to re-check the chain outside idops
    for row in rows:
        row["id"] = int(row["id"])
        row["request_id"] = row["request_id"] or None
        assert audit.row_hash(row, row["prev_hash"]) == row["hash"]


def test_export_rejects_an_unknown_format(db):
    with pytest.raises(ValueError, match="unknown export format 'xml'"):
        audit.export(db, io.StringIO(), fmt="xml")


def test_for_identity_newest_first(db):
    _append(db, 3, identity="hb-1")
    _append(db, 2, identity="hb-2")
    rows = audit.for_identity(db, "homebase", "hb-1")
    assert [r["request_id"] for r in rows] == ["apr_2", "apr_1", "apr_0"]
    assert rows[0]["detail"]["n"] == 2
    assert audit.for_identity(db, "sailpoint", "hb-1") == []
    assert len(audit.for_identity(db, None, "hb-2")) == 2


# --- the CLI ---------------------------------------------------------------------------------------


def _config(tmp_path, store, monkeypatch=None):
    """A config naming `store`: a SQLite path, or the open `Store` `db` (on PostgreSQL: its url, the
    password in IDOPS_TEST_PG_PASSWORD, as an operator would set it)."""
    section = f'path = "{store}"'
    if isinstance(store, Store):
        url = store.engine.url
        section = f'path = "{url.database}"'
        if store.backend == "postgresql":
            monkeypatch.setenv("IDOPS_TEST_PG_PASSWORD", url.password)
            section = (
                f'url = "postgresql://{url.username}@{url.host}:{url.port}/{url.database}"\n'
                'password_env = "IDOPS_TEST_PG_PASSWORD"'
            )
    path = tmp_path / "idops.toml"
    path.write_text(
        f'[slack]\nalert_channel = "C01"\napproval_channel = "C02"\n[store]\n{section}\n', encoding="utf-8"
    )
    return str(path)


def test_cli_verify_ok_then_tampered(tmp_path, db, capsys, monkeypatch):
    _append(db, 3)
    config = _config(tmp_path, db, monkeypatch)
    assert audit_main(["verify", "--config", config]) == 0
    assert "intact: 3 rows" in capsys.readouterr().out
    db.execute("UPDATE audit SET event = 'denied' WHERE id = 2")
    assert audit_main(["verify", "--config", config]) == 1
    assert "audit row 2" in capsys.readouterr().err


def test_cli_export_to_file_as_csv(tmp_path, db, capsys, monkeypatch):
    _append(db, 3)
    config = _config(tmp_path, db, monkeypatch)
    out = tmp_path / "trail.csv"
    code = audit_main(
        [
            "export",
            "--config",
            config,
            "--format",
            "csv",
            "--since",
            "2026-11-01T09:01:00Z",
            "--output",
            str(out),
        ]
    )
    assert code == 0
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [r["id"] for r in rows] == ["2", "3"]
    assert "2 audit rows exported" in capsys.readouterr().err


def test_cli_export_jsonl_to_stdout(tmp_path, db, capsys, monkeypatch):
    _append(db, 2)
    assert audit_main(["export", "--config", _config(tmp_path, db, monkeypatch)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["actor"] for line in lines] == ["U0", "U1"]


def test_cli_errors_name_the_problem(tmp_path, capsys):
    assert audit_main(["verify", "--config", str(tmp_path / "nope.toml")]) == 2
    assert "no such config file" in capsys.readouterr().err
    config = _config(tmp_path, tmp_path / "missing.db")
    assert audit_main(["verify", "--config", config]) == 2
    err = capsys.readouterr().err
    assert "no store at" in err and "missing.db" in err and "[store] path" in err
    with pytest.raises(SystemExit):
        audit_main(["export", "--config", config, "--since", "yesterday"])
    assert "'yesterday' is not an ISO 8601" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        audit_main(["export", "--config", config, "--format", "xml"])
    assert "invalid choice: 'xml'" in capsys.readouterr().err


def test_cli_unwritable_output(tmp_path, db, capsys, monkeypatch):
    _append(db, 1)
    config = _config(tmp_path, db, monkeypatch)
    assert (
        audit_main(["export", "--config", config, "--output", str(tmp_path / "no" / "such" / "dir.jsonl")])
        == 2
    )
    assert "cannot write" in capsys.readouterr().err


def test_transactions_nest_and_an_inner_failure_rolls_back_only_itself(db):
    with audit.transaction(db):
        audit.append(db, at=T0, actor="U1", event="requested")
        with pytest.raises(ZeroDivisionError), audit.transaction(db):
            audit.append(db, at=T0, actor="U2", event="approved")
            1 / 0  # noqa: B018
        audit.append(db, at=T0, actor="U3", event="denied")
    assert [r["actor"] for r in db.query("SELECT actor FROM audit ORDER BY id")] == ["U1", "U3"]
    assert audit.verify(db)[0] is True


def test_idops_audit_is_routed_by_the_main_cli(tmp_path, db, capsys, monkeypatch):
    _append(db, 2)
    config = _config(tmp_path, db, monkeypatch)
    assert cli_main(["audit", "verify", "--config", config]) == 0
    assert "intact: 2 rows" in capsys.readouterr().out
    assert cli_main(["audit", "export", "--config", config, "--format", "jsonl"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2

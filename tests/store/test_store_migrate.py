"""`idops store migrate`: a SQLite store written by the bot's own code (approvals, a time-boxed
containment, the audit trail, alert state and outbox) copied into a fresh database of the throwaway
PostgreSQL cluster while the bot still runs on the SQLite file; then bad input of every kind, each one
line naming what is wrong, with nothing written to the target."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import sqlite3
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from support.alerts import served
from support.approvals import Clock, MemoryDirectory, make_service
from support.bot import APPROVER, REQUESTER, BotHarness, harness
from support.postgres import PgDatabase

from bot import audit, store_cli
from bot.approvals import Decision, State, Status
from bot.store import Store, open_store, postgresql_url, sqlite_url
from bot.store_copy import NOT_COPIED, schema_tables
from standins import okta, serving

ROOT = Path(__file__).resolve().parents[2]
OKTA_TOKEN = "00okta-migrate-test-token"
PASSWORD_ENV = "IDOPS_TEST_PG_PASSWORD"
PREFIX = "idops store migrate: "


# --- a store written by the bot ----------------------------------------------------------------


@contextlib.asynccontextmanager
async def okta_bot(tmp_path: Path) -> AsyncIterator[BotHarness]:
    """The bot with one Okta connector (it can undo a disable, so a disable can be time-boxed)."""
    sim = okta.create_app(identities=40, rate_limits=False, api_token=OKTA_TOKEN)
    async with serving(sim) as sim_url:
        entry = {"name": "okta", "kind": "okta", "base_url": sim_url, "api_token_env": "TEST_OKTA_TOKEN"}
        async with harness(tmp_path, connectors=[entry], environ={"TEST_OKTA_TOKEN": OKTA_TOKEN}) as built:
            built.extra.update(okta=sim[okta.STATE])
            yield built


def okta_people(state: Any, count: int) -> list[str]:
    """Emails of ordinary active Okta users without risk."""
    found = [
        state.user(i)["profile"]["email"]
        for i in range(4, state.total)
        if state.status(i) == "ACTIVE" and not state.role_types(i) and state.risk_level(i)[0] == "NONE"
    ]
    return found[:count]


def request_id_of(card: dict[str, Any]) -> str:
    return str(card["metadata"]["event_payload"]["request_id"])


async def approvals_and_a_containment(h: BotHarness) -> dict[str, str]:
    """Slash commands and clicks into the real server: a time-boxed disable (executed, so contained), a
    revoke executed, one denied and one left pending; their request ids."""
    first, second, third, fourth = okta_people(h.extra["okta"], 4)
    ids = {}
    for name, text in (
        ("contained", f"disable {first} for 4h stolen laptop"),
        ("executed", f"revoke {second} phished"),
        ("denied", f"reset {third} suspicious"),
        ("pending", f"revoke {fourth} left pending"),
    ):
        await h.command(REQUESTER, text)
        ids[name] = request_id_of(h.cards()[-1])
    for name in ("contained", "executed"):
        card = next(c for c in h.cards() if request_id_of(c) == ids[name])
        await h.click(APPROVER, card, "approval:approve")
    await h.bot.service.decide(ids["denied"], user_id=APPROVER, decision=Decision.DENY, reason="false alarm")
    containment = h.bot.service.containment(ids["contained"])
    assert containment is not None and containment.status is State.ACTIVE
    assert h.bot.service.get(ids["executed"]).status is Status.EXECUTED
    return ids


async def raise_risk(s: Any, index: int, score: int) -> None:
    url = f"{s.hb_url}/_admin/identity/{s.hb.identity_id(index)}/risk"
    async with s.http.post(url, json={"risk_score": score}) as response:
        assert response.status == 200
    await s.settle()


# --- reading both stores -----------------------------------------------------------------------


def _normal(value: Any) -> Any:
    """SQLite gives a whole REAL back as float, so does PostgreSQL's DOUBLE PRECISION: compare them
    as numbers, not types."""
    if isinstance(value, float) and math.isfinite(value) and value == int(value):
        return int(value)
    return value


def _sorted(rows: Any) -> list[tuple[Any, ...]]:
    return sorted((tuple(_normal(v) for v in row) for row in rows), key=repr)


def sqlite_rows(path: Path, table: str, columns: list[str]) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return _sorted(conn.execute(f"SELECT {', '.join(columns)} FROM {table}"))  # noqa: S608


def pg_rows(db: PgDatabase, table: str, columns: list[str]) -> list[tuple[Any, ...]]:
    with db.connect() as conn:
        return _sorted(conn.execute(f"SELECT {', '.join(columns)} FROM {table}").fetchall())  # noqa: S608


def pg_columns(db: PgDatabase, table: str) -> list[str]:
    with db.connect() as conn:
        rows = conn.execute(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = 'public' AND table_name = %s ORDER BY ordinal_position",
            (table,),
        ).fetchall()
    return [row[0] for row in rows]


def pg_counts(db: PgDatabase) -> dict[str, int]:
    """Rows per idops table in the target (tables not made yet are left out)."""
    counts = {}
    with db.connect() as conn:
        for table in sorted(schema_tables()):
            if conn.execute("SELECT to_regclass(%s)", (table,)).fetchone() != (None,):
                counts[table] = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608
    return counts


def sqlite_counts(path: Path) -> dict[str, int]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return {
            table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608
            for table in sorted(schema_tables())
        }


def migrate(db: PgDatabase, source: Path, *extra: str, password: str | None = None) -> tuple[int, str, str]:
    """`idops store migrate --from sqlite:SOURCE --to <db> --password-env ...` in-process (the CLI's
    own main), with the password in the environment it is given; (exit status, stdout, stderr)."""
    out, err = _Capture(), _Capture()
    argv = [
        "migrate",
        "--from",
        f"sqlite:{source}",
        "--to",
        db.config_url,
        "--password-env",
        PASSWORD_ENV,
        *extra,
    ]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):  # type: ignore[type-var]
        code = store_cli.main(argv, {PASSWORD_ENV: db.password if password is None else password})
    return code, out.text, err.text


class _Capture:
    """A thread-safe text sink (the CLI runs in a worker thread while the bot writes)."""

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
            self._parts.append(text)
        return len(text)

    def flush(self) -> None:
        pass

    @property
    def text(self) -> str:
        return "".join(self._parts)


@contextlib.contextmanager
def pg_store(db: PgDatabase) -> Iterator[Store]:
    store = open_store(postgresql_url(db.config_url, db.password))
    try:
        yield store
    finally:
        store.close()


def assert_one_line(err: str, *phrases: str, password: str = "") -> None:
    """A refusal is one line, `idops store migrate: ...`, saying each phrase, never the password."""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(PREFIX), err
    for phrase in phrases:
        assert phrase in lines[0], err
    assert "Traceback" not in err
    if password:
        assert password not in err


# --- the copy ------------------------------------------------------------------------------------


async def test_a_live_store_written_by_the_bot_is_copied_whole(tmp_path, pg_database):
    source = tmp_path / "idops.db"
    async with served(tmp_path) as s:  # the whole server: alerts, sweeps, outbox, webhooks
        await s.started()
        await raise_risk(s, s.hb_low(), 93)  # the simulator's signed webhook: an alert and its card
        assert len(s.cards()) == 1

    # the same file, now under a bot with an Okta connector: approvals and a time-boxed containment
    async with okta_bot(tmp_path) as h:
        ids = await approvals_and_a_containment(h)
        before = sqlite_counts(source)
        # copied while the server runs on the file, and a slash command writes to it meanwhile
        running = asyncio.ensure_future(asyncio.to_thread(migrate, pg_database, source))
        await h.command(REQUESTER, f"revoke {okta_people(h.extra['okta'], 5)[4]} mid-copy")
        code, out, err = await running
        assert (code, err) == (0, ""), err
        assert "(verified in the target)" in out and "audit chain intact" in out
        during = pg_counts(pg_database)
        after = sqlite_counts(source)
    assert after["approvals"] == before["approvals"] + 1
    for table, count in during.items():  # one moment between the two: never a torn copy
        assert before[table] <= count <= after[table], table
    with pg_store(pg_database) as store:
        assert audit.verify(store)[0]

    # once the bot has stopped, the final run (--replace) copies every table exactly
    code, out, err = migrate(pg_database, source, "--replace")
    assert (code, err) == (0, ""), err
    assert "replacing" in out
    filled = {table for table, rows in sqlite_counts(source).items() if rows}
    areas = {
        "approvals",
        "containments",
        "audit",
        "alert_identities",
        "alerts",
        "alert_outbox",
        "alert_sweeps",
    }
    assert areas <= filled
    for table in schema_tables():
        columns = pg_columns(pg_database, table)
        assert pg_rows(pg_database, table, columns) == sqlite_rows(source, table, columns), table

    # the bot reads the copy as its own: the containment, the requests, the chain, new outbox ids
    with pg_store(pg_database) as store:
        service = make_service(store, {}, MemoryDirectory({}), Clock())
        containment = service.containment(ids["contained"])
        assert containment is not None and containment.status is State.ACTIVE
        assert [service.get(ids[name]).status for name in ("executed", "denied", "pending")] == [
            Status.EXECUTED,
            Status.DENIED,
            Status.PENDING,
        ]
        ok, _, message = audit.verify(store)
        assert ok and message == f"audit chain intact: {after['audit']} rows"
        highest = store.execute("SELECT max(id) FROM alert_outbox").scalar()
        new_id = store.execute(
            "INSERT INTO alert_outbox (kind, channel, payload, created_at)"
            " VALUES ('notice', 'C0X', '{}', 1.0) RETURNING id"
        ).scalar()
        assert new_id == highest + 1


def test_the_copy_is_one_moment_of_a_store_being_written(tmp_path, pg_database):
    """A writer appends an audit row and an outbox row per transaction while the copy runs: the copy
    holds as many of one as of the other, and its chain verifies."""
    source = tmp_path / "busy.db"
    store = open_store(sqlite_url(source))
    stop = threading.Event()
    written = [0]

    def write() -> None:
        while not stop.is_set():
            with store.transaction():
                audit.append(store, at=datetime.now(timezone.utc), actor="U0W", event="requested")
                store.execute(
                    "INSERT INTO alert_outbox (kind, channel, payload, created_at)"
                    " VALUES ('notice', 'C0X', '{}', 1.0)"
                )
            written[0] += 1

    writer = threading.Thread(target=write)
    writer.start()
    try:
        while written[0] < 50:
            stop.wait(0.01)
        code, out, err = migrate(pg_database, source)
        at_copy = written[0]
    finally:
        stop.set()
        writer.join()
        store.close()
    assert (code, err) == (0, ""), err
    counts = pg_counts(pg_database)
    assert 50 <= counts["audit"] == counts["alert_outbox"] <= at_copy + 1
    assert f"audit chain intact: {counts['audit']} rows" in out


def test_the_source_file_is_never_written(tmp_path, pg_database):
    source = tmp_path / "idops.db"
    store = open_store(sqlite_url(source))
    with store.transaction():
        audit.append(store, at=datetime.now(timezone.utc), actor="U0A", event="requested")
    store.close()
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    assert migrate(pg_database, source)[0] == 0
    assert hashlib.sha256(source.read_bytes()).hexdigest() == digest


def test_every_table_is_copied_or_says_why_not():
    # a table a later migration adds is copied unless it is named here with its reason
    assert set(NOT_COPIED) == {"alembic_version", "claims"} and all(NOT_COPIED.values())
    assert {
        "approvals",
        "containments",
        "audit",
        "alerts",
        "alert_outbox",
        "alert_identities",
    } <= schema_tables()


# --- an audit chain that does not verify -----------------------------------------------------------


def audited_store(path: Path, rows: int = 5) -> None:
    store = open_store(sqlite_url(path))
    with store.transaction():
        for n in range(rows):
            audit.append(
                store, at=datetime.now(timezone.utc), actor="U0A", event="requested", detail={"n": n}
            )
    store.close()


def test_an_edited_source_chain_is_refused_naming_the_row(tmp_path, pg_database):
    source = tmp_path / "idops.db"
    audited_store(source)
    with contextlib.closing(sqlite3.connect(source)) as conn, conn:
        conn.execute("UPDATE audit SET actor = 'U0SOMEONEELSE' WHERE id = 3")
    code, out, err = migrate(pg_database, source)
    assert code == 1 and out == ""
    assert_one_line(err, "audit row 3: contents do not match its hash", "nothing was copied")
    assert sum(pg_counts(pg_database).values()) == 0


def test_a_chain_that_does_not_verify_after_the_copy_rolls_it_all_back(tmp_path, pg_database):
    """The target changes a row as it arrives (a trigger): the check after the copy names the row, and
    the target keeps nothing."""
    source = tmp_path / "idops.db"
    audited_store(source)
    with pg_store(pg_database):
        pass  # the schema, made by the store itself
    with pg_database.connect() as conn:
        conn.execute(
            "CREATE FUNCTION garble() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN IF NEW.id = 4 THEN NEW.event := 'denied'; END IF; RETURN NEW; END $$"
        )
        conn.execute("CREATE TRIGGER garble BEFORE INSERT ON audit FOR EACH ROW EXECUTE FUNCTION garble()")
    code, _, err = migrate(pg_database, source)
    assert code == 1
    assert_one_line(err, "does not verify after the copy", "audit row 4", "nothing was copied")
    assert sum(pg_counts(pg_database).values()) == 0


# --- refusals ------------------------------------------------------------------------------------


def test_a_target_holding_idops_rows_is_refused_unless_replace(tmp_path, pg_database):
    source = tmp_path / "idops.db"
    audited_store(source, rows=3)
    assert migrate(pg_database, source)[0] == 0
    audited_store(source, rows=2)  # two more rows since the first copy
    code, out, err = migrate(pg_database, source)
    assert code == 1 and out == ""
    assert_one_line(err, "already holds idops data: audit (3 rows)", "--replace")
    assert pg_counts(pg_database)["audit"] == 3
    code, out, err = migrate(pg_database, source, "--replace")
    assert code == 0, err
    assert pg_counts(pg_database)["audit"] == 5


def test_wrong_password_and_missing_variable(tmp_path, pg_database):
    source = tmp_path / "idops.db"
    audited_store(source)
    code, _, err = migrate(pg_database, source, password="not-the-password")
    assert code == 1
    assert_one_line(err, "password authentication failed", "wrong password", password="not-the-password")
    assert pg_database.config_url in err  # where it tried, without any password
    code, _, err = store_cli_run(
        "--from", f"sqlite:{source}", "--to", pg_database.config_url, "--password-env", "IDOPS_NOT_SET"
    )
    assert code == 2
    assert_one_line(err, "environment variable IDOPS_NOT_SET (from --password-env) is not set")
    code, _, err = store_cli_run("--from", f"sqlite:{source}", "--to", pg_database.config_url)
    assert code == 1
    assert_one_line(err, "no password supplied", "--password-env")
    assert sum(pg_counts(pg_database).values()) == 0


def store_cli_run(*argv: str) -> tuple[int, str, str]:
    out, err = _Capture(), _Capture()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):  # type: ignore[type-var]
        code = store_cli.main(["migrate", *argv], {})
    return code, out.text, err.text


@pytest.mark.parametrize(
    ("to", "code", "phrase"),
    [
        ("mysql://idops@127.0.0.1/idops", 2, "must be a PostgreSQL URL"),
        ("not a url at all", 2, "is not a database URL"),
        ("postgresql://idops:hunter2@127.0.0.1/idops", 2, "must not carry the password"),
        ("postgresql://idops@127.0.0.1", 2, "names no database"),
        ("postgresql://idops@127.0.0.1:1/idops", 1, "Connection refused"),
    ],
)
def test_bad_target_urls(tmp_path, to, code, phrase):
    source = tmp_path / "idops.db"
    audited_store(source)
    got, out, err = store_cli_run("--from", f"sqlite:{source}", "--to", to)
    assert (got, out) == (code, "")
    assert_one_line(err, phrase, password="hunter2")


def test_a_database_that_does_not_exist(tmp_path, pg_database):
    source = tmp_path / "idops.db"
    audited_store(source)
    elsewhere = pg_database.config_url.rsplit("/", 1)[0] + "/no_such_db"
    code, _, err = _run_env(["--from", f"sqlite:{source}", "--to", elsewhere], pg_database.password)
    assert code == 1
    assert_one_line(err, 'database "no_such_db" does not exist', "create it first")


def _run_env(argv: list[str], password: str) -> tuple[int, str, str]:
    out, err = _Capture(), _Capture()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):  # type: ignore[type-var]
        code = store_cli.main(["migrate", *argv, "--password-env", PASSWORD_ENV], {PASSWORD_ENV: password})
    return code, out.text, err.text


@pytest.mark.parametrize(
    ("make", "phrase"),
    [
        (None, "no SQLite store at"),
        ("text", "cannot read"),
        ("sqlite", "not an idops store"),
    ],
)
def test_bad_sources(tmp_path, pg_database, make, phrase):
    source = tmp_path / "old.db"
    if make == "text":
        source.write_text("not a database, just text\n" * 100)
    elif make == "sqlite":
        with contextlib.closing(sqlite3.connect(source)) as conn:
            conn.execute("CREATE TABLE other_app (x INTEGER)")
    code, out, err = migrate(pg_database, source)
    assert (code, out) == (2, "")
    assert_one_line(err, phrase)
    assert sum(pg_counts(pg_database).values()) == 0


def test_from_must_be_sqlite_path(tmp_path, pg_database):
    code, _, err = store_cli_run("--from", str(tmp_path / "idops.db"), "--to", pg_database.config_url)
    assert code == 2
    assert_one_line(err, "--from must be sqlite:PATH")


def test_the_command_line_says_one_line_and_exits_2_without_a_traceback(tmp_path):
    """Through `idops` itself, in a process of its own: what a person at a shell sees."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bot.cli",
            "store",
            "migrate",
            "--from",
            f"sqlite:{tmp_path / 'none.db'}",
            "--to",
            "postgresql://idops@127.0.0.1/idops",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == f"{PREFIX}no SQLite store at {tmp_path / 'none.db'}\n"


def test_the_url_forms_libpq_takes():
    for written in ("postgres://idops@db.example:5432/idops", "postgresql://idops@db.example:5432/idops"):
        url = store_cli.target_url(written, "PW", {"PW": "s3cret"})
        assert (url.drivername, url.host, url.port, url.database, url.password) == (
            "postgresql+psycopg",
            "db.example",
            5432,
            "idops",
            "s3cret",
        )
        assert store_cli.shown(url) == "postgresql://idops@db.example:5432/idops"


def replicas_config(path: Path, db: PgDatabase) -> Path:
    """The replicas' idops.toml: the database in [store] url, the password's variable in password_env."""
    path.write_text(
        '[slack]\nalert_channel = "C0ALERTS"\napproval_channel = "C0APPROVALS"\n\n'
        f'[store]\nurl = "{db.config_url}"\npassword_env = "{PASSWORD_ENV}"\n'
    )
    return path


def test_the_target_and_password_variable_from_the_replicas_config(tmp_path, pg_database):
    source = tmp_path / "idops.db"
    audited_store(source, rows=4)
    config = replicas_config(tmp_path / "idops.toml", pg_database)
    out, err = _Capture(), _Capture()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):  # type: ignore[type-var]
        code = store_cli.main(
            ["migrate", "--from", f"sqlite:{source}", "--config", str(config)],
            {PASSWORD_ENV: pg_database.password},
        )
    assert (code, err.text) == (0, "")
    assert f"into {pg_database.config_url}" in out.text
    assert pg_counts(pg_database)["audit"] == 4
    # the variable the config names is not set: said so, naming where the name came from
    code, _, text = store_cli_run("--from", f"sqlite:{source}", "--config", str(config), "--replace")
    assert code == 2
    assert_one_line(
        text, f"environment variable {PASSWORD_ENV} (from store.password_env in {config}) is not set"
    )


def test_a_config_without_a_url_or_a_bad_config(tmp_path):
    source = tmp_path / "idops.db"
    audited_store(source)
    sqlite_config = tmp_path / "old.toml"
    sqlite_config.write_text('[slack]\nalert_channel = "C0ALERTS"\napproval_channel = "C0APPROVALS"\n')
    code, _, err = store_cli_run("--from", f"sqlite:{source}", "--config", str(sqlite_config))
    assert code == 2
    assert_one_line(err, "has no [store] url", "--to")
    broken = tmp_path / "broken.toml"
    broken.write_text('[store]\nurl = "postgresql://idops:pw@db/idops"\n')
    code, _, err = store_cli_run("--from", f"sqlite:{source}", "--config", str(broken))
    assert code == 2
    assert_one_line(err, str(broken), password="pw@")
    code, _, err = store_cli_run("--from", f"sqlite:{source}")
    assert code == 2
    assert_one_line(err, "--to names the PostgreSQL database")

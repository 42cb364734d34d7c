"""The store: one layer, one code path, over SQLite (the embedded default) and PostgreSQL (shared by
replicas), on SQLAlchemy 2 Core (`text()` statements) with psycopg 3; the schema is Alembic's
(`bot/migrations/`, applied by `open_store`).

Calling it (`Store`, the `db` every service holds):

- `db.execute(sql, params)` runs one statement and returns a `Result` (`rowcount`, `fetchone()`,
  `fetchall()`, `scalar()`, iteration over tuple-like rows); `db.query(sql, params)` iterates dict rows;
  `db.insert(table, row)` inserts a dict; `db.executemany(sql, rows)` runs one statement per row.
  Parameters are `?` placeholders with a list or tuple, or `:name` with a dict.
- `with db.transaction():` (also `db.atomic()`) is a write transaction, taken up front: on SQLite `BEGIN
  IMMEDIATE`; on PostgreSQL the first statement takes `pg_advisory_xact_lock(WRITE_LOCK)`, held until
  commit or rollback. So two write transactions (in one process or in many, any replica) never
  interleave, and a read-then-write inside one (a compare-and-set, the audit chain's head, a claim) sees
  every write committed before it and is seen whole by the next. Inside an open transaction it nests as
  a savepoint. An exception rolls it back. No `await` inside a transaction: it would hold the lock.
- Outside a transaction every statement is its own: a read (`SELECT`/`WITH`) runs without the lock, any
  other statement runs as a one-statement write transaction (with the lock on PostgreSQL), as SQLite
  serialises every write.
- Synchronous on purpose: statements are short and the lock is held only between two Python lines
  with no `await` between them, so the event loop never waits long; an async layer everywhere is a
  later change.

Portable SQL (the same text runs on both; the tests run the store's users on both):

- `INSERT ... ON CONFLICT DO NOTHING` / `ON CONFLICT (key) DO UPDATE SET col = excluded.col`, never
  `INSERT OR IGNORE/REPLACE`; no SQLite-only functions (`ifnull`, `iif`, `instr`, `json_each`,
  `julianday`, scalar `max(a, b)`): use `coalesce`, `CASE`, or compute it in Python.
- NULLs sort last ascending on PostgreSQL, first on SQLite: say `NULLS LAST` / `NULLS FIRST` where a
  nullable column orders rows.
- Timestamps are ISO text (`audit.iso`) or epoch seconds (`DOUBLE PRECISION`); booleans are stored as
  INTEGER 0/1: pass `int(flag)`, never a Python bool, and compare with `= 1`. `LIMIT` takes a number
  (no `LIMIT -1`). A `GROUP BY` names every column it selects that is not aggregated. `sum()` of
  integers is NUMERIC on PostgreSQL: wrap it in `int()`.
- Ids: TEXT keys made by idops, or `INTEGER` autoincrement (identity on PostgreSQL) read back with
  `RETURNING id`, never `lastrowid`.
- Test it on both backends: take the `store_url` fixture (tests/conftest.py: a SQLite file, then a fresh
  PostgreSQL database of the throwaway cluster in tests/support/postgres.py).

Opening it: entry points call `open_configured(config, environ)` (`[store] path`, or `url` with the
password from the variable `password_env` names); tests and tools `open_store(url)` / `open_db(path)`.
A `Store` is one connection for one thread: a thread or process of its own opens its own.
A lost connection (the database restarted, the network dropped) fails the call that finds it with
`sqlalchemy.exc.OperationalError`, rolled back; the next call connects again.

Adding a table or a column (a migration):

- Add one file to `bot/migrations/versions/` named `NNNN_what.py`, with `revision = "NNNN_what"` and
  `down_revision` = the current head (the newest file's `revision`), using Alembic's `op` with
  SQLAlchemy types (`sa.Text`, `sa.Integer`, `sa.Double` for epoch seconds), e.g.
  `op.add_column("approvals", sa.Column("rule", sa.Text))`. For anything beyond adding a column or an
  index on SQLite, use `with op.batch_alter_table(...)`. A new `NOT NULL` column needs a
  `server_default`. Never edit a landed revision; if two land with the same `down_revision`, the second
  rebases and points at the first (tests/store checks there is one head).
- Never add to `bot/store_legacy.py`: it is the frozen sqlite-utils history, only for upgrading stores
  made before Alembic.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import sqlite3
import stat
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Optional, Union

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.script import ScriptDirectory
from sqlalchemy.engine import URL, Connection, Engine

from . import store_legacy
from .config import Config

log = logging.getLogger(__name__)

# The transaction-scoped advisory lock every write transaction takes first on PostgreSQL (any 64-bit
# number no other application on the same database uses; idops' own: "idops" in ASCII).
WRITE_LOCK = 0x69646F7073
#: the Alembic revision equal to the last schema the sqlite-utils migrations made
BASELINE = "0001_baseline"
Params = Union[Sequence[Any], Mapping[str, Any]]
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_READ = re.compile(r"\s*(?:SELECT|WITH|VALUES|EXPLAIN|PRAGMA)\b", re.IGNORECASE)
# string literals, quoted identifiers, comments, `::` casts and `?` placeholders, in one pass
_TOKENS = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|--[^\n]*|/\*.*?\*/|::|\?", re.DOTALL)


class StoreError(Exception):
    """The store can't be opened or upgraded; the message names the problem (never a password)."""


@functools.lru_cache(maxsize=2048)
def _named(sql: str) -> tuple[str, int]:
    """`?` placeholders → `:p0, :p1, ...` (outside literals and comments); colons inside literals are
    escaped so `text()` leaves them alone. Returns the SQL and how many placeholders it had."""
    count = 0

    def swap(match: re.Match[str]) -> str:
        nonlocal count
        found = match.group(0)
        if found == "?":
            count += 1
            return f":p{count - 1}"
        if found[0] == "'":
            return found.replace(":", "\\:")
        return found

    return _TOKENS.sub(swap, sql), count


def _statement(sql: str, params: Optional[Params]) -> tuple[sa.TextClause, dict[str, Any]]:
    if params is None or isinstance(params, Mapping):
        return sa.text(sql), dict(params or {})
    text, count = _named(sql)
    if count != len(params):
        raise ValueError(f"the statement has {count} placeholders but {len(params)} parameters were given")
    return sa.text(text), {f"p{i}": value for i, value in enumerate(params)}


class Result:
    """What a statement returned, read in full (so no cursor outlives its transaction)."""

    # rows are SQLAlchemy Rows: tuples (index, unpack) typed Any, as sqlite3's cursor rows were
    def __init__(self, rowcount: int, rows: list[Any], keys: Sequence[str]) -> None:
        self.rowcount = rowcount
        self.rows = rows
        self.keys = tuple(keys)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.rows)

    def fetchone(self) -> Any:
        return self.rows[0] if self.rows else None

    def fetchall(self) -> list[Any]:
        return list(self.rows)

    def scalar(self) -> Any:
        return self.rows[0][0] if self.rows else None

    def dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.keys, row)) for row in self.rows]


class Store:
    """One connection to the store (SQLite file or PostgreSQL database), used by one thread."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.backend: str = engine.dialect.name  # "sqlite" | "postgresql"
        self._lock_next: Optional[bool] = None
        self._depth = 0  # transactions opened through this Store (SQLAlchemy may autobegin others)
        sa.event.listen(engine, "begin", self._on_begin)
        self.conn: Connection = engine.connect()

    # --- statements ----------------------------------------------------------------------------

    @property
    def in_transaction(self) -> bool:
        return self._depth > 0

    def execute(self, sql: str, params: Optional[Params] = None) -> Result:
        statement, values = _statement(sql, params)
        if self.in_transaction:
            return self._run(statement, values)
        # a read on its own: no BEGIN on SQLite (autocommit, as a PRAGMA needs); else a write transaction
        with self._transaction(lock=None if _READ.match(sql) else True):
            return self._run(statement, values)

    def _run(self, statement: sa.TextClause, values: Any) -> Result:
        cursor = self.conn.execute(statement, values)
        if cursor.returns_rows:
            keys = list(cursor.keys())
            return Result(cursor.rowcount, list(cursor.all()), keys)
        return Result(cursor.rowcount, [], ())

    def query(self, sql: str, params: Optional[Params] = None) -> Iterator[dict[str, Any]]:
        """The rows as dicts (read in full first)."""
        return iter(self.execute(sql, params).dicts())

    def executemany(self, sql: str, rows: Iterable[Params]) -> int:
        """One statement per row of parameters (all `?` sequences or all dicts); returns rows affected."""
        rows = list(rows)
        if not rows:
            return 0
        first = rows[0]
        if isinstance(first, Mapping):
            statement, values = sa.text(sql), [dict(row) for row in rows]  # type: ignore[arg-type]
        else:
            text, _ = _named(sql)
            statement = sa.text(text)
            values = [{f"p{i}": value for i, value in enumerate(row)} for row in rows]
        with self.transaction():
            return self.conn.execute(statement, values).rowcount

    def count(self, table: str) -> int:
        """How many rows `table` (one of idops' own table names) holds."""
        return int(self.execute(f"SELECT count(*) FROM {table}").scalar())  # noqa: S608

    def insert(self, table: str, row: Mapping[str, Any]) -> None:
        """INSERT one row given as a dict (`table` and the keys are idops' own names, never input)."""
        columns = ", ".join(row)
        marks = ", ".join(f":{name}" for name in row)
        self.execute(f"INSERT INTO {table} ({columns}) VALUES ({marks})", dict(row))  # noqa: S608

    # --- transactions --------------------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self, *, lock: bool = True) -> Iterator[Store]:
        """A write transaction (see the module docstring); nested, a savepoint. `lock=False` (PostgreSQL:
        no advisory lock; SQLite: a deferred BEGIN) is only for work that locks its own rows, e.g.
        `SELECT ... FOR UPDATE SKIP LOCKED`, and never reads-then-writes otherwise."""
        if self.in_transaction:
            self._depth += 1
            try:
                with self.conn.begin_nested():
                    yield self
            finally:
                self._depth -= 1
            return
        with self._transaction(lock=lock):
            yield self

    #: the name the alerts used (sqlite-utils' `atomic`): the same write transaction
    atomic = transaction

    @contextlib.contextmanager
    def _transaction(self, *, lock: Optional[bool]) -> Iterator[None]:
        if self.conn.in_transaction():
            # SQLAlchemy began one by itself (e.g. an inspector read through `conn`): end it, or every
            # transaction after it would be a savepoint inside it, never committed
            self.conn.commit()
        self._lock_next = lock
        self._depth += 1
        try:
            with self.conn.begin():  # the "begin" event below emits the backend's BEGIN and lock
                yield
        finally:
            self._depth -= 1
            self._lock_next = None

    def _on_begin(self, conn: Connection) -> None:
        # _lock_next: True, a write transaction; False, a transaction without the lock; None, one
        # statement on its own (SQLite: autocommit, no BEGIN; psycopg begins one implicitly)
        if self.backend == "sqlite":
            if self._lock_next is not None:
                conn.exec_driver_sql("BEGIN IMMEDIATE" if self._lock_next else "BEGIN")
        elif self._lock_next:
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": WRITE_LOCK})

    def close(self) -> None:
        self.conn.close()
        self.engine.dispose()


def sqlite_url(path: Union[str, os.PathLike[str]]) -> URL:
    return URL.create("sqlite", database=str(path))


def postgresql_url(url: str, password: Optional[str] = None) -> URL:
    """`postgresql://user@host:port/db` (as written in `[store] url`) for psycopg 3, with `password`."""
    parsed = sa.make_url(url)
    parsed = parsed.set(drivername="postgresql+psycopg")
    if password is not None:
        parsed = parsed.set(password=password)
    return parsed


def _journal_wal(cursor: sqlite3.Cursor) -> None:
    """Switch a new SQLite file to WAL. Two processes creating the file at once may find it locked
    without the busy timeout applying (a journal mode change takes the file's exclusive lock): retry
    for up to the busy timeout."""
    deadline = time.monotonic() + 30
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _engine(url: Union[str, URL]) -> Engine:
    url = sa.make_url(url)
    if url.get_backend_name() == "sqlite":
        engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        memory = url.database in (None, "", ":memory:")

        @sa.event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
            # the transaction is ours (BEGIN IMMEDIATE in Store._on_begin), not pysqlite's
            dbapi_conn.isolation_level = None
            cursor = dbapi_conn.cursor()
            if not memory:
                # WAL lets the sender, the sweeps and the Slack handlers read while one of them writes
                _journal_wal(cursor)
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    if url.get_backend_name() == "postgresql":
        if url.drivername == "postgresql":
            url = url.set(drivername="postgresql+psycopg")
        return sa.create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 10})
    raise StoreError(f"unsupported store backend '{url.get_backend_name()}' (sqlite or postgresql)")


def connect(url: Union[str, URL]) -> Store:
    """A `Store` on `url` without touching its schema (see `open_store`)."""
    return Store(_engine(url))


def _alembic(store: Optional[Store] = None) -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    if store is not None:
        config.attributes["connection"] = store.conn
    return config


def heads() -> tuple[str, ...]:
    """The newest revision(s) of the schema (one, unless two migrations branched from one parent)."""
    return tuple(ScriptDirectory.from_config(_alembic()).get_heads())


def revisions(store: Store) -> tuple[str, ...]:
    """The revision(s) the store is at (empty before its first upgrade)."""
    with store.transaction(lock=False):
        if not sa.inspect(store.conn).has_table("alembic_version"):
            return ()
        return tuple(row[0] for row in store.execute("SELECT version_num FROM alembic_version"))


def upgrade(store: Store, revision: str = "heads") -> None:
    """Bring the schema to the head (or `revision`: tests of a data migration), in one write transaction
    (two processes starting at once take turns). A SQLite store made before Alembic first gets the
    legacy migrations it lacks and is stamped at the baseline."""
    with store.transaction():
        config = _alembic(store)
        if store.backend == "sqlite" and not sa.inspect(store.conn).has_table("alembic_version"):
            raw = store.conn.connection.dbapi_connection
            if store_legacy.is_legacy(raw):  # type: ignore[arg-type]
                store_legacy.complete(raw)  # type: ignore[arg-type]
                command.stamp(config, BASELINE)
        command.upgrade(config, revision)


def describe_error(exc: BaseException, secret: Optional[str] = None) -> str:
    """The database's own words for what went wrong (first line), without SQLAlchemy's statement and
    parameters: fit for a log or a person. `secret` (the password) is blanked should a driver quote it."""
    cause = getattr(exc, "orig", None) or exc
    lines = str(cause).strip().splitlines()
    said = lines[0] if lines else type(cause).__name__
    return said.replace(secret, "***") if secret else said


def open_store(url: Union[str, URL]) -> Store:
    """Open the store at `url` (a SQLAlchemy URL: `sqlite:///idops.db`, `postgresql+psycopg://…`) and
    bring its schema to the newest revision (a store made before Alembic is upgraded in place first).
    StoreError (the database's words, never a password) when it can't be reached or used."""
    secret = sa.make_url(url).password
    try:
        store = connect(url)
    except sa.exc.SQLAlchemyError as exc:
        raise StoreError(describe_error(exc, str(secret) if secret else None)) from None
    try:
        upgrade(store)
    except sa.exc.SQLAlchemyError as exc:
        store.close()
        raise StoreError(describe_error(exc, str(secret) if secret else None)) from None
    except BaseException:
        store.close()
        raise
    return store


def open_db(path: Union[str, os.PathLike[str]]) -> Store:
    """`open_store` on a SQLite file."""
    return open_store(sqlite_url(path))


def _file_problem(path: str) -> Optional[str]:
    """Why `path` can't hold a SQLite store (None when it is, or can become, a writable regular file)."""
    file = Path(path)
    try:
        if file.exists():
            if not file.is_file():
                return "is not a regular file (a directory or a device): name a database file"
            if not os.access(file, os.R_OK | os.W_OK):
                return "is not readable and writable by idops"
            return None
        folder = file.parent
        if not folder.is_dir():
            return "names a directory that does not exist"
        if not os.access(folder, os.W_OK | os.X_OK):
            return "is in a directory idops can't write to"
    except OSError as exc:
        return f"can't be used ({exc.strerror})"
    return None


def _private_file(path: str) -> None:
    """A new SQLite store is made readable by its owner only (SQLite gives its -wal and -shm files the
    same mode): it holds the audit trail, identities' details and slash commands' response URLs. An
    existing one that other users may read is said once in the log, with the fix."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        return
    except FileExistsError:
        pass
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode & 0o077:
        log.warning(
            "the store %s can be read or written by other users (mode %04o): it holds the audit trail and"
            " identities' details; chmod 600 it",
            path,
            mode,
        )


def open_configured(config: Config, environ: Mapping[str, str]) -> Store:
    """The store `[store]` names (`url`, its password from the variable `password_env` names in
    `environ`; else `path`), migrated; ConfigError naming the file and key when it can't be used. The
    password is never in a message."""
    settings = config.store
    if settings.url is None:
        problem = _file_problem(settings.path)
        if problem:
            raise config.error("store.path", problem)
        try:
            _private_file(settings.path)
            return open_db(settings.path)
        except (StoreError, OSError) as exc:
            # e.g. "file is not a database": an existing file that is not idops's store
            raise config.error("store.path", f"cannot be opened as the store ({exc})") from None
    password = None
    if settings.password_env is not None:
        password = environ.get(settings.password_env)
        if password is None:
            raise config.error(
                "store.password_env", f"environment variable {settings.password_env} is not set"
            )
    try:
        return open_store(postgresql_url(settings.url, password))
    except StoreError as exc:
        raise config.error("store.url", f"cannot open the store ({exc})") from None

"""Copy a SQLite store into an empty PostgreSQL one (`idops store migrate`): every table of the schema,
rows unchanged, then the audit chain verified where it landed.

The rules:

- The source is read from a snapshot: SQLite's backup API copies the live file, in one step under one
  read transaction, into a temporary file, so a running `idops serve` keeps writing and the copy is
  still one consistent moment. The snapshot (never the live file) is then brought to the newest schema,
  so a store of any earlier release can be moved.
- The target is brought to the newest schema (Alembic head) first. Every table the schema has is
  copied (approvals and containments, the audit trail, alert state and outbox, whatever a later
  revision adds) except `NOT_COPIED`, whose rows belong to running processes, not to the installation.
- The copy is one write transaction on the target: parents before children (foreign keys), rows in
  primary-key order, identity sequences moved past the copied ids. Before it commits, each table's
  row count is compared and the audit chain is verified on the target; any failure rolls it all back,
  so the target is either untouched or a whole copy.
- A target whose tables hold rows is refused (`TargetNotEmpty`) unless `replace=True`, which empties
  them inside the same transaction.
- Errors are `CopyError`s with one sentence for a person; nothing here prints, reads the environment
  or knows a password (the caller builds the URL).
"""

from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional, Union

import sqlalchemy as sa
from sqlalchemy.engine import URL

from . import audit
from .store import Store, connect, open_store, sqlite_url, upgrade

#: tables whose rows are not the installation's state but a running process's, with the reason
NOT_COPIED: dict[str, str] = {
    "alembic_version": "the target's own schema revision",
    "claims": "leases held by running replicas: the new ones take their own",
}
#: rows read and written per batch
BATCH = 1000


class CopyError(Exception):
    """The copy can't start or didn't verify; the message is one sentence for a person."""


class SourceError(CopyError):
    """The source is missing or is not an idops SQLite store."""


class TargetNotEmpty(CopyError):
    """The target already holds idops rows (`tables`: name -> row count)."""

    def __init__(self, message: str, tables: dict[str, int]) -> None:
        super().__init__(message)
        self.tables = tables


@dataclass
class CopyReport:
    """What was copied: rows per table in copy order, the snapshot's time and the audit check."""

    snapshot_at: datetime
    tables: dict[str, int] = field(default_factory=dict)
    audit: str = ""
    replaced: dict[str, int] = field(default_factory=dict)


def checked_source(path: Union[str, os.PathLike[str]]) -> Path:
    """`path` as a Path when it names an existing file; SourceError otherwise."""
    source = Path(path)
    if not source.exists():
        raise SourceError(f"no SQLite store at {source}")
    if not source.is_file():
        raise SourceError(f"{source} is not a file")
    return source


@contextlib.contextmanager
def sqlite_snapshot(path: Union[str, os.PathLike[str]]) -> Iterator[tuple[Path, datetime]]:
    """A consistent copy of the SQLite store at `path` in a temporary file (removed afterwards), taken
    with SQLite's backup API over a read-only connection: the live file is never written."""
    source = checked_source(path)
    with tempfile.TemporaryDirectory(prefix="idops-migrate-") as scratch:
        copy = Path(scratch) / "snapshot.db"
        try:
            live = sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
        except sqlite3.Error as exc:
            raise SourceError(f"cannot open {source} ({exc})") from exc
        try:
            target = sqlite3.connect(copy)
            try:
                # pages=-1: the whole database in one step, under one read transaction (a writer
                # elsewhere neither blocks it nor tears it)
                live.backup(target, pages=-1)
                taken = datetime.now(timezone.utc)
            finally:
                target.close()
        except sqlite3.DatabaseError as exc:  # "file is not a database", a locked or damaged file
            raise SourceError(f"cannot read {source} as a SQLite store ({exc})") from exc
        finally:
            live.close()
        yield copy, taken


def _tables(store: Store) -> list[sa.Table]:
    """The store's tables, parents before children (foreign keys), reflected from the database."""
    metadata = sa.MetaData()
    metadata.reflect(bind=store.conn)
    return list(metadata.sorted_tables)


def _order(table: sa.Table) -> list[sa.Column[Any]]:
    """Primary-key order (alert_seen has none), else every column: a stable read order."""
    return list(table.primary_key.columns) or list(table.columns)


def _count(store: Store, table: sa.TableClause) -> int:
    return int(store.conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


@functools.cache
def schema_tables() -> frozenset[str]:
    """The names of the tables the newest schema has, less NOT_COPIED (asked of an in-memory store)."""
    scratch = open_store("sqlite://")
    try:
        with scratch.transaction(lock=False):
            return frozenset(sa.inspect(scratch.conn).get_table_names()) - set(NOT_COPIED)
    finally:
        scratch.close()


def occupied(target: Store) -> dict[str, int]:
    """idops tables of the target (at whatever revision) holding rows, with their counts; call inside
    a transaction. Other applications' tables in the same database are not looked at."""
    present = set(sa.inspect(target.conn).get_table_names()) & schema_tables()
    counts = {name: _count(target, sa.table(name)) for name in sorted(present)}
    return {name: count for name, count in counts.items() if count}


def _refuse_occupied(found: dict[str, int]) -> None:
    listed = ", ".join(f"{name} ({count} rows)" for name, count in sorted(found.items()))
    raise TargetNotEmpty(f"the target database already holds idops data: {listed}", found)


def _is_idops_store(path: Path) -> bool:
    """Whether the SQLite file at `path` was made by idops (Alembic's table or sqlite-utils' one)."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    return bool(names & {"alembic_version", "_sqlite_migrations"})


def _rows(source: Store, table: sa.Table, columns: list[str]) -> Iterator[list[dict[str, Any]]]:
    """The source table's rows (only `columns`) in batches of BATCH, streamed from one cursor."""
    query = sa.select(*(table.c[name] for name in columns)).order_by(*_order(table))
    result = source.conn.execution_options(yield_per=BATCH).execute(query)
    for batch in result.mappings().partitions(BATCH):
        yield [dict(row) for row in batch]


def _advance_sequences(target: Store, table: sa.Table) -> None:
    """Move an identity/serial column's sequence past the copied ids, so new rows don't collide."""
    for column in table.primary_key.columns:
        sequence = target.conn.execute(
            sa.text("SELECT pg_get_serial_sequence(:table, :column)"),
            {"table": table.name, "column": column.name},
        ).scalar()
        if sequence:
            highest = f"SELECT coalesce(max({column.name}), 0) + 1 FROM {table.name}"  # noqa: S608
            target.conn.execute(
                sa.text(f"SELECT setval(:sequence, ({highest}), false)"), {"sequence": sequence}
            )


def copy_store(
    source: Store,
    target: Store,
    *,
    replace: bool = False,
    snapshot_at: Optional[datetime] = None,
    progress: Callable[[str, int], None] = lambda table, rows: None,
) -> CopyReport:
    """Copy every table of `source` into `target` (both at the newest schema) in one transaction on
    the target, verifying counts and the audit chain before it commits. `progress(table, rows)` is
    called after each table."""
    report = CopyReport(snapshot_at or datetime.now(timezone.utc))
    ok, _, message = audit.verify(source)
    if not ok:
        raise CopyError(
            f"the source's audit chain does not verify ({message}); nothing was copied: "
            "check it with `idops audit verify` on the old installation"
        )
    sources = {table.name: table for table in _tables(source)}
    with target.transaction():
        targets = [table for table in _tables(target) if table.name not in NOT_COPIED]
        missing = [table.name for table in targets if table.name not in sources]
        if missing:
            raise CopyError(
                f"the source has no table {', '.join(missing)} after its upgrade; nothing was copied"
            )
        found = occupied(target)
        if found and not replace:
            _refuse_occupied(found)
        for table in reversed(targets):  # children first
            if table.name in found:
                target.conn.execute(table.delete())
        report.replaced = found
        for table in targets:
            columns = [column.name for column in table.columns if column.name in sources[table.name].columns]
            copied = 0
            for batch in _rows(source, sources[table.name], columns):
                try:
                    target.conn.execute(table.insert(), batch)
                except sa.exc.DBAPIError as exc:
                    first = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
                    raise CopyError(
                        f"table {table.name}: a row after the first {copied} could not be written ({first}); "
                        "nothing was copied"
                    ) from exc
                copied += len(batch)
            if target.backend == "postgresql":
                _advance_sequences(target, table)
            expected, landed = _count(source, sources[table.name]), _count(target, table)
            if landed != expected:
                raise CopyError(
                    f"table {table.name}: {landed} rows arrived of {expected}; nothing was copied"
                )
            report.tables[table.name] = landed
            progress(table.name, landed)
        ok, bad_row, message = audit.verify(target)
        if not ok:
            raise CopyError(
                f"the audit chain does not verify after the copy: {message} (first bad row: {bad_row}); "
                "nothing was copied"
            )
        report.audit = message
    return report


def migrate(
    source_path: Union[str, os.PathLike[str]],
    target_url: Union[str, URL],
    *,
    replace: bool = False,
    progress: Callable[[str, int], None] = lambda table, rows: None,
) -> CopyReport:
    """Snapshot the SQLite store at `source_path`, bring the snapshot and the target at `target_url`
    to the newest schema, refuse a non-empty target (unless `replace`), copy and verify. The target is
    reached and checked before the snapshot is taken, and left unchanged when it is refused."""
    checked_source(source_path)
    target = connect(target_url)
    try:
        with target.transaction(lock=False):
            found = occupied(target)
        if found and not replace:
            _refuse_occupied(found)
        with sqlite_snapshot(source_path) as (snapshot, taken):
            if not _is_idops_store(snapshot):
                raise SourceError(
                    f"{source_path} is a SQLite database but not an idops store (no idops tables)"
                )
            source = open_store(sqlite_url(snapshot))
            try:
                upgrade(target)
                with source.transaction(lock=False):
                    return copy_store(source, target, replace=replace, snapshot_at=taken, progress=progress)
            finally:
                source.close()
    finally:
        target.close()

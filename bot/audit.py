"""The audit trail: an append-only table whose rows are hash-chained, so an edit or a removal shows.

Each row's `hash` is sha256(prev_hash + canonical JSON of the row's other columns); the first row's
`prev_hash` is 64 zeros. Rows are appended inside the caller's transaction (see `transaction`), next to
the state change they describe. Details never hold secrets: callers pass ids, names and outcomes only.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import IO, Any, Optional

from .store import Store

GENESIS = "0" * 64
COLUMNS = ("id", "at", "actor", "event", "request_id", "connector", "identity_id", "action", "detail")
EXPORT_COLUMNS = (*COLUMNS, "prev_hash", "hash")
FORMATS = ("jsonl", "csv")


@contextlib.contextmanager
def transaction(db: Store) -> Iterator[Store]:
    """The store's write transaction (`Store.transaction`: BEGIN IMMEDIATE on SQLite, the write lock on
    PostgreSQL), so two writers never interleave a read-then-write, e.g. the chain head or a
    compare-and-set. Inside an open transaction it nests as a savepoint."""
    with db.transaction():
        yield db


def iso(moment: datetime) -> str:
    """UTC ISO 8601 with microseconds: one fixed width, so text order is time order."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds")


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def row_hash(row: dict[str, Any], prev_hash: str) -> str:
    """The hash a row must carry: covers the previous row's hash and every column of this one."""
    body = {key: row[key] for key in COLUMNS}
    return hashlib.sha256((prev_hash + _canonical(body)).encode("utf-8")).hexdigest()


def append(
    db: Store,
    *,
    at: datetime,
    actor: str,
    event: str,
    request_id: Optional[str] = None,
    connector: Optional[str] = None,
    identity_id: Optional[str] = None,
    action: Optional[str] = None,
    detail: Optional[dict[str, Any]] = None,
) -> dict[str, Any]:
    """Append one chained row; call inside `transaction(db)` so the head can't move underneath."""
    if not db.in_transaction:
        raise RuntimeError("audit.append must run inside audit.transaction(db)")
    head = db.execute("SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1").fetchone()
    prev_id, prev_hash = (head[0], head[1]) if head else (0, GENESIS)
    row: dict[str, Any] = {
        "id": prev_id + 1,
        "at": iso(at),
        "actor": actor,
        "event": event,
        "request_id": request_id,
        "connector": connector,
        "identity_id": identity_id,
        "action": action,
        "detail": _canonical(detail or {}),
    }
    row["prev_hash"] = prev_hash
    row["hash"] = row_hash(row, prev_hash)
    db.insert("audit", row)
    return row


PAGE = 1000  # rows read per query while verifying or exporting: memory stays flat on a long trail


def _rows(db: Store, where: str = "", params: tuple = ()) -> Iterator[dict[str, Any]]:
    columns = ", ".join(EXPORT_COLUMNS)
    after = -1
    while True:
        page = list(
            db.query(
                f"SELECT {columns} FROM audit WHERE id > ? {where} ORDER BY id LIMIT ?",  # noqa: S608
                (after, *params, PAGE),
            )
        )
        yield from page
        if len(page) < PAGE:
            return
        after = page[-1]["id"]


def verify(db: Store) -> tuple[bool, Optional[int], str]:
    """Check every row's hash and link; returns (ok, id of the first bad row, a sentence saying why)."""
    prev_hash, prev_id, count = GENESIS, 0, 0
    for row in _rows(db):
        if row["id"] != prev_id + 1:
            return False, row["id"], f"audit row {row['id']}: row {prev_id + 1} is missing (removed?)"
        if row["prev_hash"] != prev_hash:
            return (
                False,
                row["id"],
                f"audit row {row['id']}: does not link to row {prev_id} (removed or edited?)",
            )
        if row_hash(row, prev_hash) != row["hash"]:
            return False, row["id"], f"audit row {row['id']}: contents do not match its hash (edited?)"
        prev_hash, prev_id, count = row["hash"], row["id"], count + 1
    return True, None, f"audit chain intact: {count} rows"


def for_identity(
    db: Store, connector: Optional[str], identity_id: str, *, limit: int = 20
) -> list[dict[str, Any]]:
    """Rows about one identity (any connector when `connector` is None), newest first, detail parsed."""
    where, params = "WHERE identity_id = ?", [identity_id]
    if connector is not None:
        where += " AND connector = ?"
        params.append(connector)
    rows = db.query(
        f"SELECT {', '.join(COLUMNS)} FROM audit {where} ORDER BY id DESC LIMIT ?",  # noqa: S608
        [*params, limit],
    )
    return [{**row, "detail": json.loads(row["detail"])} for row in rows]


def export(db: Store, out: IO[str], *, since: Optional[datetime] = None, fmt: str = "jsonl") -> int:
    """Write rows at or after `since` to `out` as JSON lines or CSV (for a SIEM); returns the count."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r} (expected one of: {', '.join(FORMATS)})")
    where, params = ("AND at >= ?", (iso(since),)) if since else ("", ())
    count = 0
    writer = csv.DictWriter(out, fieldnames=EXPORT_COLUMNS) if fmt == "csv" else None
    if writer is not None:
        writer.writeheader()
    for row in _rows(db, where, params):
        if writer is not None:
            writer.writerow(row)
        else:
            out.write(json.dumps({**row, "detail": json.loads(row["detail"])}, ensure_ascii=False) + "\n")
        count += 1
    return count

"""`idops store migrate`: move a running installation's SQLite store into an empty PostgreSQL database.

    idops store migrate --from sqlite:/var/lib/idops/idops.db \\
        --to postgresql://idops@db.example.com:5432/idops --password-env IDOPS_DB_PASSWORD

With `--config idops.toml` (the replicas' config), its `[store] url` is the target and its
`[store] password_env` the password's variable, unless `--to` / `--password-env` say otherwise. The
password comes only from the environment; a URL carrying one is refused, since a command line shows in the
process list and the shell's history. Nothing printed ever holds the password. Every failure is one
line on stderr naming what is wrong (exit status 2: the arguments or the source; 1: the target or the
copy), never a traceback; the copy itself (bot/store_copy.py) is all or nothing.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Optional

import sqlalchemy as sa
from alembic.util import CommandError
from sqlalchemy.engine import URL

from .config import ConfigError, load_config
from .store import StoreError, postgresql_url
from .store_copy import CopyError, SourceError, TargetNotEmpty, migrate

PROG = "idops store migrate"
TO_SHAPE = "postgresql://user@host:port/database"


class UsageError(Exception):
    """A bad argument or environment: exit status 2."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="idops store", description="Manage the idops store.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="migrate")
    move = sub.add_parser(
        "migrate",
        help="copy a SQLite store (approvals, audit trail, alert state) into an empty PostgreSQL database",
        description="Copy a SQLite store into an empty PostgreSQL database, brought to the newest schema. "
        "Safe while idops serve runs on the SQLite store: the copy is of one consistent snapshot, so rows "
        "written after it are not in it.",
    )
    move.add_argument("--from", dest="source", required=True, metavar="sqlite:PATH", help="the SQLite store")
    move.add_argument(
        "--to",
        dest="target",
        metavar=TO_SHAPE,
        help="the PostgreSQL database (default: --config's [store] url)",
    )
    move.add_argument(
        "--password-env",
        metavar="VAR",
        help="environment variable holding the role's password (default: --config's [store] password_env)",
    )
    move.add_argument("--config", help="the idops.toml of the replicas: its [store] url and password_env")
    move.add_argument(
        "--replace",
        action="store_true",
        help="empty the target's idops tables first (they are replaced in the same transaction)",
    )
    return parser


def source_path(value: str) -> str:
    """`sqlite:PATH` (or SQLAlchemy's `sqlite:///PATH`) -> PATH."""
    if not value.startswith("sqlite:"):
        raise UsageError(
            "--from must be sqlite:PATH, the SQLite store's file (e.g. sqlite:/var/lib/idops/idops.db)"
        )
    path = value[len("sqlite:") :]
    if path.startswith("//"):
        try:
            path = sa.make_url(value).database or ""
        except sa.exc.ArgumentError:
            path = ""
    if not path:
        raise UsageError("--from names no file: write sqlite:PATH (e.g. sqlite:/var/lib/idops/idops.db)")
    return path


def target_url(
    value: str, password_env: Optional[str], environ: Mapping[str, str], named_by: str = "--password-env"
) -> URL:
    """The PostgreSQL URL with the password from `password_env`; UsageError naming what is wrong (the
    value itself is shown only once parsed, without a password)."""
    try:
        parsed = sa.make_url(value)
    except sa.exc.ArgumentError:
        raise UsageError(f"--to is not a database URL: expected {TO_SHAPE}") from None
    if parsed.drivername == "postgres":  # the short scheme libpq also takes
        parsed = parsed.set(drivername="postgresql")
    if parsed.drivername not in ("postgresql", "postgresql+psycopg"):
        raise UsageError(f"--to must be a PostgreSQL URL ({TO_SHAPE}), not {parsed.drivername}://…")
    if parsed.password is not None:
        raise UsageError(
            "--to must not carry the password (a command line shows in the process list and shell history): "
            "put it in an environment variable and name it with --password-env"
        )
    if not parsed.database:
        raise UsageError(f"--to names no database: expected {TO_SHAPE}")
    if not parsed.host:
        raise UsageError(f"--to names no host: expected {TO_SHAPE}")
    password = None
    if password_env:
        password = environ.get(password_env)
        if password is None:
            raise UsageError(f"environment variable {password_env} (from {named_by}) is not set")
    return postgresql_url(parsed.render_as_string(hide_password=False), password)


def shown(url: URL) -> str:
    """The URL as printed: never the password."""
    # (URL.set ignores password=None: _replace drops it)
    return url._replace(drivername="postgresql", password=None).render_as_string()


# libpq's wording around the server's own message: 'connection failed: connection to server at "h"
# (addr), port p failed: FATAL:  password authentication failed for user "u"'
_LIBPQ_PREFIX = re.compile(
    r'^(?:connection failed: )?(?:connection to server at "[^"]*"(?: \([^)]*\))?, port \d+ failed: )?'
)


def database_problem(exc: BaseException, password: Optional[str]) -> str:
    """One line for a database error: the server's or libpq's first line, without the password."""
    orig = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(orig).splitlines() if line.strip()]
    first = _LIBPQ_PREFIX.sub("", lines[0] if lines else type(orig).__name__)
    first = re.sub(r"^FATAL:\s+", "", first)
    if password:
        first = first.replace(password, "***")
    hints = (
        ("password authentication failed", "wrong password or role"),
        ("no password supplied", "the server asks for a password: name its variable with --password-env"),
        ("Connection refused", "is the server running and listening on that host and port?"),
        ("timeout expired", "no answer from the server within 10 s"),
        ('database "', "create it first, owned by the idops role (README: Running more than one replica)"),
        ("permission denied", "the role must own the database (CREATE DATABASE … OWNER …)"),
    )
    hint = next((text for key, text in hints if key in first), "")
    return f"{first} ({hint})" if hint else first


def _progress(table: str, rows: int) -> None:
    print(f"  {table:<24} {rows:>9,} rows", flush=True)


def _target(args: argparse.Namespace) -> tuple[str, Optional[str], str]:
    """(the target URL, the password variable, what the variable's name came from): the options,
    else the config's [store] url and password_env."""
    target, password_env, named_by = args.target, args.password_env, "--password-env"
    if args.config:
        store = load_config(args.config).store
        if target is None:
            if store.url is None:
                raise UsageError(f"{args.config} has no [store] url: name the database with --to")
            target = store.url
        if password_env is None and store.password_env is not None:
            password_env, named_by = store.password_env, f"store.password_env in {args.config}"
    if target is None:
        raise UsageError(
            f"--to names the PostgreSQL database ({TO_SHAPE}), or --config a config with [store] url"
        )
    return target, password_env, named_by


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    path = source_path(args.source)
    target, password_env, named_by = _target(args)
    url = target_url(target, password_env, environ, named_by)
    where = shown(url)
    try:
        report = migrate(path, url, replace=args.replace, progress=_progress)
    except TargetNotEmpty as exc:
        print(
            f"{PROG}: {exc}; nothing was copied (--replace empties those tables and copies over them)",
            file=sys.stderr,
        )
        return 1
    except SourceError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    except CopyError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    except sa.exc.DBAPIError as exc:  # connecting, the schema upgrade or a statement on the target
        print(f"{PROG}: {where}: {database_problem(exc, url.password)}", file=sys.stderr)
        return 1
    except (StoreError, CommandError) as exc:  # e.g. a target at a revision this idops does not know
        print(f"{PROG}: {where}: {exc}", file=sys.stderr)
        return 1
    total = sum(report.tables.values())
    replaced = f", replacing {sum(report.replaced.values()):,} rows" if report.replaced else ""
    print(f"copied {total:,} rows from {path} into {where}{replaced}")
    print(f"{report.audit} (verified in the target)")
    print(
        f"The copy is the store as it was at {report.snapshot_at:%Y-%m-%d %H:%M:%S} UTC; rows written to it "
        "later are not in the copy. For the final copy, stop idops serve and run this again with --replace; "
        "then set [store] url (and password_env) in the config and start the replicas."
    )
    return 0


def main(argv: Optional[Sequence[str]] = None, environ: Optional[Mapping[str, str]] = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return run(args, os.environ if environ is None else environ)
    except (UsageError, ConfigError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130

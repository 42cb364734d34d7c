"""`idops audit verify|export`: check the hash chain, or write the trail for a SIEM."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Optional

from . import audit
from .config import ConfigError, load_config
from .store import open_configured


def _since(value: str) -> datetime:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not an ISO 8601 date or time (e.g. 2026-11-01 or 2026-11-01T09:00:00Z)"
        ) from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="idops audit", description="Verify or export the audit trail.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="verify|export")
    verify = sub.add_parser("verify", help="check that no audit row was edited or removed")
    verify.add_argument("--config", required=True)
    export = sub.add_parser("export", help="write audit rows as JSON lines or CSV")
    export.add_argument("--config", required=True)
    export.add_argument(
        "--since", type=_since, help="only rows at or after this time (ISO 8601, UTC if no offset)"
    )
    export.add_argument("--format", choices=audit.FORMATS, default="jsonl")
    export.add_argument("--output", help="file to write (default: standard output)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"idops audit: {exc}", file=sys.stderr)
        return 2
    path = config.store.path
    if config.store.url is None and not Path(path).is_file():
        print(f"idops audit: no store at {path} ([store] path in {args.config})", file=sys.stderr)
        return 2
    try:
        db = open_configured(config, os.environ)
    except ConfigError as exc:  # e.g. "file is not a database": [store] path names some other file
        print(f"idops audit: {exc}", file=sys.stderr)
        return 2
    try:
        if args.command == "verify":
            ok, _, message = audit.verify(db)
            print(message, file=sys.stdout if ok else sys.stderr)
            return 0 if ok else 1
        with contextlib.ExitStack() as stack:
            out = sys.stdout
            if args.output:
                try:
                    out = stack.enter_context(open(args.output, "w", encoding="utf-8", newline=""))
                except OSError as exc:
                    print(f"idops audit: cannot write {args.output} ({exc.strerror})", file=sys.stderr)
                    return 2
            count = audit.export(db, out, since=args.since, fmt=args.format)
        print(f"{count} audit rows exported", file=sys.stderr)
        return 0
    finally:
        db.close()

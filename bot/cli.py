"""`idops` command line: the entry point that reads config and environment, then calls library code.

Subcommands owned by other modules (serve, manifest, sim, audit, store, demo) take their own arguments:
this module only routes to their `main(argv) -> int`.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import re
import sys
from collections.abc import Sequence
from typing import Optional

from connectors import ConfigurationError, ConnectorError, RiskLevel

from .config import Config, ConfigError, ConnectorEntry, load_config

# subcommand -> module whose main(argv) handles it
DELEGATED = {
    "serve": "bot.server",
    "manifest": "bot.manifest",
    "audit": "bot.audit_cli",
    "store": "bot.store_cli",
}
# `idops sim …` and `idops demo` run the stand-ins, development tools that live in a source checkout
# (the top-level `standins` package) and are not installed with idops: handed over by module name,
# so bot/ never imports them.
STANDINS = "standins.cli"
STANDIN_COMMANDS = ("sim", "demo")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="idops", description="Respond to risky identities from Slack.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = sub.add_parser("check", help="check connectivity and credentials of every configured connector")
    check.add_argument("--config", required=True)

    identities = sub.add_parser("identities", help="list or get identities through a connector")
    isub = identities.add_subparsers(dest="identities_command", required=True, metavar="list|get")
    listing = isub.add_parser("list", help="stream identities, optionally filtered")
    listing.add_argument("--config", required=True)
    listing.add_argument("--connector", required=True)
    listing.add_argument("--risk-level", type=_risk_level)
    listing.add_argument("--tenant")
    listing.add_argument(
        "--privileged",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="only privileged identities (--no-privileged: only the others)",
    )
    listing.add_argument("--limit", type=_positive, default=None, help="stop after this many")
    listing.add_argument("--json", action="store_true", help="print a JSON array")
    get = isub.add_parser("get", help="one identity by id")
    get.add_argument("--config", required=True)
    get.add_argument("--connector", required=True)
    get.add_argument("id")
    get.add_argument("--json", action="store_true")

    for name, help_text in (
        ("serve", "run the Slack bot (HTTP or Socket Mode)"),
        ("manifest", "print a Slack app manifest"),
        ("audit", "verify or export the audit trail"),
        ("store", "copy a SQLite store into PostgreSQL (store migrate)"),
        ("sim", "run a local stand-in (homebase, sailpoint, slack): source checkout only"),
        ("demo", "run the whole loop locally with stand-ins: source checkout only"),
    ):
        delegated = sub.add_parser(name, help=help_text, add_help=False)
        delegated.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def _positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, not {value!r}")
    return int(value)


def _risk_level(value: str) -> RiskLevel:
    try:
        return RiskLevel.parse(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# Control characters and bidi overrides from a provider must not move the cursor, recolour the
# terminal or reorder what is shown: they are printed as escapes.
_UNPRINTABLE = {
    code: f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    for code in [*range(0x20), *range(0x7F, 0xA0), *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
}


def _printable(value: object) -> str:
    return str(value).translate(_UNPRINTABLE)


#: connectors checked at once by `idops check` (each is one or two requests to its own provider)
CHECK_CONCURRENCY = 32
DEFAULT_TIMEOUT = 10.0
CLOSE_SECONDS = 1.0


def _timeout_of(entry: ConnectorEntry) -> float:
    """The connector's `timeout` setting in seconds, the most one check may take (its own default
    when unset or unreadable: the connector itself then refuses the value, naming it)."""
    value = (entry.model_extra or {}).get("timeout", DEFAULT_TIMEOUT)
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return DEFAULT_TIMEOUT
    return seconds if 0 < seconds <= 300 else DEFAULT_TIMEOUT


async def _checked(entry: ConnectorEntry) -> tuple[bool, str]:
    try:
        async with entry.build(os.environ) as connector:
            result = await connector.check()
    except (ConnectorError, ConfigError) as exc:
        # the line already names the connector
        return False, re.sub(rf"^connector '{re.escape(entry.name)}'( \(\w+\))?: ", "", str(exc))
    return result.ok, result.message


async def _check_one(entry: ConnectorEntry, slots: asyncio.Semaphore) -> tuple[bool, str]:
    limit = _timeout_of(entry)
    async with slots:
        # asyncio.wait, not asyncio.timeout: the connector's own request timeout firing at the same
        # moment turns the cancellation into a TimeoutError it retries, and the deadline would be lost
        task = asyncio.ensure_future(_checked(entry))
        done, _ = await asyncio.wait({task}, timeout=limit)
        if task in done:
            return task.result()
        task.cancel()
        await asyncio.wait({task}, timeout=CLOSE_SECONDS)  # let it close its connection
        return False, f"no answer within {limit:g} s (its timeout setting)"


async def _check(config: Config) -> int:
    """Check every connector concurrently (at most CHECK_CONCURRENCY at once, each within its
    timeout) and print one line each, in config order."""
    if not config.connectors:
        print("no [[connectors]] configured", file=sys.stderr)
        return 1
    slots = asyncio.Semaphore(CHECK_CONCURRENCY)
    results = await asyncio.gather(*(_check_one(entry, slots) for entry in config.connectors))
    for entry, (ok, message) in zip(config.connectors, results):
        print(f"{'ok  ' if ok else 'FAIL'} {entry.name} ({entry.kind}): {_printable(message)}")
    return 0 if all(ok for ok, _ in results) else 1


def _line(identity_dict: dict) -> str:
    score = identity_dict["risk_score"]
    return "\t".join(
        _printable(part)
        for part in (
            identity_dict["id"],
            identity_dict["email"] or "-",
            identity_dict["display_name"] or "-",
            "?" if score is None else score,
            identity_dict["risk_level"] or "unknown",
            identity_dict["status"] or "-",
        )
    )


async def _identities_list(config: Config, args: argparse.Namespace) -> int:
    count = 0
    async with config.connector(args.connector).build(os.environ) as connector:
        async for identity in connector.list_identities(
            risk_level=args.risk_level, tenant_id=args.tenant, privileged=args.privileged
        ):
            data = identity.to_dict()
            if args.json:
                # streamed element by element so a million identities never sit in memory; "[" only
                # once the first page is in, so a connector that fails at once leaves stdout empty
                sys.stdout.write(("," if count else "[") + "\n" + json.dumps(data))
            else:
                print(_line(data))
            count += 1
            if args.limit is not None and count >= args.limit:
                break
    if args.json:
        sys.stdout.write("\n]\n" if count else "[]\n")
    else:
        print(f"{count} identities", file=sys.stderr)
    return 0


async def _identities_get(config: Config, args: argparse.Namespace) -> int:
    async with config.connector(args.connector).build(os.environ) as connector:
        identity = await connector.get_identity(args.id)
    if args.json:
        print(json.dumps([identity.to_dict()], indent=2))
    else:
        for key, value in identity.to_dict().items():
            print(f"{key:20} {_printable(value)}")
    return 0


def _standins(words: list[str]) -> int:
    try:
        standins = importlib.import_module(STANDINS)
    except ModuleNotFoundError:
        print(
            f"idops: '{words[0]}' runs the stand-ins, which come with a source checkout of idops and are "
            "not installed with it: run it there (make demo, or .venv/bin/idops)",
            file=sys.stderr,
        )
        return 2
    try:
        return int(standins.main(words) or 0)
    except KeyboardInterrupt:
        return 130


def main(argv: Optional[Sequence[str]] = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    if words and words[0] in STANDIN_COMMANDS:
        return _standins(words)
    if words and words[0] in DELEGATED:
        # straight to the module's own parser: REMAINDER would refuse a leading --option (serve --config)
        args = argparse.Namespace(command=words[0], args=words[1:])
    else:
        args = _parser().parse_args(words)
    try:
        if args.command in DELEGATED:
            return int(importlib.import_module(DELEGATED[args.command]).main(args.args) or 0)
        config = load_config(args.config)
        if args.command == "check":
            return asyncio.run(_check(config))
        if args.identities_command == "list":
            return asyncio.run(_identities_list(config, args))
        return asyncio.run(_identities_get(config, args))
    except (ConfigError, ConfigurationError) as exc:
        print(f"idops: {_printable(exc)}", file=sys.stderr)
        return 2
    except ConnectorError as exc:
        print(f"idops: {_printable(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # the reader went away (`| head`): stop quietly, and keep Python from complaining at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())

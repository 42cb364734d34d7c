"""What the vendor simulators (Entra ID, Google Workspace, Okta, SailPoint) share.

- The admin API's plumbing: a JSON-object body (400 otherwise) and `{"error": …}` 400s.
- The fault queue behind `POST/DELETE /_admin/faults`: a `Fault` record, one parsed from an admin body
  (a clear 400 naming what is wrong), the next one that matches a request, and closing the connection
  for a "drop". What each vendor answers for a fault (its own error body and headers) stays in its
  module: those differ in substance.
- `idops sim X`'s start-up: the options every simulator has, credentials taken from the environment
  or made up for the run, and serving until Ctrl-C after printing where it listens (`print_env`).

HomeBase's simulator keeps its own faults (corrupt fields, per-kind codes): a different record.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable, Collection, Mapping, MutableSequence
from dataclasses import dataclass
from typing import Any, NoReturn, Optional, Union

from aiohttp import web

from standins import print_env, run_until_stopped


@dataclass
class Fault:
    """The next `remaining` API requests whose path starts with `path` ("" = any) and whose method is
    `method` ("" = any) get `kind`; `retry_after` is the Retry-After header of a refusal (None: none)."""

    kind: str
    remaining: int
    retry_after: Optional[int] = 1
    delay: float = 2.0
    path: str = ""
    method: str = ""


async def admin_json(request: web.Request) -> dict:
    """The admin request's body; a 400 unless it is a JSON object."""
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(
            text='{"error": "body must be a JSON object"}', content_type="application/json"
        )
    return body


def admin_error(text: str) -> web.Response:
    return web.json_response({"error": text}, status=400)


def fault_from(
    body: Mapping, kinds: Collection[str], *, retry_after: Optional[int] = 1
) -> Union[Fault, web.Response]:
    """A Fault from an admin body {kind, count, retry_after (null: no header), delay, path, method},
    or the 400 that names what is wrong. `retry_after` is the default when the body has none."""
    if body.get("kind") not in kinds:
        return admin_error(f"kind must be one of {', '.join(kinds)}")
    path, method = body.get("path") or "", body.get("method") or ""
    if not isinstance(path, str) or not isinstance(method, str):
        return admin_error("path and method must be strings")
    try:
        after = body.get("retry_after", retry_after)
        fault = Fault(
            kind=str(body["kind"]),
            remaining=int(body.get("count", 1)),
            retry_after=None if after is None else int(after),
            delay=float(body.get("delay", 2.0)),
            path=path,
            method=method.upper(),
        )
    except (TypeError, ValueError):
        return admin_error("count and retry_after must be integers, delay a number of seconds")
    if fault.remaining < 1 or (fault.retry_after or 0) < 0 or fault.delay < 0:
        return admin_error("count must be 1 or more; retry_after and delay 0 or more")
    return fault


def queue_fault(
    faults: MutableSequence[Fault], body: Mapping, kinds: Collection[str], *, retry_after: Optional[int] = 1
) -> web.Response:
    """`POST /_admin/faults`: queues the fault `body` describes; answers how many are queued (or a 400)."""
    fault = fault_from(body, kinds, retry_after=retry_after)
    if isinstance(fault, web.Response):
        return fault
    faults.append(fault)
    return web.json_response({"queued": len(faults)})


def clear_faults(faults: MutableSequence[Fault]) -> web.Response:
    """`DELETE /_admin/faults`."""
    faults.clear()
    return web.json_response({"queued": 0})


def fault_routes(
    app: web.Application,
    state: web.AppKey[Any],
    kinds: Collection[str],
    *,
    expire: Callable[[Any], Mapping[str, Any]],
    retry_after: Optional[int] = 1,
) -> None:
    """Adds `POST /_admin/faults` (queue_fault; kind "expire_token" calls `expire(app[state])` and
    answers what it returns) and `DELETE /_admin/faults` (clear_faults) for `app[state].faults`."""

    async def add(request: web.Request) -> web.Response:
        current = request.app[state]
        body = await admin_json(request)
        if body.get("kind") == "expire_token":
            return web.json_response(expire(current))
        return queue_fault(current.faults, body, kinds, retry_after=retry_after)

    async def clear(request: web.Request) -> web.Response:
        return clear_faults(request.app[state].faults)

    app.router.add_post("/_admin/faults", add)
    app.router.add_delete("/_admin/faults", clear)


def expire_tokens(state: Any) -> dict[str, int]:
    """`expire` for fault_routes where the state has `expire_tokens()` and `tokens`."""
    state.expire_tokens()
    return {"expired": len(state.tokens)}


def take_fault(faults: MutableSequence[Fault], method: str, path: str) -> Optional[Fault]:
    """The first queued fault for this request, one use of it spent (gone when none is left)."""
    for fault in faults:
        if path.startswith(fault.path) and fault.method in ("", method):
            fault.remaining -= 1
            if fault.remaining <= 0:
                faults.remove(fault)
            return fault
    return None


async def fault_answer(
    request: web.Request,
    faults: MutableSequence[Fault],
    apply: Callable[[web.Request, Fault], Awaitable[Optional[web.StreamResponse]]],
) -> Optional[web.StreamResponse]:
    """The vendor's answer (`apply`) to the next fault queued for this request; None when there is
    none, or when it only delays the request (which then goes on as usual)."""
    fault = take_fault(faults, request.method, request.path)
    return None if fault is None else await apply(request, fault)


def drop_connection(request: web.Request) -> NoReturn:
    """A "drop" fault: close the connection before any byte of an answer is written."""
    assert request.transport is not None
    request.transport.close()
    raise asyncio.CancelledError


# --- `idops sim X` --------------------------------------------------------------------------------------


def simulator_parser(
    vendor: str, doc: str, *, port: int, identities_help: Optional[str] = None
) -> argparse.ArgumentParser:
    """`idops sim <vendor>`'s parser with the options every simulator has: --host, --port, --identities,
    --seed; `doc` is the module docstring (its first line describes the command)."""
    parser = argparse.ArgumentParser(prog=f"idops sim {vendor}", description=doc.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=port, help="0 picks a free port (printed at start)")
    parser.add_argument("--identities", type=int, default=300, help=identities_help)
    parser.add_argument("--seed", type=int, default=0)
    return parser


def credentials(
    environ: Mapping[str, str], defaults: Mapping[str, Callable[[], str]]
) -> tuple[dict[str, str], dict[str, str]]:
    """(every credential by name, the ones made up): each is taken from `environ` (the entry point
    passes os.environ) or, when unset or empty, made up by its default for this run."""
    made_up = {name: make() for name, make in defaults.items() if not environ.get(name)}
    return {name: environ.get(name) or made_up[name] for name in defaults}, made_up


def run_simulator(
    app: web.Application,
    args: argparse.Namespace,
    *,
    vendor: str,
    banner: str,
    variables: Callable[[str], Mapping[str, str]],
    made_up: Mapping[str, str],
) -> int:
    """Serves `app` on args.host:args.port until Ctrl-C; once it listens, prints `banner` (a comment for
    people: no secrets) and `variables(base_url)` plus the credentials `made_up` for this run."""

    def announce(url: str) -> None:
        # the made-up credentials are printed on purpose: a person configures the connector with them
        print_env(banner, {**variables(url), **made_up})

    return run_until_stopped(app, args.host, args.port, prog=f"idops sim {vendor}", announce=announce)

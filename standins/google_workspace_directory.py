"""The Google Workspace stand-in's Directory endpoints (users.list with paging, `query`, `orderBy` and
`fields`; users.get, patch and signOut), Google's JSON error body, and the app key of its state;
`standins/google_workspace.py` serves them with the token endpoint, Alert Center and the admin API.

Every API answer is written as Google writes it for the standard parameter `prettyPrint` (default
true, as the discovery documents say: "Returns response with indentations and line breaks"): indented
by two spaces, `"key": value`, one member or element a line, ending with a newline (the form of
Google's own answers), unless the request says `prettyPrint=false`, then compact (no whitespace).
Users are cached already serialized in both forms (`WorkspaceState.user_json`), so a page is joined,
never re-encoded."""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import Sequence
from typing import Any, Optional

from aiohttp import web

from .google_workspace_data import (
    LISTED,
    MAX_RESULTS,
    Clause,
    QueryError,
    WorkspaceState,
    digest,
    matches,
    parse_fields,
    parse_query,
)


def pretty(request: web.Request) -> bool:
    """Whether the answer is indented: Google's `prettyPrint`, true unless the request says false."""
    return request.query.get("prettyPrint", "true").lower() != "false"


def encode(body: Any, indented: bool) -> bytes:
    """`body` as Google writes JSON: indented (two spaces, a final newline) or compact."""
    if indented:
        return json.dumps(body, indent=2).encode() + b"\n"
    return json.dumps(body, separators=(",", ":")).encode()


def reply(request: web.Request, body: Any, status: int = 200) -> web.Response:
    """A JSON answer in the form the request's `prettyPrint` asks for."""
    return web.Response(body=encode(body, pretty(request)), status=status, content_type="application/json")


def google_error(
    request: web.Request, status: int, message: str, reason: str, *, domain: str = "global"
) -> web.Response:
    """Google's JSON error: `{"error": {code, message, errors: [{message, domain, reason}], status}}`."""
    statuses = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND"}
    statuses.update({429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"})
    body = {
        "error": {
            "code": status,
            "message": message,
            "errors": [{"message": message, "domain": domain, "reason": reason}],
            "status": statuses.get(status, "UNKNOWN"),
        }
    }
    return reply(request, body, status)


def invalid(request: web.Request, message: str) -> web.Response:
    return google_error(request, 400, f"Invalid Input: {message}", "invalid")


STATE = web.AppKey("google_workspace_state", WorkspaceState)


# --- Directory ------------------------------------------------------------------------------------


def page_token(offset: int, query: str) -> str:
    raw = json.dumps({"o": offset, "q": digest(query)[:8]}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def read_page_token(token: str, query: str) -> int:
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        offset, checksum = int(data["o"]), data["q"]
    except (ValueError, KeyError, TypeError):
        raise QueryError("pageToken") from None
    if checksum != digest(query)[:8] or offset < 0:
        raise QueryError("pageToken")
    return offset


def max_results(request: web.Request, name: str, default: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not raw.lstrip("-").isdigit() or not 1 <= int(raw) <= high:
        raise QueryError(f"Invalid value '{raw[:20]}'. Values must be within the range: [1, {high}]")
    return int(raw)


async def list_users(request: web.Request) -> web.Response:
    state = request.app[STATE]
    customer = request.query.get("customer")
    if not customer and not request.query.get("domain"):
        return google_error(request, 400, "Bad Request", "badRequest")
    if customer and customer not in ("my_customer", state.customer_id, state.customer_id.lstrip("C")):
        return google_error(request, 404, "Domain not found.", "notFound")
    if request.query.get("domain") and request.query["domain"] != state.domain:
        return google_error(request, 404, "Domain not found.", "notFound")
    try:
        size = max_results(request, "maxResults", 100, MAX_RESULTS)
        query = request.query.get("query", "")
        clauses = parse_query(query) if query else []
        offset = read_page_token(request.query["pageToken"], query) if request.query.get("pageToken") else 0
        mask = parse_fields(request.query["fields"]) if request.query.get("fields") else {}
    except QueryError as exc:
        return invalid(request, str(exc))
    order = request.query.get("orderBy")
    if order not in (None, "email", "familyName", "givenName"):
        return invalid(request, "orderBy")
    # the users' own sub-mask as canonical text, so projected users are cached per mask
    fields = _mask_text(mask["users"]) if mask.get("users") else ""
    candidates, rest = _candidates(state, clauses)
    if clauses and state.unindexed:
        candidates = [i for i in candidates if i not in state.unindexed]
    if order is not None:
        users = {i: state.user(i) for i in candidates}
        kept = [i for i, u in users.items() if all(matches(c, u) for c in rest)]
        descending = request.query.get("sortOrder", "").upper() == "DESCENDING"
        if order == "email":
            kept.sort(key=lambda i: users[i]["primaryEmail"], reverse=descending)
        else:
            kept.sort(key=lambda i: users[i]["name"][order].casefold(), reverse=descending)
        candidates, rest = kept, []
    if rest:  # clauses no index answers: test each user in listing order up to one past the page
        wanted = itertools.islice(
            (i for i in candidates if all(matches(c, state.user(i)) for c in rest)), offset, offset + size + 1
        )
        page = list(wanted)
        more, page = len(page) > size, page[:size]
    else:
        page = list(candidates[offset : offset + size])
        more = offset + size < len(candidates)
    indented = pretty(request)
    rows = [state.user_json(i, fields, LISTED if indented else None) for i in page]
    members: list[tuple[bytes, bytes]] = []  # (name, value), both serialized
    if not mask or "kind" in mask:
        members.append((b'"kind"', b'"admin#directory#users"'))
    if not mask or "etag" in mask:
        members.append((b'"etag"', b'"\\"' + digest(offset, query)[:20].encode() + b'\\""'))
    if rows and (not mask or "users" in mask):
        listed = b"[\n" + b",\n".join(rows) + b"\n  ]" if indented else b"[" + b",".join(rows) + b"]"
        members.append((b'"users"', listed))
    if more and (not mask or "nextPageToken" in mask):
        members.append((b'"nextPageToken"', f'"{page_token(offset + size, query)}"'.encode()))
    return web.Response(body=_object(members, indented), content_type="application/json")


def _object(members: list[tuple[bytes, bytes]], indented: bool) -> bytes:
    """A JSON object from serialized members, as `encode` would write it."""
    if not members:
        return b"{}\n" if indented else b"{}"
    if indented:
        return b"{\n" + b",\n".join(b"  " + name + b": " + value for name, value in members) + b"\n}\n"
    return b"{" + b",".join(name + b":" + value for name, value in members) + b"}"


def user_reply(request: web.Request, index: int) -> web.Response:
    """One user, the whole of it, as users.get, patch and update answer."""
    state = request.app[STATE]
    body = state.user_json(index, "", 0) + b"\n" if pretty(request) else state.user_json(index)
    return web.Response(body=body, content_type="application/json")


def _mask_text(mask: dict) -> str:
    """A mask tree back as `fields` text (canonical order), the cache key of projected users."""
    return ",".join(key + (f"({_mask_text(sub)})" if sub else "") for key, sub in sorted(mask.items()))


def _candidates(state: WorkspaceState, clauses: list[Clause]) -> tuple[Sequence[int], list[Clause]]:
    """The users a query can match, in listing order, and the clauses still to test on each: an exact
    email names at most one user, an email prefix reads the sorted address index (aliases included)."""
    for clause in clauses:
        rest = [c for c in clauses if c is not clause]
        if clause.field == "email" and clause.op == "=":
            index = state.index_of(clause.value)
            return ([] if index is None else [index]), rest
        if clause.field == "email" and clause.prefix:
            return state.with_address_prefix(clause.value), rest
    return range(state.identities), clauses


def _user_index(request: web.Request) -> Optional[int]:
    return request.app[STATE].index_of(request.match_info["userKey"])


def _not_found(request: web.Request) -> web.Response:
    return google_error(request, 404, "Resource Not Found: userKey", "notFound")


async def get_user(request: web.Request) -> web.Response:
    index = _user_index(request)
    if index is None:
        return _not_found(request)
    return user_reply(request, index)


async def patch_user(request: web.Request) -> web.Response:
    state = request.app[STATE]
    index = _user_index(request)
    if index is None:
        return _not_found(request)
    try:
        body = await request.json()
    except ValueError:
        return invalid(request, "the request body is not JSON")
    if not isinstance(body, dict):
        return invalid(request, "the request body must be a User object")
    for key in ("suspended", "changePasswordAtNextLogin"):
        if key in body and not isinstance(body[key], bool):
            return invalid(request, f"{key} must be true or false")
    state.set_user(index, suspended=body.get("suspended"), change=body.get("changePasswordAtNextLogin"))
    return user_reply(request, index)


async def sign_out(request: web.Request) -> web.Response:
    index = _user_index(request)
    if index is None:
        return _not_found(request)
    request.app[STATE].sign_outs[index] += 1
    return web.Response(status=204)

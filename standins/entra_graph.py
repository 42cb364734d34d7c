"""The Entra simulator's Graph v1.0 answers (the identity platform's are in `standins.entra_login`)."""

from __future__ import annotations

import base64
import functools
import json
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Optional, cast

from aiohttp import web
from yarl import URL

from .entra_login import base_url
from .entra_odata import FilterError, evaluate, parse_filter, pinned_values
from .entra_state import (
    ADVANCED_OPS,
    DEFAULT_SELECT,
    GROUPS,
    MAX_TOP,
    REGISTRATION_FIELDS,
    REGISTRATION_FILTERS,
    RISKY_FILTERS,
    RISKY_MAX_TOP,
    ROLES,
    SERVICE_PRINCIPAL,
    STATE,
    USER_FIELDS,
    USER_FILTERS,
    EntraState,
    iso,
)
from .seed import EPOCH

REGISTRATIONS = "/v1.0/reports/authenticationMethods/userRegistrationDetails"
ROLE_MEMBERS_PAGE = 1000  # a directory role's members come 1,000 a page; $top is not supported

# --- errors ---------------------------------------------------------------------------------------


def graph_error(request: web.Request, status: int, code: str, message: str, **headers: str) -> web.Response:
    request_id = str(uuid.uuid4())
    inner = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"),
        "request-id": request_id,
        "client-request-id": request.headers.get("client-request-id", request_id),
    }
    return web.json_response(
        {"error": {"code": code, "message": message, "innerError": inner}},
        status=status,
        headers={"request-id": request_id, **headers},
    )


def bad_request(request: web.Request, message: str, code: str = "BadRequest") -> web.Response:
    return graph_error(request, 400, code, message)


def not_found(request: web.Request, key: str) -> web.Response:
    return graph_error(
        request,
        404,
        "Request_ResourceNotFound",
        f"Resource '{key[:80]}' does not exist or one of its"
        " queried reference-property objects are not present.",
    )


# --- Graph ----------------------------------------------------------------------------------------


def _select(request: web.Request, allowed: Sequence[str], default: Sequence[str]) -> list[str]:
    raw = request.query.get("$select")
    if raw is None:
        return list(default)
    fields = [part.strip() for part in raw.split(",") if part.strip()]
    for name in fields:
        if name not in allowed:
            raise FilterError(
                f"Could not find a property named '{name[:60]}' on type 'microsoft.graph.user'."
            )
    return fields


def _top(request: web.Request, high: int, default: int) -> int:
    raw = request.query.get("$top")
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= high:
        raise FilterError(
            f"Invalid page size specified: '{raw[:20]}'. Must be between 1 and {high} inclusive."
        )
    return int(raw)


def _project(doc: dict, fields: Sequence[str]) -> dict:
    return {name: doc[name] for name in fields}


def _skip(request: web.Request) -> int:
    raw = request.query.get("$skiptoken")
    if raw is None:
        return 0
    try:
        return int(base64.urlsafe_b64decode(raw.encode() + b"==").decode().split(":")[1])
    except (ValueError, IndexError, UnicodeDecodeError) as exc:
        raise FilterError("The specified page token value has expired or is invalid.") from exc


def _next_link(request: web.Request, position: int) -> str:
    """The same query from `position` on, at the address the client used (an opaque $skiptoken)."""
    token = base64.urlsafe_b64encode(f"X'{uuid.uuid4().hex[:8]}:{position}".encode()).decode().rstrip("=")
    query = {key: value for key, value in request.query.items() if key != "$skiptoken"}
    query["$skiptoken"] = token
    return str(URL(base_url(request)).with_path(request.path).with_query(query))


def _collection(
    request: web.Request, context: str, rows: list, position: Optional[int], count: Optional[int]
) -> web.Response:
    body: dict[str, Any] = {"@odata.context": f"https://graph.microsoft.com/v1.0/$metadata#{context}"}
    if count is not None:
        body["@odata.count"] = count
    if position is not None:
        body["@odata.nextLink"] = _next_link(request, position)
    body["value"] = rows
    return web.json_response(body, dumps=functools.partial(json.dumps, separators=(",", ":")))


def _advanced(request: web.Request, why: str) -> None:
    if request.headers.get("ConsistencyLevel", "").lower() != "eventual":
        raise FilterError(
            f"{why} is only supported with the ConsistencyLevel header set to eventual and $count.",
            "Request_UnsupportedQuery",
        )


async def list_users(request: web.Request) -> web.Response:
    state = request.app[STATE]
    fields = _select(request, USER_FIELDS, DEFAULT_SELECT)
    top = _top(request, MAX_TOP, 100)
    start = _skip(request)
    text = request.query.get("$filter")
    node = parse_filter(text, USER_FILTERS) if text else None
    orderby = request.query.get("$orderby")
    count = request.query.get("$count", "false").lower() == "true"
    if count:
        _advanced(request, "$count")
    if node is not None and (node.ops & ADVANCED_OPS):
        _advanced(request, "This filter")
    if orderby is not None:
        if orderby.split()[0] not in ("displayName", "userPrincipalName"):
            raise FilterError(f"Sorting on '{orderby[:40]}' is not supported.")
        if node is not None:
            _advanced(request, "Sorting with a filter")
    if node is None and orderby is None:
        end = min(start + top, state.users)
        rows = [_project(state.user(i), fields) for i in range(start, end)]
        return _collection(
            request, "users", rows, end if end < state.users else None, state.users if count else None
        )
    pinned = pinned_values(node, ("id", "mail", "userPrincipalName")) if node is not None else None
    candidates: Sequence[int] = range(state.users)
    if pinned is not None:  # exact ids, names or mail addresses: look them up instead of scanning
        found = {state.index_of(value) for value in pinned} | {_mail_index(state, value) for value in pinned}
        candidates = sorted(i for i in found if i is not None)
    docs = [state.user(i) for i in candidates]
    if node is not None:
        docs = [doc for doc in docs if evaluate(node, doc)]
    if orderby is not None:
        name = orderby.split()[0]
        docs.sort(key=lambda doc: (doc[name] or "").lower(), reverse=orderby.endswith(" desc"))
    page = docs[start : start + top]
    more = start + top if start + top < len(docs) else None
    return _collection(
        request, "users", [_project(doc, fields) for doc in page], more, len(docs) if count else None
    )


def _mail_index(state: EntraState, value: str) -> Optional[int]:
    try:
        index = int(value.split("@")[0].rsplit(".", 1)[1])
    except (ValueError, IndexError):
        return None
    mail = state.mail(index) if 0 <= index < state.users else None
    return index if mail is not None and mail.lower() == value.lower() else None


class Missing(LookupError):
    """No user under this key: the middleware answers Graph's 404."""


def _user_index(request: web.Request) -> int:
    key = request.match_info["id"]
    index = request.app[STATE].index_of(key)
    if index is None:
        raise Missing(key)
    return index


async def get_user(request: web.Request) -> web.Response:
    state = request.app[STATE]
    doc = state.user(_user_index(request))
    body = {
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users/$entity",
        **_project(doc, _select(request, USER_FIELDS, DEFAULT_SELECT)),
    }
    return web.json_response(body)


async def patch_user(request: web.Request) -> web.Response:
    state = request.app[STATE]
    index = _user_index(request)
    try:
        body = await request.json()
    except ValueError:
        return bad_request(request, "Unable to read JSON request payload.")
    if not isinstance(body, dict) or not body:
        return bad_request(request, "Empty Payload. JSON content expected.")
    for key, value in body.items():
        if key == "accountEnabled" and isinstance(value, bool):
            continue
        if (
            key == "passwordProfile"
            and isinstance(value, dict)
            and set(value) <= {"forceChangePasswordNextSignIn", "forceChangePasswordNextSignInWithMfa"}
        ):
            continue
        return bad_request(
            request,
            f"Invalid value or property '{key[:40]}' in the request"
            " (this simulator updates accountEnabled and passwordProfile).",
            "Request_BadRequest",
        )
    if "accountEnabled" in body:
        state.enabled[index] = body["accountEnabled"]
    if body.get("passwordProfile", {}).get("forceChangePasswordNextSignIn"):
        state.password_changes.add(index)
    return web.Response(status=204)


async def revoke_sessions(request: web.Request) -> web.Response:
    state = request.app[STATE]
    state.revoked[_user_index(request)] += 1
    return web.json_response(
        {"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Edm.Boolean", "value": True}
    )


async def member_of_roles(request: web.Request) -> web.Response:
    state = request.app[STATE]
    roles = state.roles_of(_user_index(request))
    rows = [
        {
            "@odata.type": "#microsoft.graph.directoryRole",
            "id": rid,
            "displayName": name,
            "roleTemplateId": tpl,
        }
        for rid, name, tpl in roles
    ]
    return _collection(request, "directoryObjects", rows, None, None)


async def list_roles(request: web.Request) -> web.Response:
    rows = [
        {"id": rid, "displayName": name, "description": name, "roleTemplateId": tpl, "deletedDateTime": None}
        for rid, name, tpl, _, _ in ROLES
    ]
    return _collection(request, "directoryRoles", rows, None, None)


async def role_members(request: web.Request) -> web.Response:
    """GET /directoryRoles/{id}/members: the role's groups, apps (service principals) and users, as
    directoryObjects with their `@odata.type`; `/members/microsoft.graph.user` keeps only the users."""
    state = request.app[STATE]
    role = next((r for r in ROLES if r[0] == request.match_info["role"]), None)
    if role is None:
        return not_found(request, request.match_info["role"])
    if "$top" in request.query:  # Graph documents 1,000 a page here and no $top
        raise FilterError(
            "The query parameter '$top' is not supported on this relationship.", "Request_UnsupportedQuery"
        )
    top, start = ROLE_MEMBERS_PAGE, _skip(request)
    others: list[dict] = []
    if not request.path.endswith("/microsoft.graph.user"):
        others = [
            {"@odata.type": "#microsoft.graph.group", "id": gid, "displayName": name}
            for gid, name, roles, _, _ in GROUPS
            if role[0] in roles
        ]
        if SERVICE_PRINCIPAL[2] == role[0]:
            sp_id, sp_name, _ = SERVICE_PRINCIPAL
            others.append(
                {"@odata.type": "#microsoft.graph.servicePrincipal", "id": sp_id, "displayName": sp_name}
            )
    users = range(role[4], state.users, role[3])
    return _members_page(request, state, others, users, start, top)


async def group_members(request: web.Request) -> web.Response:
    """GET /groups/{id}/transitiveMembers[/microsoft.graph.user]: a role-assignable group's users (such a
    group cannot hold other groups, so its transitive members are its members)."""
    state = request.app[STATE]
    if not state.group_read:
        return graph_error(
            request, 403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation."
        )
    users = state.group_members(request.match_info["group"])
    if users is None:
        return not_found(request, request.match_info["group"])
    return _members_page(request, state, [], users, _skip(request), _top(request, MAX_TOP, 100))


def _members_page(
    request: web.Request, state: EntraState, others: list[dict], users: range, start: int, top: int
) -> web.Response:
    """One page of a directoryObject collection: `others` first, then the users at `users` indices."""
    total = len(others) + len(users)
    end = min(start + top, total)
    rows = others[start:end] + [
        {"@odata.type": "#microsoft.graph.user", "id": state.user_id(i)}
        for i in users[max(0, start - len(others)) : max(0, end - len(others))]
    ]
    return _collection(request, "directoryObjects", rows, end if end < total else None, None)


async def list_risky(request: web.Request) -> web.Response:
    state = request.app[STATE]
    top, start = _top(request, RISKY_MAX_TOP, 20), _skip(request)
    text = request.query.get("$filter")
    node = parse_filter(text, RISKY_FILTERS) if text else None
    since = node.lower_bound("riskLastUpdatedDateTime") if node is not None else None
    indices: Iterator[int]
    if since is not None and since >= iso(EPOCH):  # seeded records are older: only changed ones
        indices = iter(sorted(i for i in state.risk if i >= start))
    else:
        indices = state.risky_indices(start)
    rows: list[dict] = []
    position: Optional[int] = None
    for index in indices:
        doc = state.risky_user(index)
        if node is not None and not evaluate(node, doc):
            continue
        if len(rows) == top:
            position = index
            break
        rows.append(doc)
    return _collection(request, "identityProtection/riskyUsers", rows, position, None)


async def list_registrations(request: web.Request) -> web.Response:
    """GET /reports/authenticationMethods/userRegistrationDetails: enabled users' MFA registration,
    `$filter` (isMfaRegistered eq, id in, ...), `$select`, `$top` (up to 999), `$skiptoken`."""
    state = request.app[STATE]
    top, start = _top(request, MAX_TOP, 100), _skip(request)
    text = request.query.get("$filter")
    node = parse_filter(text, REGISTRATION_FILTERS) if text else None
    fields = _select(request, REGISTRATION_FIELDS, REGISTRATION_FIELDS)
    rows: list[dict] = []
    position: Optional[int] = None
    for index in range(start, state.users):
        doc = state.registration(index)
        if doc is None or (node is not None and not evaluate(node, doc)):
            continue
        if len(rows) == top:
            position = index
            break
        rows.append(_project(doc, fields))
    return _collection(request, "reports/authenticationMethods/userRegistrationDetails", rows, position, None)


async def get_registration(request: web.Request) -> web.Response:
    doc = request.app[STATE].registration(_user_index(request))
    if doc is None:  # the report has no disabled users
        return not_found(request, request.match_info["id"])
    return web.json_response(doc)


async def get_risky(request: web.Request) -> web.Response:
    state = request.app[STATE]
    index = _user_index(request)
    if state.risk_of(index) is None:
        return not_found(request, request.match_info["id"])
    return web.json_response(state.risky_user(index))


async def risky_verdict(request: web.Request) -> web.Response:
    state = request.app[STATE]
    try:
        body = await request.json()
    except ValueError:
        return bad_request(request, "Unable to read JSON request payload.")
    ids = body.get("userIds") if isinstance(body, dict) else None
    if not isinstance(ids, list) or not ids or len(ids) > 60 or not all(isinstance(i, str) for i in ids):
        return bad_request(request, "userIds must be a list of 1 to 60 user ids.")
    indices = [state.index_of(i) for i in ids]
    if None in indices:
        return bad_request(request, "Invalid user id in userIds.")
    for index in indices:
        assert index is not None
        if request.match_info["verb"] == "confirmCompromised":
            state.set_risk(index, "high", "confirmedCompromised", "adminConfirmedUserCompromised")
        else:
            state.set_risk(index, "none", "dismissed", "adminDismissedAllRiskForUser")
    return web.Response(status=204)


async def batch(request: web.Request) -> web.Response:
    """POST /v1.0/$batch: up to 20 GET /users requests answered in one response, as Graph's JSON
    batching does; each counts against the throttling ceiling on its own (a 429 inside the batch)."""
    state = request.app[STATE]
    try:
        body = await request.json()
    except ValueError:
        return bad_request(request, "Unable to read JSON request payload.")
    requests = body.get("requests") if isinstance(body, dict) else None
    if not isinstance(requests, list) or not 1 <= len(requests) <= 20:
        return bad_request(request, "A batch holds 1 to 20 requests.", "BadRequest")
    answers = []
    for n, sub in enumerate(requests):
        if not isinstance(sub, dict) or not isinstance(sub.get("url"), str) or "id" not in sub:
            return bad_request(request, "Each batch request needs an id, a method and a url.")
        answers.append(await _batch_answer(request, state, sub, first=n == 0))
    return web.json_response({"responses": answers})


async def _batch_answer(request: web.Request, state: EntraState, sub: dict, *, first: bool) -> dict:
    target = URL(sub["url"] if sub["url"].startswith("/") else "/" + sub["url"])
    wait = None if first else state.admit()  # the batch itself was counted once already
    if wait is not None:
        answer = graph_error(request, 429, "TooManyRequests", "Too many requests.")
        headers = {"Retry-After": str(wait)}
    elif sub.get("method", "GET") != "GET" or target.path != "/users":
        answer = bad_request(request, "This simulator batches GET /users only.")
        headers = {}
    else:
        inner = _Inner(
            request.app, target.query, request.headers, "/v1.0/users", request.host, request.scheme
        )
        try:
            answer = await list_users(cast(web.Request, inner))
        except FilterError as exc:
            answer = bad_request(request, str(exc), exc.code)
        headers = {"Content-Type": "application/json"}
    assert isinstance(answer, web.Response) and isinstance(answer.body, bytes)
    return {"id": sub["id"], "status": answer.status, "headers": headers, "body": json.loads(answer.body)}


@dataclass
class _Inner:
    """What list_users reads of a request, for a request inside a batch (the batch's body is read)."""

    app: web.Application
    query: Any
    headers: Any
    path: str
    host: str
    scheme: str

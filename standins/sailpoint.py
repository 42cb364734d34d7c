"""SailPoint Identity Security Cloud stand-in: OAuth2 client credentials, identities, accounts, disable
and enable.

Serves the paths idops and the official SDK use (`/v2024/identities`, `/v2025/identities`,
`/identities/v1`, `/v3/accounts`, `/accounts/v1`, ...) with the spec's shapes
(shared/specs/sailpoint-isc-v2024-identities.openapi.json). Identities are made on demand from
`standins.seed.person(i)`, so a million are servable; only what actions and admins changed is
kept. `/_admin/...` injects faults and changes risk scores for tests and demos.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import hashlib
import itertools
import json
import math
import operator
import os
import re
import secrets
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Optional

from aiohttp import web

from .common import (
    Fault,
    admin_error,
    admin_json,
    credentials,
    drop_connection,
    expire_tokens,
    fault_answer,
    fault_routes,
    run_simulator,
    simulator_parser,
)
from .filters import Dialect, FilterError, parse
from .idempotency import IdempotencyKeys
from .seed import EPOCH, person

MAX_LIMIT = 250
EXPERIMENTAL_VERSIONS = ("v2024", "v2025")
SOURCES = (
    # (source id, name, authoritative) of the two accounts every identity has
    ("2c9180835d2e5168015d32f890ca1581", "IdentityNow", False),
    ("2c9180835d2e5168015d32f890ca1582", "Active Directory", True),
)
FAULT_KINDS = ("401", "429", "500", "slow", "drop", "malformed", "expire_token")


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _hex(*parts: object) -> str:
    return hashlib.sha1(":".join(map(str, parts)).encode(), usedforsecurity=False).hexdigest()


def error_body(status: int, text: str, detail: Optional[str] = None) -> dict:
    """An ErrorResponseDto as SailPoint sends it."""
    return {
        "detailCode": detail or f"{status} {_REASONS.get(status, 'Error')}",
        "trackingId": uuid.uuid4().hex,
        "messages": [{"locale": "en-US", "localeOrigin": "DEFAULT", "text": text}],
        "causes": [],
    }


_REASONS = {400: "Bad Request", 403: "Forbidden", 404: "Not found", 500: "Internal Fault"}


def _error(status: int, text: str, detail: Optional[str] = None) -> web.Response:
    return web.json_response(error_body(status, text, detail), status=status)


def _not_found() -> web.Response:
    return _error(404, "The server did not find a current representation for the target resource.")


def _bad_request(text: str) -> web.Response:
    return _error(400, text, "400.1 Bad Request Content")


# --- filters ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    field: str
    op: str
    values: tuple[Any, ...]


@dataclass(frozen=True)
class BoolOp:
    op: str  # "and" | "or"
    parts: tuple[Any, ...]


_UNESCAPE = re.compile(r"\\(.)", re.DOTALL)
# SailPoint's `filters` (Okta's search speaks the same): "text" with backslash escapes, no functions, no
# `not`, no limit on `in`, SailPoint's wording (the shared parser is standins.filters)
SAILPOINT = Dialect(
    quote='"',
    string=r'"(?:[^"\\]|\\.)*"',
    unquote=lambda raw: _UNESCAPE.sub(r"\1", raw[1:-1]),
    comparison=Comparison,
    boolean=BoolOp,
    messages={
        "unterminated": "unterminated string starting at position {start}",
        "character": "unexpected character {raw!r} at position {start}",
        "empty": "the filter is empty",
        "trailing": "unexpected {raw!r} at position {at}",
        "ends": "the filter ends where {expected} was expected",
        "expected": "expected {expected} at position {at}, found {found!r}",
        "field": "filtering on '{name}' is not supported (position {at})",
        "op": "operator '{op}' is not supported for '{name}' (supported: {ops})",
    },
)


def parse_filter(text: str, allowed: dict[str, frozenset[str]]) -> Any:
    """Parse a SailPoint `filters` expression, accepting only the `allowed` field/operator pairs."""
    return parse(text, allowed, SAILPOINT)


def _norm(value: Any) -> Any:
    return value.casefold() if isinstance(value, str) else value


def evaluate(node: Any, doc: dict, getters: dict[str, Callable[[dict], Any]]) -> bool:
    """Whether `doc` matches the parsed filter (string comparisons ignore case, as SailPoint's do)."""
    if isinstance(node, BoolOp):
        results = (evaluate(part, doc, getters) for part in node.parts)
        return all(results) if node.op == "and" else any(results)
    actual = _norm(getters[node.field](doc))
    wanted = [_norm(value) for value in node.values]
    if node.op == "eq":
        return bool(actual == wanted[0])
    if node.op == "in":
        return actual in wanted
    if not isinstance(actual, str) or not isinstance(wanted[0], str):
        return False
    return actual.startswith(wanted[0]) if node.op == "sw" else wanted[0] in actual


def _equalities(node: Any, fields: Sequence[str]) -> Optional[list[Any]]:
    """Values a filter pins one of `fields` to (eq/in, maybe inside an `and`), or None for "any"."""
    if isinstance(node, Comparison) and node.field in fields and node.op in ("eq", "in"):
        return list(node.values)
    if isinstance(node, BoolOp) and node.op == "and":
        for part in node.parts:
            found = _equalities(part, fields)
            if found is not None:
                return found
    return None


def _ops(spec: str) -> frozenset[str]:
    return frozenset(spec.split())


# Identity fields and operators as the spec lists them, plus `co` on the name-like fields.
IDENTITY_FILTERS = {
    "id": _ops("eq in"),
    "name": _ops("eq sw co"),
    "alias": _ops("eq sw co"),
    "firstname": _ops("eq sw"),
    "lastname": _ops("eq sw"),
    "email": _ops("eq sw co"),
    "emailAddress": _ops("eq sw co"),
    "cloudStatus": _ops("eq"),
    "processingState": _ops("eq"),
    "correlated": _ops("eq"),
    "protected": _ops("eq"),
}
IDENTITY_GETTERS: dict[str, Callable[[dict], Any]] = {
    "id": lambda d: d["id"],
    "name": lambda d: d["name"],
    "alias": lambda d: d["alias"],
    "firstname": lambda d: d["attributes"]["firstname"],
    "lastname": lambda d: d["attributes"]["lastname"],
    "email": lambda d: d["emailAddress"],
    "emailAddress": lambda d: d["emailAddress"],
    "cloudStatus": lambda d: d["attributes"]["cloudStatus"],
    "processingState": lambda d: d["processingState"],
    "correlated": lambda d: True,
    "protected": lambda d: False,
}
IDENTITY_SORTERS = ("name", "alias", "cloudStatus")
ACCOUNT_FILTERS = {
    "id": _ops("eq in sw"),
    "identityId": _ops("eq in sw"),
    "name": _ops("eq in sw"),
    "nativeIdentity": _ops("eq in sw"),
    "sourceId": _ops("eq in sw"),
    "uncorrelated": _ops("eq"),
    "hasEntitlements": _ops("eq"),
}
ACCOUNT_GETTERS: dict[str, Callable[[dict], Any]] = {key: operator.itemgetter(key) for key in ACCOUNT_FILTERS}
ACCOUNT_SORTERS = ("id", "name", "identityId", "nativeIdentity", "sourceId")


# --- state -----------------------------------------------------------------------------------------


@dataclass
class RequestRecord:
    """One API request as the simulator saw it (tests check pacing and retries against these)."""

    at: float
    client_id: Optional[str]
    method: str
    path: str
    status: int = 0


@dataclass
class SailPointState:
    """Everything the simulator knows beyond the seeded population; reachable as `app[STATE]`."""

    identities: int
    seed: int
    client_id: str
    client_secret: str
    tenant: str = "acme"
    rate_limit: bool = True
    rate_limit_requests: int = 100
    rate_limit_period: float = 10.0
    token_ttl: int = 749
    latency: float = 0.0
    require_experimental: bool = False
    risk: dict[int, Optional[int]] = field(default_factory=dict)
    disabled_accounts: set[str] = field(default_factory=set)
    #: identities deleted through the admin API: 404 everywhere, gone from lists
    deleted: set[int] = field(default_factory=set)
    touched: set[int] = field(default_factory=set)
    tokens: dict[str, tuple[str, float]] = field(default_factory=dict)
    tokens_issued: int = 0
    tasks: dict[str, dict] = field(default_factory=dict)
    faults: collections.deque[Fault] = field(default_factory=collections.deque)
    windows: dict[str, collections.deque[float]] = field(default_factory=dict)
    log: collections.deque[RequestRecord] = field(default_factory=lambda: collections.deque(maxlen=20000))
    in_flight: int = 0
    max_in_flight: int = 0
    cache_size: int = 60000
    idempotency: IdempotencyKeys = field(default_factory=IdempotencyKeys)

    def __post_init__(self) -> None:
        self._cached_json = functools.lru_cache(maxsize=self.cache_size)(self._render)

    # ids: 32 hex like SailPoint's; the last 8 hex digits carry the index, the rest is a seeded hash
    def identity_id(self, index: int) -> str:
        return f"2c9180{_hex('identity', self.seed, index)[:18]}{index:08x}"

    def account_id(self, index: int, n: int) -> str:
        return f"2c9181{_hex('account', self.seed, index, n)[:16]}{index:08x}{n:02x}"

    def index_of(self, identity_id: Any) -> Optional[int]:
        if not isinstance(identity_id, str) or len(identity_id) != 32:
            return None
        try:
            index = int(identity_id[-8:], 16)
        except ValueError:
            return None
        ok = index < self.identities and index not in self.deleted and self.identity_id(index) == identity_id
        return index if ok else None

    def account_of(self, account_id: Any) -> Optional[tuple[int, int]]:
        if not isinstance(account_id, str) or len(account_id) != 32:
            return None
        try:
            index, n = int(account_id[-10:-2], 16), int(account_id[-2:], 16)
        except ValueError:
            return None
        ok = (
            index < self.identities
            and index not in self.deleted
            and n < len(SOURCES)
            and self.account_id(index, n) == account_id
        )
        return (index, n) if ok else None

    def alive(self, start: int = 0) -> Iterator[int]:
        """Identity indices not deleted, in order, from the `start`-th of them."""
        if not self.deleted:
            return iter(range(start, self.identities))
        return itertools.islice((i for i in range(self.identities) if i not in self.deleted), start, None)

    @property
    def count(self) -> int:
        return self.identities - len(self.deleted)

    def delete(self, index: int) -> None:
        """The identity and its accounts are gone (404 for their ids, missing from lists)."""
        self.deleted.add(index)

    def identity(self, index: int) -> dict:
        """Identity `index` as the API returns it (spec schema `Identity`)."""
        p = person(index, seed=self.seed)
        alias = f"{p.first}.{p.last}.{index}".lower()
        disabled = all(self.account_id(index, n) in self.disabled_accounts for n in range(len(SOURCES)))
        status = "DISABLED" if disabled else ("ACTIVE" if p.status == "active" else "LOCKED")
        manager = index - index % 20
        return {
            "id": self.identity_id(index),
            "name": p.display_name,
            "created": _iso(p.created_at),
            "modified": _iso(p.last_login_at),
            "alias": alias,
            "emailAddress": p.email,
            "processingState": None,
            "identityStatus": status,
            "managerRef": None
            if manager == index
            else {
                "type": "IDENTITY",
                "id": self.identity_id(manager),
                "name": person(manager, seed=self.seed).display_name,
            },
            "isManager": index % 20 == 0 and index + 1 < self.identities,
            "lastRefresh": _iso(EPOCH),
            "attributes": {
                "uid": alias,
                "firstname": p.first,
                "lastname": p.last,
                "displayName": p.display_name,
                "email": p.email,
                "cloudStatus": status,
                "riskScore": self.risk.get(index, p.risk_score),
                "privileged": p.privileged,
                "lastLogin": _iso(p.last_login_at),
                "lastLoginIp": p.last_login_ip,
                "lastLoginCountry": p.last_login_country,
            },
            "lifecycleState": {
                "stateName": "active" if status == "ACTIVE" else "inactive",
                "manuallyUpdated": False,
            },
        }

    def _render(self, index: int) -> bytes:
        return json.dumps(self.identity(index), separators=(",", ":")).encode()

    def identity_json(self, index: int) -> bytes:
        """Identity `index` serialized; untouched ones come from a bounded cache (pages are re-read often)."""
        return self._render(index) if index in self.touched else self._cached_json(index)

    def account(self, index: int, n: int) -> dict:
        """Account `n` of identity `index` (spec schema `Account`)."""
        p = person(index, seed=self.seed)
        source_id, source_name, authoritative = SOURCES[n]
        alias = f"{p.first}.{p.last}.{index}".lower()
        account_id = self.account_id(index, n)
        return {
            "id": account_id,
            "name": alias,
            "created": _iso(p.created_at),
            "modified": _iso(p.last_login_at),
            "sourceId": source_id,
            "sourceName": source_name,
            "identityId": self.identity_id(index),
            "cloudLifecycleState": "active",
            "identityState": "ACTIVE",
            "connectionType": "direct",
            "isMachine": False,
            "attributes": {"displayName": p.display_name, "email": p.email},
            "authoritative": authoritative,
            "description": None,
            "disabled": account_id in self.disabled_accounts,
            "locked": False,
            "nativeIdentity": alias if n == 0 else f"cn={alias},ou=people,dc=example,dc=com",
            "systemAccount": False,
            "uncorrelated": False,
            "uuid": None,
            "manuallyCorrelated": False,
            "hasEntitlements": authoritative,
            "identity": {"id": self.identity_id(index), "type": "IDENTITY", "name": p.display_name},
            "sourceOwner": None,
            "features": "ENABLE",
            "origin": "AGGREGATED",
        }

    def set_risk(self, index: int, score: Optional[int]) -> None:
        self.risk[index] = score
        self.touched.add(index)

    def disable_account(self, index: int, n: int) -> str:
        self.disabled_accounts.add(self.account_id(index, n))
        self.touched.add(index)
        task = uuid.uuid4().hex
        self.tasks[task] = {"action": "disable", "account": self.account_id(index, n)}
        return task

    def enable_account(self, index: int, n: int) -> str:
        self.disabled_accounts.discard(self.account_id(index, n))
        self.touched.add(index)
        task = uuid.uuid4().hex
        self.tasks[task] = {"action": "enable", "account": self.account_id(index, n)}
        return task

    def issue_token(self, client_id: str) -> str:
        token = secrets.token_urlsafe(32)
        self.tokens[token] = (client_id, time.monotonic() + self.token_ttl)
        self.tokens_issued += 1
        return token

    def expire_tokens(self) -> None:
        self.tokens = {token: (client, 0.0) for token, (client, _) in self.tokens.items()}

    def admit(self, client_id: str) -> Optional[int]:
        """Count a request against the client's window; seconds to wait when it is over the limit."""
        if not self.rate_limit:
            return None
        now = time.monotonic()
        window = self.windows.setdefault(client_id, collections.deque())
        while window and now - window[0] >= self.rate_limit_period:
            window.popleft()
        if len(window) >= self.rate_limit_requests:
            return max(1, math.ceil(window[0] + self.rate_limit_period - now))
        window.append(now)
        return None


STATE = web.AppKey("sailpoint_state", SailPointState)


# --- request parsing -------------------------------------------------------------------------------


def _int_param(request: web.Request, name: str, default: int, high: Optional[int] = None) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise FilterError(f"'{name}' must be an integer, got {raw[:40]!r}") from None
    if value < 0 or (high is not None and value > high):
        bound = f"between 0 and {high}" if high is not None else "0 or more"
        raise FilterError(f"'{name}' must be {bound}, got {value}")
    return value


def _bool_param(request: web.Request, name: str) -> bool:
    raw = request.query.get(name, "false").lower()
    if raw not in ("true", "false"):
        raise FilterError(f"'{name}' must be true or false")
    return raw == "true"


def _sorters(request: web.Request, allowed: Sequence[str]) -> list[tuple[str, bool]]:
    raw = request.query.get("sorters")
    if not raw:
        return []
    out = []
    for part in raw.split(","):
        name = part.strip()
        descending = name.startswith("-")
        name = name.lstrip("+-")
        if name not in allowed:
            raise FilterError(f"sorting by '{name}' is not supported (supported: {', '.join(allowed)})")
        out.append((name, descending))
    return out


def _sort(
    docs: list[dict], sorters: list[tuple[str, bool]], getters: dict[str, Callable[[dict], Any]]
) -> None:
    for name, descending in reversed(sorters):  # stable sorts, least significant key first
        getter = getters[name]

        def key(doc: dict, getter: Callable[[dict], Any] = getter) -> tuple[bool, Any]:
            value = getter(doc)
            return value is None, _norm(value) or ""

        docs.sort(key=key, reverse=descending)


@dataclass
class _Listing:
    """One collection request: paging, optional filter and sorters, already validated."""

    limit: int
    offset: int
    count: bool
    node: Any
    sorters: list[tuple[str, bool]]


def _listing(request: web.Request, filters: dict, sorters: Sequence[str]) -> _Listing:
    text = request.query.get("filters")
    return _Listing(
        limit=_int_param(request, "limit", MAX_LIMIT, MAX_LIMIT),
        offset=_int_param(request, "offset", 0),
        count=_bool_param(request, "count"),
        node=parse_filter(text, filters) if text is not None else None,
        sorters=_sorters(request, sorters),
    )


def _page(listing: _Listing, total: int, body: bytes) -> web.Response:
    headers = {"X-Total-Count": str(total)} if listing.count else None
    return web.Response(body=body, content_type="application/json", headers=headers)


def _join(parts: Iterable[bytes]) -> bytes:
    return b"[" + b",".join(parts) + b"]"


def _dumps(docs: Iterable[dict]) -> bytes:
    return _join(json.dumps(doc, separators=(",", ":")).encode() for doc in docs)


# --- handlers --------------------------------------------------------------------------------------


async def token(request: web.Request) -> web.Response:
    """POST /oauth/token: client credentials (a personal access token uses the same form)."""
    state = request.app[STATE]
    form = {**request.query, **(await request.post())}
    if form.get("grant_type") != "client_credentials":
        return web.json_response(
            {"error": "unsupported_grant_type", "error_description": "only client_credentials is supported"},
            status=400,
        )
    client_id, client_secret = str(form.get("client_id", "")), str(form.get("client_secret", ""))
    valid = secrets.compare_digest(client_id, state.client_id) and secrets.compare_digest(
        client_secret, state.client_secret
    )
    if not valid:
        return web.json_response(
            {"error": "invalid_client", "error_description": "Bad credentials"}, status=401
        )
    return web.json_response(
        {
            "access_token": state.issue_token(client_id),
            "token_type": "bearer",
            "expires_in": state.token_ttl,
            "scope": "sp:scopes:all",
            "tenant_id": _hex("tenant", state.tenant)[:32],
            "pod": "stg01-useast1",
            "strong_auth_supported": False,
            "org": state.tenant,
            "claims_supported": False,
            "jti": uuid.uuid4().hex,
        }
    )


async def list_identities(request: web.Request) -> web.Response:
    state = request.app[STATE]
    version = request.match_info.get("version")
    if version in EXPERIMENTAL_VERSIONS and state.require_experimental:
        if request.headers.get("X-SailPoint-Experimental", "").lower() != "true":
            return _bad_request(
                "This endpoint is experimental: send the header X-SailPoint-Experimental: true"
            )
    listing = _listing(request, IDENTITY_FILTERS, IDENTITY_SORTERS)
    if request.query.get("defaultFilter", "CORRELATED_ONLY") not in ("CORRELATED_ONLY", "NONE"):
        raise FilterError("'defaultFilter' must be CORRELATED_ONLY or NONE")
    # every simulated identity is correlated, so defaultFilter never hides one
    if listing.node is None and not listing.sorters:
        shown = itertools.islice(state.alive(listing.offset), listing.limit)
        return _page(listing, state.count, _join(state.identity_json(i) for i in shown))
    pinned = _equalities(listing.node, ("id",))
    if pinned is not None:
        candidates: Iterable[int] = sorted({i for i in map(state.index_of, pinned) if i is not None})
    else:
        emails = _equalities(listing.node, ("email", "emailAddress"))
        candidates = state.alive() if emails is None else sorted(_email_indices(emails, state))
    docs = [state.identity(i) for i in candidates]
    if listing.node is not None:
        docs = [doc for doc in docs if evaluate(listing.node, doc, IDENTITY_GETTERS)]
    _sort(docs, listing.sorters, IDENTITY_GETTERS)
    return _page(listing, len(docs), _dumps(docs[listing.offset : listing.offset + listing.limit]))


def _email_indices(emails: list[Any], state: SailPointState) -> set[int]:
    # seeded emails end in ".<index>@tenantN.example", so an exact email names at most one index
    found = set()
    for email in emails:
        match = re.search(r"\.(\d+)@", email) if isinstance(email, str) else None
        if match and int(match.group(1)) < state.identities and int(match.group(1)) not in state.deleted:
            found.add(int(match.group(1)))
    return found


async def get_identity(request: web.Request) -> web.Response:
    state = request.app[STATE]
    index = state.index_of(request.match_info["id"])
    if index is None:
        return _not_found()
    return web.Response(body=state.identity_json(index), content_type="application/json")


async def list_accounts(request: web.Request) -> web.Response:
    state = request.app[STATE]
    listing = _listing(request, ACCOUNT_FILTERS, ACCOUNT_SORTERS)
    if request.query.get("detailLevel", "FULL") not in ("SLIM", "FULL"):
        raise FilterError("'detailLevel' must be SLIM or FULL")
    per = len(SOURCES)
    total = state.count * per
    every = ((i, n) for i in state.alive() for n in range(per))
    if listing.node is None and not listing.sorters:
        docs = [
            state.account(i, n)
            for i, n in itertools.islice(every, listing.offset, listing.offset + listing.limit)
        ]
        return _page(listing, total, _dumps(docs))
    keys: Iterable[tuple[int, int]]
    owners = _equalities(listing.node, ("identityId",))
    ids = _equalities(listing.node, ("id",))
    if owners is not None:
        found = sorted({i for i in map(state.index_of, owners) if i is not None})
        keys = [(i, n) for i in found for n in range(per)]
    elif ids is not None:
        keys = sorted({key for key in map(state.account_of, ids) if key is not None})
    else:
        keys = every
    docs = [state.account(i, n) for i, n in keys]
    if listing.node is not None:
        docs = [doc for doc in docs if evaluate(listing.node, doc, ACCOUNT_GETTERS)]
    _sort(docs, listing.sorters, ACCOUNT_GETTERS)
    return _page(listing, len(docs), _dumps(docs[listing.offset : listing.offset + listing.limit]))


async def _toggle_body(request: web.Request) -> Optional[web.Response]:
    """Check the optional AccountToggleRequest body; a response when it is not acceptable."""
    if not request.can_read_body:
        return None
    try:
        body = await request.json()
    except ValueError:
        return _bad_request("The request body is not valid JSON.")
    if body is not None and not isinstance(body, dict):
        return _bad_request("The request body must be a JSON object (AccountToggleRequest).")
    return None


def _once(handler: Callable[[web.Request], Awaitable[web.Response]]) -> Callable:
    """`handler` honouring Idempotency-Key (standins/idempotency.py), scoped to the OAuth token's client."""

    async def once(request: web.Request) -> web.StreamResponse:
        state = request.app[STATE]
        token = request.headers.get("Authorization", "")[len("Bearer ") :]
        caller = state.tokens.get(token, ("",))[0]
        return await state.idempotency.run(request, caller, lambda: handler(request), _error)

    return once


async def _toggle(request: web.Request, enable: bool) -> web.Response:
    """POST /v3/accounts/{id}/disable | enable (spec `disableAccount`, `enableAccount`): 202 with the
    task, 404 for an unknown account, 400 for a body that is no AccountToggleRequest."""
    state = request.app[STATE]
    key = state.account_of(request.match_info["id"])
    if key is None:
        return _not_found()
    problem = await _toggle_body(request)
    if problem is not None:
        return problem
    task = state.enable_account(*key) if enable else state.disable_account(*key)
    return web.json_response({"id": task}, status=202)


disable_account = _once(functools.partial(_toggle, enable=False))
enable_account = _once(functools.partial(_toggle, enable=True))


async def _toggle_identity(request: web.Request, enable: bool) -> web.Response:
    """The identity's IdentityNow account (`/identities-accounts/{id}/disable` or `/enable`)."""
    state = request.app[STATE]
    index = state.index_of(request.match_info["id"])
    if index is None:
        return _not_found()
    task = state.enable_account(index, 0) if enable else state.disable_account(index, 0)
    return web.json_response({"id": task}, status=202)


disable_identity_account = _once(functools.partial(_toggle_identity, enable=False))
enable_identity_account = _once(functools.partial(_toggle_identity, enable=True))


# --- admin -----------------------------------------------------------------------------------------


async def admin_risk(request: web.Request) -> web.Response:
    """POST /_admin/identity/{id}/risk {"risk_score": 0-100 or null}."""
    state = request.app[STATE]
    index = state.index_of(request.match_info["id"])
    if index is None:
        return web.json_response({"error": "no such identity"}, status=404)
    body = await admin_json(request)
    score = body.get("risk_score")
    if score is not None and (isinstance(score, bool) or not isinstance(score, int) or not 0 <= score <= 100):
        return admin_error("risk_score must be an integer from 0 to 100, or null")
    state.set_risk(index, score)
    return web.json_response(state.identity(index))


async def admin_delete(request: web.Request) -> web.Response:
    """DELETE /_admin/identity/{id}: the identity is deleted at the provider (404 from then on)."""
    state = request.app[STATE]
    index = state.index_of(request.match_info["id"])
    if index is None:
        return web.json_response({"error": "no such identity"}, status=404)
    state.delete(index)
    return web.json_response({"deleted": request.match_info["id"]})


async def admin_stats(request: web.Request) -> web.Response:
    state = request.app[STATE]
    statuses = collections.Counter(record.status for record in state.log)
    return web.json_response(
        {
            "identities": state.identities,
            "tokens_issued": state.tokens_issued,
            "api_requests": len(state.log),
            "by_status": {str(status): n for status, n in sorted(statuses.items())},
            "tasks": len(state.tasks),
        }
    )


# --- middleware: faults, authentication, rate limit -----------------------------------------------


def _unauthorized(text: str) -> web.Response:
    return web.json_response({"error": text}, status=401)


async def _apply_fault(request: web.Request, fault: Fault) -> Optional[web.StreamResponse]:
    if fault.kind == "401":  # the token refused, though not expired here: what a revoked one gets
        return _unauthorized("JWT validation failed: JWT is not valid")
    if fault.kind == "429":
        headers = {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
        return web.json_response({"message": " Rate Limit Exceeded "}, status=429, headers=headers)
    if fault.kind == "500":
        return _error(500, "An internal fault occurred.", "500.0 Internal Fault")
    if fault.kind == "slow":
        await request.read()  # received in full, then slow: the request is carried out after the delay
        await asyncio.sleep(fault.delay)
        return None
    if fault.kind == "malformed":
        return web.Response(body=b'[{"id": "2c9180', content_type="application/json")
    drop_connection(request)  # "drop"


@web.middleware
async def api_middleware(request: web.Request, handler: Callable) -> web.StreamResponse:
    if request.path.startswith(("/oauth/", "/_admin/")):
        return await handler(request)
    state = request.app[STATE]
    record = RequestRecord(at=time.monotonic(), client_id=None, method=request.method, path=request.path)
    state.log.append(record)
    state.in_flight += 1
    state.max_in_flight = max(state.max_in_flight, state.in_flight)
    try:
        response = await _respond(request, state, record, handler)
        record.status = response.status
        return response
    finally:
        state.in_flight -= 1


async def _respond(
    request: web.Request, state: SailPointState, record: RequestRecord, handler: Callable
) -> web.StreamResponse:
    response = await fault_answer(request, state.faults, _apply_fault)
    if response is not None:
        return response
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        return _unauthorized("Authorization header is missing or is not a Bearer token")
    known = state.tokens.get(header[len("Bearer ") :])
    if known is None:
        return _unauthorized("JWT validation failed: JWT is not valid")
    client_id, expires = known
    if time.monotonic() >= expires:
        return _unauthorized("JWT validation failed: JWT is expired")
    record.client_id = client_id
    wait = state.admit(client_id)
    if wait is not None:
        return web.json_response(
            {"message": " Rate Limit Exceeded "}, status=429, headers={"Retry-After": str(wait)}
        )
    if state.latency:
        await asyncio.sleep(state.latency)
    try:
        return await handler(request)
    except FilterError as exc:
        return _bad_request(f"Invalid request: {exc}")


# --- app and entry point ---------------------------------------------------------------------------


def create_app(
    *,
    identities: int = 300,
    seed: int = 0,
    client_id: str = "sim-client",
    client_secret: str = "sim-secret",  # noqa: S107 - the simulator's own made-up credential
    tenant: str = "acme",
    rate_limit: bool = True,
    rate_limit_requests: int = 100,
    rate_limit_period: float = 10.0,
    token_ttl: int = 749,
    latency: float = 0.0,
    require_experimental: bool = False,
) -> web.Application:
    """The simulator app; `app[STATE]` is its state (tests read and change it directly)."""
    app = web.Application(middlewares=[api_middleware])
    app[STATE] = SailPointState(
        identities=identities,
        seed=seed,
        client_id=client_id,
        client_secret=client_secret,
        tenant=tenant,
        rate_limit=rate_limit,
        rate_limit_requests=rate_limit_requests,
        rate_limit_period=rate_limit_period,
        token_ttl=token_ttl,
        latency=latency,
        require_experimental=require_experimental,
    )
    app.router.add_post("/oauth/token", token)
    identities_roots = ["/{version:v2024|v2025}/identities", "/identities/v1"]
    for root in identities_roots:
        app.router.add_get(root, list_identities)
        app.router.add_get(root + "/{id}", get_identity)
    for root in ("/{version:v3|v2024|v2025}/accounts", "/accounts/v1"):
        app.router.add_get(root, list_accounts)
        app.router.add_post(root + "/{id}/disable", disable_account)
        app.router.add_post(root + "/{id}/enable", enable_account)
    for root in ("/{version:v3|v2024|v2025}/identities-accounts", "/identities-accounts/v1"):
        app.router.add_post(root + "/{id}/disable", disable_identity_account)
        app.router.add_post(root + "/{id}/enable", enable_identity_account)
    fault_routes(app, STATE, FAULT_KINDS, expire=expire_tokens)
    app.router.add_post("/_admin/identity/{id}/risk", admin_risk)
    app.router.add_delete("/_admin/identity/{id}", admin_delete)
    app.router.add_get("/_admin/stats", admin_stats)
    return app


def main(argv: Optional[Sequence[str]] = None) -> int:
    """`idops sim sailpoint`: serve the simulator until Ctrl-C."""
    parser = simulator_parser("sailpoint", __doc__, port=8082)
    parser.add_argument("--tenant", default="acme")
    parser.add_argument("--no-rate-limit", action="store_true", help="serve without the 100 per 10 s limit")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every API answer")
    args = parser.parse_args(argv)
    if args.identities < 0 or args.latency < 0:
        parser.error("--identities and --latency must be 0 or more")
    env, made_up = credentials(
        os.environ,
        {
            "SAILPOINT_CLIENT_ID": lambda: f"sim-{secrets.token_hex(8)}",
            "SAILPOINT_CLIENT_SECRET": lambda: secrets.token_urlsafe(24),
        },
    )
    app = create_app(
        identities=args.identities,
        seed=args.seed,
        client_id=env["SAILPOINT_CLIENT_ID"],
        client_secret=env["SAILPOINT_CLIENT_SECRET"],
        tenant=args.tenant,
        rate_limit=not args.no_rate_limit,
        latency=args.latency,
    )
    return run_simulator(
        app,
        args,
        vendor="sailpoint",
        banner=f"SailPoint simulator: {args.identities} identities, tenant {args.tenant}",
        variables=lambda url: {"SAILPOINT_BASE_URL": url},
        made_up=made_up,
    )


if __name__ == "__main__":
    sys.exit(main())

"""Microsoft Entra ID stand-in: the Microsoft identity platform token endpoint and Microsoft Graph v1.0.

One port serves `/{tenant}/oauth2/v2.0/token` (client secret or a certificate's `client_assertion`;
the extra fields MSAL sends, such as `client_info` and `claims`, are accepted), the OpenID discovery
document, and the Graph paths idops and Microsoft's SDK use: users (`$select`, `$top` ≤ 999, `$filter`,
`$orderby`, `$count`, `@odata.nextLink` with a `$skiptoken`), directory roles, risky users with their
verdict actions, revokeSignInSessions and PATCH. Answers have Graph's shapes: OData collections, error
bodies with `innerError.request-id`, `Retry-After` on throttling (a per-app ceiling), tokens that expire.
Queries Graph calls advanced (`$count`, `$orderby` with `$filter`, `endswith`, `ne`) need
`ConsistencyLevel: eventual`, as on Graph. Users are made on demand from `standins.seed.person(i)`;
roles and risk follow the index, so a million users cost nothing until touched. `/_admin/...` changes
risk, injects faults and turns Entra ID P2 off.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import functools
import hashlib
import heapq
import json
import math
import os
import secrets
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Optional

import jwt
from aiohttp import web
from yarl import URL

from . import print_env, run_until_stopped
from .entra_odata import FilterError, evaluate, parse_filter, pinned_values
from .seed import EPOCH, person

MAX_TOP = 999
RISKY_MAX_TOP = 500
SCOPE = "https://graph.microsoft.com/.default"
DOMAIN = "idopsdemo.onmicrosoft.com"
FAULT_KINDS = ("429", "503", "500", "slow", "drop", "malformed", "expire_token")
# (role id, displayName, roleTemplateId, every Nth user from an offset is a member)
ROLES = (
    (
        "5e6a4b1c-0000-4000-8000-000000000001",
        "Global Administrator",
        "62e90394-69f5-4237-9190-012177145e10",
        97,
        3,
    ),
    (
        "5e6a4b1c-0000-4000-8000-000000000002",
        "User Administrator",
        "fe930be7-5e62-47db-91af-98c3a49a38b1",
        61,
        5,
    ),
    (
        "5e6a4b1c-0000-4000-8000-000000000003",
        "Security Reader",
        "5d6b6bb7-de71-4623-b4af-96380a352509",
        149,
        11,
    ),
)
RISK_EVERY, RISK_OFFSET = 20, 7  # every 20th user from 7 has a riskyUser record
USER_FIELDS = (
    "id displayName givenName surname mail userPrincipalName accountEnabled createdDateTime userType"
    " jobTitle businessPhones mobilePhone officeLocation preferredLanguage"
).split()
DEFAULT_SELECT = (
    "businessPhones displayName givenName jobTitle mail mobilePhone officeLocation preferredLanguage"
    " surname userPrincipalName id"
).split()
USER_FILTERS = {
    "id": "eq in",
    "mail": "eq ne in startswith endswith",
    "userPrincipalName": "eq ne in startswith endswith",
    "displayName": "eq ne in startswith endswith",
    "givenName": "eq ne startswith",
    "surname": "eq ne startswith",
    "accountEnabled": "eq ne",
    "userType": "eq ne",
}
RISKY_FILTERS = {
    "id": "eq in",
    "riskLevel": "eq",
    "riskState": "eq",
    "userPrincipalName": "eq startswith",
    "riskLastUpdatedDateTime": "eq gt ge lt le",
}
ADVANCED_OPS = frozenset({"ne", "endswith", "not"})


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _guid(*parts: object, tail: int) -> str:
    h = hashlib.sha1(":".join(map(str, parts)).encode(), usedforsecurity=False).hexdigest()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-8{h[17:20]}-{tail:012x}"


def thumbprint(certificate_der: bytes) -> str:
    """A certificate's SHA-1 thumbprint in hex, as the Azure portal shows it."""
    return hashlib.sha1(certificate_der, usedforsecurity=False).hexdigest().upper()


@dataclass
class Fault:
    kind: str
    remaining: int
    retry_after: Optional[int] = 1
    delay: float = 2.0
    path: str = ""
    method: str = ""


@dataclass
class Record:
    at: float
    method: str
    path: str
    query: dict
    headers: dict
    status: int = 0


@dataclass
class EntraState:
    """Everything beyond the seeded population; `app[STATE]`."""

    users: int
    seed: int
    tenant_id: str
    client_id: str
    client_secret: str
    certificates: dict[str, Any] = field(default_factory=dict)  # x5t (base64url) -> public key
    p2: bool = True
    token_ttl: int = 3599
    throttle: Optional[tuple[int, float]] = (2000, 10.0)  # requests per period per app, else None
    enabled: dict[int, bool] = field(default_factory=dict)
    risk: dict[int, tuple[str, str, str, str]] = field(default_factory=dict)  # level, state, detail, time
    revoked: collections.Counter = field(default_factory=collections.Counter)
    password_changes: set[int] = field(default_factory=set)
    tokens: dict[str, float] = field(default_factory=dict)
    tokens_issued: int = 0
    token_forms: list[dict] = field(default_factory=list)
    faults: collections.deque[Fault] = field(default_factory=collections.deque)
    window: collections.deque[float] = field(default_factory=collections.deque)
    log: collections.deque[Record] = field(default_factory=lambda: collections.deque(maxlen=20000))
    throttled: int = 0

    def __post_init__(self) -> None:
        self._doc = functools.lru_cache(maxsize=70000)(self._render)

    # --- ids --------------------------------------------------------------------------------------
    def user_id(self, index: int) -> str:
        return _guid("user", self.seed, index, tail=index)

    def index_of(self, key: Any) -> Optional[int]:
        """The index of a user by object id or userPrincipalName (any case)."""
        if not isinstance(key, str):
            return None
        text = key.lower()
        try:
            index = int(text[-12:], 16) if len(text) == 36 else int(text.split("@")[0].rsplit(".", 1)[1])
        except (ValueError, IndexError):
            return None
        if not 0 <= index < self.users:
            return None
        return index if text in (self.user_id(index), self.upn(index).lower()) else None

    def upn(self, index: int) -> str:
        p = person(index, seed=self.seed)
        return f"{p.first}.{p.last}.{index}@{DOMAIN}".lower()

    def mail(self, index: int) -> Optional[str]:
        p = person(index, seed=self.seed)
        if index % 41 == 40:
            return None  # no mailbox: the connector falls back to the principal name
        if index % 37 == 11:  # a quote in the address: filters must escape it
            return f"{p.first}.o'{p.last}.{index}@tenant{p.tenant}.example".lower()
        return p.email

    # --- users ------------------------------------------------------------------------------------
    def _render(self, index: int) -> dict:
        p = person(index, seed=self.seed)
        return {
            "id": self.user_id(index),
            "displayName": p.display_name,
            "givenName": p.first,
            "surname": p.last,
            "mail": self.mail(index),
            "userPrincipalName": self.upn(index),
            "accountEnabled": p.status == "active",
            "createdDateTime": _iso(p.created_at),
            "userType": "Guest" if index % 53 == 52 else "Member",
            "jobTitle": p.roles[-1].title(),
            "businessPhones": [],
            "mobilePhone": None,
            "officeLocation": p.last_login_country,
            "preferredLanguage": "en-US",
        }

    def user(self, index: int) -> dict:
        doc = self._doc(index)
        if index in self.enabled:
            doc = {**doc, "accountEnabled": self.enabled[index]}
        return doc

    def roles_of(self, index: int) -> list[tuple[str, str, str]]:
        return [(rid, name, tpl) for rid, name, tpl, every, offset in ROLES if index % every == offset]

    # --- risk -------------------------------------------------------------------------------------
    def base_risk(self, index: int) -> Optional[tuple[str, str, str, str]]:
        if index % RISK_EVERY != RISK_OFFSET:
            return None
        n = index // RISK_EVERY
        moment = _iso(EPOCH - timedelta(minutes=n % 40000))
        if n % 20 == 0:
            return "high", "confirmedCompromised", "adminConfirmedUserCompromised", moment
        if n % 10 == 5:
            return "none", "remediated", "userPerformedSecuredPasswordChange", moment
        if n % 10 == 9:
            return "none", "dismissed", "adminDismissedAllRiskForUser", moment
        return ("low", "medium", "high", "medium")[n % 4], "atRisk", "none", moment

    def risk_of(self, index: int) -> Optional[tuple[str, str, str, str]]:
        return self.risk.get(index) or self.base_risk(index)

    def set_risk(self, index: int, level: str, state: str, detail: str = "none") -> None:
        now = datetime.now(timezone.utc)
        self.risk[index] = (
            level,
            state,
            detail,
            now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond:06d}Z",
        )

    def risky_indices(self, start: int = 0) -> Iterator[int]:
        """Indices with a riskyUser record, ascending from `start`."""
        first = start + (RISK_OFFSET - start) % RISK_EVERY
        merged = heapq.merge(range(first, self.users, RISK_EVERY), sorted(i for i in self.risk if i >= start))
        last = -1
        for index in merged:
            if index != last:
                last = index
                yield index

    def risky_user(self, index: int) -> dict:
        level, state, detail, moment = self.risk_of(index) or ("none", "none", "none", _iso(EPOCH))
        doc = self.user(index)
        return {
            "id": doc["id"],
            "isDeleted": False,
            "isProcessing": False,
            "riskLastUpdatedDateTime": moment,
            "riskLevel": level,
            "riskState": state,
            "riskDetail": detail,
            "userDisplayName": doc["displayName"],
            "userPrincipalName": doc["userPrincipalName"],
        }

    # --- tokens and throttling ----------------------------------------------------------------------
    def issue_token(self) -> str:
        token = "eyJ0eXAiOiJKV1QifQ." + secrets.token_urlsafe(32)
        self.tokens[token] = time.monotonic() + self.token_ttl
        self.tokens_issued += 1
        return token

    def expire_tokens(self) -> None:
        self.tokens = dict.fromkeys(self.tokens, 0.0)

    def admit(self) -> Optional[int]:
        if self.throttle is None:
            return None
        limit, period = self.throttle
        now = time.monotonic()
        while self.window and now - self.window[0] >= period:
            self.window.popleft()
        if len(self.window) >= limit:
            self.throttled += 1
            return max(1, math.ceil(self.window[0] + period - now))
        self.window.append(now)
        return None

    def requests_to(self, suffix: str, method: str = "GET") -> list[Record]:
        return [r for r in self.log if r.method == method and r.path.endswith(suffix)]


STATE = web.AppKey("entra_state", EntraState)


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


def _bad(request: web.Request, message: str, code: str = "BadRequest") -> web.Response:
    return graph_error(request, 400, code, message)


def _not_found(request: web.Request, key: str) -> web.Response:
    return graph_error(
        request,
        404,
        "Request_ResourceNotFound",
        f"Resource '{key[:80]}' does not exist or one of its"
        " queried reference-property objects are not present.",
    )


def _aad_error(status: int, error: str, code: int, text: str) -> web.Response:
    trace = str(uuid.uuid4())
    return web.json_response(
        {
            "error": error,
            "error_description": f"AADSTS{code}: {text} Trace ID: {trace}",
            "error_codes": [code],
            "timestamp": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ"),
            "trace_id": trace,
            "correlation_id": str(uuid.uuid4()),
        },
        status=status,
    )


# --- identity platform ----------------------------------------------------------------------------


def _base(request: web.Request) -> str:
    host = request.headers.get("X-Forwarded-Host") or request.host
    return f"{request.headers.get('X-Forwarded-Proto') or request.scheme}://{host}"


async def openid_configuration(request: web.Request) -> web.Response:
    state = request.app[STATE]
    tenant = request.match_info["tenant"]
    if tenant.lower() not in (state.tenant_id, DOMAIN, "organizations", "common"):
        return _aad_error(400, "invalid_tenant", 90002, f"Tenant '{tenant[:60]}' not found.")
    base, tid = _base(request), state.tenant_id
    return web.json_response(
        {
            "token_endpoint": f"{base}/{tid}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": [
                "client_secret_post",
                "private_key_jwt",
                "client_secret_basic",
            ],
            "jwks_uri": f"{base}/{tid}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{base}/{tid}/v2.0",
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
            "authorization_endpoint": f"{base}/{tid}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/{tid}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{base}/{tid}/oauth2/v2.0/logout",
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nbf", "tid", "ver"],
            "kerberos_endpoint": f"{base}/{tid}/kerberos",
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": "graph.microsoft.com",
            "rbac_url": "https://pas.windows.net",
        }
    )


async def token(request: web.Request) -> web.Response:
    """POST /{tenant}/oauth2/v2.0/token: client credentials with a secret or a client assertion."""
    state = request.app[STATE]
    tenant = request.match_info["tenant"]
    form = {key: str(value) for key, value in (await request.post()).items()}
    state.token_forms.append({key: value for key, value in form.items() if "secret" not in key})
    if tenant.lower() not in (state.tenant_id, DOMAIN):
        return _aad_error(400, "invalid_tenant", 90002, f"Tenant '{tenant[:60]}' not found.")
    if form.get("grant_type") != "client_credentials":
        return _aad_error(
            400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type."
        )
    if form.get("scope") != SCOPE:
        return _aad_error(400, "invalid_scope", 1002012, "The provided value for scope is not valid.")
    if not secrets.compare_digest(form.get("client_id", ""), state.client_id):
        return _aad_error(400, "unauthorized_client", 700016, "Application not found in the directory.")
    if "client_assertion" in form:
        problem = _check_assertion(state, form, f"/{tenant}/oauth2/v2.0/token")
        if problem:
            return _aad_error(401, "invalid_client", 700027, problem)
    elif not secrets.compare_digest(form.get("client_secret", ""), state.client_secret):
        return _aad_error(401, "invalid_client", 7000215, "Invalid client secret provided.")
    return web.json_response(
        {
            "token_type": "Bearer",
            "expires_in": state.token_ttl,
            "ext_expires_in": state.token_ttl,
            "access_token": state.issue_token(),
        }
    )


def _check_assertion(state: EntraState, form: dict, path: str) -> Optional[str]:
    if form.get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer":
        return "client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer."
    assertion = form["client_assertion"]
    try:
        header = jwt.get_unverified_header(assertion)
        key = state.certificates.get(str(header.get("x5t", "")))
        if key is None:
            return "Client assertion contains an invalid signature: key not found (x5t)."
        claims = jwt.decode(
            assertion,
            key,
            algorithms=["RS256"],
            options={"verify_aud": False, "require": ["exp", "aud", "iss", "sub", "jti"]},
        )
    except jwt.PyJWTError as exc:
        return f"Client assertion failed validation: {type(exc).__name__}."
    if claims["iss"] != state.client_id or claims["sub"] != state.client_id:
        return "Client assertion iss and sub must be the client id."
    if not str(claims["aud"]).endswith(path):
        return "Client assertion audience is not this token endpoint."
    return None


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
    return str(URL(_base(request)).with_path(request.path).with_query(query))


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
        return _bad(request, "Unable to read JSON request payload.")
    if not isinstance(body, dict) or not body:
        return _bad(request, "Empty Payload. JSON content expected.")
    for key, value in body.items():
        if key == "accountEnabled" and isinstance(value, bool):
            continue
        if (
            key == "passwordProfile"
            and isinstance(value, dict)
            and set(value) <= {"forceChangePasswordNextSignIn", "forceChangePasswordNextSignInWithMfa"}
        ):
            continue
        return _bad(
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
    state = request.app[STATE]
    role = next((r for r in ROLES if r[0] == request.match_info["role"]), None)
    if role is None:
        return _not_found(request, request.match_info["role"])
    top, start = _top(request, MAX_TOP, 100), _skip(request)
    every, offset = role[3], role[4]
    members = range(offset, state.users, every)
    page = members[start : start + top]
    rows = [{"@odata.type": "#microsoft.graph.user", "id": state.user_id(i)} for i in page]
    more = start + top if start + top < len(members) else None
    return _collection(request, "users", rows, more, None)


async def list_risky(request: web.Request) -> web.Response:
    state = request.app[STATE]
    top, start = _top(request, RISKY_MAX_TOP, 20), _skip(request)
    text = request.query.get("$filter")
    node = parse_filter(text, RISKY_FILTERS) if text else None
    since = node.lower_bound("riskLastUpdatedDateTime") if node is not None else None
    indices: Iterator[int]
    if since is not None and since >= _iso(EPOCH):  # seeded records are older: only changed ones
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


async def get_risky(request: web.Request) -> web.Response:
    state = request.app[STATE]
    index = _user_index(request)
    if state.risk_of(index) is None:
        return _not_found(request, request.match_info["id"])
    return web.json_response(state.risky_user(index))


async def risky_verdict(request: web.Request) -> web.Response:
    state = request.app[STATE]
    try:
        body = await request.json()
    except ValueError:
        return _bad(request, "Unable to read JSON request payload.")
    ids = body.get("userIds") if isinstance(body, dict) else None
    if not isinstance(ids, list) or not ids or len(ids) > 60 or not all(isinstance(i, str) for i in ids):
        return _bad(request, "userIds must be a list of 1 to 60 user ids.")
    indices = [state.index_of(i) for i in ids]
    if None in indices:
        return _bad(request, "Invalid user id in userIds.")
    for index in indices:
        assert index is not None
        if request.match_info["verb"] == "confirmCompromised":
            state.set_risk(index, "high", "confirmedCompromised", "adminConfirmedUserCompromised")
        else:
            state.set_risk(index, "none", "dismissed", "adminDismissedAllRiskForUser")
    return web.Response(status=204)


# --- admin ----------------------------------------------------------------------------------------


async def _admin_json(request: web.Request) -> dict:
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(
            text='{"error": "body must be a JSON object"}', content_type="application/json"
        )
    return body


def _admin_error(text: str) -> web.Response:
    return web.json_response({"error": text}, status=400)


async def admin_faults(request: web.Request) -> web.Response:
    """POST /_admin/faults {kind, count, retry_after (null: no header), delay, path, method}."""
    state = request.app[STATE]
    body = await _admin_json(request)
    kind = str(body.get("kind"))
    if kind not in FAULT_KINDS:
        return _admin_error(f"kind must be one of {', '.join(FAULT_KINDS)}")
    if kind == "expire_token":
        state.expire_tokens()
        return web.json_response({"expired": len(state.tokens)})
    try:
        retry_after = body.get("retry_after", 1)
        fault = Fault(
            kind=kind,
            remaining=int(body.get("count", 1)),
            retry_after=None if retry_after is None else int(retry_after),
            delay=float(body.get("delay", 2.0)),
            path=str(body.get("path", "")),
            method=str(body.get("method", "")).upper(),
        )
    except (TypeError, ValueError):
        return _admin_error("count and retry_after must be integers, delay a number of seconds")
    if fault.remaining < 1 or fault.delay < 0:
        return _admin_error("count must be 1 or more, delay 0 or more")
    state.faults.append(fault)
    return web.json_response({"queued": len(state.faults)})


async def admin_clear_faults(request: web.Request) -> web.Response:
    request.app[STATE].faults.clear()
    return web.json_response({"queued": 0})


async def admin_risk(request: web.Request) -> web.Response:
    """POST /_admin/users/{id}/risk {"riskLevel": low|medium|high|hidden|none, "riskState": ...}."""
    state = request.app[STATE]
    index = state.index_of(request.match_info["id"])
    if index is None:
        return web.json_response({"error": "no such user"}, status=404)
    body = await _admin_json(request)
    level, risk_state = body.get("riskLevel"), body.get("riskState", "atRisk")
    if level not in ("low", "medium", "high", "hidden", "none"):
        return _admin_error("riskLevel must be low, medium, high, hidden or none")
    if risk_state not in ("atRisk", "confirmedCompromised", "remediated", "dismissed", "none"):
        return _admin_error("riskState must be atRisk, confirmedCompromised, remediated, dismissed or none")
    state.set_risk(index, level, risk_state)
    return web.json_response(state.risky_user(index))


async def admin_settings(request: web.Request) -> web.Response:
    """POST /_admin/settings {"p2": bool, "throttle": [requests, seconds] | null, "token_ttl": s}."""
    state = request.app[STATE]
    body = await _admin_json(request)
    if "p2" in body:
        state.p2 = bool(body["p2"])
    if "throttle" in body:
        value = body["throttle"]
        state.throttle = None if value is None else (int(value[0]), float(value[1]))
        state.window.clear()
    if "token_ttl" in body:
        state.token_ttl = int(body["token_ttl"])
    return web.json_response({"p2": state.p2, "throttle": state.throttle, "token_ttl": state.token_ttl})


async def admin_stats(request: web.Request) -> web.Response:
    state = request.app[STATE]
    statuses = collections.Counter(record.status for record in state.log)
    return web.json_response(
        {
            "users": state.users,
            "tokens_issued": state.tokens_issued,
            "graph_requests": len(state.log),
            "throttled": state.throttled,
            "by_status": {str(status): n for status, n in sorted(statuses.items())},
        }
    )


# --- middleware -----------------------------------------------------------------------------------


def _take_fault(state: EntraState, request: web.Request) -> Optional[Fault]:
    for fault in state.faults:
        if request.path.startswith(fault.path or "/") and fault.method in ("", request.method):
            fault.remaining -= 1
            if fault.remaining <= 0:
                state.faults.remove(fault)
            return fault
    return None


async def _apply_fault(request: web.Request, fault: Fault) -> Optional[web.StreamResponse]:
    headers = {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
    if fault.kind == "429":
        return graph_error(request, 429, "TooManyRequests", "Too many requests.", **headers)
    if fault.kind == "503":
        return graph_error(request, 503, "serviceNotAvailable", "Service unavailable.", **headers)
    if fault.kind == "500":
        return graph_error(request, 500, "generalException", "An unexpected error occurred.")
    if fault.kind == "slow":
        await asyncio.sleep(fault.delay)
        return None
    if fault.kind == "malformed":
        return web.Response(body=b'{"value": [{"id": "', content_type="application/json")
    assert request.transport is not None  # "drop": close before any byte of an answer
    request.transport.close()
    raise asyncio.CancelledError


@web.middleware
async def graph_middleware(request: web.Request, handler: Callable) -> web.StreamResponse:
    if not request.path.startswith("/v1.0/"):
        return await handler(request)
    state = request.app[STATE]
    record = Record(
        at=time.monotonic(),
        method=request.method,
        path=request.path,
        query=dict(request.query),
        headers={
            k: v for k, v in request.headers.items() if k.lower() in ("client-request-id", "consistencylevel")
        },
    )
    state.log.append(record)
    response = await _respond(request, state, handler)
    record.status = response.status
    if isinstance(response, web.Response) and "request-id" not in response.headers:
        response.headers["request-id"] = str(uuid.uuid4())
    if "client-request-id" in request.headers:
        response.headers["client-request-id"] = request.headers["client-request-id"][:64]
    return response


async def _respond(request: web.Request, state: EntraState, handler: Callable) -> web.StreamResponse:
    fault = _take_fault(state, request)
    if fault is not None:
        answer = await _apply_fault(request, fault)
        if answer is not None:
            return answer
    header = request.headers.get("Authorization", "")
    expires = state.tokens.get(header[len("Bearer ") :]) if header.startswith("Bearer ") else None
    if expires is None:
        return graph_error(request, 401, "InvalidAuthenticationToken", "Access token is empty or not valid.")
    if time.monotonic() >= expires:
        return graph_error(
            request, 401, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired."
        )
    wait = state.admit()
    if wait is not None:
        return graph_error(
            request, 429, "TooManyRequests", "Too many requests.", **{"Retry-After": str(wait)}
        )
    if request.path.startswith("/v1.0/identityProtection/") and not state.p2:
        return graph_error(request, 403, "Forbidden", "Your tenant is not licensed for this feature.")
    try:
        return await handler(request)
    except FilterError as exc:
        return _bad(request, str(exc), exc.code)
    except Missing as exc:
        return _not_found(request, str(exc.args[0]))


# --- app and entry point --------------------------------------------------------------------------


def create_app(
    *,
    users: int = 300,
    seed: int = 0,
    tenant_id: str = "8f3b2a10-0c55-4d6e-9a7b-1c2d3e4f5a6b",
    client_id: str = "00000000-0000-0000-0000-00000000c11e",
    client_secret: str = "sim-secret",  # noqa: S107 - the simulator's own made-up credential
    certificates: Sequence[Any] = (),
    p2: bool = True,
    token_ttl: int = 3599,
    throttle: Optional[tuple[int, float]] = (2000, 10.0),
) -> web.Application:
    """The simulator; `certificates` are public keys paired with x5t values: [(x5t, key), ...]."""
    app = web.Application(middlewares=[graph_middleware])
    app[STATE] = EntraState(
        users=users,
        seed=seed,
        tenant_id=tenant_id.lower(),
        client_id=client_id,
        client_secret=client_secret,
        certificates=dict(certificates),
        p2=p2,
        token_ttl=token_ttl,
        throttle=throttle,
    )
    app.router.add_get("/{tenant}/v2.0/.well-known/openid-configuration", openid_configuration)
    app.router.add_post("/{tenant}/oauth2/v2.0/token", token)
    app.router.add_get("/v1.0/users", list_users)
    app.router.add_get("/v1.0/users/{id}", get_user)
    app.router.add_patch("/v1.0/users/{id}", patch_user)
    app.router.add_post("/v1.0/users/{id}/revokeSignInSessions", revoke_sessions)
    app.router.add_get("/v1.0/users/{id}/transitiveMemberOf/microsoft.graph.directoryRole", member_of_roles)
    app.router.add_get("/v1.0/directoryRoles", list_roles)
    app.router.add_get("/v1.0/directoryRoles/{role}/members/microsoft.graph.user", role_members)
    app.router.add_get("/v1.0/identityProtection/riskyUsers", list_risky)
    app.router.add_get("/v1.0/identityProtection/riskyUsers/{id}", get_risky)
    app.router.add_post(
        "/v1.0/identityProtection/riskyUsers/{verb:confirmCompromised|dismiss}", risky_verdict
    )
    app.router.add_post("/_admin/faults", admin_faults)
    app.router.add_delete("/_admin/faults", admin_clear_faults)
    app.router.add_post("/_admin/users/{id}/risk", admin_risk)
    app.router.add_post("/_admin/settings", admin_settings)
    app.router.add_get("/_admin/stats", admin_stats)
    return app


def main(argv: Optional[Sequence[str]] = None) -> int:
    """`idops sim entra`: serve the simulator until Ctrl-C."""
    parser = argparse.ArgumentParser(prog="idops sim entra", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8403, help="0 picks a free port (printed at start)")
    parser.add_argument("--identities", type=int, default=300, help="users to serve")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--no-p2", action="store_true", help="a tenant without Entra ID P2: riskyUsers is 403"
    )
    parser.add_argument("--throttle", type=int, default=2000, help="requests per 10 s per app (0: no limit)")
    args = parser.parse_args(argv)
    if args.identities < 0 or args.throttle < 0:
        parser.error("--identities and --throttle must be 0 or more")
    env = {
        name: os.environ.get(name, "")
        for name in ("ENTRA_TENANT_ID", "ENTRA_CLIENT_ID", "ENTRA_CLIENT_SECRET")
    }
    generated = {}
    defaults = {
        "ENTRA_TENANT_ID": lambda: str(uuid.uuid4()),
        "ENTRA_CLIENT_ID": lambda: str(uuid.uuid4()),
        "ENTRA_CLIENT_SECRET": lambda: secrets.token_urlsafe(30),
    }
    for name, make in defaults.items():
        if not env[name]:
            env[name] = generated[name] = make()
    app = create_app(
        users=args.identities,
        seed=args.seed,
        tenant_id=env["ENTRA_TENANT_ID"],
        client_id=env["ENTRA_CLIENT_ID"],
        client_secret=env["ENTRA_CLIENT_SECRET"],
        p2=not args.no_p2,
        throttle=(args.throttle, 10.0) if args.throttle else None,
    )

    def announce(url: str) -> None:
        # the credentials are made up for this run, printed so a person can use them
        variables = {"ENTRA_AUTHORITY_URL": url, "ENTRA_GRAPH_URL": url, **generated}
        print_env(f"Entra ID simulator: {args.identities} users", variables)

    return run_until_stopped(app, args.host, args.port, prog="idops sim entra", announce=announce)


if __name__ == "__main__":
    sys.exit(main())

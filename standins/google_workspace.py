"""Google Workspace stand-in: the JWT-bearer token endpoint, Admin SDK Directory users, Alert Center.

Serves what idops and Google's own client (google-api-python-client with its static discovery
documents, google-auth service-account credentials) use, with Google's shapes and error bodies:

* `POST /token`: a service account's JWT (RS256) checked against the trusted key's public half:
  signature, `iss`, `exp`/`iat` (at most an hour, a minute of skew), the scopes (known and granted),
  and `aud` equal to Google's documented https://oauth2.googleapis.com/token whatever URL it was
  posted to (google-auth always signs that). Any delegated `sub` is accepted unless `admin` is set.
* `/admin/directory/v1/users` (list: customer, maxResults ≤ 500, pageToken, query, orderBy),
  `/users/{userKey}` (GET, PATCH `suspended` / `changePasswordAtNextLogin`), `/users/{userKey}/signOut`.
* `/v1beta1/alerts` (Alert Center list: filter on createTime and type, pageSize, pageToken).

The Directory endpoints are in `google_workspace_directory.py`, the data (users, alerts, tokens, quota,
the `query` parser and `fields` masks) in `google_workspace_data.py`.

Users are made on demand from `standins.seed.person(i)`, so any count is servable; only what actions
changed is kept. Serialized users are cached per `fields` mask (room for two masks of 100,000 users, so
clients asking for different fields don't evict each other); an `email:{PREFIX}*` search (primary
addresses and aliases, as Google documents it) reads a sorted index of every address, built at the
first such search, and each prefix's answer is kept for the next pages. Google's search lags (up to
36 hours): `unindexed` users are left out of every search (a `query`), as new users are until Google
indexes them, and still listed without one.
`latency` (`--latency`) delays every API answer alike, for measuring clients against a remote API.
A per-(service account, admin) quota of `quota_per_minute` answers 403 userRateLimitExceeded past the
ceiling. `/_admin/...` (no auth) injects faults and raises alerts.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import time
from collections.abc import Sequence
from typing import Any, Callable, Optional

import jwt
from aiohttp import web

from .common import (
    Fault,
    admin_json,
    drop_connection,
    expire_tokens,
    fault_answer,
    fault_routes,
    run_simulator,
    simulator_parser,
)
from .google_workspace_data import (
    ALERT_PAGE_MAX,
    ALL_SCOPES,
    DIRECTORY,
    FAULT_KINDS,
    GOOGLE_TOKEN_URL,
    JWT_BEARER,
    SCOPE_ALERTS,
    SCOPE_USER,
    SCOPE_USER_READONLY,
    SCOPE_USER_SECURITY,
    QueryError,
    RequestRecord,
    WorkspaceState,
    generate_key,
    parse_fields,
    parse_query,
    project,
    public_key,
)
from .google_workspace_directory import (
    STATE,
    get_user,
    google_error,
    invalid,
    list_users,
    max_results,
    page_token,
    patch_user,
    read_page_token,
    reply,
    sign_out,
)

# what tests, the demo and benchmarks take from here
__all__ = [
    "ALL_SCOPES",
    "GOOGLE_TOKEN_URL",
    "JWT_BEARER",
    "SCOPE_ALERTS",
    "SCOPE_USER",
    "SCOPE_USER_READONLY",
    "STATE",
    "WorkspaceState",
    "create_app",
    "generate_key",
    "main",
    "parse_fields",
    "parse_query",
    "project",
]


def _oauth_error(status: int, error: str, description: str) -> web.Response:
    return web.json_response({"error": error, "error_description": description}, status=status)


# --- token endpoint --------------------------------------------------------------------------------


async def token(request: web.Request) -> web.Response:
    """POST /token: the jwt-bearer grant, checked as Google checks it."""
    state = request.app[STATE]
    form = await request.post()
    if form.get("grant_type") != JWT_BEARER:
        return _oauth_error(
            400, "unsupported_grant_type", "Invalid grant_type: " + str(form.get("grant_type"))[:60]
        )
    assertion = str(form.get("assertion") or "")
    try:
        issuer = jwt.decode(assertion, options={"verify_signature": False}).get("iss")
    except jwt.PyJWTError:
        return _oauth_error(400, "invalid_grant", "Invalid JWT: the assertion is not a JWT.")
    public = state.keys.get(issuer) if isinstance(issuer, str) else None
    if public is None or not isinstance(issuer, str):
        return _oauth_error(400, "invalid_grant", "Invalid grant: account not found")
    try:
        claims = jwt.decode(
            assertion,
            public,
            algorithms=["RS256"],
            audience=GOOGLE_TOKEN_URL,
            leeway=60,
            options={"require": ["iss", "aud", "exp", "iat", "scope"]},
        )
    except jwt.InvalidSignatureError:
        return _oauth_error(400, "invalid_grant", "Invalid JWT Signature.")
    except jwt.InvalidAudienceError:
        return _oauth_error(400, "invalid_grant", "Invalid JWT: Failed audience check.")
    except (jwt.ExpiredSignatureError, jwt.ImmatureSignatureError):
        return _oauth_error(400, "invalid_grant", _TIMEFRAME)
    except jwt.PyJWTError as exc:
        return _oauth_error(400, "invalid_grant", f"Invalid JWT: {str(exc)[:80]}")
    if not isinstance(claims.get("iat"), int) or claims["exp"] - claims["iat"] > 3600:
        return _oauth_error(400, "invalid_grant", _TIMEFRAME)
    scopes = frozenset(str(claims["scope"]).split())
    if not scopes or not scopes <= ALL_SCOPES:
        return _oauth_error(400, "invalid_scope", "Invalid OAuth scope or ID token audience provided.")
    subject = claims.get("sub")
    if subject is not None and not isinstance(subject, str):
        return _oauth_error(400, "invalid_grant", "Invalid email or User ID")
    if state.admin is not None and (subject or "").casefold() != state.admin.casefold():
        return _oauth_error(400, "invalid_grant", "Invalid email or User ID")
    if not scopes <= state.granted_scopes:
        return _oauth_error(401, "unauthorized_client", _UNAUTHORIZED)
    access = state.issue_token(issuer, subject, scopes)
    return web.json_response({"access_token": access, "expires_in": state.token_ttl, "token_type": "Bearer"})


_TIMEFRAME = (
    "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe."
    " Check your iat and exp values in the JWT claim."
)
_UNAUTHORIZED = (
    "Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of"
    " the scopes requested."
)


# --- Alert Center ---------------------------------------------------------------------------------

_ALERT_TERM = re.compile(r'\s*(createTime|type)\s*(>=|<=|=|>|<)\s*"([^"\\]*)"\s*')


def _alert_filter(text: str) -> Callable[[dict], bool]:
    terms = []
    for part in re.split(r"\s+AND\s+", text.strip()) if text.strip() else []:
        match = _ALERT_TERM.fullmatch(part)
        if match is None:
            raise QueryError(f"unsupported filter term {part[:60]!r}")
        terms.append(match.groups())
    ops: dict[str, Callable[[str, str], bool]] = {
        ">=": lambda a, b: a >= b,
        "<=": lambda a, b: a <= b,
        ">": lambda a, b: a > b,
        "<": lambda a, b: a < b,
        "=": lambda a, b: a == b,
    }
    for name, op, value in terms:
        if name == "createTime" and not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", value):
            raise QueryError(f"createTime must be an RFC 3339 timestamp, got {value[:40]!r}")
        if name == "type" and op != "=":
            raise QueryError("type supports only =")

    def keep(alert: dict) -> bool:
        for name, op, value in terms:
            actual = alert[name] if name == "type" else alert["createTime"][:19]
            if not ops[op](actual, value if name == "type" else value[:19]):
                return False
        return True

    return keep


async def list_alerts(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if not state.alert_center:
        return google_error(request, 403, "The caller does not have permission", "forbidden")
    try:
        keep = _alert_filter(request.query.get("filter", ""))
        size = max_results(request, "pageSize", 100, 10**6)
        text = request.query.get("filter", "")
        offset = read_page_token(request.query["pageToken"], text) if request.query.get("pageToken") else 0
    except QueryError as exc:
        return google_error(request, 400, f"Request contains an invalid argument: {exc}", "badRequest")
    size = min(size, ALERT_PAGE_MAX)  # "the server may return fewer items than requested"
    alerts = sorted((a for a in state.alerts if keep(a)), key=lambda a: a["createTime"], reverse=True)
    body: dict[str, Any] = {}
    if alerts[offset : offset + size]:
        body["alerts"] = alerts[offset : offset + size]
    if offset + size < len(alerts):
        body["nextPageToken"] = page_token(offset + size, text)
    return reply(request, body)


# --- admin ----------------------------------------------------------------------------------------


async def admin_alert(request: web.Request) -> web.Response:
    """POST /_admin/alerts {"user": id or email, "type": "Leaked password", "status": "NOT_STARTED"}."""
    state = request.app[STATE]
    body = await admin_json(request)
    index = state.index_of(body.get("user"))
    if index is None:
        return web.json_response({"error": "no such user"}, status=404)
    alert_type, status = body.get("type", "Leaked password"), body.get("status", "NOT_STARTED")
    if not isinstance(alert_type, str) or status not in ("NOT_STARTED", "IN_PROGRESS", "CLOSED"):
        return web.json_response(
            {"error": "type must be text; status NOT_STARTED, IN_PROGRESS or CLOSED"}, status=400
        )
    return web.json_response(state.raise_alert(index, alert_type, status=status), status=201)


async def admin_risk(request: web.Request) -> web.Response:
    """POST /_admin/identity/{id}/risk {"risk_score": 0-100}: open alerts to that level (as the other
    simulators' risk endpoint, for the demo's drift); answers the user's new derived score."""
    state = request.app[STATE]
    index = state.index_of(request.match_info["id"])
    if index is None:
        return web.json_response({"error": "no such user"}, status=404)
    score = (await admin_json(request)).get("risk_score")
    if isinstance(score, bool) or not isinstance(score, int) or not 0 <= score <= 100:
        return web.json_response({"error": "risk_score must be an integer from 0 to 100"}, status=400)
    raised = state.set_risk(index, score)
    return web.json_response({"risk_score": state.risk_score(index), "alerts": raised})


async def admin_stats(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return web.json_response(
        {
            "identities": state.identities,
            "tokens_issued": state.tokens_issued,
            "api_requests": len(state.log),
            "peak_per_minute": state.peak_per_minute,
            "quota_per_minute": state.quota_per_minute,
            "suspended": sorted(i for i, s in state.suspended.items() if s),
            "sign_outs": sum(state.sign_outs.values()),
            "alerts": len(state.alerts),
        }
    )


# --- middleware: faults, authentication, scopes, quota -------------------------------------------

# (method, path pattern) -> scopes any one of which allows the call
_NEEDS = (
    ("POST", re.compile(r"/admin/directory/v1/users/[^/]+/signOut"), {SCOPE_USER_SECURITY}),
    ("PATCH", re.compile(r"/admin/directory/v1/users/[^/]+"), {SCOPE_USER}),
    ("GET", re.compile(r"/admin/directory/v1/users.*"), {SCOPE_USER, SCOPE_USER_READONLY}),
    ("GET", re.compile(r"/v1beta1/alerts"), {SCOPE_ALERTS}),
)


async def _apply_fault(request: web.Request, fault: Fault) -> Optional[web.StreamResponse]:
    headers = {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
    quota = "Quota exceeded for quota metric 'Queries' and limit 'Queries per minute per user'"
    if fault.kind == "400":
        response = invalid(request, "query")  # what Google answers a search it can't parse
    elif fault.kind == "401":  # the token refused, though not expired here: what a revoked one gets
        response = _auth_error(request)
    elif fault.kind == "429":
        response = google_error(request, 429, quota, "rateLimitExceeded", domain="usageLimits")
    elif fault.kind in ("403_user_rate", "403_rate"):
        reason = "userRateLimitExceeded" if fault.kind == "403_user_rate" else "rateLimitExceeded"
        response = google_error(request, 403, quota, reason, domain="usageLimits")
    elif fault.kind in ("500", "503"):
        response = google_error(request, int(fault.kind), "Backend Error", "backendError")
    elif fault.kind == "slow":
        await asyncio.sleep(fault.delay)
        return None
    elif fault.kind == "malformed":
        return web.Response(body=b'{"users": [{"id": "1', content_type="application/json")
    else:
        drop_connection(request)  # "drop"
    response.headers.update(headers)
    return response


def _auth_error(request: web.Request) -> web.Response:
    """Google's 401 for a missing, unknown or expired access token."""
    return google_error(
        request,
        401,
        "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or"
        " other valid authentication credential.",
        "authError",
    )


@web.middleware
async def api_middleware(request: web.Request, handler: Callable) -> web.StreamResponse:
    if request.path in ("/token",) or request.path.startswith("/_admin/"):
        return await handler(request)
    state = request.app[STATE]
    record = RequestRecord(time.monotonic(), request.method, request.path, dict(request.query))
    state.log.append(record)
    response = await _respond(request, state, record, handler)
    record.status = response.status
    return response


async def _respond(
    request: web.Request, state: WorkspaceState, record: RequestRecord, handler: Callable
) -> web.StreamResponse:
    answer = await fault_answer(request, state.faults, _apply_fault)
    if answer is not None:
        return answer
    header = request.headers.get("Authorization", "")
    known = state.tokens.get(header[len("Bearer ") :]) if header.startswith("Bearer ") else None
    if known is None or time.monotonic() >= known[3]:
        return _auth_error(request)
    issuer, subject, scopes, _ = known
    record.subject = subject
    for method, pattern, allowed in _NEEDS:
        if request.method == method and pattern.fullmatch(request.path):
            if not scopes & allowed:
                return google_error(
                    request, 403, "Request had insufficient authentication scopes.", "insufficientPermissions"
                )
            break
    if subject is None and request.path.startswith(DIRECTORY):
        return google_error(request, 403, "Not Authorized to access this resource/api", "forbidden")
    if not state.admit((issuer, subject)):
        message = "Quota exceeded for quota metric 'Queries' and limit 'Queries per minute per user'"
        return google_error(request, 403, message, "userRateLimitExceeded", domain="usageLimits")
    if state.latency:
        await asyncio.sleep(state.latency)
    return await handler(request)


# --- app and entry point ---------------------------------------------------------------------------


def create_app(
    *,
    key: dict,
    identities: int = 300,
    seed: int = 0,
    domain: str = "acme.example",
    customer_id: str = "C03az79cb",
    admin: Optional[str] = None,
    granted_scopes: frozenset[str] = ALL_SCOPES,
    alert_center: bool = True,
    quota_per_minute: Optional[int] = 2400,
    token_ttl: int = 3599,
    latency: float = 0.0,
) -> web.Application:
    """The simulator trusting the service account `key` (a key file's JSON as a dict)."""
    app = web.Application(middlewares=[api_middleware])
    app[STATE] = WorkspaceState(
        identities=identities,
        seed=seed,
        domain=domain,
        customer_id=customer_id,
        keys={key["client_email"]: public_key(key)},
        admin=admin,
        granted_scopes=frozenset(granted_scopes),
        alert_center=alert_center,
        quota_per_minute=quota_per_minute,
        token_ttl=token_ttl,
        latency=latency,
    )
    app.router.add_post("/token", token)
    app.router.add_get(f"{DIRECTORY}/users", list_users)
    app.router.add_get(f"{DIRECTORY}/users/{{userKey}}", get_user)
    app.router.add_patch(f"{DIRECTORY}/users/{{userKey}}", patch_user)
    app.router.add_put(f"{DIRECTORY}/users/{{userKey}}", patch_user)
    app.router.add_post(f"{DIRECTORY}/users/{{userKey}}/signOut", sign_out)
    app.router.add_get("/v1beta1/alerts", list_alerts)
    fault_routes(app, STATE, FAULT_KINDS, expire=expire_tokens, retry_after=None)
    app.router.add_post("/_admin/alerts", admin_alert)
    app.router.add_post("/_admin/identity/{id}/risk", admin_risk)
    app.router.add_get("/_admin/stats", admin_stats)
    return app


def main(argv: Optional[Sequence[str]] = None) -> int:
    """`idops sim google_workspace`: serve the simulator until Ctrl-C."""
    parser = simulator_parser("google_workspace", __doc__, port=8443)
    parser.add_argument("--domain", default="acme.example")
    parser.add_argument("--admin", help="accept only this delegated admin (sub); default: any")
    parser.add_argument("--no-alert-center", action="store_true", help="the admin may not read Alert Center")
    parser.add_argument("--quota-per-minute", type=int, default=2400, help="per service account and admin")
    parser.add_argument("--no-quota", action="store_true", help="serve without a quota")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every API answer")
    args = parser.parse_args(argv)
    if args.identities < 0 or args.identities >= 10**9:
        parser.error("--identities must be from 0 to 999,999,999")
    if args.latency < 0:
        parser.error("--latency must be 0 or more")
    if args.quota_per_minute < 1:
        parser.error("--quota-per-minute must be 1 or more")
    text = os.environ.get("GOOGLE_SERVICE_ACCOUNT_JSON") or ""
    try:
        key = json.loads(text) if text else generate_key()
        app = create_app(
            key=key,
            identities=args.identities,
            seed=args.seed,
            domain=args.domain,
            admin=args.admin,
            alert_center=not args.no_alert_center,
            quota_per_minute=None if args.no_quota else args.quota_per_minute,
            latency=args.latency,
        )
    except (ValueError, KeyError, TypeError):
        print(
            "idops sim google_workspace: GOOGLE_SERVICE_ACCOUNT_JSON is not a service account key file",
            file=sys.stderr,
        )
        return 2

    def variables(url: str) -> dict[str, str]:
        found = {"GOOGLE_WORKSPACE_BASE_URL": url}
        if not text:
            # made up for this run (printed so a person can configure the connector); its token_uri
            # points at this simulator (aud stays Google's URL, as google-auth signs it)
            found["GOOGLE_SERVICE_ACCOUNT_JSON"] = json.dumps({**key, "token_uri": f"{url}/token"})
        return found

    what = f"Google Workspace simulator: {args.identities} users, domain {args.domain}"
    banner = f"{what}\nbase_url and alert_center_url = GOOGLE_WORKSPACE_BASE_URL"
    return run_simulator(app, args, vendor="google_workspace", banner=banner, variables=variables, made_up={})


if __name__ == "__main__":
    sys.exit(main())

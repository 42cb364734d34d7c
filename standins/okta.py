"""Okta Management API stand-in: users, lifecycle, sessions, ITP risk, admin roles, the System Log.

Answers as the spec subset says (shared/specs/okta-management-users.openapi.yaml): User objects,
`Link` paging with `rel="self"` and `rel="next"` as two separate headers, Okta error bodies with an
`errorId`, `X-Rate-Limit-*` headers per endpoint bucket and 429s past them (fixed windows, reset in
epoch seconds), SSWS API tokens and OAuth 2.0 service-app tokens (`standins.okta_auth`). Users are made
on demand from their index (`standins.seed.person(i)`), so a million are servable; only what actions and
admins changed is kept. `--identities N` counts the users a default list returns (DEPROVISIONED users
come on top, one every 101 indices). `/_admin/...` changes risk and admin roles (writing the System Log
events) and injects faults. Admin role assignees and MFA factors live in `standins.okta_iam`.
"""

from __future__ import annotations

import asyncio
import collections
import math
import os
import secrets
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Optional

from aiohttp import web
from multidict import CIMultiDict

from .common import (
    admin_json,
    credentials,
    drop_connection,
    fault_routes,
    run_simulator,
    simulator_parser,
    take_fault,
)
from .okta_auth import OAuthApp, authenticate, invalid_token, token_endpoint
from .okta_data import MAX_LIMIT, MAX_LOG_LIMIT, STATE, OktaState, error, validation_error
from .okta_iam import add_routes as add_iam_routes
from .okta_search import LOG_FILTERS, USER_FILTERS, SearchError, parse_search

FAULT_KINDS = ("401", "429", "500", "slow", "drop", "malformed")
BUCKETS = {"users": 600, "user": 600, "user-other": 600, "logs": 120, "token": 600, "iam": 600}


def _bucket(method: str, path: str) -> str:
    parts = [p for p in path.split("/") if p]
    if parts[:3] == ["api", "v1", "logs"]:
        return "logs"
    if parts[:2] == ["oauth2", "v1"]:
        return "token"
    if parts[:3] == ["api", "v1", "iam"]:
        return "iam"
    if len(parts) == 3:
        return "users"
    return "user" if len(parts) == 4 and method == "GET" else "user-other"


# --- paging ----------------------------------------------------------------------------------------


def _links(request: web.Request, after: Optional[str]) -> CIMultiDict:
    """Two `Link` headers, self first and next second, as Okta sends them."""
    headers: CIMultiDict = CIMultiDict()
    headers.add("Link", f'<{request.url}>; rel="self"')
    if after is not None:
        query = {key: value for key, value in request.query.items() if key != "after"}
        query["after"] = after
        headers.add("Link", f'<{request.url.with_query(query)}>; rel="next"')
    return headers


def _limit(request: web.Request, default: int, high: int) -> int:
    raw = request.query.get("limit")
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SearchError(f"limit: '{raw[:20]}' is not an integer") from None
    if value < 1:
        raise SearchError("limit: must be at least 1")
    return min(value, high)


async def list_users(request: web.Request) -> web.Response:
    state = request.app[STATE]
    query = request.query
    if "q" in query:
        limit = _limit(request, 10, MAX_LIMIT)
        return web.Response(
            body=state.render(state.q_matches(query["q"], limit)), content_type="application/json"
        )
    limit = _limit(request, MAX_LIMIT, MAX_LIMIT)
    after = state.index_of(query["after"]) if "after" in query else -1
    if after is None:
        raise SearchError("after: not a cursor this org issued")
    expression = query.get("search") or query.get("filter")
    if expression is not None:
        allowed = None if "search" in query else USER_FILTERS
        node = parse_search(expression, allowed)
        if query.get("sortBy") not in (None, "id", "created"):
            raise SearchError(f"sortBy: sorting by {query['sortBy'][:40]} is not supported here")
        descending = query.get("sortOrder", "asc").lower() == "desc"
        indices, more = state.search(node, after, limit, descending=descending)
    else:
        indices, more = state.listing(after, limit)
    next_after = state.user_id(indices[-1]) if more and indices else None
    return web.Response(
        body=state.render(indices), content_type="application/json", headers=_links(request, next_after)
    )


def _user_index(request: web.Request, key: str = "id") -> int:
    state = request.app[STATE]
    index = state.lookup(request.match_info[key])
    if index is None:
        raise web.HTTPNotFound(
            text=error(
                404, "E0000007", f"Not found: Resource not found: {request.match_info[key][:60]} (User)"
            ),
            content_type="application/json",
        )
    return index


async def get_user(request: web.Request) -> web.Response:
    state = request.app[STATE]
    index = _user_index(request)
    return web.Response(body=state.render_one(index), content_type="application/json")


async def lifecycle(request: web.Request) -> web.Response:
    state = request.app[STATE]
    index = _user_index(request)
    verb = request.match_info["verb"]
    status = state.status(index)
    if verb == "suspend":
        if status != "ACTIVE":
            return validation_error("suspendUser", "Cannot suspend a user that is not active")
        state.set_status(index, "SUSPENDED", verb)
        return web.json_response({})
    if verb == "unsuspend":
        if status != "SUSPENDED":
            return validation_error("unsuspendUser", "Cannot unsuspend a user that is not suspended")
        state.set_status(index, "ACTIVE", verb)
        return web.json_response({})
    if verb not in ("expire_password", "reset_password"):
        raise web.HTTPNotFound(
            text=error(404, "E0000007", "Not found: Resource not found"), content_type="application/json"
        )
    if status not in ("ACTIVE", "PASSWORD_EXPIRED", "LOCKED_OUT", "RECOVERY"):
        return validation_error(verb, "This operation is not allowed in the user's current status.")
    if verb == "expire_password":
        state.set_status(index, "PASSWORD_EXPIRED", verb)
        return web.Response(body=state.render_one(index), content_type="application/json")
    send = request.query.get("sendEmail")
    if send not in ("true", "false"):
        return web.Response(
            text=error(400, "E0000028", "The request is missing a required parameter.", ["sendEmail"]),
            status=400,
            content_type="application/json",
        )
    state.set_status(index, "RECOVERY", verb)
    if send == "true":
        return web.json_response({})
    token = secrets.token_urlsafe(15)
    return web.json_response({"resetPasswordUrl": f"{state.org_url(request)}/reset_password/{token}"})


async def revoke_sessions(request: web.Request) -> web.Response:
    state = request.app[STATE]
    index = _user_index(request, "userId")
    if request.query.get("oauthTokens", "false") not in ("true", "false"):
        raise SearchError("oauthTokens: must be true or false")
    state.record_action(index, "sessions" + ("+tokens" if request.query.get("oauthTokens") == "true" else ""))
    return web.Response(status=204)


def _no_itp(state: OktaState) -> Optional[web.Response]:
    if state.itp:
        return None
    return web.Response(
        text=error(401, "E0000015", "You do not have permission to access the feature you are requesting"),
        status=401,
        content_type="application/json",
    )


async def get_risk(request: web.Request) -> web.Response:
    state = request.app[STATE]
    missing = _no_itp(state)
    if missing is not None:
        return missing
    index = _user_index(request, "userId")
    return web.json_response(state.risk_body(index, request))


async def put_risk(request: web.Request) -> web.Response:
    state = request.app[STATE]
    missing = _no_itp(state)
    if missing is not None:
        return missing
    index = _user_index(request, "userId")
    try:
        body = await request.json()
    except ValueError:
        return validation_error("riskLevel", "The request body was not well-formed.")
    level = body.get("riskLevel") if isinstance(body, dict) else None
    reason = body.get("riskReason", "override.by.admin") if isinstance(body, dict) else None
    if level not in ("HIGH", "MEDIUM", "LOW"):
        return validation_error("riskLevel", "riskLevel: must be one of HIGH, MEDIUM, LOW")
    if (
        not isinstance(reason, str)
        or len(reason) > 500
        or not all(c.isalnum() or c in " -,." for c in reason)
    ):
        return validation_error(
            "riskReason", "riskReason: only letters, digits, spaces, hyphens, commas and periods"
        )
    state.set_risk(index, level, reason, "user.risk.change", actor="admin")
    return web.json_response({**state.risk_body(index, request), "reason": reason})


async def get_roles(request: web.Request) -> web.Response:
    state = request.app[STATE]
    index = _user_index(request, "userId")
    return web.json_response(state.roles(index, request))


async def list_logs(request: web.Request) -> web.Response:
    state = request.app[STATE]
    query = request.query
    node = parse_search(query["filter"], LOG_FILTERS) if "filter" in query else None
    if query.get("sortOrder", "ASCENDING") not in ("ASCENDING", "DESCENDING"):
        raise SearchError("sortOrder: must be ASCENDING or DESCENDING")
    limit = _limit(request, 100, MAX_LOG_LIMIT)
    events, cursor, more = state.log_page(
        node,
        since=query.get("since"),
        until=query.get("until"),
        after=query.get("after"),
        limit=limit,
        descending=query.get("sortOrder") == "DESCENDING",
    )
    # a bounded query (until given) ends; a polling one always offers its next link
    next_after = cursor if more or ("until" not in query and cursor is not None) else None
    return web.json_response(events, headers=_links(request, next_after))


# --- admin -----------------------------------------------------------------------------------------


def _expire_tokens(state: OktaState) -> dict[str, bool]:
    state.oauth_tokens.clear()
    return {"expired": True}


async def admin_risk(request: web.Request) -> web.Response:
    """POST /_admin/users/{id}/risk {"riskLevel": HIGH|MEDIUM|LOW|NONE, "reason"}: ITP detects a change
    (writes the `user.risk.detect` event)."""
    state = request.app[STATE]
    index = state.lookup(request.match_info["id"])
    if index is None:
        return web.json_response({"error": "no such user"}, status=404)
    body = await admin_json(request)
    level, reason = body.get("riskLevel"), body.get("reason", "Anomalous sign-in")
    if level not in ("HIGH", "MEDIUM", "LOW", "NONE") or not isinstance(reason, str):
        return web.json_response({"error": "riskLevel must be HIGH, MEDIUM, LOW or NONE"}, status=400)
    event = state.set_risk(index, level, reason, "user.risk.detect", actor="itp")
    return web.json_response(event)


async def admin_identity_risk(request: web.Request) -> web.Response:
    """POST /_admin/identity/{id}/risk {"risk_score": 0-100 or null}: the other simulators' admin call
    (the demo's drift uses it), as the ITP level whose idops band holds that score."""
    state = request.app[STATE]
    index = state.lookup(request.match_info["id"])
    if index is None:
        return web.json_response({"error": "no such user"}, status=404)
    score = (await admin_json(request)).get("risk_score")
    if score is not None and (isinstance(score, bool) or not isinstance(score, int) or not 0 <= score <= 100):
        return web.json_response(
            {"error": "risk_score must be an integer from 0 to 100, or null"}, status=400
        )
    level = "NONE" if not score else "LOW" if score <= 20 else "MEDIUM" if score <= 50 else "HIGH"
    return web.json_response(
        state.set_risk(index, level, "Anomalous sign-in", "user.risk.detect", actor="itp")
    )


async def admin_stats(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return web.json_response(
        {
            "requests": len(state.log),
            "by_bucket": dict(collections.Counter(record[1] for record in state.log)),
            "by_status": {
                str(k): v for k, v in collections.Counter(record[2] for record in state.log).items()
            },
            "actions": [list(action) for action in state.actions],
            "events": len(state.events),
        }
    )


# --- middleware: faults, auth, rate limits -----------------------------------------------------------


class Windows:
    """Fixed rate-limit windows per bucket, reset at a whole epoch second like Okta's."""

    def __init__(self, limits: dict[str, int], period: float) -> None:
        self.limits, self.period = limits, period
        self.windows: dict[str, list[float]] = {}

    def admit(self, bucket: str) -> tuple[bool, dict[str, str]]:
        limit = self.limits.get(bucket)
        if limit is None:
            return True, {}
        now = time.time()
        window = self.windows.get(bucket)
        if window is None or now >= window[0]:
            window = self.windows[bucket] = [float(math.ceil(now + self.period)), 0.0]
        window[1] += 1
        allowed = window[1] <= limit
        headers = {
            "X-Rate-Limit-Limit": str(limit),
            "X-Rate-Limit-Remaining": str(max(0, limit - int(window[1]))),
            "X-Rate-Limit-Reset": str(int(window[0])),
        }
        return allowed, headers


@web.middleware
async def api_middleware(request: web.Request, handler: Callable) -> web.StreamResponse:
    if request.path.startswith("/_admin/"):
        return await handler(request)
    state = request.app[STATE]
    state.base_url = f"{request.scheme}://{request.host}"
    bucket = _bucket(request.method, request.path)
    request_id = uuid.uuid4().hex[:20]
    response = await _respond(request, state, bucket, handler)
    response.headers.setdefault("X-Okta-Request-Id", request_id)
    state.log.append((request.method, bucket, response.status, request.path))
    return response


async def _respond(
    request: web.Request, state: OktaState, bucket: str, handler: Callable
) -> web.StreamResponse:
    fault = take_fault(state.faults, request.method, request.path)
    if fault is not None and fault.kind == "slow":
        await asyncio.sleep(fault.delay)
    elif fault is not None and fault.kind == "drop":
        drop_connection(request)
    elif fault is not None and fault.kind == "malformed":
        return web.Response(body=b'[{"id": "00u', content_type="application/json")
    elif fault is not None and fault.kind == "401":  # the token refused, though not expired: a revoked one
        return invalid_token()
    elif fault is not None and fault.kind == "500":
        return web.Response(
            text=error(500, "E0000009", "Internal Server Error"), status=500, content_type="application/json"
        )
    allowed, limits = state.windows.admit(bucket) if state.rate_limits else (True, {})
    if fault is not None and fault.kind == "429":
        limits = {
            "X-Rate-Limit-Limit": limits.get("X-Rate-Limit-Limit", "600"),
            "X-Rate-Limit-Remaining": "0",
        }
        allowed, limits["X-Rate-Limit-Reset"] = False, str(int(time.time()) + 1)
    if not allowed:
        text = error(429, "E0000047", "API call exceeded rate limit due to too many requests.")
        return web.Response(text=text, status=429, content_type="application/json", headers=limits)
    if bucket != "token":
        refusal = authenticate(request, state)
        if refusal is not None:
            refusal.headers.update(limits)
            return refusal
    if state.latency:
        await asyncio.sleep(state.latency)
    try:
        response = await handler(request)
    except SearchError as exc:
        response = web.Response(
            text=error(400, "E0000031", f"Invalid search criteria. {exc}"),
            status=400,
            content_type="application/json",
        )
    except web.HTTPException as exc:
        response = web.Response(text=exc.text, status=exc.status, content_type="application/json")
    response.headers.update(limits)
    return response


# --- app and entry point ---------------------------------------------------------------------------


def create_app(
    *,
    identities: int = 300,
    seed: int = 0,
    api_token: str = "sim-okta-api-token",  # noqa: S107 - the simulator's made-up credential
    itp: bool = True,
    rate_limits: bool | dict[str, int] = True,
    rate_window: float = 60.0,
    oauth: Optional[OAuthApp] = None,
    latency: float = 0.0,
) -> web.Application:
    """The simulator app; `app[STATE]` is its state (tests read and change it directly)."""
    app = web.Application(middlewares=[api_middleware])
    limits = dict(BUCKETS) if rate_limits is True else (dict(rate_limits) if rate_limits else {})
    app[STATE] = OktaState(
        identities=identities,
        seed=seed,
        api_tokens={api_token},
        itp=itp,
        rate_limits=bool(limits),
        windows=Windows(limits, rate_window),
        oauth=oauth,
        latency=latency,
    )
    app.router.add_post("/oauth2/v1/token", token_endpoint)
    app.router.add_get("/api/v1/users", list_users)
    app.router.add_get("/api/v1/users/{id}", get_user)
    app.router.add_post("/api/v1/users/{id}/lifecycle/{verb}", lifecycle)
    app.router.add_delete("/api/v1/users/{userId}/sessions", revoke_sessions)
    app.router.add_get("/api/v1/users/{userId}/risk", get_risk)
    app.router.add_put("/api/v1/users/{userId}/risk", put_risk)
    app.router.add_get("/api/v1/users/{userId}/roles", get_roles)
    app.router.add_get("/api/v1/logs", list_logs)
    add_iam_routes(app)  # admin role assignees and MFA factors (outside the spec subset)
    fault_routes(app, STATE, (*FAULT_KINDS, "expire_token"), expire=_expire_tokens)
    app.router.add_post("/_admin/users/{id}/risk", admin_risk)
    app.router.add_post("/_admin/identity/{id}/risk", admin_identity_risk)
    app.router.add_get("/_admin/stats", admin_stats)
    return app


def main(argv: Optional[Sequence[str]] = None) -> int:
    """`idops sim okta`: serve the simulator until Ctrl-C."""
    parser = simulator_parser("okta", __doc__, port=8403, identities_help="users a default list returns")
    parser.add_argument("--no-itp", action="store_true", help="an org without Identity Threat Protection")
    parser.add_argument("--no-rate-limit", action="store_true", help="serve without rate limits")
    parser.add_argument("--rate-window", type=float, default=60.0, help="seconds per rate-limit window")
    parser.add_argument("--rate-limit", type=int, default=0, help="requests per window in every bucket")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every API answer")
    args = parser.parse_args(argv)
    if args.identities < 0 or args.latency < 0 or args.rate_window <= 0 or args.rate_limit < 0:
        parser.error("--identities, --latency and --rate-limit must be 0 or more, --rate-window above 0")
    env, made_up = credentials(os.environ, {"OKTA_API_TOKEN": lambda: "00" + secrets.token_urlsafe(30)})
    app = create_app(
        identities=args.identities,
        seed=args.seed,
        api_token=env["OKTA_API_TOKEN"],
        itp=not args.no_itp,
        rate_limits=False
        if args.no_rate_limit
        else ({b: args.rate_limit for b in BUCKETS} if args.rate_limit else True),
        rate_window=args.rate_window,
        latency=args.latency,
    )
    return run_simulator(
        app,
        args,
        vendor="okta",
        banner=f"Okta simulator: {args.identities} users",
        variables=lambda url: {"OKTA_BASE_URL": url},
        made_up=made_up,
    )


if __name__ == "__main__":
    sys.exit(main())

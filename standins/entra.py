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

import asyncio
import collections
import os
import secrets
import sys
import time
import uuid
from collections.abc import Callable, Sequence
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
from .entra_graph import (
    REGISTRATIONS,
    Missing,
    bad_request,
    batch,
    get_registration,
    get_risky,
    get_user,
    graph_error,
    group_members,
    list_registrations,
    list_risky,
    list_roles,
    list_users,
    member_of_roles,
    not_found,
    patch_user,
    revoke_sessions,
    risky_verdict,
    role_members,
)
from .entra_login import openid_configuration, token
from .entra_odata import FilterError
from .entra_state import (
    FAULT_KINDS,
    STATE,
    EntraState,
    Record,
)

# a 0-100 score -> the riskyUser record (riskLevel, riskState) in that band by the connector's rule
SCORE_RISK = (
    (20, ("none", "remediated")),
    (50, ("medium", "atRisk")),
    (75, ("high", "atRisk")),
    (100, ("high", "confirmedCompromised")),
)


# --- admin ----------------------------------------------------------------------------------------


async def admin_risk(request: web.Request) -> web.Response:
    """POST /_admin/users/{id}/risk {"riskLevel": low|medium|high|hidden|none, "riskState": ...}."""
    state = request.app[STATE]
    index = state.index_of(request.match_info["id"])
    if index is None:
        return web.json_response({"error": "no such user"}, status=404)
    body = await admin_json(request)
    level, risk_state = body.get("riskLevel"), body.get("riskState", "atRisk")
    if level not in ("low", "medium", "high", "hidden", "none"):
        return admin_error("riskLevel must be low, medium, high, hidden or none")
    if risk_state not in ("atRisk", "confirmedCompromised", "remediated", "dismissed", "none"):
        return admin_error("riskState must be atRisk, confirmedCompromised, remediated, dismissed or none")
    state.set_risk(index, level, risk_state)
    return web.json_response(state.risky_user(index))


async def admin_risk_score(request: web.Request) -> web.Response:
    """POST /_admin/identity/{id}/risk {"risk_score": 0-100}, as the other simulators take it (the
    demo's drift): the record whose band the connector's rule gives that score (SCORE_RISK)."""
    state = request.app[STATE]
    index = state.index_of(request.match_info["id"])
    if index is None:
        return web.json_response({"error": "no such user"}, status=404)
    score = (await admin_json(request)).get("risk_score")
    if isinstance(score, bool) or not isinstance(score, int) or not 0 <= score <= 100:
        return admin_error("risk_score must be an integer from 0 to 100")
    level, risk_state = next(risk for top, risk in SCORE_RISK if score <= top)
    state.set_risk(index, level, risk_state)
    return web.json_response(state.risky_user(index))


async def admin_settings(request: web.Request) -> web.Response:
    """POST /_admin/settings {"p2": bool, "throttle": [requests, seconds] | null, "token_ttl": s,
    "group_read": bool (false: group members are refused, as to an app without GroupMember.Read.All),
    "mfa_reports": bool (false: registration details are refused, as without Entra ID P1 or
    AuditLog.Read.All)}."""
    state = request.app[STATE]
    body = await admin_json(request)
    if "p2" in body:
        state.p2 = bool(body["p2"])
    if "throttle" in body:
        value = body["throttle"]
        state.throttle = None if value is None else (int(value[0]), float(value[1]))
        state.window.clear()
    if "token_ttl" in body:
        state.token_ttl = int(body["token_ttl"])
    if "group_read" in body:
        state.group_read = bool(body["group_read"])
    if "mfa_reports" in body:
        state.mfa_reports = bool(body["mfa_reports"])
    return web.json_response(
        {
            "p2": state.p2,
            "throttle": state.throttle,
            "token_ttl": state.token_ttl,
            "group_read": state.group_read,
            "mfa_reports": state.mfa_reports,
        }
    )


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


async def _apply_fault(request: web.Request, fault: Fault) -> Optional[web.StreamResponse]:
    headers = {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
    if fault.kind == "401":  # the token refused, though not expired here: what a revoked one gets
        return graph_error(request, 401, "InvalidAuthenticationToken", "Access token is empty or not valid.")
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
    drop_connection(request)  # "drop"


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
    answer = await fault_answer(request, state.faults, _apply_fault)
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
    if request.path.startswith("/v1.0/reports/") and not state.mfa_reports:
        return graph_error(
            request,
            403,
            "Authentication_RequestFromNonPremiumTenantOrB2CTenant",
            "Neither tenant is B2C or tenant doesn't have premium license",
        )
    try:
        return await handler(request)
    except FilterError as exc:
        return bad_request(request, str(exc), exc.code)
    except Missing as exc:
        return not_found(request, str(exc.args[0]))


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
    app.router.add_post("/v1.0/$batch", batch)
    app.router.add_get("/v1.0/users/{id}", get_user)
    app.router.add_patch("/v1.0/users/{id}", patch_user)
    app.router.add_post("/v1.0/users/{id}/revokeSignInSessions", revoke_sessions)
    app.router.add_get("/v1.0/users/{id}/transitiveMemberOf/microsoft.graph.directoryRole", member_of_roles)
    app.router.add_get("/v1.0/directoryRoles", list_roles)
    app.router.add_get("/v1.0/directoryRoles/{role}/members", role_members)
    app.router.add_get("/v1.0/directoryRoles/{role}/members/microsoft.graph.user", role_members)
    app.router.add_get("/v1.0/groups/{group}/transitiveMembers", group_members)
    app.router.add_get("/v1.0/groups/{group}/transitiveMembers/microsoft.graph.user", group_members)
    app.router.add_get(f"{REGISTRATIONS}", list_registrations)
    app.router.add_get(f"{REGISTRATIONS}/{{id}}", get_registration)
    app.router.add_get("/v1.0/identityProtection/riskyUsers", list_risky)
    app.router.add_get("/v1.0/identityProtection/riskyUsers/{id}", get_risky)
    app.router.add_post(
        "/v1.0/identityProtection/riskyUsers/{verb:confirmCompromised|dismiss}", risky_verdict
    )
    fault_routes(app, STATE, FAULT_KINDS, expire=expire_tokens)
    app.router.add_post("/_admin/users/{id}/risk", admin_risk)
    app.router.add_post("/_admin/identity/{id}/risk", admin_risk_score)
    app.router.add_post("/_admin/settings", admin_settings)
    app.router.add_get("/_admin/stats", admin_stats)
    return app


def main(argv: Optional[Sequence[str]] = None) -> int:
    """`idops sim entra`: serve the simulator until Ctrl-C."""
    parser = simulator_parser("entra", __doc__, port=8404, identities_help="users to serve")
    parser.add_argument(
        "--no-p2", action="store_true", help="a tenant without Entra ID P2: riskyUsers is 403"
    )
    parser.add_argument("--throttle", type=int, default=2000, help="requests per 10 s per app (0: no limit)")
    args = parser.parse_args(argv)
    if args.identities < 0 or args.throttle < 0:
        parser.error("--identities and --throttle must be 0 or more")
    env, made_up = credentials(
        os.environ,
        {
            "ENTRA_TENANT_ID": lambda: str(uuid.uuid4()),
            "ENTRA_CLIENT_ID": lambda: str(uuid.uuid4()),
            "ENTRA_CLIENT_SECRET": lambda: secrets.token_urlsafe(30),
        },
    )
    app = create_app(
        users=args.identities,
        seed=args.seed,
        tenant_id=env["ENTRA_TENANT_ID"],
        client_id=env["ENTRA_CLIENT_ID"],
        client_secret=env["ENTRA_CLIENT_SECRET"],
        p2=not args.no_p2,
        throttle=(args.throttle, 10.0) if args.throttle else None,
    )
    return run_simulator(
        app,
        args,
        vendor="entra",
        banner=f"Entra ID simulator: {args.identities} users",
        variables=lambda url: {"ENTRA_AUTHORITY_URL": url, "ENTRA_GRAPH_URL": url},
        made_up=made_up,
    )


if __name__ == "__main__":
    sys.exit(main())

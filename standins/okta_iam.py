"""The Okta simulator's admin roles and MFA factors beyond the users' own records.

Neither endpoint is in the spec subset idops builds against (shared/specs/okta-management-users), so both
follow Okta's documented shapes as the official `okta` SDK models them (tests parse them with the SDK):

* `GET /api/v1/iam/assignees/users` ("List all users with role assignments", scope `okta.roles.read`):
  `{"value": [{"id", "orn", "_links": {"self", "roles"}}], "_links": {"next": {"href"}}}`, `limit`
  (default 100) and the opaque `after` cursor, the next page named in the body's `_links.next`, not in
  a `Link` header.
* `GET /api/v1/users/{userId}/factors` ("List all enrolled factors", scope `okta.users.read`): a list of
  UserFactor objects (`id`, `factorType`, `provider`, `vendorName`, `status`, `created`, `lastUpdated`,
  `profile`, `_links`).

`/_admin/users/{id}/roles` grants (POST `{"type": "ORG_ADMIN"}`) or revokes (DELETE) an admin role and
writes the System Log event Okta writes (`user.account.privilege.grant` / `.revoke`).
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

from aiohttp import web

from .common import admin_json
from .okta_data import ROLE_TYPES, STATE, OktaState, error, iso
from .okta_search import SearchError
from .seed import person

MAX_ASSIGNEES = 100
# (factorType, provider, vendorName, profile) Okta enrolls; a seeded user holds some of them
FACTORS = (
    ("push", "OKTA", "OKTA", {"deviceType": "SmartPhone_IPhone", "name": "iPhone", "platform": "IOS"}),
    ("token:software:totp", "GOOGLE", "GOOGLE", {"credentialId": None}),
    ("sms", "OKTA", "OKTA", {"phoneNumber": "+15550100"}),
    ("webauthn", "FIDO", "FIDO", {"credentialId": None, "authenticatorName": "Security key"}),
)


def factors(state: OktaState, index: int) -> list[dict]:
    """User `index`'s enrolled factors: none for 15% of users (and STAGED ones), else one to three, a
    tenth of them still PENDING_ACTIVATION."""
    digest = hashlib.sha1(f"mfa:{state.seed}:{index}".encode(), usedforsecurity=False).digest()
    roll = int.from_bytes(digest[:4], "big")
    if roll % 100 < 15 or state.status(index) in ("STAGED", "DEPROVISIONED"):
        return []
    user_id = state.user_id(index)
    enrolled = iso(state.created(index) + timedelta(days=2))
    out: list[dict] = []
    for k in range(1 + (roll >> 8) % 3):
        kind, provider, vendor, profile = FACTORS[digest[4 + k] % len(FACTORS)]
        if any(f["factorType"] == kind for f in out):
            continue
        factor_id = f"{kind[:3].replace(':', 'x')}{user_id[3:]}"
        body = {**profile}
        if "credentialId" in body:
            body["credentialId"] = person(index, seed=state.seed).email
        out.append(
            {
                "id": factor_id,
                "factorType": kind,
                "provider": provider,
                "vendorName": vendor,
                "status": "PENDING_ACTIVATION" if digest[8 + k] % 10 == 0 else "ACTIVE",
                "created": enrolled,
                "lastUpdated": enrolled,
                "profile": body,
                "_links": {
                    "self": {"href": f"{state.base_url}/api/v1/users/{user_id}/factors/{factor_id}"},
                    "user": {"href": f"{state.base_url}/api/v1/users/{user_id}"},
                },
            }
        )
    return out


async def list_factors(request: web.Request) -> web.Response:
    state = request.app[STATE]
    index = state.lookup(request.match_info["userId"])
    if index is None:
        raise web.HTTPNotFound(text=_not_found(request.match_info["userId"]), content_type="application/json")
    return web.json_response(factors(state, index))


def _not_found(what: str) -> str:
    return error(404, "E0000007", f"Not found: Resource not found: {what[:60]} (User)")


async def list_assignees(request: web.Request) -> web.Response:
    """Users holding an admin role, by index after the `after` cursor (a user id), `limit` a page."""
    state = request.app[STATE]
    raw = request.query.get("limit", str(MAX_ASSIGNEES))
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_ASSIGNEES:
        raise SearchError(f"limit: must be an integer from 1 to {MAX_ASSIGNEES}")
    limit = int(raw)
    after = -1
    if "after" in request.query:
        found = state.index_of(request.query["after"])
        if found is None:
            raise SearchError("after: not a cursor this org issued")
        after = found
    page: list[int] = []
    index = after + 1
    more = False
    while index < state.total:
        if state.role_types(index):
            if len(page) == limit:
                more = True
                break
            page.append(index)
        index += 1
    base = f"{state.base_url}/api/v1"
    body: dict[str, Any] = {
        "value": [
            {
                "id": state.user_id(i),
                "orn": f"orn:okta:directory:{org_id(state)}:users:{state.user_id(i)}",
                "_links": {
                    "self": {"href": f"{base}/users/{state.user_id(i)}"},
                    "roles": {"href": f"{base}/users/{state.user_id(i)}/roles"},
                },
            }
            for i in page
        ],
        "_links": {},
    }
    if more:
        href = f"{base}/iam/assignees/users?limit={limit}&after={state.user_id(page[-1])}"
        body["_links"]["next"] = {"href": href}
    return web.json_response(body)


async def admin_roles(request: web.Request) -> web.Response:
    """POST grants an admin role (`{"type": "ORG_ADMIN"}`), DELETE revokes every role the user holds;
    each writes Okta's System Log event."""
    state = request.app[STATE]
    index = state.lookup(request.match_info["id"])
    if index is None:
        return web.json_response({"error": "no such user"}, status=404)
    if request.method == "POST":
        wanted = (await admin_json(request)).get("type")
        role = next((r for r in ROLE_TYPES if r[0] == wanted), None)
        if role is None:
            return web.json_response(
                {"error": f"type must be one of {', '.join(r[0] for r in ROLE_TYPES)}"}, status=400
            )
        state.role_overrides[index] = [role]
        event_type = "user.account.privilege.grant"
    else:
        state.role_overrides[index] = []
        event_type = "user.account.privilege.revoke"
    event = privilege_event(state, index, event_type)
    state.events.append(event)
    return web.json_response(event)


def org_id(state: OktaState) -> str:
    return "00o" + hashlib.sha1(f"org:{state.seed}".encode(), usedforsecurity=False).hexdigest()[:17]


def privilege_event(state: OktaState, index: int, event_type: str) -> dict:
    """The System Log event of an admin role granted to or revoked from user `index` (now)."""
    p = person(index, seed=state.seed)
    published = iso(datetime.now(timezone.utc))
    granted = event_type.endswith(".grant")
    return {
        "uuid": str(
            uuid.uuid5(
                uuid.NAMESPACE_URL, f"okta:{state.seed}:{index}:{published}:{event_type}:{len(state.events)}"
            )
        ),
        "published": published,
        "eventType": event_type,
        "version": "0",
        "severity": "INFO",
        "displayMessage": "Grant user privilege" if granted else "Revoke user privilege",
        "actor": {
            "id": "00u1admin0000000000",
            "type": "User",
            "alternateId": "admin@example.com",
            "displayName": "Org Admin",
        },
        "outcome": {"result": "SUCCESS"},
        "target": [
            {
                "id": state.user_id(index),
                "type": "User",
                "alternateId": p.email,
                "displayName": p.display_name,
            }
        ],
        "debugContext": {
            "debugData": {"privilegeGranted": ", ".join(r[1] for r in state.role_types(index))}
            if granted
            else {}
        },
        "transaction": {"type": "WEB", "id": uuid.uuid4().hex[:20]},
    }


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/iam/assignees/users", list_assignees)
    app.router.add_get("/api/v1/users/{userId}/factors", list_factors)
    app.router.add_post("/_admin/users/{id}/roles", admin_roles)
    app.router.add_delete("/_admin/users/{id}/roles", admin_roles)

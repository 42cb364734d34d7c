"""The HTTP API for SOAR playbooks: create an approval request and read its state.

`POST /api/v1/approvals` {connector, identity, action, reason, requested_by, duration} -> 201 and the
request; `GET /api/v1/approvals/{id}` -> the request. `duration` ("15m", "4h", "3d"; optional) time-boxes
the action: idops undoes it that long after it ran (400, field `duration`, when the provider can't undo
it); the body then carries `containment` {status, due_at, revert_id} once it ran.
Bearer token only (compared in constant time); with no token configured the routes are not mounted at
all. The token is checked before the body is read; a body that is not UTF-8 JSON (too deep, numbers too
long, another charset) is 400, never a 500. Posting the Slack card is the caller's callback, so this
module knows nothing about Slack.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any, Optional

from aiohttp import web

from connectors import ConnectorError

from . import audit
from .approvals import (
    ApprovalRequest,
    ApprovalService,
    Containment,
    InvalidRequest,
    PolicyError,
    RequestNotFound,
    Status,
    parse_action,
    parse_duration,
)

log = logging.getLogger(__name__)

OnCreated = Callable[[ApprovalRequest], Awaitable[None]]

PREFIX = "/api/v1/approvals"
FIELDS = {
    "connector": True,
    "identity": True,
    "action": True,
    "requested_by": True,
    "reason": False,
    "duration": False,
}
SLACK_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
# The API's documented states; EXECUTING is the moment between approval and result.
PUBLIC_STATUS = {Status.EXECUTING: Status.APPROVED}
CARD_MISSING = "The request is stored but its Slack card could not be posted; the same POST again posts it."


def _error(status: int, message: str, field: Optional[str] = None) -> web.Response:
    body: dict[str, Any] = {"error": message}
    if field:
        body["field"] = field
    return web.json_response(body, status=status)


def _body(request: ApprovalRequest, containment: Optional[Containment] = None) -> dict[str, Any]:
    data = request.to_dict()
    if containment is not None:
        data["containment"] = {
            "status": containment.status.value,
            "due_at": audit.iso(containment.due_at),
            "revert_id": containment.revert_id,
        }
    data["status"] = PUBLIC_STATUS.get(request.status, request.status).value
    # where the Slack card is is the bot's business, not the playbook's
    del data["message_channel"], data["message_ts"]
    return data


def _json_body(raw: bytes) -> Any:
    """The body as JSON; InvalidRequest when it is not UTF-8 JSON that Python can hold."""
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        # ValueError: bad JSON, or an integer longer than Python converts; RecursionError: nested too deep
        raise InvalidRequest("The body is not valid JSON.", field="body") from None


def _parse(payload: Any) -> dict[str, str]:
    """The create body's fields as strings; InvalidRequest names the first bad or missing one."""
    if not isinstance(payload, dict):
        raise InvalidRequest("The body must be a JSON object.", field="body")
    unknown = sorted(set(payload) - set(FIELDS))
    if unknown:
        raise InvalidRequest(
            f"Unknown field '{unknown[0]}' (expected: {', '.join(FIELDS)}).", field=unknown[0]
        )
    values: dict[str, str] = {}
    for name, required in FIELDS.items():
        value = payload.get(name, "")
        if not isinstance(value, str):
            raise InvalidRequest(f"Field '{name}' must be a string.", field=name)
        if required and not value.strip():
            raise InvalidRequest(f"Field '{name}' is required.", field=name)
        values[name] = value.strip()
    if not SLACK_USER_ID.match(values["requested_by"]):
        raise InvalidRequest(
            "Field 'requested_by' must be a Slack user id such as U012AB3CD.", field="requested_by"
        )
    return values


def bearer_matches(request: web.Request, token: Optional[str]) -> bool:
    """Whether `request` carries `Authorization: Bearer <token>` (constant time); never with no token."""
    if not token:
        return False
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    # headers arrive decoded with surrogateescape: bytes that are not UTF-8 compare as what they were
    given_bytes = given.strip().encode("utf-8", "surrogateescape")
    return scheme.lower() == "bearer" and hmac.compare_digest(given_bytes, token.encode("utf-8"))


def unauthorized() -> web.Response:
    """401 for a missing or wrong bearer token."""
    response = _error(401, "Missing or wrong bearer token.")
    response.headers["WWW-Authenticate"] = 'Bearer realm="idops"'
    return response


def add_routes(
    app: web.Application,
    service: ApprovalService,
    token: Optional[str],
    on_created: Optional[OnCreated] = None,
) -> bool:
    """Mount the API on `app` when `token` is set (IDOPS_API_TOKEN); returns whether it was mounted.

    `on_created(request)` runs after a request is stored (the server posts the approval card there).
    """
    if not token:
        return False

    def authorized(request: web.Request) -> bool:
        return bearer_matches(request, token)

    async def post_card(created: ApprovalRequest) -> Optional[str]:
        """Run `on_created`; the warning for the answer when the card could not be posted."""
        if on_created is None:
            return None
        try:
            await on_created(created)
        except Exception as exc:  # the request stands; the playbook learns the card is missing
            log.warning("approval %s: posting its card failed (%s)", created.id, type(exc).__name__)
            return CARD_MISSING
        return None

    async def create(request: web.Request) -> web.Response:
        if not authorized(request):
            return unauthorized()
        try:
            values = _parse(_json_body(await request.read()))
            created = await service.request(
                connector=values["connector"],
                identity_id=values["identity"],
                action=parse_action(values["action"]),
                reason=values["reason"],
                requested_by=values["requested_by"],
                source="api",
                duration=parse_duration(values["duration"]) if values["duration"] else None,
            )
        except InvalidRequest as exc:
            return _error(400, exc.message, exc.field)
        except PolicyError as exc:
            existing = exc.request
            if existing is not None:  # the same action is already pending: point at it
                body = {"error": exc.message, "existing": _body(existing)}
                if existing.status is Status.PENDING and existing.message_ts is None:
                    # its card never reached Slack: post it now, as a repeated Slack request does
                    warning = await post_card(existing)
                    if warning:
                        body["warning"] = warning
                return web.json_response(body, status=409)
            return _error(403, exc.message)
        except ConnectorError as exc:
            return _error(502, str(exc))
        body = _body(created)
        warning = await post_card(created)
        if warning:
            body["warning"] = warning
        return web.json_response(body, status=201, headers={"Location": f"{PREFIX}/{created.id}"})

    async def show(request: web.Request) -> web.Response:
        if not authorized(request):
            return unauthorized()
        try:
            found = service.get(request.match_info["id"])
            return web.json_response(_body(found, service.containment(found.id)))
        except RequestNotFound as exc:
            return _error(404, exc.message)

    app.router.add_post(PREFIX, create)
    app.router.add_get(PREFIX + "/{id}", show)
    return True

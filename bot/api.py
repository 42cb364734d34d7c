"""The HTTP API for SOAR playbooks: create an approval request and read its state.

`POST /api/v1/approvals` {connector, identity, action, reason, requested_by} -> 201 and the request;
`GET /api/v1/approvals/{id}` -> the request. Bearer token only (compared in constant time); with no
token configured the routes are not mounted at all. Posting the Slack card is the caller's callback,
so this module knows nothing about Slack.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Optional

from aiohttp import web

from .approvals import ApprovalRequest, ApprovalService

OnCreated = Callable[[ApprovalRequest], Awaitable[None]]


def add_routes(
    app: web.Application,
    service: ApprovalService,
    token: Optional[str],
    on_created: Optional[OnCreated] = None,
) -> bool:
    """Mount the API on `app` when `token` is set (IDOPS_API_TOKEN); returns whether it was mounted.

    `on_created(request)` runs after a request is stored (the server posts the approval card there).
    """
    raise NotImplementedError

"""A HomeBase connector with a change feed fed by HomeBase's own signed `identity.risk_changed` webhooks.

HomeBase's API has nothing to pull changes from (no events endpoint, no `updated_since` filter), so the
real connector stays `incremental = False`. This subclass is how the alerts' incremental sweeps are
tested against the HomeBase simulator all the same: a loopback receiver verifies each webhook the
simulator signs and keeps the last `retain` events; `changes_since` applies each event's new risk to
the identity as it was last listed (risk is all a risk event changes) and reads an identity never
listed with one GET. A cursor is the number of events received; one older than the events kept is
refused as too old, as a provider's retention window would.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any, Optional

import aiohttp
from aiohttp import web

from connectors import Identity, NotFoundError, RiskLevel, ValidationError
from connectors.homebase import HomeBaseConnector, verify_webhook
from connectors.models import Changes
from standins import serving

HOOK_PATH = "/hooks/homebase"


class WebhookFedHomeBase(HomeBaseConnector):
    """HomeBase, plus `changes_since` over the webhooks its simulator signs (see the module docstring)."""

    incremental = True

    def __init__(self, *args: Any, secret: str, retain: int = 1_000_000, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.secret = secret
        self.retain = retain
        self.events: list[dict[str, Any]] = []
        self.dropped = 0  # events no longer kept: cursors before them are too old
        self.refused = 0  # webhooks with a bad signature
        self.known: dict[str, Identity] = {}

    async def iter_pages(
        self,
        *,
        risk_level: Optional[RiskLevel] = None,
        tenant_id: Optional[str] = None,
        privileged: Optional[bool] = None,
        mfa_enrolled: Optional[bool] = None,
        provider: Optional[str] = None,
    ) -> AsyncIterator[list[Identity]]:
        pages = super().iter_pages(
            risk_level=risk_level,
            tenant_id=tenant_id,
            privileged=privileged,
            mfa_enrolled=mfa_enrolled,
            provider=provider,
        )
        async for page in pages:
            for identity in page:
                self.known[identity.id] = replace(identity, raw={})
            yield page

    def receive(self, body: bytes, signature: Optional[str]) -> bool:
        """Keep one signed event; False (and nothing kept) when the signature is wrong."""
        if not verify_webhook(self.secret, body, signature):
            self.refused += 1
            return False
        event = json.loads(body)
        if event.get("type") == "identity.risk_changed":
            self.events.append(event)
            if len(self.events) > self.retain:
                del self.events[0]
                self.dropped += 1
        return True

    async def changes_since(self, cursor: Optional[str], *, tenant_id: Optional[str] = None) -> Changes:
        end = self.dropped + len(self.events)
        if cursor is None:
            return Changes([], str(end))
        if not cursor.isdigit() or not self.dropped <= int(cursor) <= end:
            raise ValidationError("the change cursor is older than the events kept: list identities in full")
        changed: list[Identity] = []
        for event in self.events[int(cursor) - self.dropped :]:
            if tenant_id is not None and event.get("tenant_id") != tenant_id:
                continue
            data = event["data"]
            known = self.known.get(data["identity_id"])
            if known is None:
                try:
                    known = await self.get_identity(data["identity_id"])
                except NotFoundError:
                    continue  # deleted since: the next full sweep forgets it
            else:
                known = replace(
                    known, risk_score=data["risk_score"], risk_level=RiskLevel.parse(data["risk_level"])
                )
            self.known[known.id] = known
            changed.append(known)
        return Changes(changed, str(end))


@contextlib.asynccontextmanager
async def receiving(receive: Callable[[bytes, Optional[str]], bool]) -> AsyncIterator[str]:
    """Serve a webhook receiver on loopback handing each body and signature to `receive` (a feed's);
    yields the URL to give the simulator."""

    async def hook(request: web.Request) -> web.Response:
        ok = receive(await request.read(), request.headers.get("X-HLD-Signature-256"))
        return web.Response(status=204 if ok else 401)

    app = web.Application()
    app.router.add_post(HOOK_PATH, hook)
    async with serving(app) as url:
        yield url + HOOK_PATH


def counting_session() -> tuple[aiohttp.ClientSession, list[str]]:
    """A client session that notes the path of every request it sends (what reaches the provider)."""
    sent: list[str] = []

    async def on_start(_: Any, __: Any, params: aiohttp.TraceRequestStartParams) -> None:
        sent.append(params.url.path)

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_start)
    return aiohttp.ClientSession(trace_configs=[trace]), sent

"""Okta listings and the change feed, mixed into `connectors.okta.OktaConnector` (which supplies the
requests, user reads, roles and ITP state declared below).

Rules: a listing reads risk from the System Log's risk events (one query, not one per user) within its
retention, and roles only for users at HIGH risk unless the `privileged` filter asks for every user's;
with `concurrency` 1 users are paged by Okta's `after` cursor, with more by disjoint `search` partitions
on `created`, each paged by its own cursor, `concurrency` at a time (a worker's error is re-raised to the
consumer and every worker is cancelled when the consumer stops). `changes_since` takes a `published`
time cursor, refuses one that is not a time or older than the log keeps (list in full instead), and
never answers a cursor older than five minutes ago.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import Any, Optional

from . import okta_api as api
from .errors import ValidationError
from .http import Response
from .models import Changes, Identity, RiskLevel, parse_datetime
from .okta_api import PROVIDER, search_term

MAX_PAGE = 200
MAX_LOG_PAGE = 1000
LOG_RETENTION = timedelta(days=90)
RISK_EVENTS = ("user.risk.change", "user.risk.detect")
_IDS_PER_SEARCH = 50


class OktaListing:
    """Listing users (cursor or partitioned), their risk from the System Log, and the change feed."""

    tenant_id: str
    base_url: str
    page_size: int
    concurrency: int
    itp: Optional[bool]

    # supplied by the connector
    async def _json(self, method: str, path: str, **kwargs: Any) -> tuple[Any, Response]:
        raise NotImplementedError

    async def _user_risk(self, user_id: str) -> Optional[str]:
        raise NotImplementedError

    async def _roles(self, user_id: str) -> list[dict]:
        raise NotImplementedError

    def to_identity(
        self,
        user: Any,
        *,
        risk: Optional[str] = None,
        roles: Optional[list[dict]] = None,
        response: Optional[Response] = None,
    ) -> Identity:
        raise NotImplementedError

    # --- listing -----------------------------------------------------------------------------------

    async def iter_pages(
        self,
        *,
        risk_level: Optional[RiskLevel] = None,
        tenant_id: Optional[str] = None,
        privileged: Optional[bool] = None,
        mfa_enrolled: Optional[bool] = None,
        provider: Optional[str] = None,
    ) -> AsyncIterator[list[Identity]]:
        """Pages of users with risk from the System Log (see the module doc); filters apply per page."""
        if (
            (tenant_id is not None and tenant_id != self.tenant_id)
            or (provider is not None and provider != "okta")
            or mfa_enrolled is not None
        ):
            return
        risks = await self._risk_map()
        if risk_level is not None and self.itp is False:
            return
        async for users in self._user_pages():
            page = await self._identities(users, risks, read_all_roles=privileged is not None)
            page = [
                identity
                for identity in page
                if (risk_level is None or identity.risk_level == risk_level)
                and (privileged is None or identity.privileged == privileged)
            ]
            if page:
                yield page

    async def _identities(
        self, users: list[dict], risks: dict[str, str], *, read_all_roles: bool
    ) -> list[Identity]:
        default = "NONE" if self.itp else None
        levels = [risks.get(str(user.get("id")), default) for user in users]
        wanted = [read_all_roles or level == "HIGH" for level in levels]
        roles = await api.gather_limited(
            [self._roles(str(user.get("id"))) for user, want in zip(users, wanted) if want], self.concurrency
        )
        found = iter(roles)
        return [
            self.to_identity(user, risk=level, roles=next(found) if want else None)
            for user, level, want in zip(users, levels, wanted)
        ]

    async def _risk_map(self) -> dict[str, str]:
        """User id -> latest Okta risk level in the System Log's retention; probes ITP first if unknown."""
        if self.itp is None:
            body, _ = await self._json("GET", "/api/v1/users", params={"limit": 1})
            if isinstance(body, list) and body and isinstance(body[0], dict):
                await self._user_risk(str(body[0].get("id")))
        if self.itp is False:
            return {}
        since = datetime.now(timezone.utc) - LOG_RETENTION + timedelta(minutes=5)
        risks: dict[str, str] = {}
        async for event in self._risk_events(api.iso(since)):
            for user_id, level in api.event_risks(event):
                risks[user_id] = level
        return risks

    async def _risk_events(self, since: str) -> AsyncIterator[dict]:
        expression = " or ".join(search_term("eventType", "eq", name) for name in RISK_EVENTS)
        params: Optional[dict] = {
            "filter": expression,
            "since": since,
            "until": api.iso(datetime.now(timezone.utc)),
            "sortOrder": "ASCENDING",
            "limit": MAX_LOG_PAGE,
        }
        path = "/api/v1/logs"
        while True:
            body, response = await self._json("GET", path, params=params)
            if not isinstance(body, list):
                raise api.bad_answer("answered the System Log with something other than a list", response)
            for event in body:
                if isinstance(event, dict):
                    yield event
            following = api.next_link(response, self.base_url)
            if not body or following is None:
                return
            path, params = following, None

    async def _user_pages(self) -> AsyncIterator[list[dict]]:
        if self.concurrency == 1:
            async for users in self._cursor_pages({"limit": self.page_size}):
                yield users
            return
        body, _ = await self._json(
            "GET",
            "/api/v1/users",
            params={"search": api.NOT_DEPROVISIONED, "sortBy": "created", "sortOrder": "asc", "limit": 1},
        )
        first = api.as_datetime(body[0].get("created")) if isinstance(body, list) and body else None
        if first is None:
            async for users in self._cursor_pages({"limit": self.page_size}):
                yield users
            return
        async for users in self._partitioned(
            api.created_partitions(first, datetime.now(timezone.utc), self.concurrency * 4)
        ):
            yield users

    async def _cursor_pages(self, params: dict) -> AsyncIterator[list[dict]]:
        path = "/api/v1/users"
        current: Optional[dict] = params
        while True:
            body, response = await self._json("GET", path, params=current)
            if not isinstance(body, list):
                raise api.bad_answer("answered the user list with something other than a list", response)
            users = [user for user in body if isinstance(user, dict)]
            if users:
                yield users
            following = api.next_link(response, self.base_url)
            if not body or following is None:
                return
            path, current = following, None

    async def _partitioned(self, expressions: list[str]) -> AsyncIterator[list[dict]]:
        """Each expression's pages by its own cursor, `concurrency` partitions at a time."""
        queue: asyncio.Queue = asyncio.Queue(maxsize=self.concurrency)
        todo = iter(expressions)
        done = object()

        async def worker() -> None:
            try:
                for expression in todo:
                    async for users in self._cursor_pages({"search": expression, "limit": self.page_size}):
                        await queue.put(users)
            except BaseException as exc:  # handed to the consumer, which re-raises it
                await queue.put(exc)
                return
            await queue.put(done)

        workers = [asyncio.ensure_future(worker()) for _ in range(min(self.concurrency, len(expressions)))]
        running = len(workers)
        try:
            while running:
                item = await queue.get()
                if item is done:
                    running -= 1
                elif isinstance(item, BaseException):
                    raise item
                else:
                    yield item
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    # --- changes -----------------------------------------------------------------------------------

    async def changes_since(self, cursor: Optional[str], *, tenant_id: Optional[str] = None) -> Changes:
        """Users whose risk the System Log reports changed since `cursor` (a `published` time)."""
        now = datetime.now(timezone.utc)
        if cursor is None or (tenant_id is not None and tenant_id != self.tenant_id):
            return Changes([], api.iso(now - timedelta(minutes=5)))
        try:
            since = parse_datetime(cursor)
        except ValueError:
            since = None
        if since is None:
            raise ValidationError("the change cursor is not a timestamp: list in full", provider=PROVIDER)
        if now - since > LOG_RETENTION - timedelta(minutes=5):
            raise ValidationError(
                "the change cursor is older than the System Log keeps: list in full", provider=PROVIDER
            )
        latest: dict[str, str] = {}
        newest = cursor
        async for event in self._risk_events(cursor):
            for user_id, level in api.event_risks(event):
                latest.pop(user_id, None)
                latest[user_id] = level
            published = event.get("published")
            if isinstance(published, str) and published > newest:
                newest = published
        if self.itp is None and latest:
            self.itp = True
        ids = list(latest)
        users: list[dict] = []
        for start in range(0, len(ids), _IDS_PER_SEARCH):
            chunk = ids[start : start + _IDS_PER_SEARCH]
            expression = api.any_of([search_term("id", "eq", user_id) for user_id in chunk])
            body, response = await self._json(
                "GET", "/api/v1/users", params={"search": expression, "limit": MAX_PAGE}
            )
            if not isinstance(body, list):
                raise api.bad_answer("answered a search with something other than a list", response)
            users.extend(user for user in body if isinstance(user, dict))
        identities = await self._identities(users, latest, read_all_roles=False) if users else []
        return Changes(identities, max(newest, api.iso(now - timedelta(minutes=5))))

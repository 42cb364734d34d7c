"""Okta listings and the change feed, mixed into `connectors.okta.OktaConnector` (which supplies the
requests, user reads, roles, factors and ITP state declared below).

Rules: a listing reads risk from the System Log's risk events (one query, not one per user) within its
retention, and privilege from Okta's list of users holding admin roles (`GET /api/v1/iam/assignees/users`,
paged, one read per listing), so every listed user's `privileged` is known without a request per user;
MFA is read (one factors request per user) only when the `mfa_enrolled` filter asks for it, else it is
unknown. With `concurrency` 1 users are paged by Okta's `after` cursor, with more by disjoint `search`
partitions on `created`, each paged by its own cursor, `concurrency` at a time (a worker's error is
re-raised to the consumer and every worker is cancelled when the consumer stops).

`changes_since` takes a `published` time cursor, refuses one that is not a time or older than the log
keeps (list in full instead), and never answers a cursor older than five minutes ago. It reads the risk
events and the admin-privilege events after the cursor in one query: the admin set of the last full read
is kept current from them (a grant adds the user, a revoke reads that user's roles, a group privilege
change reads the whole set again), so a change sweep costs the log pages and one search per 50 changed
users. Without a set that covers the cursor (a new connector, or a gap) the set is read in full first.
An admin role reached only through joining a group that holds it shows at the next full listing.

A listing's admin set and risk map are compact id maps (`connectors.idmap`, Okta's 20-character ids
packed into 16 bytes); the events a change sweep applies to the admin set are kept beside it. The System
Log is read a page (up to 1,000 events, megabytes) at a time, each event dropped once handed over, so no
page is held while the next one is read.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Container, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Optional

from . import okta_api as api
from .errors import ValidationError
from .http import Response
from .idmap import OKTA_IDS, IdMapBuilder
from .models import Changes, Identity, RiskLevel, parse_datetime
from .okta_api import PROVIDER, search_term
from .partitions import merged

MAX_PAGE = 200
MAX_LOG_PAGE = 1000
MAX_ASSIGNEES = 100
LOG_RETENTION = timedelta(days=90)
RISK_EVENTS = ("user.risk.change", "user.risk.detect")
USER_PRIVILEGE_EVENTS = ("user.account.privilege.grant", "user.account.privilege.revoke")
GROUP_PRIVILEGE_EVENTS = ("group.privilege.grant", "group.privilege.revoke")
_IDS_PER_SEARCH = 50


class AdminSet(Container[str]):
    """Ids of the users holding an admin role: as read in full (a compact map), then as privilege
    events changed them (`add`, `discard`, kept in a dict beside it)."""

    def __init__(self, read: Mapping[str, bool]) -> None:
        self._read = read
        self._changed: dict[str, bool] = {}

    def __contains__(self, user_id: object) -> bool:
        if not isinstance(user_id, str):
            return False
        changed = self._changed.get(user_id)
        return user_id in self._read if changed is None else changed

    def add(self, user_id: str) -> None:
        self._changed[user_id] = True

    def discard(self, user_id: str) -> None:
        self._changed[user_id] = False


class OktaListing:
    """Listing users (cursor or partitioned), their risk from the System Log, and the change feed."""

    tenant_id: str
    base_url: str
    page_size: int
    concurrency: int
    itp: Optional[bool]
    #: ids of users holding an admin role, and since when that set is known (None: not read yet)
    _admins: Optional[AdminSet]
    _admins_at: Optional[datetime]

    # supplied by the connector
    async def _json(self, method: str, path: str, **kwargs: Any) -> tuple[Any, Response]:
        raise NotImplementedError

    async def _user_risk(self, user_id: str) -> Optional[str]:
        raise NotImplementedError

    async def _roles(self, user_id: str) -> list[dict]:
        raise NotImplementedError

    async def _factors(self, user_id: str) -> list[dict]:
        raise NotImplementedError

    def to_identity(
        self,
        user: Any,
        *,
        risk: Optional[str] = None,
        roles: Optional[list[dict]] = None,
        privileged: Optional[bool] = None,
        factors: Optional[list[dict]] = None,
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
        if (tenant_id is not None and tenant_id != self.tenant_id) or (
            provider is not None and provider != "okta"
        ):
            return
        # two pagings at once (the first error cancels the other)
        risks, admins = await api.gather_limited([self._risk_map(), self._read_admins()], 2)
        if risk_level is not None and self.itp is False:
            return
        async for users in self._user_pages():
            page = await self._identities(users, risks, admins, read_factors=mfa_enrolled is not None)
            page = [
                identity
                for identity in page
                if (risk_level is None or identity.risk_level == risk_level)
                and (privileged is None or identity.privileged == privileged)
                and (mfa_enrolled is None or identity.mfa_enrolled == mfa_enrolled)
            ]
            if page:
                yield page

    async def _identities(
        self,
        users: list[dict],
        risks: Mapping[str, str],
        admins: Container[str],
        *,
        read_factors: bool = False,
    ) -> list[Identity]:
        default = "NONE" if self.itp else None
        ids = [str(user.get("id")) for user in users]
        factors: list[Optional[list[dict]]] = [None] * len(users)
        if read_factors:
            factors = await api.gather_limited([self._factors(i) for i in ids], self.concurrency)
        return [
            self.to_identity(user, risk=risks.get(i, default), privileged=i in admins, factors=f)
            for user, i, f in zip(users, ids, factors)
        ]

    async def _read_admins(self) -> AdminSet:
        """Every user holding an admin role (Okta's role assignees, paged by the body's `_links.next`);
        kept as the set the change feed updates."""
        started = datetime.now(timezone.utc)
        admins: IdMapBuilder[bool] = IdMapBuilder(codec=OKTA_IDS)
        path, params = "/api/v1/iam/assignees/users", {"limit": MAX_ASSIGNEES}
        current: Optional[dict] = params
        while True:
            body, response = await self._json("GET", path, params=current)
            value = body.get("value") if isinstance(body, dict) else None
            if not isinstance(value, list):
                raise api.bad_answer("answered the admin role assignees without a value list", response)
            for entry in value:
                if isinstance(entry, dict) and isinstance(entry.get("id"), str):
                    admins.add(entry["id"], True)
            following = api.body_next(body, self.base_url, response)
            if not value or following is None:
                break
            path, current = following, None
        self._admins, self._admins_at = AdminSet(admins.build()), started
        return self._admins

    async def _risk_map(self) -> Mapping[str, str]:
        """User id -> latest Okta risk level in the System Log's retention; probes ITP first if unknown."""
        if self.itp is None:
            body, _ = await self._json("GET", "/api/v1/users", params={"limit": 1})
            if isinstance(body, list) and body and isinstance(body[0], dict):
                await self._user_risk(str(body[0].get("id")))
        if self.itp is False:
            return {}
        since = datetime.now(timezone.utc) - LOG_RETENTION + timedelta(minutes=5)
        risks: IdMapBuilder[str] = IdMapBuilder(codec=OKTA_IDS)  # the latest event wins
        async for event in self._log_events(api.iso(since), RISK_EVENTS):
            for user_id, level in api.event_risks(event):
                risks.add(user_id, level)
        return risks.build()

    async def _log_events(self, since: str, event_types: tuple[str, ...]) -> AsyncIterator[dict]:
        """System Log events of these types since `since` until now, oldest first."""
        expression = " or ".join(search_term("eventType", "eq", name) for name in event_types)
        params: Optional[dict] = {
            "filter": expression,
            "since": since,
            "until": api.iso(datetime.now(timezone.utc)),
            "sortOrder": "ASCENDING",
            "limit": MAX_LOG_PAGE,
        }
        path: Optional[str] = "/api/v1/logs"
        while path is not None:
            body, response = await self._json("GET", path, params=params)
            if not isinstance(body, list):
                raise api.bad_answer("answered the System Log with something other than a list", response)
            path, params = api.next_link(response, self.base_url) if body else None, None
            # a page of 1,000 events is megabytes: each is dropped once handed over, and the raw answer
            # at once, so none of this page is left when the next one is read
            del response
            body.reverse()
            while body:
                event = body.pop()
                if isinstance(event, dict):
                    yield event

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

    def _partitioned(self, expressions: list[str]) -> AsyncIterator[list[dict]]:
        """Each expression's pages by its own cursor, `concurrency` partitions at a time."""

        def start(expression: str) -> Callable[[], AsyncIterator[list[dict]]]:
            return lambda: self._cursor_pages({"search": expression, "limit": self.page_size})

        return merged([start(expression) for expression in expressions], self.concurrency)

    # --- changes -----------------------------------------------------------------------------------

    async def changes_since(self, cursor: Optional[str], *, tenant_id: Optional[str] = None) -> Changes:
        """Users whose risk or admin privilege the System Log reports changed since `cursor` (a
        `published` time)."""
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
        known = self._admins is not None and self._admins_at is not None and self._admins_at >= since
        latest: dict[str, str] = {}
        granted: dict[str, bool] = {}  # user -> the last privilege event was a grant (else a revoke)
        regroup = False
        newest = cursor
        event_types = RISK_EVENTS + USER_PRIVILEGE_EVENTS + GROUP_PRIVILEGE_EVENTS
        async for event in self._log_events(cursor, event_types):
            kind = event.get("eventType")
            if kind in RISK_EVENTS:
                for user_id, level in api.event_risks(event):
                    latest.pop(user_id, None)
                    latest[user_id] = level
            elif kind in USER_PRIVILEGE_EVENTS:
                for user_id in api.event_users(event):
                    granted.pop(user_id, None)
                    granted[user_id] = kind == USER_PRIVILEGE_EVENTS[0]
            else:
                regroup = True
            published = event.get("published")
            if isinstance(published, str) and published > newest:
                newest = published
        if self.itp is None and latest:
            self.itp = True
        admins = await self._current_admins(granted, reread=regroup or not known, now=now)
        for user_id in granted:  # a privilege change can move a HIGH user to critical and back
            if user_id not in latest and self.itp is not False:
                read = await self._user_risk(user_id)
                if read is not None:
                    latest[user_id] = read
        users = await self._users_by_id(list(dict.fromkeys([*latest, *granted])))
        identities = await self._identities(users, latest, admins) if users else []
        return Changes(identities, max(newest, api.iso(now - timedelta(minutes=5))))

    async def _current_admins(self, granted: dict[str, bool], *, reread: bool, now: datetime) -> AdminSet:
        """The admin set after these privilege events (read in full when it can't be updated)."""
        if reread or self._admins is None:
            return await self._read_admins()
        admins = self._admins
        revoked = [user_id for user_id, grant in granted.items() if not grant]
        roles = await api.gather_limited([self._roles(user_id) for user_id in revoked], self.concurrency)
        for user_id, grant in granted.items():
            if grant:
                admins.add(user_id)
        for user_id, held in zip(revoked, roles):
            if any(role.get("status", "ACTIVE") == "ACTIVE" for role in held):  # another role remains
                admins.add(user_id)
            else:
                admins.discard(user_id)
        self._admins_at = now
        return admins

    async def _users_by_id(self, ids: list[str]) -> list[dict]:
        """The users with these ids, by `search` (50 ids a request)."""
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
        return users

"""Listing Google Workspace users, mixed into `connectors.google_workspace.GoogleWorkspaceConnector`
(which supplies the requests, the alert index and the settings declared below).

Rules: users.list pages only through `nextPageToken`, one page after the other. Asking for the next
page while this one is converted (`prefetch`) is the only overlap a single listing has, and a partial
response (`fields`: what `user_identity` reads) keeps each page small.

`listing = "sequential"` (the default) is that plain listing: Google's consistent view of every user.

`listing = "partitioned"` pages disjoint searches at once, `email:_*`, `email:-*`, `email:a*` …
`email:9*` (Google documents `email:{PREFIX}*` as matching the primary address and the aliases, so a
user found twice through an alias is kept once), `listing_concurrency` at a time. Directory search is
eventually consistent (Google: most changes show within an hour, some take up to 36 hours), and a
username may begin with a character no partition covers (accents, `'` and other symbols are allowed),
so a partitioned listing is checked against the last plain one: if any user that listing saw is not
found, it goes on with the plain listing (skipping who it already gave) and that becomes the new
baseline; a plain listing also runs first and whenever the last one is older than `full_listing_hours`.
When Google refuses a search (a 400: its documentation does not say whether a prefix may begin with
`_` or `-`, though usernames may), that listing goes on plain, and so do the next ones until
`full_listing_hours` have passed: a refusal that lasts costs a few searches a period, not every sweep.
The symbol prefixes are searched first, so a refusal comes before the other searches are done.
What this guarantees and what it can't is in the README (Google Workspace, "Listing modes").
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable
from typing import Any, Callable, Optional

from .errors import ValidationError
from .google_workspace_api import (
    DIRECTORY,
    USER_FIELDS,
    AlertIndex,
    bad_answer,
    query_term,
    user_identity,
)
from .google_workspace_auth import DirectoryRequests
from .http import Response
from .models import Identity, RiskLevel
from .partitions import merged

log = logging.getLogger(__name__)

#: first characters of the partitions: the symbols a prefix search can carry (first: if Google refuses
#: one, little else was asked for in vain), letters and digits
PREFIXES = tuple("_-abcdefghijklmnopqrstuvwxyz0123456789")
LISTINGS = ("sequential", "partitioned")


def _ids(users: list[Any]) -> list[str]:
    return [u["id"] for u in users if isinstance(u, dict) and isinstance(u.get("id"), str)]


class GoogleWorkspaceListing(DirectoryRequests):
    """`iter_pages`: the plain listing, or disjoint email-prefix searches checked against it."""

    name: str
    customer: str
    page_size: int
    listing: str
    listing_concurrency: int
    full_listing_seconds: float
    #: the user ids of the last complete plain listing and when it ended (partitioned mode only)
    _baseline: Optional[set[str]]
    _baseline_at: float
    #: when Google last refused a partition's search (None: never); plain listings until it is old
    _refused_at: Optional[float]

    # supplied by the connector (and `_api`, see DirectoryRequests)
    def _object(self, response: Response) -> dict:
        raise NotImplementedError

    async def _alert_index(self, *, fresh: bool = False) -> Optional[AlertIndex]:
        raise NotImplementedError

    async def _user_pages(
        self, query: Optional[str], page_size: Optional[int] = None, *, prefetch: bool = False
    ) -> AsyncIterator[tuple[list[Any], Response]]:
        """users.list page by page (`pageToken` → `nextPageToken`), only the fields `to_identity`
        reads (a partial response); a token seen twice is refused. With `prefetch` the next page is
        requested before this one is handed over, so Google works while the caller converts."""
        seen: set[str] = set()
        size = page_size or self.page_size

        def fetch(token: Optional[str]) -> Awaitable[Response]:
            params = {"customer": self.customer, "maxResults": size, "pageToken": token, "query": query}
            return self._api("GET", f"{DIRECTORY}/users", params={**params, "fields": USER_FIELDS})

        pending: Optional[asyncio.Future[Response]] = None
        try:
            response = await fetch(None)
            while True:
                body = self._object(response)
                users = body.get("users", [])  # Google leaves "users" out of an empty page
                if not isinstance(users, list):
                    raise bad_answer(response, "a user list whose 'users' is not an array")
                page_token = body.get("nextPageToken") or None
                if page_token is not None:
                    if not isinstance(page_token, str) or page_token in seen:
                        raise bad_answer(response, "a 'nextPageToken' that repeats or is not a string")
                    seen.add(page_token)
                    if prefetch:
                        pending = asyncio.ensure_future(fetch(page_token))
                        # one turn of the loop puts that request on the wire (a kept-alive connection
                        # needs no more), so Google serves it while the caller converts this page
                        await asyncio.sleep(0)
                yield users, response
                if page_token is None:
                    return
                response = await (pending if pending is not None else fetch(page_token))
                pending = None
        finally:
            if pending is not None:  # the caller stopped early: drop the request in flight
                pending.cancel()
                await asyncio.gather(pending, return_exceptions=True)

    def _partitions(self) -> list[Callable[[], AsyncIterator[tuple[list[Any], Response]]]]:
        def start(prefix: str) -> Callable[[], AsyncIterator[tuple[list[Any], Response]]]:
            return lambda: self._user_pages(query_term("email", ":", prefix, prefix=True))

        return [start(prefix) for prefix in PREFIXES]

    def _partitioned_now(self, query: Optional[str]) -> bool:
        """Whether this listing may be partitioned: the mode is on, no filter goes into the query, a
        plain listing ended less than `full_listing_seconds` ago (its users are the check), and Google
        has not refused a search in that time."""
        now = time.monotonic()
        return (
            self.listing == "partitioned"
            and query is None
            and self._baseline is not None
            and now - self._baseline_at < self.full_listing_seconds
            and (self._refused_at is None or now - self._refused_at >= self.full_listing_seconds)
        )

    async def _raw_pages(self, query: Optional[str]) -> AsyncIterator[tuple[list[Any], Response]]:
        """Every user's page once: partitioned (then the plain listing for what it missed) or plain."""
        given: set[str] = set()
        if self._partitioned_now(query):
            try:
                async for users, response in merged(self._partitions(), self.listing_concurrency):
                    fresh = [u for u in users if not (isinstance(u, dict) and u.get("id") in given)]
                    given.update(_ids(fresh))
                    yield fresh, response
            except ValidationError as exc:
                # Google refused a search (a 400): the plain listing still lists everyone, now and until
                # full_listing_hours have passed
                self._refused_at = time.monotonic()
                log.warning(
                    "%s: a partition's search was refused (%s); listing in full, and without searches for"
                    " the next %g hours",
                    self.name,
                    exc,
                    self.full_listing_seconds / 3600,
                )
            else:
                missing = len((self._baseline or set()) - given)
                if not missing:
                    return
                log.info(
                    "%s: the partitioned listing missed %d user(s) of the last full listing (search lags, or"
                    " an address begins with a character no partition covers); listing in full",
                    self.name,
                    missing,
                )
        baseline: Optional[set[str]] = set() if self.listing == "partitioned" and query is None else None
        async for users, response in self._user_pages(query, prefetch=True):
            if baseline is not None:
                baseline.update(_ids(users))
            if given:  # after a partitioned listing: only who it did not give
                users = [u for u in users if not (isinstance(u, dict) and u.get("id") in given)]
            yield users, response
        if baseline is not None:
            self._baseline, self._baseline_at = baseline, time.monotonic()

    async def iter_pages(
        self,
        *,
        risk_level: Optional[RiskLevel] = None,
        tenant_id: Optional[str] = None,
        privileged: Optional[bool] = None,
        mfa_enrolled: Optional[bool] = None,
        provider: Optional[str] = None,
    ) -> AsyncIterator[list[Identity]]:
        """Every user, one Directory page at a time. `mfa_enrolled` and `privileged=False` go into the
        query; `privileged=True` (super or delegated admin: the query has no OR), tenant and risk are
        applied to each page here. Risk filters match nothing while Alert Center can't be read."""
        if provider is not None and provider != "google_workspace":
            return
        terms = []
        if mfa_enrolled is not None:
            terms.append(query_term("isEnrolledIn2Sv", "=", mfa_enrolled))
        if privileged is False:
            terms += [query_term("isAdmin", "=", False), query_term("isDelegatedAdmin", "=", False)]
        alerts = await self._alert_index(fresh=True)
        if risk_level is not None and alerts is None:
            return
        filtered = any(f is not None for f in (risk_level, tenant_id, privileged, mfa_enrolled))

        def keep(identity: Identity) -> bool:
            return (
                (risk_level is None or identity.risk_level == risk_level)
                and (tenant_id is None or identity.tenant_id == tenant_id)
                and (privileged is None or identity.privileged == privileged)
                and (mfa_enrolled is None or identity.mfa_enrolled == mfa_enrolled)
            )

        async for users, response in self._raw_pages(" ".join(terms) or None):
            page = [user_identity(self.name, user, response, alerts) for user in users]
            if filtered:
                page = [identity for identity in page if keep(identity)]
            if page:
                yield page

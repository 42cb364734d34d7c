"""Entra listings and the change feed, mixed into `connectors.entra.EntraConnector` (which supplies the
Graph requests, paging and identity mapping declared below).

Rules: a listing reads the members of every activated directory role once (and the transitive members of
each role-assignable group among them once) and the riskyUsers not at the default, both at once (if one
read fails the other is cancelled), then pages `/users`; a tenant without Entra ID P2 (403 on
riskyUsers) has unknown risk for everyone, logged once per connector. The change feed takes a
riskLastUpdatedDateTime cursor, refuses one unreadable or older than 90 days (list in full instead),
reads the changed users 15 a request and 20 requests a JSON `$batch` (a read the batch did not answer
with 200 is sent on its own), with roles as the last listing read them (at most ROLES_MAX_AGE old).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Optional, TypeVar
from urllib.parse import quote, urlencode

from .entra_api import (
    BATCH_MAX,
    CURSOR_MAX_AGE,
    ID_FILTER_MAX,
    MAX_PAGE,
    NO_RISK,
    PROVIDER,
    REGISTRATIONS,
    RISKY_PAGE,
    ROLES_MAX_AGE,
    UNKNOWN_MFA,
    UNKNOWN_RISK,
    USER_FIELDS,
    GraphRequests,
    header_id,
    odata_string,
    odata_time,
    registration_mfa,
    risk_band,
    text_or_none,
)
from .errors import PermissionDeniedError, ValidationError
from .idmap import IdMap, IdMapBuilder
from .models import Changes, Identity, RiskLevel, parse_datetime

log = logging.getLogger(__name__)
A = TypeVar("A")
B = TypeVar("B")


class EntraListing(GraphRequests):
    """Role members, risky users, the user listing and the change feed."""

    name: str
    tenant_id: str
    page_size: int
    risk_available: Optional[bool]
    mfa_available: Optional[bool]
    _clock: Callable[[], float]
    _roles: Optional[tuple[float, Mapping[str, tuple[str, ...]]]]

    # supplied by the connector
    def _collection(
        self, path: str, params: Mapping[str, Any], *, advanced: bool = False
    ) -> AsyncIterator[tuple[list, str]]:
        raise NotImplementedError

    def to_identity(
        self,
        user: Any,
        roles: Sequence[str] = (),
        risk: tuple[Optional[int], Optional[RiskLevel]] = UNKNOWN_RISK,
        request_id: Optional[str] = None,
        mfa: tuple[Optional[bool], tuple[str, ...]] = UNKNOWN_MFA,
    ) -> Identity:
        raise NotImplementedError

    async def role_members(self) -> IdMap[tuple[str, ...]]:
        """user id -> names of the activated directory roles it holds, directly or through a
        role-assignable group (a compact map: `connectors.idmap`). Each role's members are read once
        (users, groups and apps, 1,000 a page: Graph takes no `$top` there), then each such group's
        transitive user members once, whatever number of roles it holds."""
        members: IdMapBuilder[tuple[str, ...]] = IdMapBuilder(_more_roles)
        groups: dict[str, tuple[str, ...]] = {}  # group id -> the roles it holds

        def grant(user: Any, names: tuple[str, ...]) -> None:
            if isinstance(user, dict) and isinstance(user.get("id"), str):
                members.add(user["id"], names)

        async for roles, _ in self._collection("/v1.0/directoryRoles", {"$select": "id,displayName"}):
            for role in roles:
                if not isinstance(role, dict) or not isinstance(role.get("id"), str):
                    continue
                name = text_or_none(role.get("displayName")) or role["id"]
                path = f"/v1.0/directoryRoles/{quote(role['id'], safe='')}/members"
                async for rows, _ in self._collection(path, {"$select": "id"}):
                    for row in rows:
                        kind = row.get("@odata.type") if isinstance(row, dict) else None
                        if kind == "#microsoft.graph.user":
                            grant(row, (name,))
                        elif kind == "#microsoft.graph.group" and isinstance(row.get("id"), str):
                            groups[row["id"]] = _more_roles(groups.get(row["id"], ()), (name,))
                        # service principals (apps) and devices hold roles too, but are no identity
        for group_id, names in groups.items():
            path = f"/v1.0/groups/{quote(group_id, safe='')}/transitiveMembers/microsoft.graph.user"
            try:
                async for users, _ in self._collection(path, {"$select": "id", "$top": MAX_PAGE}):
                    for user in users:
                        grant(user, names)
            except PermissionDeniedError as exc:
                exc.message += (
                    " (a group holds a directory role: reading its members needs GroupMember.Read.All;"
                    " without it its members' privilege would be missed, so the listing stops)"
                )
                raise
        return members.build()

    async def risk_by_user(self, since: Optional[str] = None) -> Optional[Mapping[str, tuple]]:
        """user id -> (score, band) for riskyUsers not at the default (no risk), as a compact map
        (`connectors.idmap`); None without P2. With `since` (an OData DateTimeOffset), a dict of those
        whose risk changed after it, all kept, to (score, band, riskLastUpdatedDateTime)."""
        params: dict[str, Any] = {
            "$select": "id,riskLevel,riskState,riskLastUpdatedDateTime",
            "$top": RISKY_PAGE,
        }
        if since is not None:
            params["$filter"] = f"riskLastUpdatedDateTime gt {since}"
        found: dict[str, tuple] = {}
        bands: IdMapBuilder[tuple] = IdMapBuilder()
        try:
            async for rows, _ in self._collection("/v1.0/identityProtection/riskyUsers", params):
                for row in rows:
                    if not isinstance(row, dict) or not isinstance(row.get("id"), str):
                        continue
                    band = risk_band(row.get("riskState"), row.get("riskLevel"))
                    if since is not None:
                        found[row["id"]] = (*band, text_or_none(row.get("riskLastUpdatedDateTime")))
                    elif band != NO_RISK:  # a listing keeps the band alone
                        bands.add(row["id"], band)
        except PermissionDeniedError as exc:
            if self.risk_available is not False:
                log.warning(
                    "%s: risk is unknown: %s refused identityProtection/riskyUsers (request id %s)."
                    " Identity Protection needs Entra ID P2 and the IdentityRiskyUser.Read.All"
                    " permission; no risk alert can fire",
                    self.name,
                    PROVIDER,
                    exc.request_id,
                )
            self.risk_available = False
            return None
        self.risk_available = True
        return found if since is not None else bands.build()

    async def iter_pages(
        self,
        *,
        risk_level: Optional[RiskLevel] = None,
        tenant_id: Optional[str] = None,
        privileged: Optional[bool] = None,
        mfa_enrolled: Optional[bool] = None,
        provider: Optional[str] = None,
    ) -> AsyncIterator[list[Identity]]:
        """Every user, a Graph page (up to 999) at a time, with roles and risk; MFA stays unknown (the
        registration report would double a listing's requests). With `mfa_enrolled`, the users the
        registration report says are (or are not) registered for MFA instead, with their methods
        (disabled users are not in that report; without it, nothing matches). The other filters apply
        to each page."""
        if (tenant_id is not None and tenant_id != self.tenant_id) or (
            provider is not None and provider != "entra"
        ):
            return
        roles, risk = await _both(self.role_members(), self.risk_by_user())
        self._roles = (self._clock(), roles)
        default = NO_RISK if risk is not None else UNKNOWN_RISK
        pages: AsyncIterator[tuple[list, str, Mapping[str, tuple]]]
        if mfa_enrolled is None:
            pages = self._with_mfa(
                self._collection("/v1.0/users", {"$select": USER_FIELDS, "$top": self.page_size})
            )
        else:
            pages = self._users_by_mfa(mfa_enrolled)
        async for users, request_id, mfa in pages:
            page = []
            for user in users:
                user_id = str(user.get("id") or "") if isinstance(user, dict) else ""
                band = risk.get(user_id, default) if risk is not None else default
                identity = self.to_identity(
                    user, roles.get(user_id, ()), band[:2], request_id, mfa.get(user_id, UNKNOWN_MFA)
                )
                if (risk_level is None or identity.risk_level == risk_level) and (
                    privileged is None or identity.privileged == privileged
                ):
                    page.append(identity)
            if page:
                yield page

    @staticmethod
    async def _with_mfa(pages: AsyncIterator[tuple[list, str]]) -> AsyncIterator[tuple[list, str, Mapping]]:
        async for users, request_id in pages:
            yield users, request_id, {}

    async def _users_by_mfa(self, enrolled: bool) -> AsyncIterator[tuple[list, str, Mapping[str, tuple]]]:
        """Pages of users whose registration details say isMfaRegistered is `enrolled` (999 details a
        page, their users read by id), with each one's (enrolled, methods); nothing when the report is
        refused (no Entra ID P1 or no AuditLog.Read.All: logged once)."""
        params = {
            "$select": "id,isMfaRegistered,methodsRegistered",
            "$filter": f"isMfaRegistered eq {str(enrolled).lower()}",
            "$top": MAX_PAGE,
        }
        details = self._collection(REGISTRATIONS, params).__aiter__()
        try:
            while True:
                try:
                    rows, _ = await details.__anext__()
                except StopAsyncIteration:
                    return
                except PermissionDeniedError as exc:
                    self.mfa_refused(exc.request_id)
                    return
                mfa = {
                    row["id"]: registration_mfa(row)
                    for row in rows
                    if isinstance(row, dict) and isinstance(row.get("id"), str)
                }
                async for users, request_id in self._users_by_id(list(mfa)):
                    yield users, request_id, mfa
        finally:
            await details.aclose()  # type: ignore[attr-defined]

    def mfa_refused(self, request_id: Optional[str]) -> None:
        """The registration report was refused: MFA is unknown for everyone (said once)."""
        if self.mfa_available is not False:
            log.warning(
                "%s: MFA is unknown: %s refused reports/authenticationMethods/userRegistrationDetails"
                " (request id %s). The registration report needs Entra ID P1 and the AuditLog.Read.All"
                " permission",
                self.name,
                PROVIDER,
                request_id,
            )
        self.mfa_available = False

    async def changes_since(self, cursor: Optional[str], *, tenant_id: Optional[str] = None) -> Changes:
        """Users whose risk changed after `cursor` (riskLastUpdatedDateTime): one riskyUsers query, their
        users read 15 a request and 20 requests a JSON batch, roles as the last listing read them (at
        most ROLES_MAX_AGE old)."""
        now = datetime.now(timezone.utc)
        if cursor is None:
            return Changes([], odata_time(now - timedelta(minutes=1)))  # a minute of overlap for skew
        try:
            since = parse_datetime(cursor)
        except ValueError:
            since = None
        if since is None or now - since > CURSOR_MAX_AGE:
            raise ValidationError(
                "the change cursor is unreadable or older than 90 days: list identities in full",
                provider=PROVIDER,
            )
        if tenant_id is not None and tenant_id != self.tenant_id:
            return Changes([], cursor)
        changed = await self.risk_by_user(odata_time(since))
        if not changed:
            return Changes([], cursor)
        latest = max((row[2] for row in changed.values() if row[2]), default=cursor)
        roles = await self._recent_roles()
        identities: list[Identity] = []
        async for users, request_id in self._users_by_id(list(changed)):
            for user in users:  # a user deleted since is simply not listed
                user_id = str(user.get("id")) if isinstance(user, dict) else ""
                band = changed[user_id][:2] if user_id in changed else UNKNOWN_RISK
                identities.append(self.to_identity(user, roles.get(user_id, ()), band, request_id))
        return Changes(identities, odata_time(parse_datetime(latest) or since))

    async def _users_by_id(self, ids: Sequence[str]) -> AsyncIterator[tuple[list, str]]:
        """The users with these ids: `id in (...)` reads of 15 (Graph's limit), 20 of them in one JSON
        batch (`$batch`); a read the batch did not answer with 200 (throttled, failed) is sent on its own,
        with the usual retries."""
        reads = []
        for start in range(0, len(ids), ID_FILTER_MAX):
            chunk = ids[start : start + ID_FILTER_MAX]
            reads.append(
                {
                    "$select": USER_FIELDS,
                    "$top": str(len(chunk)),
                    "$filter": "id in (" + ",".join(odata_string(i) for i in chunk) + ")",
                }
            )
        for start in range(0, len(reads), BATCH_MAX):
            group = reads[start : start + BATCH_MAX]
            body = {
                "requests": [
                    {"id": str(n), "method": "GET", "url": "/users?" + urlencode(query, quote_via=quote)}
                    for n, query in enumerate(group)
                ]
            }
            # a POST that only reads: safe to repeat, and no outcome to be unsure of
            response = await self._api("POST", "/v1.0/$batch", json_body=body, changes_state=False)
            data = response.json(PROVIDER)
            answers = data.get("responses") if isinstance(data, dict) else None
            done = set()
            for answer in answers if isinstance(answers, list) else []:
                sub = answer.get("body") if isinstance(answer, dict) else None
                rows = sub.get("value") if isinstance(sub, dict) else None
                if answer.get("status") == 200 and isinstance(rows, list) and str(answer.get("id")).isdigit():
                    done.add(int(answer["id"]))
                    yield rows, header_id(response)
            for n, query in enumerate(group):
                if n not in done:
                    async for rows, request_id in self._collection("/v1.0/users", query):
                        yield rows, request_id

    async def _recent_roles(self) -> Mapping[str, tuple[str, ...]]:
        """Role members as a listing read them less than ROLES_MAX_AGE ago, else read now."""
        if self._roles is None or self._clock() - self._roles[0] > ROLES_MAX_AGE:
            self._roles = (self._clock(), await self.role_members())
        return self._roles[1]


def _more_roles(held: tuple[str, ...], names: tuple[str, ...]) -> tuple[str, ...]:
    """The roles held plus those of `names` not among them yet, in the order granted."""
    return (*held, *(name for name in names if name not in held))


async def _both(first: Awaitable[A], second: Awaitable[B]) -> tuple[A, B]:
    """Await two reads at once; if one fails, the other is cancelled (never left running unawaited)."""
    tasks = (asyncio.ensure_future(first), asyncio.ensure_future(second))
    try:
        return await tasks[0], await tasks[1]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

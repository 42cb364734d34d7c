"""Microsoft Entra ID over Microsoft Graph v1.0: users, Identity Protection risk, the response actions.

Auth: OAuth2 client credentials at `{authority_url}/{tenant_id}/oauth2/v2.0/token` with a client
secret, or a certificate (a `client_assertion` JWT signed RS256; PyJWT is imported only in that mode).
The token is cached, renewed before `expires_in` runs out, and fetched again once on a 401.

Rules this module keeps:

* Every `$filter` is built by `odata_string` / `_filter`: string literals quoted with `'` doubled,
  so text typed in Slack never changes what a filter means. Queries Graph calls "advanced" (`$orderby`
  with `$filter`, `endswith`) are sent with `ConsistencyLevel: eventual` and `$count=true`.
* Paging follows the whole `@odata.nextLink`, and only while it points at `graph_url` (the bearer token
  never goes to another host). The next page is fetched while the caller handles the current one.
* Privilege: any directory role makes a user privileged. A listing reads the members of every activated
  role once; `get_identity` reads the user's transitive role membership (so a role held through a
  role-assignable group counts there, and at an approval's re-read, but not in a listing).
* Risk comes from Identity Protection (Entra ID P2), mapped to idops bands by the rule in
  `connectors.entra_api` (confirmed compromised is critical, atRisk high is high, ...). A tenant without
  P2 (403) has unknown risk for everyone: logged once per connector, and `check` says so.
* Every request carries a `client-request-id` (a GUID); errors show Graph's `request-id`.
* 429 and 503 wait their `Retry-After`, else back off exponentially. Every Entra action is idempotent
  (revoking twice, setting accountEnabled twice, confirming twice...), so writes are retried on 5xx too;
  a write whose answer never came back after the retries is an OutcomeUnknownError, settled by
  `action_in_effect` (accountEnabled, riskState) without sending it again.
* An action on a target already in the wanted state is success, its message saying so.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, ClassVar, Optional, TypeVar
from urllib.parse import quote, urlencode, urlsplit

import aiohttp

from .base import Connector
from .entra_api import (
    ASSERTION_TYPE,
    BATCH_MAX,
    CURSOR_MAX_AGE,
    DEFAULT_AUTHORITY,
    DEFAULT_GRAPH,
    GUID,
    ID_FILTER_MAX,
    MAX_PAGE,
    MAX_QUERY,
    NO_RISK,
    PROVIDER,
    RISKY_PAGE,
    ROLES_MAX_AGE,
    SCOPE,
    TENANT,
    THUMBPRINT,
    TOKEN,
    UNKNOWN_RISK,
    USER_FIELDS,
    GraphServerErrorRetry,
    checked_id,
    client_assertion,
    filter_expr,
    header_id,
    json_or_none,
    map_error,
    odata_string,
    odata_time,
    risk_band,
    text_or_none,
    user_to_identity,
)
from .errors import (
    AuthenticationError,
    ConnectorError,
    NotFoundError,
    PermissionDeniedError,
    ProviderUnavailableError,
    ValidationError,
)
from .http import ConnectionErrorRetry, HttpClient, RateLimitedRetry, Response
from .models import Action, ActionResult, Changes, CheckResult, Identity, RiskLevel, parse_datetime
from .registry import register
from .settings import SettingsReader

log = logging.getLogger(__name__)
A = TypeVar("A")
BANDS: dict[tuple, tuple] = {}
B = TypeVar("B")


@register
class EntraConnector(Connector):
    """One Microsoft Entra ID tenant, through Microsoft Graph v1.0."""

    kind = "entra"
    label = PROVIDER
    capabilities = frozenset(Action)
    incremental = True
    settings = frozenset(
        {
            "tenant_id",
            "client_id",
            "client_secret",
            "certificate_key",
            "certificate_thumbprint",
            "authority_url",
            "graph_url",
            "base_url",
            "page_size",
            "timeout",
        }
    )
    required_settings = frozenset({"tenant_id", "client_id"})
    RENEW_SHARE: ClassVar[float] = 0.1

    def __init__(
        self,
        name: str,
        *,
        tenant_id: str,
        client_id: str,
        client_secret: Optional[str] = None,
        certificate_key: Optional[str] = None,
        certificate_thumbprint: Optional[str] = None,
        authority_url: str = DEFAULT_AUTHORITY,
        graph_url: str = DEFAULT_GRAPH,
        page_size: int = MAX_PAGE,
        timeout: float = 10.0,
        session: Optional[aiohttp.ClientSession] = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        super().__init__(name)
        if (client_secret is None) == (certificate_key is None):
            raise ValueError("give client_secret or certificate_key (with certificate_thumbprint), not both")
        self.tenant_id = tenant_id
        self.graph_url = graph_url.rstrip("/")
        self.token_url = f"{authority_url.rstrip('/')}/{quote(tenant_id, safe='')}/oauth2/v2.0/token"
        self.page_size = page_size
        self._client_id = client_id
        self._client_secret = client_secret
        self._certificate = (certificate_key, certificate_thumbprint or "")
        self._clock = clock
        self._http = HttpClient(
            self.graph_url,
            provider=PROVIDER,
            error_mapper=map_error,
            session=session,
            timeout=timeout,
            retry_policies=(
                RateLimitedRetry(max_retries=6),
                GraphServerErrorRetry(max_retries=3),
                ConnectionErrorRetry(),
            ),
            sleep=sleep,
        )
        self._token: Optional[str] = None
        self._renew_at = 0.0
        self._token_lock: Optional[asyncio.Lock] = None  # made in a coroutine (3.9 binds it to a loop)
        self.risk_available: Optional[bool] = None  # None until riskyUsers was asked
        self.tokens_fetched = 0
        self._prefetched: set[asyncio.Future] = set()
        self._roles: Optional[tuple[float, dict[str, tuple[str, ...]]]] = None

    @classmethod
    def from_config(
        cls, name: str, config: Mapping[str, Any], *, session: Optional[aiohttp.ClientSession] = None
    ) -> EntraConnector:
        cls.validate_config(name, config)
        read = SettingsReader(f"connector '{name}' ({cls.kind})", config)
        secret = read.text("client_secret")
        key = read.text("certificate_key", expected="a PEM private key")
        thumbprint = read.text(
            "certificate_thumbprint",
            pattern=THUMBPRINT,
            expected="the certificate's 40-hex SHA-1 thumbprint",
        )
        if (secret is None) == (key is None):
            raise read.error("client_secret", "or 'certificate_key' is required (one of them, not both)")
        # SOAR assets and Cortex jobs name every provider's API root base_url: here, the Graph root
        if config.get("base_url") not in (None, "") and config.get("graph_url") not in (None, ""):
            raise read.error("base_url", "and 'graph_url' both name the Graph root: give one")
        graph_key = "base_url" if config.get("base_url") not in (None, "") else "graph_url"
        if key is not None and thumbprint is None:
            raise read.error("certificate_thumbprint", "is required with certificate_key")
        if key is not None and "PRIVATE KEY-----" not in key:
            raise read.error("certificate_key", "must be a PEM private key (-----BEGIN PRIVATE KEY-----)")
        return cls(
            name,
            tenant_id=read.required_text(
                "tenant_id", pattern=TENANT, expected="the directory (tenant) id, a GUID, or its domain"
            ),
            client_id=read.required_text("client_id"),
            client_secret=secret,
            certificate_key=key,
            certificate_thumbprint=thumbprint,
            authority_url=read.url("authority_url", DEFAULT_AUTHORITY, example=DEFAULT_AUTHORITY, root=True),
            graph_url=read.url(graph_key, DEFAULT_GRAPH, example=DEFAULT_GRAPH, root=True),
            page_size=read.integer("page_size", MAX_PAGE, 1, MAX_PAGE),
            timeout=read.seconds("timeout", 10.0, 300),
            session=session,
        )

    async def close(self) -> None:
        # pages fetched ahead for a listing its caller left early: never let them outlive the session
        for page in list(self._prefetched):
            page.cancel()
        await asyncio.gather(*self._prefetched, return_exceptions=True)
        await self._http.close()

    # --- auth and requests ---------------------------------------------------------------------

    def _credential_form(self) -> dict[str, str]:
        form = {"client_id": self._client_id, "grant_type": "client_credentials", "scope": SCOPE}
        if self._client_secret is not None:
            return {**form, "client_secret": self._client_secret}
        return {**form, "client_assertion_type": ASSERTION_TYPE, "client_assertion": self._assertion()}

    async def _access_token(self) -> str:
        if self._token_lock is None:
            self._token_lock = asyncio.Lock()
        async with self._token_lock:
            if self._token is not None and self._clock() < self._renew_at:
                return self._token
            response = await self._http.request(
                "POST",
                self.token_url,
                data=self._credential_form(),
                headers={"client-request-id": str(uuid.uuid4())},
                idempotent=True,  # asking for a token twice does no harm
                raise_for_status=False,
            )
            data = json_or_none(response)
            if response.status in (400, 401, 403):
                described = data.get("error_description") if isinstance(data, dict) else None
                first = str(described or f"HTTP {response.status}").splitlines()[0][:200]
                raise AuthenticationError(
                    f"refused the app's credentials ({first}); check tenant_id, client_id and the secret"
                    " or certificate",
                    provider=PROVIDER,
                    status=response.status,
                    request_id=header_id(response),
                )
            if not response.ok:
                raise map_error(response)
            token = data.get("access_token") if isinstance(data, dict) else None
            expires_in = data.get("expires_in") if isinstance(data, dict) else None
            if isinstance(expires_in, str) and expires_in.isdigit():
                expires_in = int(expires_in)
            # the token goes into a header: a space or line break in it would break or add a header
            if (
                not isinstance(token, str)
                or not TOKEN.fullmatch(token)
                or isinstance(expires_in, bool)
                or not isinstance(expires_in, (int, float))
            ):
                raise ProviderUnavailableError(
                    "answered the token request without a usable access_token and expires_in",
                    provider=PROVIDER,
                    request_id=header_id(response),
                )
            self.tokens_fetched += 1
            self._token = token
            self._renew_at = self._clock() + expires_in - min(300.0, expires_in * self.RENEW_SHARE)
            return token

    async def _api(
        self,
        method: str,
        path: str,
        *,
        params: Optional[Mapping[str, Any]] = None,
        json_body: Any = None,
        advanced: bool = False,
        allow: Sequence[int] = (),
        changes_state: Optional[bool] = None,
    ) -> Response:
        """One authenticated Graph call; a 401 fetches a new token and tries once more. Statuses in
        `allow` come back as responses instead of errors. A POST or PATCH sent without an answer (or
        answered 5xx after the retries) is an OutcomeUnknownError (connectors.http)."""
        headers = {"client-request-id": str(uuid.uuid4()), "Accept": "application/json"}
        if advanced:
            headers["ConsistencyLevel"] = "eventual"
        for attempt in (1, 2):
            token = await self._access_token()
            response = await self._http.request(
                method,
                path,
                params=params,
                json_body=json_body,
                headers={**headers, "Authorization": f"Bearer {token}"},
                idempotent=True,  # reads, and every Entra action (see the module docstring)
                changes_state=changes_state,
                raise_for_status=False,
            )
            if response.status != 401 or attempt == 2:
                break
            if self._token == token:  # concurrent callers renew it once, not once each
                self._token = None
        if not response.ok and response.status not in allow:
            raise map_error(response)
        return response

    # --- identities ----------------------------------------------------------------------------

    def to_identity(
        self,
        user: Any,
        roles: Sequence[str] = (),
        risk: tuple[Optional[int], Optional[RiskLevel]] = UNKNOWN_RISK,
        request_id: Optional[str] = None,
    ) -> Identity:
        """An `Identity` from a Graph user; ProviderUnavailableError when it has no id."""
        return user_to_identity(self.name, self.tenant_id, user, roles, risk, request_id)

    def _assertion(self) -> str:
        key, thumbprint = self._certificate
        assert key is not None  # certificate mode
        return client_assertion(self.token_url, self._client_id, key, thumbprint)

    async def _collection(
        self, path: str, params: Mapping[str, Any], *, advanced: bool = False
    ) -> AsyncIterator[tuple[list, str]]:
        """Pages of a collection (the `value` array and the request id), following `@odata.nextLink`;
        the next page is requested while the caller handles this one."""
        next_page: Optional[asyncio.Future] = asyncio.ensure_future(
            self._api("GET", path, params=params, advanced=advanced)
        )
        try:
            while next_page is not None:
                response = await next_page
                next_page = None
                data = response.json(PROVIDER)
                rows = data.get("value") if isinstance(data, dict) else None
                if not isinstance(rows, list):
                    raise ProviderUnavailableError(
                        f"answered {urlsplit(path).path or path} without a 'value' array",
                        provider=PROVIDER,
                        request_id=header_id(response),
                    )
                link = data.get("@odata.nextLink")
                if link is not None:
                    next_page = asyncio.ensure_future(
                        self._api("GET", self._checked_link(link, response), advanced=advanced)
                    )
                    self._prefetched.add(next_page)
                    next_page.add_done_callback(self._prefetched.discard)
                yield rows, header_id(response)
        finally:
            if next_page is not None:
                next_page.cancel()
                await asyncio.gather(next_page, return_exceptions=True)

    def _checked_link(self, link: Any, response: Response) -> str:
        # the bearer token goes wherever the link points: only ever to graph_url
        if not isinstance(link, str) or not link.startswith(self.graph_url + "/"):
            raise ProviderUnavailableError(
                "sent an @odata.nextLink outside graph_url; refusing to follow it",
                provider=PROVIDER,
                request_id=header_id(response),
            )
        return link

    async def role_members(self) -> dict[str, tuple[str, ...]]:
        """user id -> names of the activated directory roles it is a direct member of."""
        members: dict[str, tuple[str, ...]] = {}
        shared: dict[tuple[str, ...], tuple[str, ...]] = {}  # one tuple per combination of roles
        async for roles, _ in self._collection("/v1.0/directoryRoles", {"$select": "id,displayName"}):
            for role in roles:
                if not isinstance(role, dict) or not isinstance(role.get("id"), str):
                    continue
                name = text_or_none(role.get("displayName")) or role["id"]
                path = f"/v1.0/directoryRoles/{quote(role['id'], safe='')}/members/microsoft.graph.user"
                async for users, _ in self._collection(path, {"$select": "id", "$top": MAX_PAGE}):
                    for user in users:
                        if isinstance(user, dict) and isinstance(user.get("id"), str):
                            held = (*members.get(user["id"], ()), name)
                            members[user["id"]] = shared.setdefault(held, held)
        return members

    async def risk_by_user(self, since: Optional[str] = None) -> Optional[dict[str, tuple]]:
        """user id -> (score, band) for riskyUsers not at the default (no risk); None without P2.
        With `since` (an OData DateTimeOffset), only those whose risk changed after it, all kept."""
        params: dict[str, Any] = {
            "$select": "id,riskLevel,riskState,riskLastUpdatedDateTime",
            "$top": RISKY_PAGE,
        }
        if since is not None:
            params["$filter"] = f"riskLastUpdatedDateTime gt {since}"
        found: dict[str, tuple] = {}
        try:
            async for rows, _ in self._collection("/v1.0/identityProtection/riskyUsers", params):
                for row in rows:
                    if not isinstance(row, dict) or not isinstance(row.get("id"), str):
                        continue
                    band = risk_band(row.get("riskState"), row.get("riskLevel"))
                    if since is not None:
                        found[row["id"]] = (*band, text_or_none(row.get("riskLastUpdatedDateTime")))
                    elif band != NO_RISK:  # a listing keeps the band alone, one tuple per band
                        found[row["id"]] = BANDS.setdefault(band, band)
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
        return found

    async def iter_pages(
        self,
        *,
        risk_level: Optional[RiskLevel] = None,
        tenant_id: Optional[str] = None,
        privileged: Optional[bool] = None,
        mfa_enrolled: Optional[bool] = None,
        provider: Optional[str] = None,
    ) -> AsyncIterator[list[Identity]]:
        """Every user, a Graph page (up to 999) at a time, with roles and risk. Graph reports no MFA
        state here, so an `mfa_enrolled` filter matches nothing; the others apply to each page."""
        if (
            (tenant_id is not None and tenant_id != self.tenant_id)
            or (provider is not None and provider != "entra")
            or mfa_enrolled is not None
        ):
            return
        roles, risk = await _both(self.role_members(), self.risk_by_user())
        self._roles = (self._clock(), roles)
        default = NO_RISK if risk is not None else UNKNOWN_RISK
        params = {"$select": USER_FIELDS, "$top": self.page_size}
        async for users, request_id in self._collection("/v1.0/users", params):
            page = []
            for user in users:
                user_id = str(user.get("id") or "") if isinstance(user, dict) else ""
                band = risk.get(user_id, default) if risk is not None else default
                identity = self.to_identity(user, roles.get(user_id, ()), band[:2], request_id)
                if (risk_level is None or identity.risk_level == risk_level) and (
                    privileged is None or identity.privileged == privileged
                ):
                    page.append(identity)
            if page:
                yield page

    async def get_identity(self, identity_id: str) -> Identity:
        """One user by object id or userPrincipalName, with its roles (transitive) and risk."""
        segment = checked_id(identity_id)
        try:
            response = await self._api("GET", f"/v1.0/users/{segment}", params={"$select": USER_FIELDS})
        except NotFoundError as exc:
            raise NotFoundError(
                f"no user with id {identity_id}", provider=PROVIDER, request_id=exc.request_id, status=404
            ) from exc
        user = response.json(PROVIDER)
        user_id = user.get("id") if isinstance(user, dict) else None
        if not isinstance(user_id, str):
            raise ProviderUnavailableError("sent a user without an id", provider=PROVIDER)
        roles: list[str] = []
        path = f"/v1.0/users/{quote(user_id, safe='')}/transitiveMemberOf/microsoft.graph.directoryRole"
        async for rows, _ in self._collection(path, {"$select": "id,displayName"}):
            roles.extend(
                text_or_none(row.get("displayName")) or "role" for row in rows if isinstance(row, dict)
            )
        return self.to_identity(user, roles, await self._risk_of(user_id), header_id(response))

    async def _risk_of(self, user_id: str) -> tuple[Optional[int], Optional[RiskLevel]]:
        path = f"/v1.0/identityProtection/riskyUsers/{quote(user_id, safe='')}"
        response = await self._api("GET", path, allow=(403, 404))
        if response.status == 403:
            if self.risk_available is not False:
                log.warning("%s: risk is unknown: no Entra ID P2 / IdentityRiskyUser.Read.All", self.name)
            self.risk_available = False
            return UNKNOWN_RISK
        self.risk_available = True
        if response.status == 404:
            return NO_RISK
        row = response.json(PROVIDER)
        return (
            risk_band(row.get("riskState"), row.get("riskLevel")) if isinstance(row, dict) else UNKNOWN_RISK
        )

    async def find_identities(self, query: str, *, limit: int = 10) -> list[Identity]:
        """A GUID or a principal name is read directly; an email matches `mail` or `userPrincipalName`
        exactly; anything else is a prefix of the display name, given name, surname or email."""
        text = query.strip()
        if not text:
            raise ValidationError("type an email, a user id or a name to search for", provider=PROVIDER)
        if len(text) > MAX_QUERY or any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
            raise ValidationError(
                f"the search text must be one line of at most {MAX_QUERY} characters", provider=PROVIDER
            )
        limit = max(1, min(limit, MAX_PAGE))
        if GUID.fullmatch(text):
            try:
                return [await self.get_identity(text)]
            except NotFoundError:
                return []
        params: dict[str, Any] = {"$select": USER_FIELDS, "$top": limit}
        if "@" in text:
            params["$filter"] = filter_expr("mail eq {} or userPrincipalName eq {}", text, text)
            advanced = False
        else:
            params["$filter"] = filter_expr(
                "startswith(displayName,{}) or startswith(givenName,{}) or startswith(surname,{})"
                " or startswith(mail,{}) or startswith(userPrincipalName,{})",
                *([text] * 5),
            )
            params.update({"$orderby": "displayName", "$count": "true"})  # advanced: sorted with a filter
            advanced = True
        response = await self._api("GET", "/v1.0/users", params=params, advanced=advanced)
        data = response.json(PROVIDER)
        rows = data.get("value") if isinstance(data, dict) else None
        if not isinstance(rows, list):
            raise ProviderUnavailableError(
                "answered a search without a 'value' array",
                provider=PROVIDER,
                request_id=header_id(response),
            )
        ids = [row["id"] for row in rows[:limit] if isinstance(row, dict) and isinstance(row.get("id"), str)]
        found: list[Identity] = []
        for start in range(0, len(ids), 5):  # roles and risk of each, five users at a time
            found.extend(await asyncio.gather(*(self.get_identity(i) for i in ids[start : start + 5])))
        return found

    async def check(self) -> CheckResult:
        try:
            response = await self._api(
                "GET", "/v1.0/users", params={"$select": "id", "$top": 1, "$count": "true"}, advanced=True
            )
            data = response.json(PROVIDER)
            count = data.get("@odata.count") if isinstance(data, dict) else None
            await self._api("GET", "/v1.0/directoryRoles", params={"$select": "id"})
            risky = await self._api(
                "GET", "/v1.0/identityProtection/riskyUsers", params={"$top": 1}, allow=(403,)
            )
        except ConnectorError as exc:
            return CheckResult(ok=False, connector=self.name, message=str(exc), request_id=exc.request_id)
        self.risk_available = risky.status != 403
        seen = f"{count} users" if isinstance(count, int) else "users"
        risk = (
            "risk from Identity Protection"
            if self.risk_available
            else "risk UNKNOWN: riskyUsers refused (needs Entra ID P2 and IdentityRiskyUser.Read.All),"
            " so no risk alert can fire"
        )
        return CheckResult(
            ok=True,
            connector=self.name,
            message=f"signed in to tenant {self.tenant_id}; {seen} visible; {risk}",
        )

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

    async def _recent_roles(self) -> dict[str, tuple[str, ...]]:
        """Role members as a listing read them less than ROLES_MAX_AGE ago, else read now."""
        if self._roles is None or self._clock() - self._roles[0] > ROLES_MAX_AGE:
            self._roles = (self._clock(), await self.role_members())
        return self._roles[1]

    # --- actions -------------------------------------------------------------------------------

    def _result(
        self, action: Action, user_id: str, message: str, response: Optional[Response]
    ) -> ActionResult:
        return ActionResult(
            action=action,
            identity_id=user_id,
            connector=self.name,
            status=ActionResult.COMPLETED,
            reference=header_id(response) if response is not None else None,
            message=message,
        )

    async def _user_state(self, identity_id: str) -> tuple[str, Optional[bool]]:
        segment = checked_id(identity_id)
        try:
            response = await self._api(
                "GET", f"/v1.0/users/{segment}", params={"$select": "id,accountEnabled"}
            )
        except NotFoundError as exc:
            raise NotFoundError(
                f"no user with id {identity_id}", provider=PROVIDER, request_id=exc.request_id, status=404
            ) from exc
        data = response.json(PROVIDER)
        if not isinstance(data, dict) or not isinstance(data.get("id"), str):
            raise ProviderUnavailableError("sent a user without an id", provider=PROVIDER)
        enabled = data.get("accountEnabled")
        return data["id"], enabled if isinstance(enabled, bool) else None

    async def action_in_effect(self, action: Action, identity_id: str) -> Optional[bool]:
        """Whether Graph shows the action's effect now: accountEnabled for disable and enable, the
        riskState for the verdicts; None for revoke and password change (nothing readable shows them)."""
        if action in (Action.DISABLE, Action.ENABLE):
            _, enabled = await self._user_state(identity_id)
            return None if enabled is None else enabled is (action is Action.ENABLE)
        if action in (Action.CONFIRM_COMPROMISED, Action.DISMISS_RISK):
            user_id, _ = await self._user_state(identity_id)
            path = f"/v1.0/identityProtection/riskyUsers/{quote(user_id, safe='')}"
            response = await self._api("GET", path, allow=(403, 404))
            row = response.json(PROVIDER) if response.status == 200 else None
            if not isinstance(row, dict):
                return None if response.status == 403 else False
            wanted = "confirmedCompromised" if action is Action.CONFIRM_COMPROMISED else "dismissed"
            return row.get("riskState") == wanted
        return None

    async def revoke_sessions(self, identity_id: str) -> ActionResult:
        """revokeSignInSessions: refresh tokens and session cookies stop working (access tokens live
        out their hour)."""
        user_id, _ = await self._user_state(identity_id)
        response = await self._api("POST", f"/v1.0/users/{quote(user_id, safe='')}/revokeSignInSessions")
        return self._result(Action.REVOKE_SESSIONS, user_id, "sign-in sessions revoked", response)

    async def _set_enabled(self, action: Action, identity_id: str, enabled: bool) -> ActionResult:
        user_id, current = await self._user_state(identity_id)
        word = "enabled" if enabled else "disabled"
        if current is enabled:
            return self._result(action, user_id, f"the account was already {word}", None)
        response = await self._api(
            "PATCH",
            f"/v1.0/users/{quote(user_id, safe='')}",
            json_body={"accountEnabled": enabled},
        )
        return self._result(
            action, user_id, f"account {word} (accountEnabled {str(enabled).lower()})", response
        )

    async def disable(self, identity_id: str, reason: str) -> ActionResult:
        """accountEnabled false (Graph has no reason field: `reason` stays in idops' audit trail)."""
        return await self._set_enabled(Action.DISABLE, identity_id, False)

    async def enable(self, identity_id: str, reason: str = "") -> ActionResult:
        return await self._set_enabled(Action.ENABLE, identity_id, True)

    async def force_password_reset(self, identity_id: str) -> ActionResult:
        """passwordProfile.forceChangePasswordNextSignIn: the user must change the password at next
        sign-in (needs User-PasswordProfile.ReadWrite.All; admins' passwords need a directory role)."""
        user_id, _ = await self._user_state(identity_id)
        response = await self._api(
            "PATCH",
            f"/v1.0/users/{quote(user_id, safe='')}",
            json_body={"passwordProfile": {"forceChangePasswordNextSignIn": True}},
        )
        return self._result(
            Action.FORCE_PASSWORD_RESET, user_id, "password change required at next sign-in", response
        )

    async def _verdict(
        self, action: Action, identity_id: str, verb: str, done: Sequence[str]
    ) -> ActionResult:
        user_id, _ = await self._user_state(identity_id)
        path = f"/v1.0/identityProtection/riskyUsers/{quote(user_id, safe='')}"
        try:
            state = await self._api("GET", path, allow=(404,))
            row = state.json(PROVIDER) if state.status == 200 else None
            current = row.get("riskState") if isinstance(row, dict) else None
            if current in done:
                message = f"Identity Protection already had this user as {current}"
                return self._result(action, user_id, message, None)
            response = await self._api(
                "POST",
                f"/v1.0/identityProtection/riskyUsers/{verb}",
                json_body={"userIds": [user_id]},
            )
        except PermissionDeniedError as exc:
            exc.message += " (needs Entra ID P2 and the IdentityRiskyUser.ReadWrite.All permission)"
            raise
        label = "confirmed compromised" if verb == "confirmCompromised" else "risk dismissed"
        return self._result(action, user_id, f"{label} in Identity Protection", response)

    async def confirm_compromised(self, identity_id: str) -> ActionResult:
        return await self._verdict(
            Action.CONFIRM_COMPROMISED, identity_id, "confirmCompromised", ("confirmedCompromised",)
        )

    async def dismiss_risk(self, identity_id: str) -> ActionResult:
        return await self._verdict(
            Action.DISMISS_RISK, identity_id, "dismiss", ("dismissed", "remediated", "none")
        )


async def _both(first: Awaitable[A], second: Awaitable[B]) -> tuple[A, B]:
    """Await two reads at once; if one fails, the other is cancelled (never left running unawaited)."""
    tasks = (asyncio.ensure_future(first), asyncio.ensure_future(second))
    try:
        return await tasks[0], await tasks[1]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

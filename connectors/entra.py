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
* Privilege: any directory role makes a user privileged, held directly or through a role-assignable
  group. A listing reads the members of every activated role once and the transitive members of each
  group among them once; `get_identity` reads the user's transitive role membership.
* Risk comes from Identity Protection (Entra ID P2), mapped to idops bands by the rule in
  `connectors.entra_api` (confirmed compromised is critical, atRisk high is high, ...). A tenant without
  P2 (403) has unknown risk for everyone: logged once per connector, and `check` says so.
* Every request carries a `client-request-id` (a GUID); errors show Graph's `request-id`.
* 429 and 503 wait their `Retry-After`, else back off exponentially. Every Entra action is idempotent
  (revoking twice, setting accountEnabled twice, confirming twice...), so writes are retried on 5xx too;
  a write whose answer never came back after the retries is an OutcomeUnknownError, settled by
  `action_in_effect` (accountEnabled, riskState) without sending it again.
* An action on a target already in the wanted state is success, its message saying so.

Modules: this one (auth, requests, paging, single reads, `check`); listing and the change feed in
`connectors.entra_listing`, the actions in `connectors.entra_actions`, wire formats in `connectors.entra_api`.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from typing import Any, Callable, ClassVar, Optional
from urllib.parse import quote, urlsplit

import aiohttp

from .base import Connector
from .entra_actions import EntraActions
from .entra_api import (
    DEFAULT_AUTHORITY,
    DEFAULT_GRAPH,
    GUID,
    MAX_PAGE,
    MAX_QUERY,
    NO_RISK,
    PROVIDER,
    REGISTRATIONS,
    SCOPE,
    TENANT,
    THUMBPRINT,
    TOKEN_MAX,
    UNKNOWN_MFA,
    UNKNOWN_RISK,
    USER_FIELDS,
    GraphServerErrorRetry,
    checked_id,
    client_assertion,
    filter_expr,
    header_id,
    json_or_none,
    map_error,
    registration_mfa,
    risk_band,
    text_or_none,
    user_to_identity,
)
from .entra_listing import EntraListing
from .errors import (
    AuthenticationError,
    ConnectorError,
    NotFoundError,
    ProviderUnavailableError,
    ValidationError,
)
from .http import ConnectionErrorRetry, HttpClient, RateLimitedRetry, Response
from .models import Action, CheckResult, Identity, RiskLevel
from .registry import register
from .settings import SettingsReader
from .tokens import CLIENT_ASSERTION_TYPE, TokenCache, token_answer

log = logging.getLogger(__name__)


@register
class EntraConnector(EntraListing, EntraActions, Connector):
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
        # the connector's clock read at each call (tests swap `_clock` for a fake one)
        self._tokens = TokenCache(renew_max=300.0, renew_share=self.RENEW_SHARE, clock=lambda: self._clock())
        self.risk_available: Optional[bool] = None  # None until riskyUsers was asked
        self.mfa_available: Optional[bool] = None  # None until the registration report was asked
        self.tokens_fetched = 0
        self._prefetched: set[asyncio.Future] = set()
        self._roles: Optional[tuple[float, Mapping[str, tuple[str, ...]]]] = None

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
        return {**form, "client_assertion_type": CLIENT_ASSERTION_TYPE, "client_assertion": self._assertion()}

    async def _access_token(self) -> str:
        return await self._tokens.get(self._fetch_token)

    async def _fetch_token(self) -> tuple[str, float]:
        response = await self._http.request(
            "POST",
            self.token_url,
            data=self._credential_form(),
            headers={"client-request-id": str(uuid.uuid4())},
            idempotent=True,  # asking for a token twice does no harm
            raise_for_status=False,
        )
        if response.status in (400, 401, 403):
            data = json_or_none(response)
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
        answer = token_answer(
            response, PROVIDER, max_length=TOKEN_MAX, lifetime_text=True, request_id=header_id(response)
        )
        self.tokens_fetched += 1
        return answer

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
        """One authenticated Graph call; a 401 fetches a new token and tries once more
        (`TokenCache.authorized`: a second 401 is an error). Statuses in `allow` come back as responses
        instead of errors. A POST or PATCH sent without an answer (or answered 5xx after the retries) is
        an OutcomeUnknownError (connectors.http)."""
        headers = {"client-request-id": str(uuid.uuid4()), "Accept": "application/json"}
        if advanced:
            headers["ConsistencyLevel"] = "eventual"

        def send(token: str) -> Awaitable[Response]:
            return self._http.request(
                method,
                path,
                params=params,
                json_body=json_body,
                headers={**headers, "Authorization": f"Bearer {token}"},
                idempotent=True,  # reads, and every Entra action (see the module docstring)
                changes_state=changes_state,
                raise_for_status=False,
            )

        response = await self._tokens.authorized(self._fetch_token, send)
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
        mfa: tuple[Optional[bool], tuple[str, ...]] = UNKNOWN_MFA,
    ) -> Identity:
        """An `Identity` from a Graph user; ProviderUnavailableError when it has no id."""
        return user_to_identity(self.name, self.tenant_id, user, roles, risk, request_id, mfa)

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
        risk = await self._risk_of(user_id)
        return self.to_identity(user, roles, risk, header_id(response), await self._mfa_of(user_id))

    async def _mfa_of(self, user_id: str) -> tuple[Optional[bool], tuple[str, ...]]:
        """isMfaRegistered from the registration report; unknown without Entra ID P1 or AuditLog.Read.All
        (403, logged once), and for users the report leaves out (disabled ones: 404)."""
        response = await self._api("GET", f"{REGISTRATIONS}/{quote(user_id, safe='')}", allow=(403, 404))
        if response.status == 403:
            self.mfa_refused(header_id(response))
            return UNKNOWN_MFA
        self.mfa_available = True
        return registration_mfa(response.json(PROVIDER)) if response.status == 200 else UNKNOWN_MFA

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
            registrations = await self._api(
                "GET", REGISTRATIONS, params={"$top": 1, "$select": "id"}, allow=(403,)
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
        self.mfa_available = registrations.status != 403
        mfa = (
            "MFA from the registration report"
            if self.mfa_available
            else "MFA unknown: the registration report refused (needs Entra ID P1 and AuditLog.Read.All)"
        )
        return CheckResult(
            ok=True,
            connector=self.name,
            message=f"signed in to tenant {self.tenant_id}; {seen} visible; {risk}; {mfa}",
        )

"""SailPoint Identity Security Cloud: identities over the REST API; disable and enable (its undo) accounts.

Auth is OAuth2 client credentials (`POST /oauth/token`; a personal access token uses the same form).
The token is kept in a `connectors.tokens.TokenCache` (renewed before `expires_in`, one fetch at a time)
and fetched again once when the API answers 401.
Requests are paced at 100 per 10 s per client (SailPoint's limit) and a 429 waits its Retry-After.
Wire formats (filters, the identity mapping, error bodies) are in `connectors.sailpoint_api`.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Mapping
from typing import Any, Callable, Optional
from urllib.parse import quote

import aiohttp

from .base import Connector
from .errors import (
    AuthenticationError,
    ConflictError,
    ConnectorError,
    NotFoundError,
    ProviderUnavailableError,
    ValidationError,
)
from .http import HttpClient, Response, SlidingWindowLimiter
from .models import Action, ActionResult, CheckResult, Identity, RiskLevel
from .registry import register
from .sailpoint_api import (
    PROVIDER,
    account_rows,
    checked_id,
    filter_expr,
    identity_from_json,
    map_error,
    path_value,
    tenant_of,
    token_error,
)
from .settings import SettingsReader
from .tokens import TokenCache, token_answer

log = logging.getLogger(__name__)

MAX_PAGE = 250
# api_version -> (identities collection, accounts collection, needs X-SailPoint-Experimental)
API_PATHS = {
    "v2024": ("/v2024/identities", "/v3/accounts", True),
    "v2025": ("/v2025/identities", "/v3/accounts", True),
    "v1": ("/identities/v1", "/accounts/v1", False),
}
_HEX_ID = re.compile(r"^[0-9a-fA-F]{32}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
_MAX_QUERY = 256
_ATTRIBUTE_PATH = re.compile(r"[A-Za-z_][\w-]*(\.[A-Za-z_][\w-]*)*")
_TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


@register
class SailPointConnector(Connector):
    """SailPoint Identity Security Cloud tenant."""

    kind = "sailpoint"
    label = PROVIDER
    capabilities = frozenset({Action.DISABLE, Action.ENABLE})  # enable undoes disable
    settings = frozenset(
        {
            "base_url",
            "client_id",
            "client_secret",
            "api_version",
            "risk_attribute",
            "tenant_id",
            "page_size",
            "concurrency",
            "timeout",
        }
    )
    required_settings = frozenset({"base_url", "client_id", "client_secret"})

    def __init__(
        self,
        name: str,
        *,
        base_url: str,
        client_id: str,
        client_secret: str,
        api_version: str = "v2024",
        risk_attribute: Optional[str] = None,
        tenant_id: Optional[str] = None,
        page_size: int = MAX_PAGE,
        concurrency: int = 8,
        timeout: float = 10.0,
        session: Optional[aiohttp.ClientSession] = None,
        pacing: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`pacing=False` turns client-side rate limiting off: only for local simulators with limits off;
        `clock` (seconds) times the token's renewal (tests move a fake one)."""
        super().__init__(name)
        self.base_url = base_url.rstrip("/")
        self.api_version = api_version
        self.identities_path, self.accounts_path, experimental = API_PATHS[api_version]
        self._identity_headers = {"X-SailPoint-Experimental": "true"} if experimental else {}
        self.risk_attribute = risk_attribute or None
        self.tenant_id = tenant_id or tenant_of(self.base_url)
        self.page_size = page_size
        self.concurrency = concurrency
        self._client_id = client_id
        self._client_secret = client_secret
        self._http = HttpClient(
            self.base_url, provider=PROVIDER, error_mapper=map_error, session=session, timeout=timeout
        )
        # SailPoint allows 100 requests per 10 s per client id
        self._limiter = SlidingWindowLimiter(100, 10.0) if pacing else None
        self._tokens = TokenCache(clock=clock)  # renewed a minute (or a tenth of its life) before it expires
        self._warned_risk = False

    @classmethod
    def from_config(
        cls, name: str, config: Mapping[str, Any], *, session: Optional[aiohttp.ClientSession] = None
    ) -> SailPointConnector:
        cls.validate_config(name, config)
        read = SettingsReader(f"connector '{name}' ({cls.kind})", config)
        return cls(
            name,
            base_url=read.url("base_url", example="https://acme.api.identitynow.com", root=True),
            client_id=read.required_text("client_id"),
            client_secret=read.required_text("client_secret"),
            api_version=read.choice("api_version", "v2024", tuple(API_PATHS)),
            risk_attribute=read.text(
                "risk_attribute", pattern=_ATTRIBUTE_PATH, expected="a dotted path like attributes.riskScore"
            ),
            tenant_id=read.text("tenant_id", pattern=_TENANT, expected="a tenant name like acme"),
            page_size=read.integer("page_size", MAX_PAGE, 1, MAX_PAGE),
            concurrency=read.integer("concurrency", 8, 1, 16),
            timeout=read.seconds("timeout", 10.0, 300),
            session=session,
        )

    async def close(self) -> None:
        await self._http.close()

    # --- auth and requests ---------------------------------------------------------------------

    async def _fetch_token(self) -> tuple[str, float]:
        response = await self._http.request(
            "POST",
            "/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": self._client_id,
                "client_secret": self._client_secret,
            },
            idempotent=True,  # asking for a token twice does no harm
            changes_state=False,
            raise_for_status=False,
        )
        if response.status in (400, 401, 403):
            raise AuthenticationError(
                f"refused the client credentials ({token_error(response)}); check client_id and"
                " client_secret",
                provider=PROVIDER,
                status=response.status,
                request_id=response.client_request_id,
            )
        if not response.ok:
            raise map_error(response)
        return token_answer(response, PROVIDER)

    async def _api(
        self,
        method: str,
        path: str,
        *,
        params: Optional[Mapping[str, Any]] = None,
        json_body: Any = None,
        headers: Optional[Mapping[str, str]] = None,
        idempotent: Optional[bool] = None,
        idempotency_key: Optional[str] = None,
    ) -> Response:
        """One authenticated API call; a 401 fetches a new token and tries once more (`TokenCache.authorized`:
        a second 401 is an error)."""

        def send(token: str) -> Awaitable[Response]:
            return self._http.request(
                method,
                path,
                params=params,
                json_body=json_body,
                headers={"Authorization": f"Bearer {token}", "Accept": "application/json", **(headers or {})},
                limiter=self._limiter,
                idempotent=idempotent,
                idempotency_key=idempotency_key,
                raise_for_status=False,
            )

        response = await self._tokens.authorized(self._fetch_token, send)
        if not response.ok:
            raise map_error(response)
        return response

    # --- identities ----------------------------------------------------------------------------

    def to_identity(self, raw: Any, request_id: Optional[str] = None) -> Identity:
        """An `Identity` from one SailPoint identity object (`sailpoint_api.identity_from_json`), its
        risk read from `risk_attribute`."""
        score = self._risk_score(raw) if self.risk_attribute and isinstance(raw, Mapping) else None
        return identity_from_json(
            raw, connector=self.name, tenant_id=self.tenant_id, risk_score=score, request_id=request_id
        )

    def _risk_score(self, raw: Mapping[str, Any]) -> Optional[int]:
        value = path_value(raw, self.risk_attribute or "")
        if value is None:
            return None
        try:
            score = int(float(value)) if not isinstance(value, bool) else -1
        except (TypeError, ValueError):
            score = -1
        if 0 <= score <= 100:
            return score
        if not self._warned_risk:  # once per connector: a misconfigured attribute would flood the log
            self._warned_risk = True
            log.warning(
                "%s: risk attribute %s holds %r, not a score from 0 to 100; such risk is unknown",
                self.name,
                self.risk_attribute,
                str(value)[:40],
            )
        return None

    async def _identity_page(
        self, offset: int, *, count: bool = False
    ) -> tuple[list[Identity], Optional[int]]:
        response = await self._api(
            "GET",
            self.identities_path,
            params={"limit": self.page_size, "offset": offset, "count": True if count else None},
            headers=self._identity_headers,
        )
        rows = response.json(PROVIDER)
        if not isinstance(rows, list):
            raise ProviderUnavailableError(
                f"answered the identity list (offset {offset}) with {type(rows).__name__}, not a JSON array",
                provider=PROVIDER,
                request_id=response.client_request_id,
            )
        total = response.header("X-Total-Count")
        identities = [self.to_identity(row, response.client_request_id) for row in rows]
        return identities, int(total) if total is not None and total.isdigit() else None

    async def iter_pages(
        self,
        *,
        risk_level: Optional[RiskLevel] = None,
        tenant_id: Optional[str] = None,
        privileged: Optional[bool] = None,
        mfa_enrolled: Optional[bool] = None,
        provider: Optional[str] = None,
    ) -> AsyncIterator[list[Identity]]:
        """Pages in order; after the first (which reports the total) up to `concurrency` are in flight.

        SailPoint filters none of these server-side, so they apply to each page here. It reports no
        MFA data, so an `mfa_enrolled` filter matches nothing, as does `risk_level` without a
        `risk_attribute`.
        """
        if (
            (tenant_id is not None and tenant_id != self.tenant_id)
            or (provider is not None and provider != "sailpoint")
            or mfa_enrolled is not None
            or (risk_level is not None and self.risk_attribute is None)
        ):
            return

        def keep(identity: Identity) -> bool:
            return (risk_level is None or identity.risk_level == risk_level) and (
                privileged is None or identity.privileged == privileged
            )

        async for identities in self._pages():
            page = [identity for identity in identities if keep(identity)]
            if page:
                yield page

    async def _pages(self) -> AsyncIterator[list[Identity]]:
        rows, total = await self._identity_page(0, count=True)
        yield rows
        if total is None:  # no count from the server: read on until a short page
            offset = len(rows)
            while len(rows) == self.page_size:
                rows, _ = await self._identity_page(offset)
                offset += len(rows)
                yield rows
            return
        offsets = iter(range(self.page_size, total, self.page_size))
        # A window of in-flight pages, awaited in order: memory holds at most `concurrency` pages.
        pending: collections.deque[asyncio.Task] = collections.deque(
            asyncio.ensure_future(self._identity_page(offset))
            for offset in itertools.islice(offsets, self.concurrency)
        )
        try:
            while pending:
                rows, _ = await pending.popleft()
                if not rows:  # fewer identities than the count said (deleted meanwhile, or a bad count)
                    return
                following = next(offsets, None)
                if following is not None:
                    pending.append(asyncio.ensure_future(self._identity_page(following)))
                yield rows
        finally:
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def get_identity(self, identity_id: str) -> Identity:
        identity_id = checked_id(identity_id)
        try:
            response = await self._api(
                "GET", f"{self.identities_path}/{quote(identity_id, safe='')}", headers=self._identity_headers
            )
        except NotFoundError as exc:
            raise NotFoundError(
                f"no identity with id {identity_id}", provider=PROVIDER, request_id=exc.request_id, status=404
            ) from exc
        return self.to_identity(response.json(PROVIDER), response.client_request_id)

    async def find_identities(self, query: str, *, limit: int = 10) -> list[Identity]:
        """An email matches exactly, a 32-hex id is fetched, anything else matches name or alias prefixes."""
        text = query.strip()
        if not text:
            raise ValidationError(
                "type an email, a 32-character id or a name to search for", provider=PROVIDER
            )
        if len(text) > _MAX_QUERY:
            raise ValidationError(
                f"the search text is longer than {_MAX_QUERY} characters", provider=PROVIDER
            )
        if _HEX_ID.match(text):
            try:
                return [await self.get_identity(text.lower())]
            except NotFoundError:
                return []
        if _EMAIL.match(text):
            expression = filter_expr("email", "eq", text)
        else:
            expression = f"{filter_expr('name', 'sw', text)} or {filter_expr('alias', 'sw', text)}"
        response = await self._api(
            "GET",
            self.identities_path,
            params={"filters": expression, "limit": max(1, min(limit, MAX_PAGE))},
            headers=self._identity_headers,
        )
        rows = response.json(PROVIDER)
        if not isinstance(rows, list):
            raise ProviderUnavailableError(
                "answered a search with something other than a list",
                provider=PROVIDER,
                request_id=response.client_request_id,
            )
        return [self.to_identity(row, response.client_request_id) for row in rows[:limit]]

    async def check(self) -> CheckResult:
        try:
            _, total = await self._identity_page(0, count=True)
        except ConnectorError as exc:
            return CheckResult(ok=False, connector=self.name, message=str(exc), request_id=exc.request_id)
        seen = "an unknown number of" if total is None else str(total)
        return CheckResult(
            ok=True,
            connector=self.name,
            message=f"signed in to {self.base_url} ({self.api_version} API); {seen} identities visible",
        )

    # --- actions -------------------------------------------------------------------------------

    async def _accounts(self, identity_id: str) -> tuple[list[dict], str]:
        """The identity's accounts, and the request id of the listing's last page."""
        accounts: list[dict] = []
        while True:
            response = await self._api(
                "GET",
                self.accounts_path,
                params={
                    "filters": filter_expr("identityId", "eq", identity_id),
                    "limit": MAX_PAGE,
                    "offset": len(accounts),
                },
            )
            rows = account_rows(response)
            accounts.extend(rows)
            if len(rows) < MAX_PAGE:
                return accounts, response.client_request_id

    async def action_in_effect(self, action: Action, identity_id: str) -> Optional[bool]:
        """Disable and enable are readable: in effect when every account of the identity is disabled
        (DISABLE), or none is (ENABLE)."""
        if action not in (Action.DISABLE, Action.ENABLE):
            return None
        accounts, _ = await self._accounts(checked_id(identity_id))
        if action is Action.ENABLE:
            return bool(accounts) and not any(account.get("disabled") for account in accounts)
        return bool(accounts) and all(account.get("disabled") for account in accounts)

    async def disable(self, identity_id: str, reason: str) -> ActionResult:
        """Disable every enabled account of the identity; SailPoint queues one task per account.

        SailPoint's disable request has no reason field: `reason` stays in idops' own audit trail.
        """
        return await self._toggle(Action.DISABLE, identity_id)

    async def enable(self, identity_id: str, reason: str = "") -> ActionResult:
        """The undo of `disable`: enable every disabled account of the identity (`POST
        /v3/accounts/{id}/enable`, one queued task per account). An account disabled before idops
        disabled the others is enabled too: SailPoint keeps no record of who disabled what."""
        return await self._toggle(Action.ENABLE, identity_id)

    async def _toggle(self, action: Action, identity_id: str) -> ActionResult:
        """Send `disable` or `enable` to each account not already so; `completed` when none needed it."""
        verb = "disable" if action is Action.DISABLE else "enable"
        identity_id = checked_id(identity_id)
        accounts, request_id = await self._accounts(identity_id)
        if not accounts:
            await self.get_identity(identity_id)  # NotFoundError when there is no such identity
            raise ConflictError(
                f"identity {identity_id} has no accounts to {verb}", provider=PROVIDER, request_id=request_id
            )
        wanted = action is Action.DISABLE
        todo = [account for account in accounts if bool(account.get("disabled")) is not wanted]
        if not todo:
            return ActionResult(
                action=action,
                identity_id=identity_id,
                connector=self.name,
                status=ActionResult.COMPLETED,
                message=f"all {len(accounts)} accounts were already {verb}d",
            )
        tasks: list[str] = []
        for account in todo:
            try:
                response = await self._api(
                    "POST",
                    f"{self.accounts_path}/{quote(account['id'], safe='')}/{verb}",
                    json_body={},
                    idempotent=True,  # sending it twice leaves the account as sending it once does
                    idempotency_key=self.idempotency_key(account["id"]),
                )
            except ConnectorError as exc:
                if tasks:
                    exc.message = (
                        f"{exc.message} (after queuing {len(tasks)} of {len(todo)}: {', '.join(tasks)})"
                    )
                raise
            data = response.json(PROVIDER)
            task = data.get("id") if isinstance(data, dict) else None
            if not isinstance(task, str):
                raise ProviderUnavailableError(
                    f"accepted the {verb} request without a task id",
                    provider=PROVIDER,
                    request_id=response.client_request_id,
                )
            tasks.append(task)
        sources = ", ".join(str(account.get("sourceName") or account["id"]) for account in todo)
        return ActionResult(
            action=action,
            identity_id=identity_id,
            connector=self.name,
            status=ActionResult.QUEUED,
            reference=",".join(tasks),
            message=f"{verb} queued for {len(todo)} account(s): {sources}",
            raw={"tasks": tasks, "accounts": [account["id"] for account in todo]},
        )

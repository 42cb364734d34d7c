"""Okta (Management API): users, their ITP risk and admin roles, and the response actions.

Auth: an API token (`Authorization: SSWS …`), or an OAuth 2.0 service app (`client_id`, `private_key`,
`scopes`: a private_key_jwt assertion signed RS256, the access token cached until shortly before it
expires and fetched again once on a 401).

Mapping to `Identity`:

* risk (Identity Threat Protection): `GET /api/v1/users/{id}/risk` for one user; a listing reads the
  System Log's `user.risk.change`/`user.risk.detect` events instead (one query, not one per user).
  Okta's levels map onto idops's bands by this rule: NONE → low (score 0), LOW → low (20),
  MEDIUM → medium (50), HIGH → high (75), and HIGH on a privileged user → critical (100). HIGH is
  never below `high`. An org without ITP answers 401/403/404 on `/risk`: risk is then unknown (None)
  for every user, said once in the log and in `check`, and no risk alert can fire. A 403 for a token
  without the scope (`WWW-Authenticate: ... error="insufficient_scope"`) is an error, never that.
* privileged: any admin role assignment. A single user's roles are read (`GET /api/v1/users/{id}/roles`,
  their labels become `roles`); listings and the change feed read Okta's list of users holding admin
  roles instead (`GET /api/v1/iam/assignees/users`), so every listed user's `privileged` is known
  (`roles` stays empty there).
* MFA: a single read (`get_identity`, searches) reads the user's enrolled factors (`GET
  /api/v1/users/{id}/factors`): `mfa_enrolled` is any ACTIVE factor, `mfa_methods` their types.
  Listings leave MFA unknown (a request per user) unless the `mfa_enrolled` filter asks for it.

Listing: with `concurrency` 1, Okta's default list (`GET /api/v1/users`, DEPROVISIONED left out) paged by
its `after` cursor. With more, disjoint `search` partitions by `created` time, each paged by its own
cursor, `concurrency` at a time (search reads an eventually consistent copy: a user changed seconds
ago may show its previous state until the next sweep).

Actions: revoke sessions (`DELETE /sessions?oauthTokens=true`), force password change
(`expire_password`, or `reset_password` with `sendEmail`), disable (`suspend`, ACTIVE users only) and
enable (`unsuspend`); a user already in the wanted state is success. Lifecycle calls are not
idempotent: a timeout or 5xx after sending is an OutcomeUnknownError, never retried.
`confirm_compromised` / `dismiss_risk` set the ITP risk to HIGH / LOW (`PUT /risk`, as an admin
override). `changes_since` reads the System Log's risk events after a cursor (`published` time).

Modules: this one (auth, pacing, requests, single reads, `check`); listing and the change feed in
`connectors.okta_listing`, the actions in `connectors.okta_actions`, wire formats in `connectors.okta_api`,
the service app's assertion in `connectors.okta_oauth`.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Mapping
from datetime import datetime
from typing import Any, Optional
from urllib.parse import quote, urlsplit

import aiohttp

from . import okta_api as api
from . import okta_oauth as oauth
from .base import Connector
from .errors import (
    ConnectorError,
    NotFoundError,
    ProviderUnavailableError,
    ValidationError,
)
from .http import ConnectionErrorRetry, HttpClient, Response, ServerErrorRetry
from .models import Action, CheckResult, Identity
from .okta_actions import OktaActions
from .okta_api import PROVIDER
from .okta_listing import MAX_PAGE, AdminSet, OktaListing
from .registry import register
from .settings import SettingsReader
from .tokens import CLIENT_ASSERTION_TYPE, TokenCache, oauth_error, token_answer

log = logging.getLogger(__name__)

_SAFE_ID = re.compile(r"[A-Za-z0-9_.@+-]{1,128}")
_OKTA_ID = re.compile(r"00u[A-Za-z0-9]{17}")
_TOKEN = re.compile(r"[\x21-\x7e]{8,512}")
_MAX_QUERY = 256
_MAX_RATE_RETRIES = 5


@register
class OktaConnector(OktaListing, OktaActions, Connector):
    """One Okta org over the Management API."""

    kind = "okta"
    label = PROVIDER
    capabilities = frozenset(
        {
            Action.REVOKE_SESSIONS,
            Action.FORCE_PASSWORD_RESET,
            Action.DISABLE,
            Action.ENABLE,
            Action.CONFIRM_COMPROMISED,
            Action.DISMISS_RISK,
        }
    )
    incremental = True
    settings = frozenset(
        {
            "base_url",
            "api_token",
            "client_id",
            "private_key",
            "key_id",
            "scopes",
            "password_action",
            "page_size",
            "concurrency",
            "timeout",
        }
    )
    required_settings = frozenset({"base_url"})

    def __init__(
        self,
        name: str,
        *,
        base_url: str,
        api_token: Optional[str] = None,
        service_app: Optional[oauth.ServiceApp] = None,
        password_action: str = "expire_password",  # noqa: S107 - an Okta endpoint name
        page_size: int = MAX_PAGE,
        concurrency: int = 4,
        timeout: float = 10.0,
        session: Optional[aiohttp.ClientSession] = None,
        pacing: bool = True,
    ) -> None:
        """Exactly one of `api_token` and `service_app`. `pacing=False` ignores the rate-limit headers
        (local simulators with their limits off only)."""
        super().__init__(name)
        if (api_token is None) == (service_app is None):
            raise ValueError("give exactly one of api_token and service_app")
        self.base_url = base_url.rstrip("/")
        host = urlsplit(self.base_url).hostname or ""
        self.tenant_id = host if re.fullmatch(r"[\d.]+|.*:.*", host) else host.split(".")[0]
        self.password_action = password_action
        self.page_size = page_size
        self.concurrency = concurrency
        self._api_token = api_token
        self._service_app = service_app
        self._http = HttpClient(
            self.base_url,
            provider=PROVIDER,
            error_mapper=api.map_error,
            session=session,
            timeout=timeout,
            # 429s are paced here, from Okta's own headers, not by Retry-After
            retry_policies=(ServerErrorRetry(), ConnectionErrorRetry()),
        )
        self._pacing = pacing
        self._buckets: dict[str, api.Bucket] = {}
        self._tokens = TokenCache()  # renewed a minute (or a tenth of its life) before it expires
        #: whether the org has Identity Threat Protection (None: not asked yet)
        self.itp: Optional[bool] = None
        self.itp_problem = ""
        self._admins: Optional[AdminSet] = None  # see connectors.okta_listing
        self._admins_at: Optional[datetime] = None

    @classmethod
    def from_config(
        cls, name: str, config: Mapping[str, Any], *, session: Optional[aiohttp.ClientSession] = None
    ) -> OktaConnector:
        cls.validate_config(name, config)
        read = SettingsReader(f"connector '{name}' ({cls.kind})", config)
        token = read.text("api_token", pattern=_TOKEN, expected="an Okta API token")
        client_id = read.text("client_id", pattern=_SAFE_ID, expected="an Okta client id")
        app = None
        if client_id is not None or config.get("private_key") is not None:
            if token is not None:
                raise read.error("api_token", "can't be combined with client_id (choose one auth mode)")
            key = oauth.pem_text(read, read.required_text("private_key", expected="a PEM private key"))
            scopes = oauth.parse_scopes(read, config.get("scopes"))
            if client_id is None:
                raise read.error("client_id", "is required with private_key")
            app = oauth.ServiceApp(client_id, key, scopes, read.text("key_id", pattern=_SAFE_ID))
        elif token is None:
            raise read.error("api_token", "is required (or client_id with private_key for OAuth)")
        return cls(
            name,
            base_url=read.url("base_url", example="https://acme.okta.com", root=True),
            api_token=token,
            service_app=app,
            password_action=read.choice(
                "password_action", "expire_password", ("expire_password", "reset_password")
            ),
            page_size=read.integer("page_size", MAX_PAGE, 1, MAX_PAGE),
            concurrency=read.integer("concurrency", 4, 1, 16),
            timeout=read.seconds("timeout", 10.0, 300),
            session=session,
        )

    async def close(self) -> None:
        await self._http.close()

    # --- requests ----------------------------------------------------------------------------------

    def bucket(self, name: str) -> api.Bucket:
        if name not in self._buckets:
            self._buckets[name] = api.Bucket(time.monotonic)
        return self._buckets[name]

    async def _fetch_token(self) -> tuple[str, float]:
        app = self._service_app
        assert app is not None
        url = f"{self.base_url}/oauth2/v1/token"
        response = await self._paced(
            "POST",
            url,
            data={
                "grant_type": "client_credentials",
                "scope": " ".join(app.scopes),
                "client_assertion_type": CLIENT_ASSERTION_TYPE,
                "client_assertion": app.assertion(url),
            },
            headers={"Accept": "application/json"},
            idempotent=True,  # asking for a token twice does no harm
        )
        if response.status in (400, 401, 403):
            raise api.refused(
                f"refused the service app's token request ({oauth_error(response)}); check client_id,"
                " the key registered for it and the granted scopes",
                response,
            )
        if not response.ok:
            raise api.map_error(response)
        return token_answer(response, PROVIDER)

    async def _paced(
        self,
        method: str,
        path: str,
        *,
        params: Optional[Mapping[str, Any]] = None,
        json_body: Any = None,
        data: Optional[Mapping[str, str]] = None,
        headers: Optional[Mapping[str, str]] = None,
        idempotent: Optional[bool] = None,
    ) -> Response:
        """One request inside its bucket; a 429 waits for the bucket's reset and is sent again."""
        bucket = self.bucket(api.bucket_of(method, path if path.startswith("/") else urlsplit(path).path))
        for _ in range(_MAX_RATE_RETRIES + 1):
            if self._pacing:
                await bucket.acquire(asyncio.sleep)
            response: Optional[Response] = None
            try:
                response = await self._http.request(
                    method,
                    path,
                    params=params,
                    json_body=json_body,
                    data=data,
                    headers=headers,
                    idempotent=idempotent,
                    raise_for_status=False,
                )
            finally:
                bucket.release(response)
            if response.status != 429:
                return response
            if not self._pacing:
                await asyncio.sleep(1.0)
        assert response is not None
        raise api.map_error(response)

    async def _api(
        self,
        method: str,
        path: str,
        *,
        params: Optional[Mapping[str, Any]] = None,
        json_body: Any = None,
        idempotent: Optional[bool] = None,
    ) -> Response:
        """One authenticated call; OAuth mode fetches a new token once on a 401 (`TokenCache.authorized`:
        a second 401 is an error). An API token has nothing to renew: its 401 is the error."""

        def send(authorization: str) -> Awaitable[Response]:
            return self._paced(
                method,
                path,
                params=params,
                json_body=json_body,
                headers={"Authorization": authorization, "Accept": "application/json"},
                idempotent=idempotent,
            )

        if self._service_app is None:
            response = await send(f"SSWS {self._api_token}")
        else:
            response = await self._tokens.authorized(self._fetch_token, lambda token: send(f"Bearer {token}"))
        if not response.ok:
            raise api.map_error(response)
        return response

    async def _json(self, method: str, path: str, **kwargs: Any) -> tuple[Any, Response]:
        response = await self._api(method, path, **kwargs)
        return response.json(PROVIDER), response

    # --- identities --------------------------------------------------------------------------------

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
        """An `Identity` from an Okta user; `risk` is its Okta level (None: unknown), `roles` its role
        assignments when they were read (privileged then means any of them, else `privileged`), `factors`
        its enrolled factors when read (else MFA is unknown)."""
        user_id = user.get("id") if isinstance(user, dict) else None
        if not isinstance(user_id, str) or not user_id:
            raise ProviderUnavailableError(
                "sent a user without an id",
                provider=PROVIDER,
                request_id=api.request_id(response) if response else None,
            )
        profile = user.get("profile") if isinstance(user.get("profile"), dict) else {}
        first, last = api.text_of(profile.get("firstName")), api.text_of(profile.get("lastName"))
        display = api.text_of(profile.get("displayName")) or " ".join(p for p in (first, last) if p) or None
        active_roles = [
            r for r in roles or [] if isinstance(r, dict) and r.get("status", "ACTIVE") == "ACTIVE"
        ]
        privileged = bool(active_roles) if roles is not None else bool(privileged)
        active_factors = [f for f in factors or [] if isinstance(f, dict) and f.get("status") == "ACTIVE"]
        methods = sorted({f["factorType"] for f in active_factors if isinstance(f.get("factorType"), str)})
        score, level = api.risk_band(risk, privileged) if self.itp is not False else (None, None)
        status = api.text_of(user.get("status"))
        return Identity(
            id=user_id,
            connector=self.name,
            email=api.text_of(profile.get("email")) or api.text_of(profile.get("login")),
            display_name=display,
            tenant_id=self.tenant_id,
            status=status.lower() if status else None,
            risk_score=score,
            risk_level=level,
            privileged=bool(privileged),
            mfa_enrolled=bool(active_factors) if factors is not None else None,
            mfa_methods=tuple(methods),
            last_login_at=api.as_datetime(user.get("lastLogin")),
            provider="okta",
            provider_id=user_id,
            roles=tuple(str(r.get("label") or r.get("type")) for r in active_roles),
            created_at=api.as_datetime(user.get("created")),
            raw=user,
        )

    async def _user_risk(self, user_id: str) -> Optional[str]:
        """The user's Okta risk level, or None when the org has no ITP (found out once, then remembered)."""
        if self.itp is False:
            return None
        try:
            body, response = await self._json("GET", f"/api/v1/users/{quote(user_id, safe='')}/risk")
        except ConnectorError as exc:
            if not api.is_missing_feature(exc):
                raise
            self._no_itp(exc)
            return None
        level = body.get("riskLevel") if isinstance(body, dict) else None
        if level not in api.RISK_BANDS:
            raise api.bad_answer(
                f"answered a user's risk with an unknown riskLevel {str(level)[:20]!r}", response
            )
        self.itp = True
        return str(level)

    def _no_itp(self, exc: ConnectorError) -> None:
        if self.itp is not False:
            self.itp_problem = f"HTTP {exc.status}{f' {exc.code}' if exc.code else ''}"
            log.warning(
                "%s: Okta answered GET /api/v1/users/{id}/risk with %s: this org has no Identity Threat"
                " Protection (or the token may not read user risk); risk is unknown and no risk alert fires",
                self.name,
                self.itp_problem,
            )
        self.itp = False

    async def _roles(self, user_id: str) -> list[dict]:
        body, response = await self._json("GET", f"/api/v1/users/{quote(user_id, safe='')}/roles")
        if not isinstance(body, list):
            raise api.bad_answer("answered a role listing with something other than a list", response)
        return [role for role in body if isinstance(role, dict)]

    async def _factors(self, user_id: str) -> list[dict]:
        body, response = await self._json("GET", f"/api/v1/users/{quote(user_id, safe='')}/factors")
        if not isinstance(body, list):
            raise api.bad_answer("answered a factor listing with something other than a list", response)
        return [factor for factor in body if isinstance(factor, dict)]

    async def _full(self, user: dict, response: Optional[Response] = None) -> Identity:
        """A user with its risk, roles and factors read (three more requests)."""
        user_id = str(user.get("id") or "")
        risk, roles, factors = await asyncio.gather(
            self._user_risk(user_id), self._roles(user_id), self._factors(user_id)
        )
        return self.to_identity(user, risk=risk, roles=roles, factors=factors, response=response)

    @staticmethod
    def _checked_id(identity_id: str) -> str:
        text = str(identity_id).strip()
        if not _SAFE_ID.fullmatch(text) or not text.strip("."):
            raise NotFoundError(f"no user with id {text[:60]!r}", provider=PROVIDER)
        return text

    async def get_identity(self, identity_id: str) -> Identity:
        user_id = self._checked_id(identity_id)
        try:
            body, response = await self._json("GET", f"/api/v1/users/{quote(user_id, safe='')}")
        except NotFoundError as exc:
            raise NotFoundError(
                f"no user with id {user_id}", provider=PROVIDER, request_id=exc.request_id, status=404
            ) from exc
        if not isinstance(body, dict):
            raise api.bad_answer("answered a user read with something other than an object", response)
        return await self._full(body, response)

    async def find_identities(self, query: str, *, limit: int = 10) -> list[Identity]:
        """An email matches email or login exactly, an Okta id (00u…) is read, anything else matches the
        start of first name, last name or login ("Ada Love" matches first and last name)."""
        text = query.strip()
        if not text:
            raise ValidationError(
                "type an email, an Okta user id (00u…) or a name to search for", provider=PROVIDER
            )
        if len(text) > _MAX_QUERY:
            raise ValidationError(
                f"the search text is longer than {_MAX_QUERY} characters", provider=PROVIDER
            )
        if _OKTA_ID.fullmatch(text):
            try:
                return [await self.get_identity(text)]
            except NotFoundError:
                return []
        try:
            expression = api.name_search(text)
        except ValueError as exc:
            raise ValidationError(f"can't search for that text: {exc}", provider=PROVIDER) from None
        body, response = await self._json(
            "GET", "/api/v1/users", params={"search": expression, "limit": max(1, min(limit, MAX_PAGE))}
        )
        if not isinstance(body, list):
            raise api.bad_answer("answered a search with something other than a list", response)
        users = [user for user in body[:limit] if isinstance(user, dict)]
        return list(await asyncio.gather(*(self._full(user, response) for user in users)))

    async def check(self) -> CheckResult:
        try:
            body, response = await self._json("GET", "/api/v1/users", params={"limit": 1})
            if not isinstance(body, list):
                raise api.bad_answer("answered the user list with something other than a list", response)
            if body and isinstance(body[0], dict) and isinstance(body[0].get("id"), str):
                await self._user_risk(body[0]["id"])
                await self._roles(body[0]["id"])  # privilege decides approvals: roles must be readable
                await self._factors(body[0]["id"])
            # listings and the change feed know privilege from the role assignees
            await self._json("GET", "/api/v1/iam/assignees/users", params={"limit": 1})
        except ConnectorError as exc:
            return CheckResult(ok=False, connector=self.name, message=str(exc), request_id=exc.request_id)
        auth = "API token" if self._service_app is None else "OAuth service app"
        if self.itp is False:
            risk = (
                f"risk unknown: no Identity Threat Protection ({self.itp_problem} on /risk), no risk alerts"
            )
        elif self.itp:
            risk = "ITP risk readable"
        else:
            risk = "no users to read risk from"
        seen = "users visible" if body else "no users visible"
        return CheckResult(
            ok=True, connector=self.name, message=f"{auth} accepted by {self.base_url}; {seen}; {risk}"
        )

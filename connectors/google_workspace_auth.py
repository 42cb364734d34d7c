"""The service account's access token and authenticated requests for Google Workspace, mixed into
`connectors.google_workspace.GoogleWorkspaceConnector` (which supplies the settings declared below).

Rules: the token comes from a JWT signed with the key file's `private_key` (`sign_assertion`: PyJWT is
imported only when it signs) exchanged at `token_url`; it is cached until a minute (or a tenth of its life)
before it expires, one caller renews it while the others wait, and an API answer 401 drops it and
sends the call once more with a new one (`TokenCache.authorized`: a second 401 is an error, never a
third try). Only a 401: Google answers an expired or revoked token 401 `authError`, and google-auth
refreshes on 401 only (its `DEFAULT_REFRESH_STATUS_CODES`); no other status is known to mean one.
Every API call asks for compact JSON (`prettyPrint=false`: Google indents its answers unless told not
to, 36% more bytes for a page of users, to send and to decode). A refused `apps.alerts` scope is asked
again without it (Alert Center then reported unreadable, the Directory keeps working); any other
refusal is an AuthenticationError naming what to fix (delegation, admin_email, the key or the clock),
never the key.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping, Sequence
from typing import Any, Callable, Optional, Protocol

from .errors import AuthenticationError, ConnectorError
from .google_workspace_api import (
    DIRECTORY_SCOPES,
    JWT_BEARER,
    PROVIDER,
    SCOPE_ALERTS,
    ServiceAccountKey,
    map_error,
    sign_assertion,
)
from .http import HttpClient, Response, SlidingWindowLimiter
from .tokens import TokenCache, oauth_error, token_answer

#: Google's standard parameter `prettyPrint` defaults to true (indented answers): every call turns it off
COMPACT = {"prettyPrint": "false"}


class DirectoryRequests(Protocol):
    """What the listing and actions mixins take from the connector: `_api`, its one authenticated call
    (defined by GoogleWorkspaceAuth below; a base of both mixins, so its signature is written once). It
    stays after `Connector` in the connector's MRO (GoogleWorkspaceActions names it last): a Protocol's
    `__init__` would end the `__init__` chain."""

    async def _api(
        self,
        method: str,
        path: str,
        *,
        params: Optional[Mapping[str, Any]] = None,
        json_body: Any = None,
        idempotent: Optional[bool] = None,
    ) -> Response: ...


class GoogleWorkspaceAuth:
    """The access token (cached, renewed once on a 401) and `_api`, the one authenticated call."""

    key: ServiceAccountKey
    admin_email: str
    token_url: str
    alert_center_problem: Optional[str]
    _http: HttpClient
    _limiter: Optional[SlidingWindowLimiter]
    _clock: Callable[[], float]
    _tokens: TokenCache

    # supplied by the connector
    def _alert_center_refused(self, why: str) -> None:
        raise NotImplementedError

    @property
    def scopes(self) -> tuple[str, ...]:
        return DIRECTORY_SCOPES + (() if self.alert_center_problem else (SCOPE_ALERTS,))

    async def _fetch_token(self) -> tuple[str, float]:
        scopes = self.scopes
        response = await self._token_request(scopes)
        error = oauth_error(response) if response.status in (400, 401, 403) else ""
        if SCOPE_ALERTS in scopes and error.startswith(("unauthorized_client", "access_denied")):
            # maybe only the Alert Center scope is missing from the delegation grant: try without
            scopes = DIRECTORY_SCOPES
            response = await self._token_request(scopes)
            if response.ok:
                self._alert_center_refused(f"the token request for {SCOPE_ALERTS} was refused ({error})")
        if not response.ok:
            raise self._token_refused(response, scopes)
        return token_answer(response, PROVIDER)

    async def _token_request(self, scopes: Sequence[str]) -> Response:
        assertion = sign_assertion(self.key, self.admin_email, scopes, self._clock())
        return await self._http.request(
            "POST",
            self.token_url,
            data={"grant_type": JWT_BEARER, "assertion": assertion},
            idempotent=True,  # asking for a token twice does no harm
            raise_for_status=False,
        )

    def _token_refused(self, response: Response, scopes: Sequence[str]) -> ConnectorError:
        if response.status >= 500 or response.status == 429:
            return map_error(response)
        error = oauth_error(response)
        if error.startswith("unauthorized_client"):
            hint = (
                f"grant domain-wide delegation to client id {self.key.client_id or '(see the key file)'}"
                f" with the scopes {', '.join(scopes)}"
            )
        elif "Invalid email or User ID" in error:
            hint = f"admin_email {self.admin_email} is not a user of this Workspace"
        else:
            hint = "check the key file (a deleted or rotated key) and the clock"
        return AuthenticationError(
            f"refused the service account's signed token ({error}); {hint}",
            provider=PROVIDER,
            status=response.status,
            request_id=response.client_request_id,
        )

    async def _api(
        self,
        method: str,
        path: str,
        *,
        params: Optional[Mapping[str, Any]] = None,
        json_body: Any = None,
        idempotent: Optional[bool] = None,
    ) -> Response:
        """One authenticated call, answered compact (`prettyPrint=false`); a 401 fetches a new token and
        tries once more (`TokenCache.authorized`: a second 401 is an error)."""
        query = {**params, **COMPACT} if params else COMPACT

        def send(token: str) -> Awaitable[Response]:
            return self._http.request(
                method,
                path,
                params=query,
                json_body=json_body,
                headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
                limiter=self._limiter,
                idempotent=idempotent,
                raise_for_status=False,
            )

        response = await self._tokens.authorized(self._fetch_token, send)
        if not response.ok:
            raise map_error(response)
        return response

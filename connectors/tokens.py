"""The access-token cache the OAuth connectors share (SailPoint, Okta service app, Entra ID,
Google Workspace).

Rules: a token is kept until `min(renew_max, renew_share * its lifetime)` before it expires (never past
that), and fetched by one caller at a time while the others wait for it (the lock is made inside the
event loop: Python 3.9 binds a lock to the loop it was made in).

`authorized(fetch, send)` is the one path of an authenticated call: `send(token)` with the cached token,
and when the answer is refused (a 401; a connector may pass its own test as `refused`) the token is
dropped and the call sent once more with a fresh one. A second refusal is returned to the caller (an
error there), never sent a third time. `drop(token)` forgets the token only if it is still the cached
one, so calls that all got the 401 renew it once, not once each.

Fetching (the request, its errors, checking the answer) stays with each connector, which hands `get` and
`authorized` a coroutine function returning (token, lifetime); `token_answer` is the check of an OAuth
token answer they share: a token that fits in a header (printable ASCII, no space or line break that
would break it or add a header) and a positive numeric lifetime; `oauth_error` the text of a refused
one. The JWT auth modes (Entra certificates, Okta service apps, Google service accounts) sign with
`sign_rs256`, the one place PyJWT is imported (inside it, so only a configured JWT mode needs it), and
build an RFC 7523 client assertion with `assertion_claims`.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Awaitable, Mapping
from typing import Any, Callable, Optional

from .errors import ConfigurationError, ProviderUnavailableError
from .http import Response, short

_TOKEN = re.compile(r"[\x21-\x7e]+")
#: the `client_assertion_type` of a JWT client assertion (RFC 7523), for Entra's certificates and Okta
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

Fetch = Callable[[], Awaitable[tuple[str, float]]]


def oauth_error(response: Response) -> str:
    """`error: error_description` from an OAuth error answer (RFC 6749 5.2), shortened (it names no
    secret), else the HTTP status."""
    try:
        data = response.json()
    except ProviderUnavailableError:
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("error"), str):
        return f"HTTP {response.status}"
    described = data.get("error_description")
    return short(data["error"] + (f": {described}" if isinstance(described, str) else ""), 200)


def unauthorized(response: Response) -> bool:
    """Whether the API refused the token: HTTP 401."""
    return response.status == 401


def token_answer(
    response: Response,
    provider: str,
    *,
    max_length: int = 8192,
    lifetime_text: bool = False,
    request_id: Optional[str] = None,
) -> tuple[str, float]:
    """(access_token, expires_in) from an OAuth token answer, else ProviderUnavailableError (the token
    itself is never quoted). `lifetime_text` also takes expires_in as a string of digits (Entra ID's
    older endpoints send it so); `request_id` names the answer in the error (default: ours)."""
    data = response.json(provider)
    token = data.get("access_token") if isinstance(data, dict) else None
    expires_in = data.get("expires_in") if isinstance(data, dict) else None
    if lifetime_text and isinstance(expires_in, str) and expires_in.isdigit():
        expires_in = int(expires_in)
    if (
        not isinstance(token, str)
        or len(token) > max_length
        or not _TOKEN.fullmatch(token)
        or isinstance(expires_in, bool)
        or not isinstance(expires_in, (int, float))
        or expires_in <= 0
    ):
        raise ProviderUnavailableError(
            "answered the token request without a usable access_token and expires_in",
            provider=provider,
            request_id=request_id or response.client_request_id,
        )
    return token, float(expires_in)


def assertion_claims(client_id: str, audience: str, now: float, lifetime: int) -> dict[str, Any]:
    """The claims of a client assertion (RFC 7523: the client is issuer and subject, the token endpoint
    the audience, a unique `jti`), valid `lifetime` seconds from `now`."""
    issued = int(now)
    return {
        "iss": client_id,
        "sub": client_id,
        "aud": audience,
        "iat": issued,
        "exp": issued + lifetime,
        "jti": uuid.uuid4().hex,
    }


def sign_rs256(
    claims: Mapping[str, Any], key: str, headers: Optional[Mapping[str, str]], *, provider: str
) -> str:
    """`claims` as a JWT signed RS256 with the PEM private `key`. ConfigurationError when PyJWT (with
    cryptography) is missing; ValueError when the key can't sign, never quoting it (it is the secret)."""
    try:
        import jwt  # PyJWT[crypto]: needed only by the JWT auth modes, so imported only when one signs
    except ImportError as exc:  # pragma: no cover - PyJWT ships with idops and the SOAR package
        raise ConfigurationError(
            "this auth mode needs PyJWT with cryptography installed (pip install 'PyJWT[crypto]')",
            provider=provider,
        ) from exc
    try:
        return str(jwt.encode(dict(claims), key, algorithm="RS256", headers=dict(headers or {}) or None))
    except (ValueError, TypeError, jwt.PyJWTError):
        raise ValueError("the key could not sign RS256 (not an RSA private key)") from None


class TokenCache:
    """One cached bearer token and when to renew it."""

    def __init__(
        self,
        *,
        renew_max: float = 60.0,
        renew_share: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.renew_max = renew_max
        self.renew_share = renew_share
        self._clock = clock
        self.token: Optional[str] = None
        self._renew_at = 0.0
        self._lock: Optional[asyncio.Lock] = None

    async def get(self, fetch: Fetch) -> str:
        """The cached token, or a new one from `fetch()` when there is none or it is due for renewal."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self.token is not None and self._clock() < self._renew_at:
                return self.token
            token, lifetime = await fetch()
            self.token = token
            margin = min(self.renew_max, lifetime * self.renew_share)
            self._renew_at = self._clock() + max(0.0, lifetime - margin)
            return token

    def drop(self, token: str) -> None:
        """Forget `token` after the API refused it (401), unless another caller already renewed it."""
        if self.token == token:
            self.token = None

    async def authorized(
        self,
        fetch: Fetch,
        send: Callable[[str], Awaitable[Response]],
        *,
        refused: Callable[[Response], bool] = unauthorized,
    ) -> Response:
        """`send(token)`; when `refused` says the answer refused the token, drop it and send once more
        with a fresh one. The second answer is returned whatever it is: never a third try."""
        token = await self.get(fetch)
        response = await send(token)
        if refused(response):
            self.drop(token)  # calls refused together renew it once, not once each
            response = await send(await self.get(fetch))
        return response

"""Google Workspace: users over the Admin SDK Directory API, risk from Alert Center, four actions.

Auth is a service account with domain-wide delegation: a JWT signed RS256 with the key file's
`private_key` (`iss` = its `client_email`, `sub` = the `admin_email` to act as, `scope` = the scopes
below, `aud` = Google's documented token URL whatever URL it is posted to, as google-auth signs it)
is exchanged for an access token (`grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`), which is
cached until a minute before it expires and fetched again once when the API answers 401. PyJWT (with
`cryptography`) is imported only inside `sign_assertion`, so `connectors/` imports without it.

Scopes: `admin.directory.user` (list, read, suspend, force a password change) and
`admin.directory.user.security` (sign out), plus `apps.alerts` while Alert Center is on.

Risk (the Directory API has none) comes from Alert Center: alerts created in the last `alert_days`
days whose `data.email` names the user (primary address or an alias), not deleted and not CLOSED:

* critical (100): an open "Leaked password" or "Government attack warning" alert;
* high (75): an open suspicious-login alert ("Suspicious login", "Suspicious login (less secure app)",
  "Suspicious programmatic login", "User suspended (suspicious activity)");
* medium (50): any other open alert naming the user;
* low (0): none.

When Alert Center is not granted (the token request refuses the `apps.alerts` scope, or the alerts
list answers 403) risk is unknown (None) for every user, logged once and shown by `check()`; the
Directory keeps working. `alert_center = false` never asks for it.

Quotas: requests are paced under Google's default 2,400 a minute per user per project (the setting
`quota_per_minute`, for a project whose quota was raised), and a 403
`userRateLimitExceeded` / `rateLimitExceeded` / `quotaExceeded` or a 429 is retried with truncated
exponential backoff and jitter (a quota error means Google did nothing, so writes retry too).

`query_term` is the only way a Directory `query` is built: whitelisted field/operator pairs, text
values in single quotes with `\\` and `'` escaped, so text typed in Slack never changes a query.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import random
import re
import time
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Optional, Union
from urllib.parse import quote, urlsplit

import aiohttp

from .base import Connector
from .errors import (
    AuthenticationError,
    ConfigurationError,
    ConflictError,
    ConnectorError,
    NotFoundError,
    OutcomeUnknownError,
    PermissionDeniedError,
    ProviderUnavailableError,
    RateLimitedError,
    ValidationError,
)
from .http import (
    MAX_PAUSE,
    ConnectionErrorRetry,
    HttpClient,
    Response,
    RetryPolicy,
    ServerErrorRetry,
    SlidingWindowLimiter,
    error_class_for_status,
)
from .models import Action, ActionResult, CheckResult, Identity, RiskLevel, parse_datetime
from .registry import register
from .settings import SettingsReader

log = logging.getLogger(__name__)

PROVIDER = "Google Workspace"
GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"  # noqa: S105 - a URL, not a secret
DEFAULT_BASE_URL = "https://admin.googleapis.com"
DEFAULT_ALERT_CENTER_URL = "https://alertcenter.googleapis.com"
DIRECTORY = "/admin/directory/v1"
ALERTS_PATH = "/v1beta1/alerts"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
SCOPE_USER = "https://www.googleapis.com/auth/admin.directory.user"
SCOPE_USER_SECURITY = "https://www.googleapis.com/auth/admin.directory.user.security"
SCOPE_ALERTS = "https://www.googleapis.com/auth/apps.alerts"
DIRECTORY_SCOPES = (SCOPE_USER, SCOPE_USER_SECURITY)
MAX_PAGE = 500
ALERT_PAGE = 1000
#: Google's default Directory API quota: queries per minute per user per project
QUOTA_PER_MINUTE = 2400
QUOTA_REASONS = frozenset({"userRateLimitExceeded", "rateLimitExceeded", "quotaExceeded"})
NEVER = "1970-01-01T00:00:00.000Z"  # lastLoginTime of a user who never signed in

CRITICAL_ALERTS = frozenset({"Leaked password", "Government attack warning"})
HIGH_ALERTS = frozenset(
    {
        "Suspicious login",
        "Suspicious login (less secure app)",
        "Suspicious programmatic login",
        "User suspended (suspicious activity)",
    }
)
ALERT_SCORES = {"critical": 100, "high": 75, "medium": 50}
ALERT_CACHE_SECONDS = 60.0
#: the partial response users.list is asked for: what `to_identity` reads, a third of a full user
USER_FIELDS = (
    "nextPageToken,users(id,primaryEmail,aliases,name/fullName,name/givenName,name/familyName,isAdmin,"
    "isDelegatedAdmin,isEnrolledIn2Sv,suspended,archived,customerId,lastLoginTime,creationTime)"
)

# field -> operators this module may put in a Directory `query`
QUERY_FIELDS = {
    "email": ("=", ":"),
    "name": ("=", ":"),
    "givenName": ("=", ":"),
    "familyName": ("=", ":"),
    "isAdmin": ("=",),
    "isDelegatedAdmin": ("=",),
    "isSuspended": ("=",),
    "isEnrolledIn2Sv": ("=",),
    "isEnforcedIn2Sv": ("=",),
}
_BOOLEAN_FIELDS = frozenset(name for name, ops in QUERY_FIELDS.items() if ops == ("=",))
_PREFIX_SAFE = re.compile(r"[A-Za-z0-9._@+-]{1,256}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_USER_KEY = re.compile(r"\d{1,40}|[A-Za-z0-9._%+'-]{1,128}@[A-Za-z0-9.-]{1,253}")
_NUMERIC_ID = re.compile(r"\d{6,40}")
_EMAIL = re.compile(r"[^@\s]{1,128}@[^@\s]{1,253}")
_CUSTOMER = re.compile(r"my_customer|C?[A-Za-z0-9]{4,32}")
_TOKEN = re.compile(r"[\x21-\x7e]{1,8192}")
_MAX_QUERY = 256


def query_term(field: str, op: str, value: Union[str, bool], *, prefix: bool = False) -> str:
    """One Directory search clause, `field op value`: whitelisted pairs only; text in single quotes
    with `\\` and `'` escaped (Google's documented escape), so a value can't add clauses or operators.
    `prefix` (`:value*`) takes only a bare run of letters, digits and `._@+-`. ValueError otherwise."""
    if op not in QUERY_FIELDS.get(field, ()):
        raise ValueError(f"query {field}{op} is not allowed")
    if field in _BOOLEAN_FIELDS:
        if not isinstance(value, bool):
            raise ValueError(f"{field} takes true or false")
        return f"{field}{op}{'true' if value else 'false'}"
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{field} takes a non-empty text value")
    if _CONTROL.search(value):
        raise ValueError("the search text contains control characters")
    if prefix:
        if op != ":" or not _PREFIX_SAFE.fullmatch(value):
            raise ValueError("a prefix search takes letters, digits and ._@+- only")
        return f"{field}:{value}*"
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"{field}{op}'{escaped}'"


def alert_filter(since: datetime) -> str:
    """The Alert Center `filter` for alerts created at or after `since` (a timestamp we format)."""
    return f'createTime >= "{since.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}"'


def alert_level(alert_type: str) -> str:
    """The risk level one open alert of this type means (the rule in the module docstring)."""
    if alert_type in CRITICAL_ALERTS:
        return "critical"
    if alert_type in HIGH_ALERTS:
        return "high"
    return "medium"


@dataclass(frozen=True)
class ServiceAccountKey:
    """The parts of a service account key file (JSON) the JWT grant needs."""

    client_email: str
    private_key: str
    private_key_id: Optional[str]
    client_id: Optional[str]
    token_uri: Optional[str]

    @classmethod
    def parse(cls, text: str) -> ServiceAccountKey:
        """ValueError naming what is missing, never quoting the content (it holds a private key).
        The JSON may come base64-encoded (forms that mangle quotes, newlines or colons)."""
        if not text.lstrip().startswith("{"):
            try:
                text = base64.b64decode(text.strip(), validate=True).decode("utf-8")
            except (ValueError, UnicodeDecodeError):
                text = ""
            if not text.lstrip().startswith("{"):
                raise ValueError(
                    "must be the key file's JSON content or that JSON base64-encoded (not its path)"
                )
        try:
            data = json.loads(text)
        except ValueError:
            raise ValueError("is not valid JSON (paste the whole key file)") from None
        if not isinstance(data, dict) or data.get("type") != "service_account":
            raise ValueError('is not a service account key (its "type" must be "service_account")')
        for key in ("client_email", "private_key"):
            if not isinstance(data.get(key), str) or not data[key].strip():
                raise ValueError(f'has no "{key}"')
        if "PRIVATE KEY-----" not in data["private_key"]:
            raise ValueError('has a "private_key" that is not a PEM private key')
        optional = {key: data.get(key) for key in ("private_key_id", "client_id", "token_uri")}
        return cls(
            client_email=data["client_email"].strip(),
            private_key=data["private_key"],
            **{key: value if isinstance(value, str) and value else None for key, value in optional.items()},
        )


def sign_assertion(key: ServiceAccountKey, subject: str, scopes: Sequence[str], now: float) -> str:
    """The signed JWT for Google's jwt-bearer grant (RS256, one hour, `aud` = Google's token URL)."""
    try:
        import jwt  # PyJWT[crypto]: needed only by this auth mode, so imported only here
    except ImportError as exc:
        raise ConfigurationError(
            "Google Workspace service accounts need PyJWT with cryptography: pip install 'PyJWT[crypto]'",
            provider=PROVIDER,
        ) from exc
    claims = {
        "iss": key.client_email,
        "sub": subject,
        "scope": " ".join(scopes),
        "aud": GOOGLE_TOKEN_URL,
        "iat": int(now),
        "exp": int(now) + 3600,
    }
    headers = {"kid": key.private_key_id} if key.private_key_id else None
    try:
        return str(jwt.encode(claims, key.private_key, algorithm="RS256", headers=headers))
    except (ValueError, TypeError, jwt.PyJWTError):
        # the key's text is never shown: it is the secret
        raise AuthenticationError(
            "the service account key's private_key could not sign a token (not an RSA private key)",
            provider=PROVIDER,
        ) from None


def _reasons(response: Response) -> tuple[dict, list[str]]:
    """Google's `{"error": {code, message, errors: [{reason}], status}}`, and its reasons."""
    try:
        body = json.loads(response.body.decode("utf-8")) if response.body else None
    except (UnicodeDecodeError, ValueError):
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return {}, []
    errors = error.get("errors")
    reasons = [e["reason"] for e in errors or () if isinstance(e, dict) and isinstance(e.get("reason"), str)]
    if isinstance(error.get("status"), str):
        reasons.append(error["status"])
    return error, reasons


class QuotaRetry(RetryPolicy):
    """Google's quota answers (403 with a quota reason, 429): truncated exponential backoff with
    jitter (`base * 2**n` plus up to a second, at most `cap`), or Retry-After when sent. Safe for
    writes: Google did nothing."""

    def __init__(self, max_retries: int = 6, base: float = 1.0, cap: float = 32.0) -> None:
        self.max_retries = max_retries
        self.base = base
        self.cap = cap

    def delay(self, attempt, *, method, idempotent, response, error):  # type: ignore[no-untyped-def]
        if response is None or response.status not in (403, 429):
            return None
        if response.status == 403 and not QUOTA_REASONS.intersection(_reasons(response)[1]):
            return None
        retry_after = response.retry_after()
        if retry_after is not None:
            return min(retry_after, MAX_PAUSE)
        return min(self.cap, self.base * (2**attempt) + random.uniform(0, self.base))


def _text(value: Any) -> Optional[str]:
    return value if isinstance(value, str) and value else None


def _datetime(value: Any) -> Optional[datetime]:
    if value == NEVER:
        return None
    try:
        return parse_datetime(value)
    except ValueError:
        return None


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass
class _AlertIndex:
    """Open alerts per lower-cased email: (score, alert types), and when it was read."""

    by_email: dict[str, tuple[int, tuple[str, ...]]]
    read_at: float


@register
class GoogleWorkspaceConnector(Connector):
    """A Google Workspace customer through a service account with domain-wide delegation."""

    kind = "google_workspace"
    label = PROVIDER
    capabilities = frozenset(
        {Action.REVOKE_SESSIONS, Action.FORCE_PASSWORD_RESET, Action.DISABLE, Action.ENABLE}
    )
    settings = frozenset(
        {
            "service_account_json",
            "admin_email",
            "customer",
            "token_url",
            "base_url",
            "alert_center",
            "alert_center_url",
            "alert_days",
            "page_size",
            "quota_per_minute",
            "timeout",
        }
    )
    required_settings = frozenset({"service_account_json", "admin_email"})

    def __init__(
        self,
        name: str,
        *,
        key: ServiceAccountKey,
        admin_email: str,
        customer: str = "my_customer",
        token_url: Optional[str] = None,
        base_url: str = DEFAULT_BASE_URL,
        alert_center: bool = True,
        alert_center_url: str = DEFAULT_ALERT_CENTER_URL,
        alert_days: int = 30,
        page_size: int = MAX_PAGE,
        quota_per_minute: int = QUOTA_PER_MINUTE,
        timeout: float = 10.0,
        session: Optional[aiohttp.ClientSession] = None,
        pacing: bool = True,
        retry_policies: Optional[Sequence[RetryPolicy]] = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`pacing=False` drops the client-side quota pacing (local simulators only); `sleep` and
        `clock` (wall time, for the JWT's iat/exp) are for tests."""
        super().__init__(name)
        self.key = key
        self.admin_email = admin_email
        self.customer = customer
        self.token_url = token_url or key.token_uri or GOOGLE_TOKEN_URL
        self.base_url = base_url.rstrip("/")
        self.alert_center_url = alert_center_url.rstrip("/")
        self.alert_days = alert_days
        self.page_size = page_size
        self._http = HttpClient(
            self.base_url,
            provider=PROVIDER,
            error_mapper=self._map_error,
            session=session,
            timeout=timeout,
            retry_policies=(QuotaRetry(), ServerErrorRetry(), ConnectionErrorRetry())
            if retry_policies is None
            else retry_policies,
            sleep=sleep,
        )
        self._clock = clock
        self._limiter = SlidingWindowLimiter(quota_per_minute, 60.0) if pacing else None
        self._token: Optional[str] = None
        self._renew_at = 0.0
        self._token_lock: Optional[asyncio.Lock] = None  # made inside the loop (Python 3.9)
        self._alerts_lock: Optional[asyncio.Lock] = None
        self._alerts: Optional[_AlertIndex] = None
        #: why Alert Center can't be read (None: it can, or it is off); risk is unknown then
        self.alert_center_problem: Optional[str] = (
            None if alert_center else "turned off (alert_center = false)"
        )

    @classmethod
    def from_config(
        cls, name: str, config: Mapping[str, Any], *, session: Optional[aiohttp.ClientSession] = None
    ) -> GoogleWorkspaceConnector:
        cls.validate_config(name, config)
        where = f"connector '{name}' ({cls.kind})"
        flag = config.get("alert_center")
        read = SettingsReader(
            where, {**config, "alert_center": str(flag).lower() if isinstance(flag, bool) else flag}
        )
        try:
            key = ServiceAccountKey.parse(read.required_text("service_account_json"))
        except ValueError as exc:
            raise read.error("service_account_json", str(exc)) from None
        return cls(
            name,
            key=key,
            admin_email=read.required_text(
                "admin_email", pattern=_EMAIL, expected="the email of the admin to act as"
            ),
            customer=read.text(
                "customer", "my_customer", pattern=_CUSTOMER, expected="my_customer or a customer id"
            )
            or "my_customer",
            token_url=read.url("token_url", key.token_uri or GOOGLE_TOKEN_URL, example=GOOGLE_TOKEN_URL),
            base_url=read.url("base_url", DEFAULT_BASE_URL, example=DEFAULT_BASE_URL, root=True),
            alert_center=read.choice("alert_center", "true", ("true", "false")) == "true",
            alert_center_url=read.url(
                "alert_center_url", DEFAULT_ALERT_CENTER_URL, example=DEFAULT_ALERT_CENTER_URL, root=True
            ),
            alert_days=read.integer("alert_days", 30, 1, 180),
            page_size=read.integer("page_size", MAX_PAGE, 1, MAX_PAGE),
            quota_per_minute=read.integer("quota_per_minute", QUOTA_PER_MINUTE, 1, 1_000_000),
            timeout=read.seconds("timeout", 10.0, 300),
            session=session,
        )

    async def close(self) -> None:
        await self._http.close()

    # --- auth and requests ---------------------------------------------------------------------

    @property
    def scopes(self) -> tuple[str, ...]:
        return DIRECTORY_SCOPES + (() if self.alert_center_problem else (SCOPE_ALERTS,))

    async def _access_token(self) -> str:
        if self._token_lock is None:
            self._token_lock = asyncio.Lock()
        async with self._token_lock:
            if self._token is not None and time.monotonic() < self._renew_at:
                return self._token
            scopes = self.scopes
            response = await self._token_request(scopes)
            error = self._oauth_error(response) if response.status in (400, 401, 403) else ""
            if SCOPE_ALERTS in scopes and error.startswith(("unauthorized_client", "access_denied")):
                # maybe only the Alert Center scope is missing from the delegation grant: try without
                scopes = DIRECTORY_SCOPES
                response = await self._token_request(scopes)
                if response.ok:
                    self._alert_center_refused(f"the token request for {SCOPE_ALERTS} was refused ({error})")
            if not response.ok:
                raise self._token_refused(response, scopes)
            data = response.json(PROVIDER)
            token = data.get("access_token") if isinstance(data, dict) else None
            expires_in = data.get("expires_in") if isinstance(data, dict) else None
            if (
                not isinstance(token, str)
                or not _TOKEN.fullmatch(token)
                or isinstance(expires_in, bool)
                or not isinstance(expires_in, (int, float))
            ):
                raise ProviderUnavailableError(
                    "answered the token request without a usable access_token and expires_in",
                    provider=PROVIDER,
                    request_id=response.client_request_id,
                )
            self._token = token
            self._renew_at = time.monotonic() + max(0.0, expires_in - min(60.0, expires_in / 10))
            return token

    async def _token_request(self, scopes: Sequence[str]) -> Response:
        assertion = sign_assertion(self.key, self.admin_email, scopes, self._clock())
        return await self._http.request(
            "POST",
            self.token_url,
            data={"grant_type": JWT_BEARER, "assertion": assertion},
            idempotent=True,  # asking for a token twice does no harm
            raise_for_status=False,
        )

    @staticmethod
    def _oauth_error(response: Response) -> str:
        """`error: error_description` from an OAuth error answer (short, no secrets in it)."""
        try:
            data = json.loads(response.body.decode("utf-8")) if response.body else None
        except (UnicodeDecodeError, ValueError):
            data = None
        if not isinstance(data, dict) or not isinstance(data.get("error"), str):
            return f"HTTP {response.status}"
        text = data["error"]
        if isinstance(data.get("error_description"), str):
            text = f"{text}: {data['error_description']}"
        return _short(text, 200)

    def _token_refused(self, response: Response, scopes: Sequence[str]) -> ConnectorError:
        if response.status >= 500 or response.status == 429:
            return self._map_error(response)
        error = self._oauth_error(response)
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

    def _alert_center_refused(self, why: str) -> None:
        if self.alert_center_problem is None:
            self.alert_center_problem = why
            log.warning(
                "%s: Alert Center can't be read, so risk is unknown for every user: %s (grant the scope %s"
                " to the service account's domain-wide delegation, and Alert Center access to %s)",
                self.name,
                why,
                SCOPE_ALERTS,
                self.admin_email,
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
        """One authenticated call; a 401 fetches a new token and tries once more."""
        token = await self._access_token()
        response = await self._send(method, path, token, params, json_body, idempotent)
        if response.status == 401:
            if self._token == token:  # concurrent callers renew it once
                self._token = None
            token = await self._access_token()
            response = await self._send(method, path, token, params, json_body, idempotent)
        if not response.ok:
            raise self._map_error(response)
        return response

    async def _send(
        self,
        method: str,
        path: str,
        token: str,
        params: Optional[Mapping[str, Any]],
        json_body: Any,
        idempotent: Optional[bool],
    ) -> Response:
        return await self._http.request(
            method,
            path,
            params=params,
            json_body=json_body,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            limiter=self._limiter,
            idempotent=idempotent,
            raise_for_status=False,
        )

    def _map_error(self, response: Response) -> ConnectorError:
        """Google's error body as the matching ConnectorError (quota reasons as RateLimitedError)."""
        error, reasons = _reasons(response)
        message = _short(error["message"]) if isinstance(error.get("message"), str) else ""
        path = urlsplit(response.url).path
        text = f"{response.method} {path} failed with HTTP {response.status}"
        if message:
            text = f"{text}: {message}"
        kwargs: dict[str, Any] = {
            "provider": PROVIDER,
            "request_id": response.client_request_id,
            "status": response.status,
            "code": reasons[0] if reasons else None,
        }
        if response.status == 429 or QUOTA_REASONS.intersection(reasons):
            return RateLimitedError(
                f"quota still exceeded: {text}", retry_after=response.retry_after(), **kwargs
            )
        if "notFound" in reasons or response.status == 404:
            return NotFoundError(text, **kwargs)
        if response.status == 401 or "authError" in reasons:
            return AuthenticationError(text, **kwargs)
        if response.status == 403:
            return PermissionDeniedError(text, **kwargs)
        if "conditionNotMet" in reasons or "duplicate" in reasons:
            return ConflictError(text, **kwargs)
        return error_class_for_status(response.status)(text, **kwargs)  # type: ignore[no-any-return]

    def _bad_answer(self, response: Response, what: str) -> ProviderUnavailableError:
        return ProviderUnavailableError(
            f"sent {what}", provider=PROVIDER, request_id=response.client_request_id, status=response.status
        )

    def _object(self, response: Response) -> dict:
        body = response.json(PROVIDER)
        if not isinstance(body, dict):
            raise self._bad_answer(response, "an answer that is not a JSON object")
        return body

    # --- risk from Alert Center ------------------------------------------------------------------

    async def _alert_index(self, *, fresh: bool = False) -> Optional[_AlertIndex]:
        """Open alerts per user, read at most once a minute (`fresh`: read now, as a sweep does);
        None while Alert Center can't be read."""
        if self._alerts_lock is None:
            self._alerts_lock = asyncio.Lock()
        async with self._alerts_lock:
            if self.alert_center_problem is not None:
                return None
            now = time.monotonic()
            cached = self._alerts
            if cached is not None and not fresh and now - cached.read_at < ALERT_CACHE_SECONDS:
                return cached
            try:
                by_email = await self._read_alerts()
            except PermissionDeniedError as exc:
                self._alert_center_refused(f"the alerts list answered {exc.message}")
                return None
            self._alerts = _AlertIndex(by_email, time.monotonic())
            return self._alerts

    async def _read_alerts(self) -> dict[str, tuple[int, tuple[str, ...]]]:
        since = datetime.fromtimestamp(self._clock(), timezone.utc) - timedelta(days=self.alert_days)
        found: dict[str, tuple[int, tuple[str, ...]]] = {}
        page_token: Optional[str] = None
        seen: set[str] = set()
        while True:
            response = await self._api(
                "GET",
                self.alert_center_url + ALERTS_PATH,
                params={"filter": alert_filter(since), "pageSize": ALERT_PAGE, "pageToken": page_token},
            )
            body = self._object(response)
            alerts = body.get("alerts", [])
            if not isinstance(alerts, list):
                raise self._bad_answer(response, "an alert list whose 'alerts' is not an array")
            for alert in alerts:
                self._note_alert(found, alert)
            page_token = body.get("nextPageToken") or None
            if page_token is None:
                return found
            if not isinstance(page_token, str) or page_token in seen:
                raise self._bad_answer(response, "a 'nextPageToken' that repeats or is not a string")
            seen.add(page_token)

    @staticmethod
    def _note_alert(found: dict[str, tuple[int, tuple[str, ...]]], alert: Any) -> None:
        if not isinstance(alert, dict) or alert.get("deleted") is True:
            return
        metadata, data = alert.get("metadata"), alert.get("data")
        metadata = metadata if isinstance(metadata, dict) else {}
        data = data if isinstance(data, dict) else {}
        email, alert_type = _text(data.get("email")), _text(alert.get("type"))
        if email is None or alert_type is None or metadata.get("status") == "CLOSED":
            return
        score = ALERT_SCORES[alert_level(alert_type)]
        old_score, types = found.get(email.casefold(), (0, ()))
        found[email.casefold()] = (max(score, old_score), (*types, alert_type))

    # --- identities ----------------------------------------------------------------------------

    def to_identity(self, user: Any, response: Response, alerts: Optional[_AlertIndex]) -> Identity:
        """An `Identity` from a Directory user; fields of the wrong type read as unknown."""
        user_id = user.get("id") if isinstance(user, dict) else None
        if not isinstance(user_id, str) or not user_id:
            raise self._bad_answer(response, "a user without an id")
        name = user.get("name") if isinstance(user.get("name"), dict) else {}
        full = _text(name.get("fullName")) or " ".join(
            part for part in (_text(name.get("givenName")), _text(name.get("familyName"))) if part
        )
        email = _text(user.get("primaryEmail"))
        admin, delegated = user.get("isAdmin") is True, user.get("isDelegatedAdmin") is True
        score: Optional[int] = None
        if alerts is not None:
            aliases = user.get("aliases") if isinstance(user.get("aliases"), list) else []
            addresses = [a.casefold() for a in (email, *aliases) if isinstance(a, str)]
            score = max((alerts.by_email.get(a, (0, ()))[0] for a in addresses), default=0)
        enrolled = user.get("isEnrolledIn2Sv")
        if user.get("suspended") is True:
            status = "suspended"
        elif user.get("archived") is True:
            status = "archived"
        else:
            status = "active"
        return Identity(
            id=user_id,
            connector=self.name,
            email=email,
            display_name=full or None,
            tenant_id=_text(user.get("customerId")),
            status=status,
            risk_score=score,
            risk_level=None if score is None else RiskLevel.for_score(score),
            mfa_enrolled=enrolled if isinstance(enrolled, bool) else None,
            privileged=admin or delegated,
            last_login_at=_datetime(user.get("lastLoginTime")),
            provider="google_workspace",
            provider_id=user_id,
            roles=(("super_admin",) if admin else ()) + (("delegated_admin",) if delegated else ()),
            created_at=_datetime(user.get("creationTime")),
            raw=user,
        )

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
                    raise self._bad_answer(response, "a user list whose 'users' is not an array")
                page_token = body.get("nextPageToken") or None
                if page_token is not None:
                    if not isinstance(page_token, str) or page_token in seen:
                        raise self._bad_answer(response, "a 'nextPageToken' that repeats or is not a string")
                    seen.add(page_token)
                    if prefetch:
                        pending = asyncio.ensure_future(fetch(page_token))
                yield users, response
                if page_token is None:
                    return
                response = await (pending if pending is not None else fetch(page_token))
                pending = None
        finally:
            if pending is not None:  # the caller stopped early: drop the request in flight
                pending.cancel()
                await asyncio.gather(pending, return_exceptions=True)

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

        def keep(identity: Identity) -> bool:
            return (
                (risk_level is None or identity.risk_level == risk_level)
                and (tenant_id is None or identity.tenant_id == tenant_id)
                and (privileged is None or identity.privileged == privileged)
                and (mfa_enrolled is None or identity.mfa_enrolled == mfa_enrolled)
            )

        async for users, response in self._user_pages(" ".join(terms) or None, prefetch=True):
            page = [self.to_identity(user, response, alerts) for user in users]
            page = [identity for identity in page if keep(identity)]
            if page:
                yield page

    def _user_path(self, user_key: str) -> str:
        # a key goes into the URL path: only a numeric id or an email address (no "/", "?", "..")
        text = str(user_key).strip()
        if not _USER_KEY.fullmatch(text) or ".." in text:
            raise NotFoundError(f"no user with id or email {_short(text, 80)!r}", provider=PROVIDER)
        return f"{DIRECTORY}/users/{quote(text, safe='@')}"

    async def _read_user(self, user_key: str) -> tuple[dict, Response]:
        path = self._user_path(user_key)
        try:
            response = await self._api("GET", path)
        except NotFoundError as exc:
            raise NotFoundError(
                f"no user with id or email {_short(user_key, 80)!r}",
                provider=PROVIDER,
                request_id=exc.request_id,
                status=404,
            ) from exc
        return self._object(response), response

    async def get_identity(self, identity_id: str) -> Identity:
        """One user by id or primary (or alias) email."""
        user, response = await self._read_user(identity_id)
        return self.to_identity(user, response, await self._alert_index())

    async def find_identities(self, query: str, *, limit: int = 10) -> list[Identity]:
        """An email or a numeric id is read directly; other text is a name search (`name:'…'`,
        contains), exact names first."""
        text = query.strip()
        if not text:
            raise ValidationError("type an email, a user id or a name to search for", provider=PROVIDER)
        if len(text) > _MAX_QUERY:
            raise ValidationError(
                f"the search text is longer than {_MAX_QUERY} characters", provider=PROVIDER
            )
        if limit < 1:
            return []
        if _NUMERIC_ID.fullmatch(text) or _EMAIL.fullmatch(text):
            try:
                return [await self.get_identity(text)]
            except NotFoundError:
                return []
        try:
            term = query_term("name", ":", text)
        except ValueError as exc:
            raise ValidationError(str(exc), provider=PROVIDER) from None
        alerts = await self._alert_index()
        found: list[Identity] = []
        async for users, response in self._user_pages(term, page_size=min(limit, MAX_PAGE)):
            found += [self.to_identity(user, response, alerts) for user in users]
            break  # one page of `limit`: the best matches are enough
        wanted = text.casefold()
        found.sort(key=lambda identity: (identity.display_name or "").casefold() != wanted)
        return found[:limit]

    async def check(self) -> CheckResult:
        try:
            async for users, _ in self._user_pages(None, page_size=1):
                seen = "users readable" if users else "no users visible"
                break
            alerts = await self._alert_index()
        except ConnectorError as exc:
            return CheckResult(ok=False, connector=self.name, message=str(exc), request_id=exc.request_id)
        if alerts is None:
            risk = f"Alert Center not readable, risk unknown: {self.alert_center_problem}"
        else:
            risk = f"Alert Center readable ({len(alerts.by_email)} users with open alerts)"
        return CheckResult(
            ok=True,
            connector=self.name,
            message=f"signed in as {self.admin_email} (customer {self.customer}); {seen}; {risk}",
        )

    # --- actions -------------------------------------------------------------------------------

    async def _act(
        self, action: Action, identity_id: str, method: str, path: str, body: Any, done: str
    ) -> ActionResult:
        """Send one state-changing call; no answer after the retries means the outcome is unknown."""
        try:
            response = await self._api(method, path, json_body=body, idempotent=True)
        except OutcomeUnknownError:
            raise
        except ProviderUnavailableError as exc:
            raise OutcomeUnknownError(
                f"{action.label} was sent but its outcome is unknown ({exc.message}); read the user"
                " before trying again",
                provider=PROVIDER,
                request_id=exc.request_id,
                status=exc.status,
            ) from exc
        return ActionResult(
            action=action,
            identity_id=identity_id,
            connector=self.name,
            status=ActionResult.COMPLETED,
            reference=response.client_request_id,
            message=done,
        )

    def _already(self, action: Action, user_id: str, message: str) -> ActionResult:
        return ActionResult(
            action=action,
            identity_id=user_id,
            connector=self.name,
            status=ActionResult.COMPLETED,
            message=message,
        )

    async def action_in_effect(self, action: Action, identity_id: str) -> Optional[bool]:
        """Suspension and a pending forced password change show on the user; a sign-out leaves
        nothing to read (None)."""
        if action not in (Action.DISABLE, Action.ENABLE, Action.FORCE_PASSWORD_RESET):
            return None
        user, _ = await self._read_user(identity_id)
        if action is Action.FORCE_PASSWORD_RESET:
            return user.get("changePasswordAtNextLogin") is True
        return (user.get("suspended") is True) == (action is Action.DISABLE)

    async def revoke_sessions(self, identity_id: str) -> ActionResult:
        """users.signOut: every web and device session ends (there is no already-signed-out state)."""
        path = f"{self._user_path(identity_id)}/signOut"
        done = "signed out of every web and device session in Google Workspace"
        return await self._act(Action.REVOKE_SESSIONS, identity_id, "POST", path, None, done)

    async def force_password_reset(self, identity_id: str) -> ActionResult:
        """changePasswordAtNextLogin: applies at the next sign-in (Revoke sessions makes that now)."""
        user, _ = await self._read_user(identity_id)
        if user.get("changePasswordAtNextLogin") is True:
            message = "already had to change their password at the next sign-in"
            return self._already(Action.FORCE_PASSWORD_RESET, identity_id, message)
        done = "must change their password at the next sign-in (Revoke sessions forces that now)"
        path = self._user_path(identity_id)
        return await self._act(
            Action.FORCE_PASSWORD_RESET, identity_id, "PATCH", path, {"changePasswordAtNextLogin": True}, done
        )

    async def disable(self, identity_id: str, reason: str) -> ActionResult:
        """Suspend the user (Google has no reason field: it stays in idops' audit trail)."""
        return await self._suspend(Action.DISABLE, identity_id, True)

    async def enable(self, identity_id: str, reason: str = "") -> ActionResult:
        """Unsuspend the user: the undo of disable."""
        return await self._suspend(Action.ENABLE, identity_id, False)

    async def _suspend(self, action: Action, identity_id: str, suspended: bool) -> ActionResult:
        user, _ = await self._read_user(identity_id)
        if (user.get("suspended") is True) == suspended:
            return self._already(action, identity_id, f"was already {'suspended' if suspended else 'active'}")
        done = "suspended in Google Workspace" if suspended else "unsuspended in Google Workspace"
        path = self._user_path(identity_id)
        return await self._act(action, identity_id, "PATCH", path, {"suspended": suspended}, done)

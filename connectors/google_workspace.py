"""Google Workspace: users over the Admin SDK Directory API, risk from Alert Center, four actions.

Auth is a service account with domain-wide delegation: a JWT signed RS256 with the key file's
`private_key` (`iss` = its `client_email`, `sub` = the `admin_email` to act as, `scope` = the scopes
below, `aud` = Google's documented token URL whatever URL it is posted to, as google-auth signs it)
is exchanged for an access token (`grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`), which is
cached until a minute before it expires and fetched again once when the API answers 401. PyJWT (with
`cryptography`) is imported only when `sign_assertion` signs (`tokens.sign_rs256`), so `connectors/` imports
without it.

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

The wire formats (key file and JWT, `query_term` — the only way a Directory `query` is built, text in
single quotes with `\\` and `'` escaped —, the risk rule, Google's errors, a user as an `Identity`) are
in `google_workspace_api.py`; the token and authenticated requests in `google_workspace_auth.py`,
listing (`listing = "sequential"`, Google's consistent `nextPageToken` chain, or `"partitioned"`,
email-prefix searches paged at once and checked against the last plain listing) in
`google_workspace_listing.py`, the actions in `google_workspace_actions.py` (mixins).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Optional
from urllib.parse import quote

import aiohttp

from .base import Connector
from .errors import (
    ConnectorError,
    NotFoundError,
    PermissionDeniedError,
    ValidationError,
)
from .google_workspace_actions import GoogleWorkspaceActions
from .google_workspace_api import (
    ALERT_CACHE_SECONDS,
    ALERT_PAGE,
    ALERTS_PATH,
    CUSTOMER_ID,
    DEFAULT_ALERT_CENTER_URL,
    DEFAULT_BASE_URL,
    DIRECTORY,
    EMAIL,
    GOOGLE_TOKEN_URL,
    MAX_PAGE,
    MAX_QUERY,
    NUMERIC_ID,
    PROVIDER,
    QUOTA_PER_MINUTE,
    SCOPE_ALERTS,
    USER_KEY,
    AlertIndex,
    QuotaRetry,
    ServiceAccountKey,
    alert_filter,
    bad_answer,
    map_error,
    note_alert,
    query_term,
    short,
    user_identity,
)
from .google_workspace_auth import GoogleWorkspaceAuth
from .google_workspace_listing import LISTINGS, GoogleWorkspaceListing
from .http import (
    ConnectionErrorRetry,
    HttpClient,
    Response,
    RetryPolicy,
    ServerErrorRetry,
    SlidingWindowLimiter,
)
from .models import Action, CheckResult, Identity
from .registry import register
from .settings import SettingsReader
from .tokens import TokenCache

log = logging.getLogger(__name__)


@register
class GoogleWorkspaceConnector(
    GoogleWorkspaceAuth, GoogleWorkspaceListing, GoogleWorkspaceActions, Connector
):
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
            "listing",
            "listing_concurrency",
            "full_listing_hours",
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
        listing: str = "sequential",
        listing_concurrency: int = 8,
        full_listing_hours: float = 24.0,
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
        if listing not in LISTINGS:
            raise ValueError(f"listing must be one of {', '.join(LISTINGS)}")
        self.listing = listing
        self.listing_concurrency = listing_concurrency
        self.full_listing_seconds = full_listing_hours * 3600.0
        self._baseline: Optional[set[str]] = None
        self._baseline_at = 0.0
        self._refused_at: Optional[float] = None
        self._http = HttpClient(
            self.base_url,
            provider=PROVIDER,
            error_mapper=map_error,
            session=session,
            timeout=timeout,
            retry_policies=(QuotaRetry(), ServerErrorRetry(), ConnectionErrorRetry())
            if retry_policies is None
            else retry_policies,
            sleep=sleep,
        )
        self._clock = clock
        self._limiter = SlidingWindowLimiter(quota_per_minute, 60.0) if pacing else None
        self._tokens = TokenCache()  # renewed a minute (or a tenth of its life) before it expires
        self._alerts_lock: Optional[asyncio.Lock] = None
        self._alerts: Optional[AlertIndex] = None
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
                "admin_email", pattern=EMAIL, expected="the email of the admin to act as"
            ),
            customer=read.text(
                "customer", "my_customer", pattern=CUSTOMER_ID, expected="my_customer or a customer id"
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
            listing=read.choice("listing", "sequential", LISTINGS),
            listing_concurrency=read.integer("listing_concurrency", 8, 1, 38),
            full_listing_hours=read.integer("full_listing_hours", 24, 1, 168),
            quota_per_minute=read.integer("quota_per_minute", QUOTA_PER_MINUTE, 1, 1_000_000),
            timeout=read.seconds("timeout", 10.0, 300),
            session=session,
        )

    async def close(self) -> None:
        await self._http.close()

    # --- requests ------------------------------------------------------------------------------

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

    def _object(self, response: Response) -> dict:
        body = response.json(PROVIDER)
        if not isinstance(body, dict):
            raise bad_answer(response, "an answer that is not a JSON object")
        return body

    # --- risk from Alert Center ------------------------------------------------------------------

    async def _alert_index(self, *, fresh: bool = False) -> Optional[AlertIndex]:
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
            self._alerts = AlertIndex(by_email, time.monotonic())
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
                raise bad_answer(response, "an alert list whose 'alerts' is not an array")
            for alert in alerts:
                note_alert(found, alert)
            page_token = body.get("nextPageToken") or None
            if page_token is None:
                return found
            if not isinstance(page_token, str) or page_token in seen:
                raise bad_answer(response, "a 'nextPageToken' that repeats or is not a string")
            seen.add(page_token)

    # --- identities ----------------------------------------------------------------------------

    def _user_path(self, user_key: str) -> str:
        # a key goes into the URL path: only a numeric id or an email address (no "/", "?", "..")
        text = str(user_key).strip()
        if not USER_KEY.fullmatch(text) or ".." in text:
            raise NotFoundError(f"no user with id or email {short(text, 80)!r}", provider=PROVIDER)
        return f"{DIRECTORY}/users/{quote(text, safe='@')}"

    async def _read_user(self, user_key: str) -> tuple[dict, Response]:
        path = self._user_path(user_key)
        try:
            response = await self._api("GET", path)
        except NotFoundError as exc:
            raise NotFoundError(
                f"no user with id or email {short(user_key, 80)!r}",
                provider=PROVIDER,
                request_id=exc.request_id,
                status=404,
            ) from exc
        return self._object(response), response

    async def get_identity(self, identity_id: str) -> Identity:
        """One user by id or primary (or alias) email."""
        user, response = await self._read_user(identity_id)
        return user_identity(self.name, user, response, await self._alert_index())

    async def find_identities(self, query: str, *, limit: int = 10) -> list[Identity]:
        """An email or a numeric id is read directly; other text is a name search (`name:'…'`,
        contains), exact names first."""
        text = query.strip()
        if not text:
            raise ValidationError("type an email, a user id or a name to search for", provider=PROVIDER)
        if len(text) > MAX_QUERY:
            raise ValidationError(f"the search text is longer than {MAX_QUERY} characters", provider=PROVIDER)
        if limit < 1:
            return []
        if NUMERIC_ID.fullmatch(text) or EMAIL.fullmatch(text):
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
            found += [user_identity(self.name, user, response, alerts) for user in users]
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

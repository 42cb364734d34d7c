"""Google Workspace wire formats, apart from the requests: the service account key and its signed JWT,
Directory `query` clauses (`query_term`, the only way one is built), the Alert Center risk rule, Google's
error bodies and quota answers, and a Directory user as an `Identity`. Used by `google_workspace.py`."""

from __future__ import annotations

import base64
import json
import random
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Optional, Union
from urllib.parse import urlsplit

from .errors import (
    AuthenticationError,
    ConflictError,
    ConnectorError,
    NotFoundError,
    PermissionDeniedError,
    ProviderUnavailableError,
    RateLimitedError,
)
from .http import MAX_PAUSE, Response, RetryPolicy, error_class_for_status, short
from .models import Identity, RiskLevel, parse_datetime
from .tokens import sign_rs256

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
_LEVELS = {score: RiskLevel.for_score(score) for score in (0, *ALERT_SCORES.values())}
#: (isAdmin, isDelegatedAdmin) -> roles
_ROLES = {
    (admin, delegated): (("super_admin",) if admin else ()) + (("delegated_admin",) if delegated else ())
    for admin in (False, True)
    for delegated in (False, True)
}
_fromisoformat = datetime.fromisoformat
#: Python 3.11's `fromisoformat` reads Google's `…000Z` itself; before, the `Z` is spelled `+00:00` first
_READS_Z = sys.version_info >= (3, 11)
_new, _set = object.__new__, object.__setattr__
ALERT_CACHE_SECONDS = 60.0
#: the partial response users.list is asked for: what `user_identity` reads (the name as Google's
#: `fullName`, which it always sends), 43% of a full user's bytes
USER_FIELDS = (
    "nextPageToken,users(id,primaryEmail,aliases,name/fullName,isAdmin,"
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
USER_KEY = re.compile(r"\d{1,40}|[A-Za-z0-9._%+'-]{1,128}@[A-Za-z0-9.-]{1,253}")
NUMERIC_ID = re.compile(r"\d{6,40}")
EMAIL = re.compile(r"[^@\s]{1,128}@[^@\s]{1,253}")
CUSTOMER_ID = re.compile(r"my_customer|C?[A-Za-z0-9]{4,32}")
MAX_QUERY = 256


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
    private_key: str = field(repr=False)  # the secret: never in a repr or a log line
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
    """The signed JWT for Google's jwt-bearer grant (RS256, one hour, `aud` = Google's token URL), by
    `tokens.sign_rs256`, which alone imports PyJWT."""
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
        return sign_rs256(claims, key.private_key, headers, provider=PROVIDER)
    except ValueError:
        # the key's text is never shown: it is the secret
        raise AuthenticationError(
            "the service account key's private_key could not sign a token (not an RSA private key)",
            provider=PROVIDER,
        ) from None


def error_reasons(response: Response) -> tuple[dict, list[str]]:
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
        if response.status == 403 and not QUOTA_REASONS.intersection(error_reasons(response)[1]):
            return None
        retry_after = response.retry_after()
        if retry_after is not None:
            return min(retry_after, MAX_PAUSE)
        return min(self.cap, self.base * (2**attempt) + random.uniform(0, self.base))


def _text(value: Any) -> Optional[str]:
    return value if isinstance(value, str) and value else None


def _datetime(value: Any) -> Optional[datetime]:
    """A Directory timestamp (`2024-05-01T09:30:00.000Z`, always UTC); None for 1970 (never) and for
    anything unreadable. Google's own form takes the short way (one C call, a third of the general one)."""
    if type(value) is str and len(value) == 24 and value[-1] == "Z" and value != NEVER:
        try:
            return _fromisoformat(value if _READS_Z else value[:-1] + "+00:00")
        except ValueError:
            return None
    if value == NEVER:
        return None
    try:
        return parse_datetime(value)
    except ValueError:
        return None


@dataclass
class AlertIndex:
    """Open alerts per lower-cased email: (score, alert types), and when it was read."""

    by_email: dict[str, tuple[int, tuple[str, ...]]]
    read_at: float


def map_error(response: Response) -> ConnectorError:
    """Google's error body as the matching ConnectorError (quota reasons as RateLimitedError)."""
    error, reasons = error_reasons(response)
    message = short(error["message"]) if isinstance(error.get("message"), str) else ""
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
        return RateLimitedError(f"quota still exceeded: {text}", retry_after=response.retry_after(), **kwargs)
    if "notFound" in reasons or response.status == 404:
        return NotFoundError(text, **kwargs)
    if response.status == 401 or "authError" in reasons:
        return AuthenticationError(text, **kwargs)
    if response.status == 403:
        return PermissionDeniedError(text, **kwargs)
    if "conditionNotMet" in reasons or "duplicate" in reasons:
        return ConflictError(text, **kwargs)
    return error_class_for_status(response.status)(text, **kwargs)  # type: ignore[no-any-return]


def bad_answer(response: Response, what: str) -> ProviderUnavailableError:
    return ProviderUnavailableError(
        f"sent {what}", provider=PROVIDER, request_id=response.client_request_id, status=response.status
    )


def note_alert(found: dict[str, tuple[int, tuple[str, ...]]], alert: Any) -> None:
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


def user_identity(connector: str, user: Any, response: Response, alerts: Optional[AlertIndex]) -> Identity:
    """An `Identity` from a Directory user; fields of the wrong type read as unknown. Called once per
    user of every listing, so it reads each field once, allocates nothing it drops (no tuple of the
    addresses, no dict copied), and gives the Identity its attribute dict as built: what
    `Identity.from_fields` does, without its copy (its names are checked by the tests)."""
    if type(user) is not dict:
        raise bad_answer(response, "a user without an id")
    get = user.get
    user_id = get("id")
    if type(user_id) is not str or not user_id:
        raise bad_answer(response, "a user without an id")
    name = get("name")
    full = None
    if type(name) is dict:
        full = name.get("fullName")
        if type(full) is not str or not full:  # users.list asks for fullName only; users.get has all parts
            full = " ".join(
                part for part in (_text(name.get("givenName")), _text(name.get("familyName"))) if part
            )
    email = get("primaryEmail")
    if type(email) is not str or not email:
        email = None
    admin, delegated = get("isAdmin") is True, get("isDelegatedAdmin") is True
    score: Optional[int] = None
    if alerts is not None:
        score = 0
        by_email = alerts.by_email
        if by_email:  # the user's highest open alert, under the primary address or an alias
            if email is not None:
                found = by_email.get(email.casefold())
                if found is not None:
                    score = found[0]
            aliases = get("aliases")
            if type(aliases) is list:
                for address in aliases:
                    found = by_email.get(address.casefold()) if type(address) is str else None
                    if found is not None and found[0] > score:
                        score = found[0]
    enrolled = get("isEnrolledIn2Sv")
    tenant = get("customerId")
    if get("suspended") is True:
        status = "suspended"
    elif get("archived") is True:
        status = "archived"
    else:
        status = "active"
    identity = _new(Identity)
    # the frozen dataclass's own __init__ sets its fields past its __setattr__ too
    _set(
        identity,
        "__dict__",
        {
            "id": user_id,
            "connector": connector,
            "email": email,
            "display_name": full or None,
            "tenant_id": tenant if type(tenant) is str and tenant else None,
            "status": status,
            "risk_score": score,
            "risk_level": None if score is None else _LEVELS.get(score) or RiskLevel.for_score(score),
            "mfa_enrolled": enrolled if type(enrolled) is bool else None,
            "mfa_methods": (),
            "privileged": admin or delegated,
            "last_login_at": _datetime(get("lastLoginTime")),
            "last_login_ip": None,
            "last_login_country": None,
            "provider": "google_workspace",
            "provider_id": user_id,
            "roles": _ROLES[admin, delegated],
            "created_at": _datetime(get("creationTime")),
            "raw": user,
        },
    )
    return identity

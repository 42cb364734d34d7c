"""Okta Management API plumbing for `connectors.okta`: search expressions, `Link` paging, rate-limit
buckets, error bodies, the risk rule and System Log event fields (the OAuth 2.0 service app is in
`connectors.okta_oauth`).

Rules this module keeps:

* A `search` expression is built only by `search_term` (whitelisted property/operator pairs, the value
  always double-quoted with `\\` and `"` escaped, control characters refused), so text typed in Slack
  can never change what an expression means.
* Paging follows only the `rel="next"` link, read from each `Link` header separately (Okta sends
  `self` and `next` as two headers), and only when it points at the configured org (the API token must
  never go to another host).
* Pacing is per endpoint bucket, from `X-Rate-Limit-Limit`/`-Remaining`/`-Reset` (reset in epoch
  seconds, read against the answer's `Date` when the clocks disagree by more than 2 s): a bucket with
  nothing left waits for its reset instead of sending into a 429.
"""

from __future__ import annotations

import asyncio
import email.utils
import re
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Optional
from urllib.parse import parse_qs, urlsplit

from .errors import (
    AuthenticationError,
    ConnectorError,
    NotFoundError,
    PermissionDeniedError,
    ProviderUnavailableError,
    RateLimitedError,
    ValidationError,
)
from .http import MAX_PAUSE, Response, error_class_for_status, short
from .models import RiskLevel, parse_datetime

PROVIDER = "Okta"

# property -> operators idops may put in a `search` expression
_SEARCH = {
    "id": frozenset({"eq"}),
    "status": frozenset({"eq", "lt", "gt"}),
    "profile.email": frozenset({"eq", "sw"}),
    "profile.login": frozenset({"eq", "sw"}),
    "profile.firstName": frozenset({"eq", "sw"}),
    "profile.lastName": frozenset({"eq", "sw"}),
    "created": frozenset({"lt", "ge"}),
    "lastUpdated": frozenset({"gt", "ge", "lt"}),
    "eventType": frozenset({"eq"}),  # System Log `filter`
}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# every user the default list returns: Okta's own spelling of "status ne DEPROVISIONED"
NOT_DEPROVISIONED = '(status lt "DEPROVISIONED" or status gt "DEPROVISIONED")'


def search_term(prop: str, op: str, value: str) -> str:
    """One `property op "value"` term. Only whitelisted pairs; the value quoted and escaped, so it stays
    one string literal whatever it holds. ValueError for anything else (callers turn it into a message)."""
    if op not in _SEARCH.get(prop, ()):
        raise ValueError(f"search on {prop} {op} is not allowed")
    if not isinstance(value, str):
        raise ValueError("a search value must be text")
    if _CONTROL.search(value):
        raise ValueError("the search text contains control characters")
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'{prop} {op} "{escaped}"'


def any_of(terms: list[str]) -> str:
    """Terms joined with `or`, in parentheses (each from `search_term`)."""
    return "(" + " or ".join(terms) + ")"


# --- paging ----------------------------------------------------------------------------------------

_LINK = re.compile(r"^\s*<([^>]*)>\s*;(.*)$")
_REL = re.compile(r'rel\s*=\s*"?([A-Za-z]+)"?')


def next_link(response: Response, base_url: str) -> Optional[str]:
    """The `rel="next"` URL among the answer's `Link` headers, or None on the last page.

    Each header is parsed on its own (a comma-joined form is split too); a next link to another origin
    than `base_url` is a ProviderUnavailableError, never followed."""
    getall = getattr(response.headers, "getall", None)
    values = list(getall("Link", [])) if getall is not None else [response.headers.get("Link") or ""]
    for value in values:
        for part in re.split(r",\s*(?=<)", value):
            match = _LINK.match(part)
            if match is None:
                continue
            rels = _REL.findall(match.group(2))
            if "next" not in rels:
                continue
            return same_origin(match.group(1).strip(), base_url, response)
    return None


def body_next(body: Any, base_url: str, response: Response) -> Optional[str]:
    """The next page named in an answer body's `_links.next.href` (Okta's IAM lists page that way), or
    None; kept to the org like `next_link`."""
    links = body.get("_links") if isinstance(body, dict) else None
    following = links.get("next") if isinstance(links, dict) else None
    href = following.get("href") if isinstance(following, dict) else None
    return same_origin(href, base_url, response) if isinstance(href, str) and href else None


def same_origin(url: str, base_url: str, response: Response) -> str:
    """`url` if it points at the configured org, else ProviderUnavailableError (never followed)."""
    target, base = urlsplit(url), urlsplit(base_url)
    if (target.scheme, target.netloc) != (base.scheme, base.netloc):
        raise ProviderUnavailableError(
            "sent a next-page link to another host; not followed",
            provider=PROVIDER,
            request_id=request_id(response),
        )
    return url


def after_cursor(url: str) -> Optional[str]:
    """The opaque `after` cursor of a next link (for logs and tests)."""
    values = parse_qs(urlsplit(url).query).get("after")
    return values[0] if values else None


# --- rate limits -----------------------------------------------------------------------------------


class Bucket:
    """One endpoint bucket: what the last answers said is left, and until when."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self.limit: Optional[int] = None
        self.remaining: Optional[int] = None
        self.reset_at = 0.0  # monotonic
        self.reset_epoch = 0
        self.in_flight = 0
        self.waits = 0

    async def acquire(self, sleep: Callable[[float], Any]) -> None:
        while True:
            now = self._clock()
            if self.reset_at and now >= self.reset_at:  # a new window: nothing known about it yet
                self.remaining, self.reset_at, self.reset_epoch = None, 0.0, 0
            if self.remaining is None or self.remaining - self.in_flight > 0:
                self.in_flight += 1
                return
            self.waits += 1
            await sleep(min(max(self.reset_at - now, 0.001), MAX_PAUSE))

    def release(self, response: Optional[Response]) -> None:
        self.in_flight = max(0, self.in_flight - 1)
        if response is not None:
            self.update(response)

    def update(self, response: Response) -> None:
        limit, remaining, reset = (
            _int_header(response, f"X-Rate-Limit-{name}") for name in ("Limit", "Remaining", "Reset")
        )
        if reset is None or remaining is None:
            if response.status == 429:  # a 429 without headers: hold a second
                self.remaining, self.reset_at = 0, self._clock() + 1.0
            return
        if response.status == 429:  # refused: nothing left until this answer's reset, whatever we knew
            self.reset_epoch, self.remaining = reset, 0
        elif reset > self.reset_epoch:  # a later window than the one we knew
            self.reset_epoch, self.remaining = reset, remaining
        elif reset == self.reset_epoch:  # answers arrive out of order: the smallest count is the latest
            self.remaining = remaining if self.remaining is None else min(self.remaining, remaining)
        else:
            return
        self.limit = limit
        self.reset_at = self._clock() + min(max(reset - _server_now(response), 0.0), MAX_PAUSE)


def _int_header(response: Response, name: str) -> Optional[int]:
    value = response.headers.get(name)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _server_now(response: Response) -> float:
    """Now on the provider's clock: ours, unless its `Date` differs by more than 2 s (a skewed clock)."""
    now = time.time()
    date = response.headers.get("Date")
    try:
        server = email.utils.parsedate_to_datetime(date).timestamp() if date else None
    except (TypeError, ValueError):
        server = None
    if server is not None and abs(server - now) > 2.0:
        return server
    return now


def bucket_of(method: str, path: str) -> str:
    """The rate-limit bucket of a request, as Okta groups its endpoints (the simulator uses this too)."""
    parts = [p for p in urlsplit(path).path.split("/") if p]
    if parts[:3] == ["api", "v1", "logs"]:
        return "logs"
    if parts[:2] == ["oauth2", "v1"]:
        return "token"
    if parts[:3] == ["api", "v1", "iam"]:
        return "iam"
    if parts[:3] == ["api", "v1", "users"]:
        if len(parts) == 3:
            return "users"
        if len(parts) == 4 and method == "GET":
            return "user"
        return "user-other"
    return "other"


# --- errors ----------------------------------------------------------------------------------------


def request_id(response: Response, body: Any = None) -> str:
    """errorId from an error body, else Okta's X-Okta-Request-Id, else our own request id."""
    if isinstance(body, dict) and isinstance(body.get("errorId"), str) and body["errorId"]:
        return str(body["errorId"])
    return response.headers.get("X-Okta-Request-Id") or response.client_request_id


def error_body(response: Response) -> Optional[dict]:
    try:
        body = response.json(PROVIDER)
    except ProviderUnavailableError:
        return None
    return body if isinstance(body, dict) else None


def map_error(response: Response) -> ConnectorError:
    """Okta's `{errorCode, errorSummary, errorId, errorCauses}` as the matching ConnectorError."""
    body = error_body(response)
    code = summary = None
    causes: list[str] = []
    if body is not None:
        code = body.get("errorCode") if isinstance(body.get("errorCode"), str) else None
        summary = body.get("errorSummary") if isinstance(body.get("errorSummary"), str) else None
        for cause in body.get("errorCauses") or []:
            if isinstance(cause, dict) and isinstance(cause.get("errorSummary"), str):
                causes.append(cause["errorSummary"])
    path = urlsplit(response.url).path
    text = f"{response.method} {path} failed with HTTP {response.status}"
    if summary:
        text += f": {short(summary)}"
    if causes:
        text += f" ({short('; '.join(causes), 200)})"
    if code:
        text += f" [{code}]"
    cls: type[ConnectorError] = error_class_for_status(response.status)
    if response.status == 401:
        text += "; check the API token or the OAuth client"
    scope = missing_scope(response)
    if scope is not None:
        code = INSUFFICIENT_SCOPE
        text += (
            f"; the service app's token lacks the scope {short(scope, 100) or 'this call needs'}:"
            " grant it on the app's Okta API Scopes tab (and list it in `scopes` if you set them)"
        )
    kwargs: dict[str, Any] = {
        "provider": PROVIDER,
        "request_id": request_id(response, body),
        "status": response.status,
        "code": code,
    }
    if cls is RateLimitedError:
        return RateLimitedError(text, retry_after=None, **kwargs)
    return cls(text, **kwargs)


#: the `code` of an error for a token without the scope the call needs (never "no such feature")
INSUFFICIENT_SCOPE = "insufficient_scope"
_AUTH_PARAM = re.compile(r'([A-Za-z_]+)="([^"]*)"')


def missing_scope(response: Response) -> Optional[str]:
    """The scope a 403 says the access token lacks ("" when it names none), or None for any other
    answer. Okta refuses a token without the scope an endpoint needs with 403 and
    `WWW-Authenticate: Bearer ..., scope="okta.x.read", error="insufficient_scope", ...`."""
    header = response.header("WWW-Authenticate") or ""
    if response.status != 403 or not header.startswith("Bearer"):
        return None
    params = dict(_AUTH_PARAM.findall(header))
    return params.get("scope", "") if params.get("error") == INSUFFICIENT_SCOPE else None


def is_missing_feature(exc: ConnectorError) -> bool:
    """An answer that means "this org has no such feature" on an endpoint we reached before; a token
    missing a scope is a setup error to fix, never that."""
    if exc.code == INSUFFICIENT_SCOPE:
        return False
    return isinstance(exc, (AuthenticationError, PermissionDeniedError, NotFoundError))


def refused(message: str, response: Response) -> AuthenticationError:
    return AuthenticationError(
        message, provider=PROVIDER, status=response.status, request_id=request_id(response, None)
    )


def bad_answer(message: str, response: Response) -> ProviderUnavailableError:
    return ProviderUnavailableError(message, provider=PROVIDER, request_id=request_id(response))


def validation(message: str) -> ValidationError:
    return ValidationError(message, provider=PROVIDER)


async def gather_limited(coros: list, limit: int) -> list:
    """Run coroutines at most `limit` at a time; results in order; the first error cancels the rest."""
    semaphore = asyncio.Semaphore(limit)

    async def run(coro: Any) -> Any:
        async with semaphore:
            return await coro

    tasks = [asyncio.ensure_future(run(coro)) for coro in coros]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()


# --- users, risk and search helpers ------------------------------------------------------------

# Okta level -> (score, band); HIGH on a privileged user is CRITICAL_SCORE / critical
RISK_BANDS = {
    "NONE": (0, RiskLevel.LOW),
    "LOW": (20, RiskLevel.LOW),
    "MEDIUM": (50, RiskLevel.MEDIUM),
    "HIGH": (75, RiskLevel.HIGH),
}
CRITICAL_SCORE = 100

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")


def risk_band(level: Optional[str], privileged: bool) -> tuple[Optional[int], Optional[RiskLevel]]:
    """idops score and band for an Okta risk level (the documented rule above); (None, None) if unknown."""
    if level not in RISK_BANDS:
        return None, None
    if level == "HIGH" and privileged:
        return CRITICAL_SCORE, RiskLevel.CRITICAL
    return RISK_BANDS[str(level)]


def iso(moment: datetime) -> str:
    return (
        moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    )


def name_search(text: str) -> str:
    """The `search` expression for an email or a name (every value through `search_term`)."""
    if _EMAIL.match(text):
        return any_of([search_term("profile.email", "eq", text), search_term("profile.login", "eq", text)])
    words = text.split()
    if len(words) >= 2:
        first = search_term("profile.firstName", "sw", words[0])
        last = search_term("profile.lastName", "sw", " ".join(words[1:]))
        return f"({first} and {last})"
    return any_of(
        [search_term(prop, "sw", text) for prop in ("profile.firstName", "profile.lastName", "profile.login")]
    )


def created_partitions(first: datetime, now: datetime, count: int) -> list[str]:
    """`count` disjoint `created` ranges covering every user (the first and last open-ended)."""
    span = max((now - first).total_seconds(), 1.0)
    bounds = [iso(first + timedelta(seconds=span * k / count)) for k in range(1, count)]
    expressions = []
    for k in range(count):
        terms = [NOT_DEPROVISIONED]
        if k > 0:
            terms.append(search_term("created", "ge", bounds[k - 1]))
        if k < count - 1:
            terms.append(search_term("created", "lt", bounds[k]))
        expressions.append(" and ".join(terms))
    return expressions


def event_risks(event: dict) -> list[tuple[str, str]]:
    """(user id, level) pairs a risk event reports: `securityContext.risk.level`, else `level=` in
    `debugContext.debugData.risk`, for each User target."""
    level = None
    context = event.get("securityContext")
    if isinstance(context, dict) and isinstance(context.get("risk"), dict):
        level = context["risk"].get("level")
    if level is None:
        debug = event.get("debugContext")
        data = debug.get("debugData") if isinstance(debug, dict) else None
        text = data.get("risk") if isinstance(data, dict) else None
        match = re.search(r"level=([A-Z]+)", text) if isinstance(text, str) else None
        level = match.group(1) if match else None
    if level not in RISK_BANDS:
        return []
    return [(user_id, str(level)) for user_id in event_users(event)]


def event_users(event: dict) -> list[str]:
    """Ids of the User targets of a System Log event."""
    targets = event.get("target")
    if not isinstance(targets, list):
        return []
    return [
        str(target["id"])
        for target in targets
        if isinstance(target, dict) and target.get("type") == "User" and isinstance(target.get("id"), str)
    ]


def text_of(value: Any) -> Optional[str]:
    return value if isinstance(value, str) and value else None


def as_datetime(value: Any) -> Optional[datetime]:
    try:
        return parse_datetime(value)
    except ValueError:
        return None

"""The one HTTP path every connector uses: session ownership, pacing, retries and error mapping.

Rules every request follows:

* A state-changing request (POST/PATCH by default, `changes_state=` says otherwise) that was sent and
  got no answer (timeout, dropped connection) or a 5xx raises `OutcomeUnknownError`: the provider may
  have acted, so the caller reconciles by reading, never by sending it blindly again. A connection that
  could not be opened sent nothing: that stays a `ProviderUnavailableError`.
* `idempotency_key=` is sent as the `Idempotency-Key` header, so a provider that honours it answers a
  repeat with its first answer instead of acting twice.
* Inside `with interactive(max_wait)` (a person is waiting), a request never waits longer than
  `max_wait` seconds in all on rate limits (the client-side pace, a 429's Retry-After): it raises
  `RateLimitedError` with `retry_after` instead, so the person can be told when to expect an answer.
  Background work (sweeps) waits quietly, up to MAX_PAUSE per pause.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import math
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Callable, Optional

import aiohttp

from .errors import (
    AuthenticationError,
    ConflictError,
    ConnectorError,
    NotFoundError,
    OutcomeUnknownError,
    PermissionDeniedError,
    ProviderUnavailableError,
    RateLimitedError,
    ValidationError,
)

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
# longest pause taken on a provider's word (Retry-After, a quota reset): a wrong or hostile header
# must not stall every later request for hours; past it the provider answers 429 again
MAX_PAUSE = 120.0

# a timeout while connecting (aiohttp 3.10+ tells it apart): nothing was sent
_CONNECT_TIMEOUT: tuple[type, ...] = tuple(
    cls for cls in (getattr(aiohttp, "ConnectionTimeoutError", None),) if cls is not None
)
# how long, in all, the current caller lets one request wait on rate limits; None: as long as needed
_MAX_WAIT: contextvars.ContextVar[Optional[float]] = contextvars.ContextVar("idops_max_wait", default=None)


@contextlib.contextmanager
def interactive(max_wait: float) -> Iterator[None]:
    """Requests made inside (in this task and the tasks it starts) wait at most `max_wait` seconds each
    on rate limits, then raise RateLimitedError with `retry_after`: for callers a person is waiting on."""
    token = _MAX_WAIT.set(max(0.0, max_wait))
    try:
        yield
    finally:
        _MAX_WAIT.reset(token)


class WaitTooLong(Exception):
    """The limiter would hold this caller longer than its `max_wait` (`seconds` is how long)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"would wait {seconds:.1f} s")
        self.seconds = seconds


@dataclass(frozen=True)
class Response:
    """A fully read HTTP response (the connection is already released)."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    method: str
    url: str
    client_request_id: str

    @property
    def ok(self) -> bool:
        return self.status < 400

    def header(self, name: str) -> Optional[str]:
        return self.headers.get(name)

    def json(self, provider: str = "") -> Any:
        """The body as JSON; an unreadable body is the provider's fault, not ours."""
        try:
            return json.loads(self.body.decode("utf-8")) if self.body else None
        except (UnicodeDecodeError, ValueError) as exc:
            raise ProviderUnavailableError(
                f"answered {self.method} with a body that is not valid JSON (HTTP {self.status})",
                provider=provider,
                request_id=self.client_request_id,
                status=self.status,
            ) from exc

    def retry_after(self) -> Optional[float]:
        """Seconds from a Retry-After header (delta-seconds form), if any."""
        value = self.headers.get("Retry-After")
        if value is None:
            return None
        try:
            seconds = float(value)
        except ValueError:
            return None
        return max(0.0, seconds) if math.isfinite(seconds) else None


def short(text: str, limit: int = 300) -> str:
    """A provider's text for an error message: whitespace runs made one space, at most `limit` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def error_class_for_status(status: int) -> type:
    """The error class a bare HTTP status means when the body says nothing better."""
    if status == 401:
        return AuthenticationError
    if status == 403:
        return PermissionDeniedError
    if status == 404:
        return NotFoundError
    if status == 409:
        return ConflictError
    if status == 429:
        return RateLimitedError
    if status in (400, 422) or 400 <= status < 500:
        return ValidationError
    return ProviderUnavailableError


# --- pacing ---------------------------------------------------------------------------------------


class SlidingWindowLimiter:
    """At most `limit` requests in any rolling `period` seconds, and a pause when the provider asks."""

    def __init__(self, limit: int, period: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        if limit < 1 or period <= 0:
            raise ValueError("a rate limit needs limit >= 1 and period > 0")
        self.limit = limit
        self.period = period
        self._clock = clock
        self._stamps: deque[float] = deque()
        self._blocked_until = 0.0

    async def acquire(self, max_wait: Optional[float] = None) -> None:
        """Take a slot, sleeping until one is free; WaitTooLong instead when that is more than
        `max_wait` seconds away (the slot is not taken then)."""
        deadline = None if max_wait is None else self._clock() + max_wait
        # No lock: the check and the append run without an await between them, so they are atomic.
        while True:
            now = self._clock()
            while self._stamps and now - self._stamps[0] >= self.period:
                self._stamps.popleft()
            wait = self._blocked_until - now
            if wait <= 0 and len(self._stamps) < self.limit:
                self._stamps.append(now)
                return
            if wait <= 0:
                wait = self.period - (now - self._stamps[0])
            if deadline is not None and now + wait > deadline:
                raise WaitTooLong(wait)
            await asyncio.sleep(max(wait, 0.001))

    def pause(self, seconds: float) -> None:
        """Hold every caller for `seconds`, at most MAX_PAUSE (a 429's Retry-After, a spent quota)."""
        self._blocked_until = max(self._blocked_until, self._clock() + min(seconds, MAX_PAUSE))


# --- retries --------------------------------------------------------------------------------------


class RetryPolicy:
    """Decides whether one failed attempt is worth another, and after how long."""

    max_retries = 2

    def delay(
        self,
        attempt: int,
        *,
        method: str,
        idempotent: bool,
        response: Optional[Response],
        error: Optional[BaseException],
    ) -> Optional[float]:
        """Seconds to wait before retrying, or None when this policy does not apply."""
        raise NotImplementedError


def _backoff(attempt: int, base: float, cap: float) -> float:
    return float(min(cap, base * (2**attempt)))


class RateLimitedRetry(RetryPolicy):
    """429: wait at least Retry-After (never less), backing off when it is missing.

    Safe for writes too: a 429 means the provider did not act.
    """

    def __init__(self, max_retries: int = 5, base: float = 1.0, max_wait: float = MAX_PAUSE) -> None:
        self.max_retries = max_retries
        self.base = base
        self.max_wait = max_wait

    def delay(self, attempt, *, method, idempotent, response, error):  # type: ignore[no-untyped-def]
        if response is None or response.status != 429:
            return None
        retry_after = response.retry_after()
        backoff = _backoff(attempt, self.base, self.max_wait)
        wait = backoff if retry_after is None else max(retry_after, min(backoff, retry_after * 2))
        return wait if wait <= self.max_wait else None


class ServerErrorRetry(RetryPolicy):
    """500/502/503/504 on idempotent requests: a write may have happened, so it is never repeated."""

    statuses = frozenset({500, 502, 503, 504})

    def __init__(self, max_retries: int = 2, base: float = 0.25, cap: float = 4.0) -> None:
        self.max_retries = max_retries
        self.base = base
        self.cap = cap

    def delay(self, attempt, *, method, idempotent, response, error):  # type: ignore[no-untyped-def]
        if response is None or response.status not in self.statuses or not idempotent:
            return None
        return _backoff(attempt, self.base, self.cap)


class ConnectionErrorRetry(RetryPolicy):
    """Dropped connections and timeouts on idempotent requests."""

    def __init__(self, max_retries: int = 2, base: float = 0.25, cap: float = 4.0) -> None:
        self.max_retries = max_retries
        self.base = base
        self.cap = cap

    def delay(self, attempt, *, method, idempotent, response, error):  # type: ignore[no-untyped-def]
        if error is None or not idempotent:
            return None
        return _backoff(attempt, self.base, self.cap)


def default_retry_policies() -> Sequence[RetryPolicy]:
    return (RateLimitedRetry(), ServerErrorRetry(), ConnectionErrorRetry())


# --- the client -----------------------------------------------------------------------------------

ErrorMapper = Callable[[Response], ConnectorError]


class HttpClient:
    """One base URL, one (maybe injected) aiohttp session, and a single `request` that every call goes
    through, so timeouts, pacing, retries and error mapping behave the same for every connector."""

    def __init__(
        self,
        base_url: str,
        *,
        provider: str,
        error_mapper: ErrorMapper,
        session: Optional[aiohttp.ClientSession] = None,
        timeout: float = 10.0,
        retry_policies: Optional[Sequence[RetryPolicy]] = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        user_agent: str = "idops-connectors/0.1",
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.provider = provider
        self.timeout = timeout
        self._error_mapper = error_mapper
        self._session = session
        self._owns_session = session is None
        self._retry_policies = tuple(default_retry_policies() if retry_policies is None else retry_policies)
        self._sleep = sleep
        self._user_agent = user_agent

    async def _get_session(self) -> aiohttp.ClientSession:
        # Created lazily, inside a coroutine, so no event loop is captured at construction time.
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                connector=aiohttp.TCPConnector(limit=32),
            )
            self._owns_session = True
        return self._session

    async def close(self) -> None:
        if self._owns_session and self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None if self._owns_session else self._session

    def url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        return f"{self.base_url}/{path.lstrip('/')}"

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Optional[Mapping[str, Any]] = None,
        json_body: Any = None,
        data: Optional[Mapping[str, str]] = None,
        headers: Optional[Mapping[str, str]] = None,
        limiter: Optional[SlidingWindowLimiter] = None,
        idempotent: Optional[bool] = None,
        changes_state: Optional[bool] = None,
        idempotency_key: Optional[str] = None,
        raise_for_status: bool = True,
    ) -> Response:
        """Send one logical request (maybe several attempts) and return the response, or raise.

        `idempotent`: may be repeated after a failure (default: by method). `changes_state`: may change
        something at the provider (default: POST/PATCH), so a failure after sending is an
        OutcomeUnknownError, also for a 5xx when `raise_for_status` is False."""
        method = method.upper()
        if idempotent is None:
            idempotent = method in IDEMPOTENT_METHODS
        if changes_state is None:
            changes_state = method not in IDEMPOTENT_METHODS
        session = await self._get_session()
        url = self.url(path)
        client_request_id = f"idops-{uuid.uuid4().hex[:16]}"
        send_headers = {"User-Agent": self._user_agent, "X-Request-Id": client_request_id, **(headers or {})}
        if idempotency_key is not None:
            send_headers["Idempotency-Key"] = idempotency_key
        budget = _MAX_WAIT.get()
        deadline = None if budget is None else time.monotonic() + budget
        attempts: dict = {}
        while True:
            if limiter is not None:
                try:
                    await limiter.acquire(None if deadline is None else max(0.0, deadline - time.monotonic()))
                except WaitTooLong as exc:
                    raise self._asked_to_wait(exc.seconds, client_request_id) from None
            response: Optional[Response] = None
            error: Optional[BaseException] = None
            try:
                async with session.request(
                    method,
                    url,
                    params=_query(params),
                    json=json_body,
                    data=data,
                    headers=send_headers,
                    timeout=aiohttp.ClientTimeout(total=self.timeout),
                ) as raw:
                    body = await raw.read()
                    response = Response(
                        status=raw.status,
                        # aiohttp's case-insensitive proxy, as HTTP header names are case-insensitive
                        headers=raw.headers,
                        body=body,
                        method=method,
                        url=url,
                        client_request_id=client_request_id,
                    )
            except asyncio.TimeoutError as exc:
                error = exc
            except aiohttp.ClientError as exc:
                error = exc
            if response is not None and response.ok:
                return response
            if response is not None and response.status == 429 and limiter is not None:
                limiter.pause(response.retry_after() or 1.0)
            wait = self._next_delay(attempts, method, idempotent, response, error)
            if wait is not None and deadline is not None and time.monotonic() + wait > deadline:
                if response is not None and response.status == 429:
                    raise self._asked_to_wait(wait, client_request_id)
                wait = None  # no time left to retry for the person waiting: the failure as it is
            if wait is not None:
                await self._sleep(wait)
                continue
            if error is not None:
                raise self._transport_error(error, client_request_id, changes_state) from error
            assert response is not None
            if changes_state and response.status >= 500:
                raise self._unknown(self._error_mapper(response))
            if not raise_for_status:
                return response
            raise self._error_mapper(response)

    def _next_delay(
        self,
        attempts: dict,
        method: str,
        idempotent: bool,
        response: Optional[Response],
        error: Optional[BaseException],
    ) -> Optional[float]:
        for policy in self._retry_policies:
            used = attempts.get(id(policy), 0)
            if used >= policy.max_retries:
                continue
            wait = policy.delay(used, method=method, idempotent=idempotent, response=response, error=error)
            if wait is not None:
                attempts[id(policy)] = used + 1
                return wait
        return None

    def _transport_error(
        self, error: BaseException, client_request_id: str, changes_state: bool = False
    ) -> ProviderUnavailableError:
        # nothing was sent when the connection could not be opened; anything later may have arrived
        unsent = isinstance(error, (aiohttp.ClientConnectorError, *_CONNECT_TIMEOUT))
        if isinstance(error, aiohttp.ClientConnectorError):
            message = f"{self.provider} could not be reached at {self.base_url}"
        elif isinstance(error, asyncio.TimeoutError):
            message = f"{self.provider} did not answer in {self.timeout:g} s"
        else:
            message = f"{self.provider} dropped the connection ({type(error).__name__})"
        failure = ProviderUnavailableError(message, provider=self.provider, request_id=client_request_id)
        return self._unknown(failure) if changes_state and not unsent else failure

    @staticmethod
    def _unknown(failure: ConnectorError) -> OutcomeUnknownError:
        """`failure` of a state-changing request that was sent: it may have been done."""
        return OutcomeUnknownError(
            f"{failure.message}, so the outcome is unknown: it may or may not have been done",
            provider=failure.provider,
            request_id=failure.request_id,
            status=failure.status,
            code=failure.code,
        )

    def _asked_to_wait(self, seconds: float, client_request_id: str) -> RateLimitedError:
        """Rate limited for longer than the waiting person's budget: nothing was sent this time."""
        seconds = math.ceil(seconds)
        until = time.strftime("%H:%M", time.gmtime(time.time() + seconds))
        return RateLimitedError(
            f"{self.provider} asked us to wait {seconds} s, until {until} UTC (rate limit)",
            retry_after=float(seconds),
            provider=self.provider,
            request_id=client_request_id,
            status=429,
        )


def _query(params: Optional[Mapping[str, Any]]) -> Optional[dict]:
    """Query parameters with None dropped and booleans spelled as APIs expect."""
    if params is None:
        return None
    out = {}
    for key, value in params.items():
        if value is None:
            continue
        out[key] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return out

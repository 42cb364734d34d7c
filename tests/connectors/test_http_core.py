"""The shared HTTP core: pacing windows and which failures each retry policy repeats."""

from __future__ import annotations

import asyncio

import pytest

from connectors.http import (
    MAX_PAUSE,
    ConnectionErrorRetry,
    RateLimitedRetry,
    Response,
    ServerErrorRetry,
    SlidingWindowLimiter,
)


class FakeClock:
    """A monotonic clock that advances only when the limiter sleeps (patched asyncio.sleep)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(asyncio, "sleep", fake.sleep)
    return fake


def response(status: int, headers: dict | None = None) -> Response:
    return Response(
        status=status, headers=headers or {}, body=b"", method="GET", url="http://x", client_request_id="r1"
    )


async def test_window_admits_limit_then_waits_for_the_oldest(clock: FakeClock) -> None:
    slept = clock.slept
    limiter = SlidingWindowLimiter(3, 10.0, clock=clock)
    for _ in range(3):
        await limiter.acquire()
    assert slept == []
    clock.now += 4
    await limiter.acquire()
    # the 4th request waits until the first leaves the 10 s window (6 s more)
    assert abs(sum(slept) - 6.0) < 0.01


async def test_pause_holds_every_caller(clock: FakeClock) -> None:
    limiter = SlidingWindowLimiter(100, 10.0, clock=clock)
    limiter.pause(7.5)
    start = clock.now
    await limiter.acquire()
    assert clock.now - start >= 7.5


def test_rate_limited_retry_never_waits_less_than_retry_after() -> None:
    policy = RateLimitedRetry(base=0.1)
    wait = policy.delay(
        0, method="POST", idempotent=False, response=response(429, {"Retry-After": "3"}), error=None
    )
    assert wait is not None and wait >= 3
    assert policy.delay(0, method="GET", idempotent=True, response=response(500), error=None) is None


def test_rate_limited_retry_gives_up_past_max_wait() -> None:
    policy = RateLimitedRetry(max_wait=10)
    assert (
        policy.delay(
            0, method="GET", idempotent=True, response=response(429, {"Retry-After": "60"}), error=None
        )
        is None
    )


def test_server_errors_are_retried_only_for_idempotent_requests() -> None:
    policy = ServerErrorRetry()
    assert policy.delay(0, method="GET", idempotent=True, response=response(503), error=None) is not None
    # a POST that got a 500 may have acted: repeating it could disable an account twice
    assert policy.delay(0, method="POST", idempotent=False, response=response(500), error=None) is None
    assert policy.delay(0, method="GET", idempotent=True, response=response(404), error=None) is None


def test_connection_errors_are_retried_only_for_idempotent_requests() -> None:
    policy = ConnectionErrorRetry()
    error = ConnectionResetError()
    assert policy.delay(1, method="GET", idempotent=True, response=None, error=error) is not None
    assert policy.delay(1, method="POST", idempotent=False, response=None, error=error) is None


async def test_a_huge_or_odd_retry_after_never_stalls_for_long(clock: FakeClock) -> None:
    limiter = SlidingWindowLimiter(100, 10.0, clock=clock)
    limiter.pause(1e9)  # a provider's word, but a wrong header must not hold every caller for years
    start = clock.now
    await limiter.acquire()
    assert clock.now - start == MAX_PAUSE
    assert [response(429, {"Retry-After": v}).retry_after() for v in ("inf", "nan", "-5", "2.5", "x")] == [
        None,
        None,
        0.0,
        2.5,
        None,
    ]

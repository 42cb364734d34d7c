"""The shared HTTP core: pacing windows, which failures each retry policy repeats, outcome-unknown
failures of state-changing requests, Idempotency-Key, and the wait budget of interactive callers (the
last three over loopback HTTP against the HomeBase simulator)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from connectors import Action, ProviderUnavailableError, RateLimitedError, ValidationError
from connectors.errors import OutcomeUnknownError
from connectors.homebase import HomeBaseConnector
from connectors.http import (
    MAX_PAUSE,
    ConnectionErrorRetry,
    HttpClient,
    RateLimitedRetry,
    Response,
    ServerErrorRetry,
    SlidingWindowLimiter,
    WaitTooLong,
    interactive,
)
from connectors.sailpoint import SailPointConnector
from standins import homebase, sailpoint, serving


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


async def test_acquire_refuses_a_wait_past_max_wait_without_taking_a_slot(clock: FakeClock) -> None:
    limiter = SlidingWindowLimiter(1, 10.0, clock=clock)
    await limiter.acquire(max_wait=0)
    with pytest.raises(WaitTooLong) as caught:
        await limiter.acquire(max_wait=3)
    assert caught.value.seconds == 10.0 and clock.slept == []
    await limiter.acquire(max_wait=10)  # within its budget it waits as before
    assert clock.slept == [10.0]


# --- over loopback HTTP -----------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def simulator(**settings: Any) -> AsyncIterator[tuple[homebase.HomeBaseState, str, HomeBaseConnector]]:
    app = homebase.create_app(identities=20, rate_limits=False, **settings)
    async with serving(app) as url:
        connector = HomeBaseConnector("hb", api_key="hld_test_simulator", base_url=url + "/v1", timeout=0.5)
        async with connector:
            yield app[homebase.STATE], url, connector


async def fault(url: str, **spec: Any) -> None:
    async with aiohttp.ClientSession() as http, http.post(f"{url}/_admin/faults", json=spec) as answer:
        assert answer.status == 201, await answer.text()


async def until(check: Any, timeout: float = 30.0) -> None:  # generous: a loaded machine
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the simulator never got there"
        await asyncio.sleep(0.02)


async def test_an_action_post_that_times_out_has_an_unknown_outcome_and_did_run() -> None:
    async with simulator() as (state, url, connector):
        target = state.identity_id(3)
        await fault(url, kind="slow", delay=1.0, method="POST")
        with pytest.raises(
            OutcomeUnknownError,
            match=r"did not answer in 0\.5 s, so the outcome is unknown: it may or may not",
        ):
            await connector.revoke_sessions(target)
        # the provider did act: that is why a timeout is not a failure to retry
        await until(lambda: state.sessions_revoked[target] == 1)


@pytest.mark.parametrize("kind", ["drop", "500"])
async def test_an_action_post_cut_off_or_answered_5xx_has_an_unknown_outcome(kind: str) -> None:
    async with simulator() as (state, url, connector):
        await fault(url, kind=kind, method="POST")
        with pytest.raises(OutcomeUnknownError) as caught:
            await connector.disable(state.identity_id(1), "phished")
        assert caught.value.request_id
        assert len(state.requests_to("/v1/identity", "POST")) == 1  # sent once, never repeated


async def test_reads_and_unsent_requests_are_plain_failures() -> None:
    async with simulator() as (state, url, connector):
        await fault(url, kind="slow", delay=1.0, method="GET", count=3)
        with pytest.raises(ProviderUnavailableError) as caught:
            await connector.get_identity(state.identity_id(0))
        assert not isinstance(caught.value, OutcomeUnknownError)
    # a port held bound without listening while the client tries it (refused, and no other process can
    # take it meanwhile): the POST never left
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        client = HttpClient(
            f"http://127.0.0.1:{port}", provider="X", error_mapper=lambda r: ValidationError("x")
        )
        try:
            with pytest.raises(ProviderUnavailableError, match="could not be reached") as unsent:
                await client.request("POST", "/act", json_body={})
            assert not isinstance(unsent.value, OutcomeUnknownError)
        finally:
            await client.close()


async def test_run_action_sends_its_idempotency_key_and_a_repeat_does_not_run_twice() -> None:
    async with simulator() as (state, _, connector):
        target = state.identity_id(2)
        first = await connector.run_action(Action.REVOKE_SESSIONS, target, idempotency_key="idops-apr_1")
        again = await connector.run_action(Action.REVOKE_SESSIONS, target, idempotency_key="idops-apr_1")
        assert state.sessions_revoked[target] == 1 and state.idempotency.replays == 1
        assert again.raw == first.raw  # the stored first answer
        await connector.run_action(Action.REVOKE_SESSIONS, target, idempotency_key="idops-apr_2")
        await connector.revoke_sessions(target)  # no key: every call acts
        assert state.sessions_revoked[target] == 3
        # the same key for another request is the caller's mistake, refused
        with pytest.raises(ValidationError, match="already used with a different request"):
            await connector.run_action(Action.DISABLE, target, "x", idempotency_key="idops-apr_1")
        assert target not in {state.identity_id(i) for i in state.disabled}


async def test_a_timed_out_action_repeated_with_its_key_runs_once() -> None:
    async with simulator() as (state, url, connector):
        target = state.identity_id(4)
        await fault(url, kind="slow", delay=1.0, method="POST")
        with pytest.raises(OutcomeUnknownError):
            await connector.run_action(Action.REVOKE_SESSIONS, target, idempotency_key="idops-apr_9")
        await until(lambda: state.sessions_revoked[target] == 1)
        done = await connector.run_action(Action.REVOKE_SESSIONS, target, idempotency_key="idops-apr_9")
        assert done.status == "completed" and state.sessions_revoked[target] == 1


async def test_an_interactive_caller_is_told_to_wait_instead_of_waiting() -> None:
    async with simulator() as (state, url, connector):
        await fault(url, kind="429", retry_after=300, method="GET")
        started = time.monotonic()
        with interactive(max_wait=2.0), pytest.raises(RateLimitedError) as caught:
            await connector.get_identity(state.identity_id(0))
        assert time.monotonic() - started < 2.0
        assert caught.value.retry_after is not None and caught.value.retry_after >= 120
    paced = HomeBaseConnector("hb", api_key="hld_test_simulator", base_url="http://127.0.0.1:9/v1")
    limiter = paced._limiters["reads"]
    limiter.pause(90)  # a 429 seen by someone else: every later read would wait 90 s
    with interactive(max_wait=1.0), pytest.raises(RateLimitedError, match="asked us to wait 90 s") as held:
        await paced.get_identity("idn_x")
    assert held.value.retry_after == 90
    await paced.close()


async def test_sailpoint_disable_sends_one_key_per_account_and_reads_back() -> None:
    app = sailpoint.create_app(identities=5, rate_limit=False)
    state = app[sailpoint.STATE]
    async with serving(app) as url:
        connector = SailPointConnector(
            "sp", base_url=url, client_id="sim-client", client_secret="sim-secret", timeout=2, pacing=False
        )
        async with connector:
            target = state.identity_id(1)
            assert await connector.action_in_effect(Action.DISABLE, target) is False
            # one key per account: the same key on two accounts would be refused as another request
            done = await connector.run_action(Action.DISABLE, target, "x", idempotency_key="idops-apr_7")
            tasks = (done.reference or "").split(",")
            assert len(tasks) >= 2 and len(state.tasks) == len(tasks) and len(state.idempotency) == len(tasks)
            assert await connector.action_in_effect(Action.DISABLE, target) is True
            assert await connector.action_in_effect(Action.REVOKE_SESSIONS, target) is None

"""connectors.tokens.TokenCache on a fake clock: cached until renewal is due, renewed ahead of expiry,
fetched once for concurrent callers, and dropped after a 401 only if it is still the cached token."""

from __future__ import annotations

import asyncio

import pytest

from connectors.tokens import TokenCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Issuer:
    """Hands out token-1, token-2, ... with the given lifetime, counting the fetches."""

    def __init__(self, lifetime: float = 3600.0) -> None:
        self.lifetime = lifetime
        self.fetched = 0

    async def __call__(self) -> tuple[str, float]:
        self.fetched += 1
        await asyncio.sleep(0)  # let concurrent callers pile up on the lock
        return f"token-{self.fetched}", self.lifetime


async def test_a_token_is_kept_until_its_renewal_is_due() -> None:
    clock, issuer = Clock(), Issuer(3600.0)
    cache = TokenCache(renew_max=60.0, renew_share=0.1, clock=clock)
    assert await cache.get(issuer) == "token-1"
    clock.now += 3600 - 60 - 1  # one second before the renewal point: still cached
    assert await cache.get(issuer) == "token-1" and issuer.fetched == 1
    clock.now += 1
    assert await cache.get(issuer) == "token-2" and issuer.fetched == 2


@pytest.mark.parametrize(
    ("lifetime", "renew_max", "renew_after"), [(300.0, 60.0, 270.0), (3600.0, 300.0, 3300.0)]
)
async def test_renewal_comes_the_smaller_of_the_cap_and_the_share_early(
    lifetime: float, renew_max: float, renew_after: float
) -> None:
    clock, issuer = Clock(), Issuer(lifetime)
    cache = TokenCache(renew_max=renew_max, renew_share=0.1, clock=clock)
    await cache.get(issuer)
    clock.now += renew_after - 0.5
    assert await cache.get(issuer) == "token-1"
    clock.now += 0.5
    assert await cache.get(issuer) == "token-2"


async def test_concurrent_callers_fetch_once() -> None:
    issuer = Issuer()
    cache = TokenCache(clock=Clock())
    tokens = await asyncio.gather(*(cache.get(issuer) for _ in range(20)))
    assert set(tokens) == {"token-1"} and issuer.fetched == 1


async def test_drop_forgets_only_the_token_still_cached() -> None:
    issuer = Issuer()
    cache = TokenCache(clock=Clock())
    first = await cache.get(issuer)
    cache.drop(first)  # the API refused it: the next call fetches a new one
    second = await cache.get(issuer)
    assert second == "token-2"
    cache.drop(first)  # a late 401 for the old token does not throw away the renewed one
    assert await cache.get(issuer) == "token-2" and issuer.fetched == 2


async def test_a_failed_fetch_leaves_nothing_cached() -> None:
    calls = 0

    async def failing() -> tuple[str, float]:
        nonlocal calls
        calls += 1
        raise RuntimeError("token endpoint down")

    cache = TokenCache(clock=Clock())
    for _ in range(2):
        with pytest.raises(RuntimeError, match="down"):
            await cache.get(failing)
    assert calls == 2 and cache.token is None

"""connectors.tokens.TokenCache on a fake clock: cached until renewal is due, renewed ahead of expiry,
fetched once for concurrent callers, dropped after a 401 only if it is still the cached token, and
`authorized`: a refused call sent once more with a new token, never a third time; `token_answer`'s check of
a token answer; the client assertion the JWT auth modes sign (`assertion_claims`, `sign_rs256`)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import jwt
import pytest
from support.keys import rsa_pem_pair

from connectors.errors import ProviderUnavailableError
from connectors.http import Response
from connectors.tokens import TokenCache, assertion_claims, oauth_error, sign_rs256, token_answer


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


class Api:
    """Answers with the statuses given, in order, recording the token each call carried."""

    def __init__(self, *statuses: int) -> None:
        self.statuses = list(statuses)
        self.sent: list[str] = []

    async def __call__(self, token: str) -> Response:
        self.sent.append(token)
        await asyncio.sleep(0)  # let concurrent calls all send before any answer
        status = self.statuses.pop(0) if self.statuses else 200
        return Response(status, {}, b"", "GET", "http://127.0.0.1/x", "req-1")


async def test_authorized_sends_once_with_the_cached_token() -> None:
    issuer, api = Issuer(), Api(200)
    cache = TokenCache(clock=Clock())
    assert (await cache.authorized(issuer, api)).status == 200
    assert api.sent == ["token-1"] and issuer.fetched == 1


async def test_authorized_renews_once_after_a_401_and_sends_again() -> None:
    issuer, api = Issuer(), Api(401, 200)
    cache = TokenCache(clock=Clock())
    assert (await cache.authorized(issuer, api)).status == 200
    assert api.sent == ["token-1", "token-2"] and cache.token == "token-2"


async def test_authorized_returns_a_second_401_instead_of_trying_again() -> None:
    issuer, api = Issuer(), Api(401, 401, 200)
    cache = TokenCache(clock=Clock())
    assert (await cache.authorized(issuer, api)).status == 401
    assert api.sent == ["token-1", "token-2"] and issuer.fetched == 2


async def test_authorized_takes_the_connector_s_own_test_of_a_refusal() -> None:
    issuer, api = Issuer(), Api(403, 200)
    cache = TokenCache(clock=Clock())
    answer = await cache.authorized(issuer, api, refused=lambda response: response.status in (401, 403))
    assert answer.status == 200 and api.sent == ["token-1", "token-2"]
    api = Api(403)
    assert (await cache.authorized(issuer, api)).status == 403  # by default only a 401 renews
    assert api.sent == ["token-2"]


async def test_calls_refused_together_renew_the_token_once() -> None:
    issuer = Issuer()
    cache = TokenCache(clock=Clock())
    await cache.get(issuer)
    api = Api(*[401] * 5)
    answers = await asyncio.gather(*(cache.authorized(issuer, api) for _ in range(5)))
    assert [answer.status for answer in answers] == [200] * 5
    assert issuer.fetched == 2 and sorted(api.sent) == ["token-1"] * 5 + ["token-2"] * 5


async def test_a_late_401_for_the_old_token_keeps_the_renewed_one() -> None:
    issuer = Issuer()
    cache = TokenCache(clock=Clock())
    await cache.get(issuer)
    late = asyncio.Event()

    async def slow_refusal(token: str) -> Response:
        if token == "token-1":
            await late.wait()  # answered only once the other call has renewed the token
            return Response(401, {}, b"", "GET", "http://127.0.0.1/x", "req-2")
        return Response(200, {}, b"", "GET", "http://127.0.0.1/x", "req-3")

    pending = asyncio.ensure_future(cache.authorized(issuer, slow_refusal))
    await asyncio.sleep(0)
    assert (await cache.authorized(issuer, Api(401))).status == 200  # renews to token-2
    late.set()
    assert (await pending).status == 200
    assert issuer.fetched == 2 and cache.token == "token-2"


def answer(body: Any) -> Response:
    return Response(200, {}, json.dumps(body).encode(), "POST", "http://127.0.0.1/token", "ours-1")


def test_token_answer_takes_a_header_safe_token_and_a_positive_lifetime() -> None:
    assert token_answer(answer({"access_token": "abc.def", "expires_in": 3599}), "P") == ("abc.def", 3599.0)
    for bad in (
        {"access_token": "abc def", "expires_in": 3599},  # a space would break the header
        {"access_token": "abc\r\nX-Evil: 1", "expires_in": 3599},
        {"access_token": "", "expires_in": 3599},
        {"access_token": "a" * 8193, "expires_in": 3599},
        {"access_token": "abc", "expires_in": 0},
        {"access_token": "abc", "expires_in": True},
        {"access_token": "abc", "expires_in": "3599"},  # text only where the provider sends it so
        ["abc", 3599],
    ):
        with pytest.raises(ProviderUnavailableError, match="without a usable access_token") as refused:
            token_answer(answer(bad), "P")
        assert refused.value.request_id == "ours-1" and "abc" not in str(refused.value)


def test_token_answer_options_a_provider_may_need() -> None:
    long = "a" * 16384
    assert token_answer(answer({"access_token": long, "expires_in": 1}), "P", max_length=16384)[0] == long
    text = answer({"access_token": "abc", "expires_in": "3599"})
    assert token_answer(text, "P", lifetime_text=True) == ("abc", 3599.0)
    with pytest.raises(ProviderUnavailableError) as refused:
        token_answer(
            answer({"access_token": "abc", "expires_in": "soon"}), "P", lifetime_text=True, request_id="g-7"
        )
    assert refused.value.request_id == "g-7"


def test_a_client_assertion_is_signed_rs256_and_a_bad_key_is_never_quoted() -> None:
    private, public = rsa_pem_pair()
    claims = assertion_claims("client-1", "http://127.0.0.1/token", 1000.0, 300)
    again = assertion_claims("client-1", "http://127.0.0.1/token", 1000.0, 300)
    assert claims["jti"] != again["jti"]  # unique, so a token endpoint can refuse a replay
    signed = sign_rs256(claims, private, {"kid": "k1"}, provider="P")
    assert jwt.get_unverified_header(signed) == {"alg": "RS256", "kid": "k1", "typ": "JWT"}
    read = jwt.decode(
        signed, public, algorithms=["RS256"], audience="http://127.0.0.1/token", options={"verify_exp": False}
    )
    assert read == {**claims, "iat": 1000, "exp": 1300} and read["iss"] == read["sub"] == "client-1"
    secret = "-----BEGIN PRIVATE KEY-----\nnot-a-key-but-secret\n-----END PRIVATE KEY-----"
    with pytest.raises(ValueError, match="could not sign RS256") as bad:
        sign_rs256(claims, secret, None, provider="P")
    assert "secret" not in str(bad.value) and bad.value.__cause__ is None and bad.value.__suppress_context__


def test_oauth_error_names_the_refusal_shortly_else_the_status() -> None:
    def refusal(body: bytes) -> Response:
        return Response(401, {}, body, "POST", "http://127.0.0.1/token", "ours-1")

    described = b'{"error": "invalid_client", "error_description": "The client_assertion\\n is expired."}'
    assert oauth_error(refusal(described)) == "invalid_client: The client_assertion is expired."
    assert oauth_error(refusal(b'{"error": "invalid_grant"}')) == "invalid_grant"
    long = oauth_error(refusal(b'{"error": "x", "error_description": "' + b"y" * 500 + b'"}'))
    assert len(long) == 200 and long.endswith("\u2026")
    for unreadable in (b"", b"<html>Bad Gateway</html>", b'{"error": 7}', b"[]", b"\xff"):
        assert oauth_error(refusal(unreadable)) == "HTTP 401"

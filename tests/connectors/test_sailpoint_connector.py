"""The SailPoint connector against the simulator over loopback HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable
from typing import Any, Callable

import aiohttp
import pytest
from aiohttp import web
from support.sim_env import SimEnv, params, serve_env

import connectors
from connectors import (
    Action,
    AuthenticationError,
    ConfigurationError,
    ConflictError,
    NotFoundError,
    ProviderUnavailableError,
    RiskLevel,
    UnsupportedActionError,
    ValidationError,
)
from connectors.sailpoint import SailPointConnector, filter_expr
from standins import serving
from standins.sailpoint import (
    IDENTITY_FILTERS,
    STATE,
    Comparison,
    SailPointState,
    create_app,
    parse_filter,
)
from standins.seed import HOSTILE_NAMES, person

SECRET = "sim-secret"


class Env(SimEnv):
    """The SailPoint simulator on loopback and connectors pointed at it."""

    state: SailPointState

    def connector(self, **settings: Any) -> SailPointConnector:
        config = {"base_url": self.url, "client_id": "sim-client", "client_secret": SECRET, **settings}
        return self.build(SailPointConnector, "sailpoint", "sp", config)

    def statuses(self) -> list[int]:
        return [record.status for record in self.state.log]


@pytest.fixture
async def env(request) -> AsyncIterator[Env]:
    async with serve_env(Env, create_app(**params(request, identities=300)), STATE) as built:
        yield built


async def all_identities(connector: SailPointConnector, **filters: Any) -> list[connectors.Identity]:
    return [identity async for identity in connector.list_identities(**filters)]


# --- configuration -----------------------------------------------------------------------------------


def test_registry_builds_and_rejects_bad_settings() -> None:
    good = {"base_url": "https://acme.api.identitynow.com", "client_id": "c", "client_secret": "s"}
    built = connectors.build("sailpoint", "sp", good)
    assert isinstance(built, SailPointConnector) and built.tenant_id == "acme"
    assert built.capabilities == frozenset({Action.DISABLE, Action.ENABLE})
    assert built.can_undo(Action.DISABLE)
    cases = [
        ({**good, "colour": "blue"}, "unknown setting 'colour'"),
        ({k: v for k, v in good.items() if k != "client_secret"}, "setting 'client_secret' is required"),
        ({**good, "api_version": "v3"}, "'api_version' must be one of v2024, v2025, v1"),
        ({**good, "page_size": 500}, "'page_size' must be a whole number from 1 to 250"),
        ({**good, "concurrency": "many"}, "'concurrency' must be a whole number from 1 to 16"),
        ({**good, "timeout": 0}, "'timeout' must be a number of seconds above 0"),
        ({**good, "base_url": "acme.api.identitynow.com"}, "'base_url' must be an http(s) URL like https://"),
        ({**good, "base_url": "https://acme.api.identitynow.com/v3"}, "'base_url' must be the API root"),
        ({**good, "risk_attribute": ""}, "'risk_attribute' must be a dotted path like attributes.riskScore"),
        ({**good, "risk_attribute": "attributes riskScore"}, "'risk_attribute' must be a dotted path"),
        ({**good, "tenant_id": "acme/../x"}, "'tenant_id' must be a tenant name"),
        ({**good, "client_id": 42}, "'client_id' must be a non-empty string"),
    ]
    for config, message in cases:
        with pytest.raises(ConfigurationError) as bad:
            connectors.build("sailpoint", "sp", config)
        assert str(bad.value).startswith("connector 'sp' (sailpoint): ") and message in str(bad.value)
    # SOAR assets and Cortex jobs send numbers as text
    typed = connectors.build("sailpoint", "sp", {**good, "page_size": "100", "timeout": "2.5"})
    assert isinstance(typed, SailPointConnector)
    assert (typed.page_size, typed._http.timeout) == (100, 2.5)


# --- listing -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("env", [{"identities": 1030, "latency": 0.05, "rate_limit": False}], indirect=True)
async def test_listing_fetches_pages_concurrently_in_order(env: Env) -> None:
    connector = env.connector(page_size=100, concurrency=4)
    pages = [page async for page in connector.iter_pages()]
    ids = [identity.id for page in pages for identity in page]
    assert len(pages) == 11 and len(ids) == len(set(ids)) == 1030
    assert ids == [env.state.identity_id(i) for i in range(1030)]  # in order despite concurrency
    # several pages were in flight at once, but never more than the window
    assert 2 <= env.state.max_in_flight <= 4
    assert env.state.log[0].path == "/v2024/identities"


async def test_listing_maps_identities_and_filters_pages(env: Env) -> None:
    connector = env.connector(risk_attribute="attributes.riskScore", tenant_id="acme-prod")
    everyone = await all_identities(connector)
    assert len(everyone) == 300
    first = everyone[1]
    seeded = person(1)
    assert (first.email, first.display_name, first.privileged) == (
        seeded.email,
        seeded.display_name,
        seeded.privileged,
    )
    assert first.risk_score == seeded.risk_score and first.risk_level == RiskLevel.for_score(
        seeded.risk_score
    )
    assert first.tenant_id == "acme-prod" and first.provider == "sailpoint" and first.status == "active"
    assert first.last_login_at == seeded.last_login_at and first.created_at == seeded.created_at
    assert first.raw["alias"] == f"{seeded.first}.{seeded.last}.1".lower()
    high = await all_identities(connector, risk_level=RiskLevel.CRITICAL)
    assert high and {i.id for i in high} == {i.id for i in everyone if i.risk_level is RiskLevel.CRITICAL}
    admins = await all_identities(connector, privileged=True)
    assert {i.id for i in admins} == {i.id for i in everyone if i.privileged}
    assert await all_identities(connector, tenant_id="someone-else") == []
    assert await all_identities(connector, mfa_enrolled=True) == []  # SailPoint reports no MFA data


async def test_risk_attribute_absent_means_unknown_risk(env: Env) -> None:
    requests_before = len(env.state.log)
    connector = env.connector()
    identity = (await connector.find_identities(person(3).email))[0]
    assert identity.risk_score is None and identity.risk_level is None
    # a risk filter without a risk attribute matches nothing, and asks the provider nothing
    asked = len(env.state.log)
    assert await all_identities(connector, risk_level=RiskLevel.HIGH) == []
    assert len(env.state.log) == asked > requests_before


async def test_risk_attribute_follows_admin_changes_and_tolerates_junk(env: Env, caplog) -> None:
    connector = env.connector(risk_attribute="attributes.riskScore")
    target = env.state.identity_id(9)
    env.state.set_risk(9, 88)
    assert (await connector.get_identity(target)).risk_level is RiskLevel.CRITICAL
    env.state.set_risk(9, None)
    assert (await connector.get_identity(target)).risk_score is None
    odd = env.connector(risk_attribute="attributes.firstname")
    with caplog.at_level(logging.WARNING, logger="connectors.sailpoint"):
        identity = await odd.get_identity(target)
        await odd.get_identity(target)
    assert identity.risk_score is None
    warnings = [r for r in caplog.records if "attributes.firstname" in r.getMessage()]
    assert len(warnings) == 1  # once per connector, not once per identity


@pytest.mark.parametrize("version", ["v2025", "v1"])
async def test_api_version_selects_the_paths(env: Env, version: str) -> None:
    connector = env.connector(api_version=version)
    assert len(await all_identities(connector)) == 300
    await connector.disable(env.state.identity_id(4), "test")
    paths = {
        record.path.rsplit("/", 2)[0] if "disable" in record.path else record.path for record in env.state.log
    }
    if version == "v1":
        assert paths == {"/identities/v1", "/accounts/v1"}
    else:
        assert paths == {"/v2025/identities", "/v3/accounts"}


@pytest.mark.parametrize("env", [{"require_experimental": True}], indirect=True)
async def test_experimental_header_is_sent_for_v2024(env: Env) -> None:
    connector = env.connector()
    assert len(await all_identities(connector)) == 300
    assert (await connector.get_identity(env.state.identity_id(0))).id == env.state.identity_id(0)


async def test_stopping_early_cancels_the_pages_in_flight(env: Env) -> None:
    connector = env.connector(page_size=10, concurrency=8)
    pages = connector.iter_pages()
    first = await pages.__anext__()
    await pages.aclose()
    assert len(first) == 10
    await asyncio.sleep(0)
    others = [
        task
        for task in asyncio.all_tasks()
        if task is not asyncio.current_task() and "identity_page" in repr(task)
    ]
    assert others == []


# --- get and find ------------------------------------------------------------------------------------


async def test_get_and_find(env: Env) -> None:
    connector = env.connector()
    wanted = env.state.identity_id(17)
    assert (await connector.get_identity(wanted)).email == person(17).email
    with pytest.raises(NotFoundError, match=f"no identity with id {'0' * 32}"):
        await connector.get_identity("0" * 32)
    requests = len(env.state.log)
    for unsafe in ("../../_admin/faults", "..", ".", "a/b", "x?y", "a b", ""):
        # an id goes into the URL path: these could point elsewhere, so they never leave the connector
        with pytest.raises(NotFoundError, match="no identity with id"):
            await connector.get_identity(unsafe)
        with pytest.raises(NotFoundError, match="no identity with id"):
            await connector.disable(unsafe, "reason")
    assert len(env.state.log) == requests
    assert [i.id for i in await connector.find_identities(person(17).email)] == [wanted]
    assert [i.id for i in await connector.find_identities(wanted.upper())] == [wanted]
    assert await connector.find_identities("f" * 32) == []
    prefix = person(17).display_name.split()[0]
    found = await connector.find_identities(prefix, limit=50)
    assert found and all(
        i.display_name.startswith(prefix) or i.raw["alias"].startswith(prefix.lower()) for i in found
    )
    for blank in ("", "   ", "\t\n"):
        with pytest.raises(ValidationError, match=r"^SailPoint: type an email, a 32-character id or a name"):
            await connector.find_identities(blank)
    with pytest.raises(ValidationError, match="longer than 256"):
        await connector.find_identities("x" * 300)


INJECTIONS = [
    'a" or id ne "x',
    '" or name sw "',
    "\\",
    'back\\slash" or alias sw "',
    "line\nbreak",
    'zoë" and (id in ("x")) or name co "',
    '") or (name sw "',
    "<!channel> ¯\\_(ツ)_/¯",
]


@pytest.mark.parametrize("text", INJECTIONS)
def test_filter_values_parse_back_to_exactly_the_text(text: str) -> None:
    node = parse_filter(filter_expr("name", "sw", text), IDENTITY_FILTERS)
    assert node == Comparison("name", "sw", (text,))
    with pytest.raises(ValueError, match="not allowed"):
        filter_expr("id", "ne", text)


async def test_injection_attempts_find_nothing_and_hostile_names_are_found(env: Env) -> None:
    connector = env.connector()
    for text in INJECTIONS:
        assert await connector.find_identities(text) == [], text
    assert all(record.status == 200 for record in env.state.log)  # every filter parsed: no 400
    for index in range(49, 300, 50):  # the seed gives every 50th person a hostile display name
        name = person(index).display_name
        assert name in HOSTILE_NAMES
        found = await connector.find_identities(name)
        assert env.state.identity_id(index) in [i.id for i in found], name


# --- disable and unsupported actions ------------------------------------------------------------------


async def test_disable_queues_a_task_per_account_and_changes_state(env: Env) -> None:
    connector = env.connector()
    target = env.state.identity_id(21)
    result = await connector.disable(target, "compromised laptop")
    assert result.status == "queued" and result.action is Action.DISABLE
    tasks = result.reference.split(",") if result.reference else []
    assert len(tasks) == 2 and set(tasks) <= set(env.state.tasks)
    assert {env.state.account_id(21, n) for n in range(2)} <= env.state.disabled_accounts
    assert (await connector.get_identity(target)).status == "disabled"
    again = await connector.disable(target, "again")
    assert again.status == "completed" and "already disabled" in again.message
    with pytest.raises(NotFoundError):
        await connector.disable("0" * 32, "nobody")
    run = await connector.run_action(Action.DISABLE, env.state.identity_id(22), "via dispatch")
    assert run.status == "queued"


async def test_enable_undoes_disable_per_account_and_reads_back(env: Env) -> None:
    connector = env.connector()
    target = env.state.identity_id(23)
    accounts = {env.state.account_id(23, n) for n in range(2)}
    assert await connector.action_in_effect(Action.ENABLE, target) is True
    already = await connector.enable(target)
    assert already.status == "completed" and "already enabled" in already.message
    assert not any(task["action"] == "enable" for task in env.state.tasks.values())
    await connector.disable(target, "token theft")
    assert await connector.action_in_effect(Action.ENABLE, target) is False
    result = await connector.run_action(Action.ENABLE, target, "revert", idempotency_key="idops-apr_1")
    assert result.status == "queued" and result.action is Action.ENABLE
    tasks = result.reference.split(",") if result.reference else []
    assert len(tasks) == 2 and all(env.state.tasks[t]["action"] == "enable" for t in tasks)
    assert not accounts & env.state.disabled_accounts
    assert (await connector.get_identity(target)).status == "active"
    assert await connector.action_in_effect(Action.ENABLE, target) is True
    posted = [r.path for r in env.state.log if r.method == "POST" and r.path.endswith("/enable")]
    assert sorted(posted) == sorted(f"/v3/accounts/{a}/enable" for a in accounts)
    with pytest.raises(NotFoundError):
        await connector.enable("0" * 32)


async def test_reset_and_revoke_are_unsupported_never_silent(env: Env) -> None:
    connector = env.connector()
    target = env.state.identity_id(1)
    with pytest.raises(UnsupportedActionError, match="SailPoint has no 'Force password reset' action"):
        await connector.force_password_reset(target)
    with pytest.raises(UnsupportedActionError, match="Revoke sessions"):
        await connector.run_action(Action.REVOKE_SESSIONS, target)
    assert not connector.supports(Action.FORCE_PASSWORD_RESET) and connector.supports(Action.DISABLE)
    assert len(env.state.log) == 0


# --- tokens ------------------------------------------------------------------------------------------


async def test_token_is_cached_across_requests(env: Env) -> None:
    connector = env.connector(page_size=50)
    await all_identities(connector)
    await connector.get_identity(env.state.identity_id(0))
    assert env.state.tokens_issued == 1 and len(env.state.log) == 7


async def test_token_is_renewed_before_it_expires(env: Env) -> None:
    now = [1000.0]
    built = SailPointConnector(
        "sp", base_url=env.url, client_id="sim-client", client_secret=SECRET, clock=lambda: now[0]
    )
    connector = env.keep(built)
    await connector.get_identity(env.state.identity_id(0))
    now[0] += 749 - 61  # the token lives 749 s: kept until a minute before its end
    await connector.get_identity(env.state.identity_id(0))
    assert env.state.tokens_issued == 1
    now[0] += 2
    await connector.get_identity(env.state.identity_id(0))
    assert env.state.tokens_issued == 2
    assert 401 not in env.statuses()  # renewed ahead of expiry, not after a refusal


async def test_expired_token_re_authenticates_once(env: Env) -> None:
    connector = env.connector()
    await connector.get_identity(env.state.identity_id(0))
    env.state.expire_tokens()
    assert (await connector.get_identity(env.state.identity_id(1))).id == env.state.identity_id(1)
    assert env.statuses() == [200, 401, 200] and env.state.tokens_issued == 2
    # credentials rotated on the tenant: the one re-authentication is refused, and that is said
    env.state.client_secret = "rotated"
    env.state.expire_tokens()
    with pytest.raises(AuthenticationError, match="refused the client credentials \\(invalid_client\\)"):
        await connector.get_identity(env.state.identity_id(1))


async def test_a_401_to_concurrent_calls_drops_the_token_and_one_fetch_follows(env: Env) -> None:
    connector = env.connector()
    ids = [env.state.identity_id(i) for i in range(6)]
    await connector.get_identity(ids[0])
    env.state.expire_tokens()
    found = await asyncio.gather(*(connector.get_identity(i) for i in ids))
    assert [identity.id for identity in found] == ids
    assert env.state.tokens_issued == 2  # six refusals, one fresh token
    assert env.statuses().count(401) == 6 and env.statuses()[-6:] == [200] * 6
    # the fresh token is cached again: the next call fetches none
    await connector.get_identity(ids[1])
    assert env.state.tokens_issued == 2 and env.statuses()[-1] == 200


async def test_bad_credentials(env: Env) -> None:
    connector = env.connector(client_secret="wrong")
    with pytest.raises(AuthenticationError) as caught:
        await connector.get_identity(env.state.identity_id(0))
    assert "check client_id and client_secret" in str(caught.value) and "wrong" not in str(caught.value)
    result = await connector.check()
    assert not result.ok and "refused the client credentials" in result.message
    good = await env.connector().check()
    assert good.ok and "300 identities visible" in good.message


Handler = Callable[[web.Request], Awaitable[web.Response]]


@contextlib.asynccontextmanager
async def tenant_stand_in(token: Handler, gets: dict[str, Handler]) -> AsyncIterator[connectors.Connector]:
    """A SailPoint tenant stand-in on loopback (`POST /oauth/token` answered by `token`, the GET routes
    `gets`), and a connector pointed at it."""
    app = web.Application()
    app.router.add_post("/oauth/token", token)
    for path, handler in gets.items():
        app.router.add_get(path, handler)
    async with serving(app) as url:
        config = {"base_url": url, "client_id": "c", "client_secret": "s"}
        async with connectors.build("sailpoint", "sp", config) as connector:
            yield connector


@pytest.mark.parametrize(
    "answer",
    [
        {"access_token": "abc\r\nX-Injected: 1", "expires_in": 749},
        {"access_token": "two words", "expires_in": 749},
        {"access_token": "ok", "expires_in": True},
        {"access_token": "", "expires_in": 749},
        ["not", "an", "object"],
    ],
)
async def test_an_unusable_token_answer_is_reported_not_sent(answer: Any) -> None:
    """A token endpoint stand-in answering 200 with a token that can't go into a header."""
    posts: list[str] = []

    async def token(request: web.Request) -> web.Response:
        posts.append(request.path)
        return web.json_response(answer)

    async def anything(request: web.Request) -> web.Response:
        posts.append(request.path)
        return web.json_response([])

    async with tenant_stand_in(token, {"/{tail:.*}": anything}) as connector:
        with pytest.raises(ProviderUnavailableError, match="without a usable access_token") as caught:
            await connector.get_identity("0" * 32)
    assert caught.value.request_id and posts == ["/oauth/token"]


async def test_an_identity_without_accounts_is_a_conflict_with_a_request_id() -> None:
    """A tenant stand-in where the identity exists but owns no account (the simulator gives each two)."""
    wanted = "a" * 32

    async def token(request: web.Request) -> web.Response:
        return web.json_response({"access_token": "t0k3n", "expires_in": 749})

    async def accounts(request: web.Request) -> web.Response:
        assert request.query["filters"] == f'identityId eq "{wanted}"'
        return web.json_response([])

    async def identity(request: web.Request) -> web.Response:
        return web.json_response({"id": request.match_info["id"], "name": "Ada"})

    gets = {"/v3/accounts": accounts, "/v2024/identities/{id}": identity}
    async with tenant_stand_in(token, gets) as connector:
        with pytest.raises(ConflictError, match=f"identity {wanted} has no accounts to disable") as caught:
            await connector.disable(wanted, "phished")
    assert caught.value.request_id and caught.value.request_id.startswith("idops-")


# --- faults ------------------------------------------------------------------------------------------


async def fault(env: Env, **body: Any) -> None:
    """Queue a fault through the simulator's admin API."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{env.url}/_admin/faults", json=body) as answer,
    ):
        assert answer.status == 200, await answer.text()
    env.state.log.clear()


async def test_server_errors_are_retried_then_reported(env: Env) -> None:
    connector = env.connector()
    await fault(env, kind="500", count=2)
    assert len(await all_identities(connector)) == 300
    await fault(env, kind="500", count=5)
    with pytest.raises(ProviderUnavailableError, match="HTTP 500: An internal fault occurred") as caught:
        await connector.get_identity(env.state.identity_id(0))
    assert caught.value.request_id and len(caught.value.request_id) == 32  # SailPoint's trackingId


async def test_dropped_connections_are_retried_then_reported(env: Env) -> None:
    connector = env.connector()
    await fault(env, kind="drop", count=2)
    assert (await connector.get_identity(env.state.identity_id(2))).id == env.state.identity_id(2)
    await fault(env, kind="drop", count=20)
    with pytest.raises(ProviderUnavailableError, match="SailPoint dropped the connection"):
        await connector.get_identity(env.state.identity_id(2))


async def test_slow_answers_time_out_and_are_retried(env: Env) -> None:
    connector = env.connector(timeout=0.3)
    await fault(env, kind="slow", count=1, delay=1.0)
    assert (await connector.get_identity(env.state.identity_id(3))).id == env.state.identity_id(3)
    await fault(env, kind="slow", count=3, delay=0.6)
    with pytest.raises(ProviderUnavailableError, match=r"did not answer in 0\.3 s"):
        await connector.get_identity(env.state.identity_id(3))


async def test_malformed_answers_are_reported(env: Env) -> None:
    connector = env.connector()
    await fault(env, kind="malformed")
    with pytest.raises(ProviderUnavailableError, match="not valid JSON"):
        await all_identities(connector)


async def test_injected_429_waits_retry_after(env: Env) -> None:
    connector = env.connector()
    await fault(env, kind="429", count=1, retry_after=1)
    assert (await connector.get_identity(env.state.identity_id(5))).id == env.state.identity_id(5)
    refused, retried = env.state.log[0], env.state.log[1]
    assert (refused.status, retried.status) == (429, 200)
    assert retried.at - refused.at >= 1.0 - 0.02  # never sooner than Retry-After (clock tick slack)


@pytest.mark.parametrize(
    "env", [{"identities": 600, "rate_limit_requests": 3, "rate_limit_period": 1.0}], indirect=True
)
async def test_rate_limit_is_waited_out(env: Env) -> None:
    # one page at a time, so every request after a 429 was sent after the client read that 429
    connector = env.connector(page_size=100, concurrency=1)
    assert len(await all_identities(connector)) == 600
    log = list(env.state.log)
    assert 429 in env.statuses() and env.statuses().count(200) == 6
    for refused, following in zip(log, log[1:]):
        if refused.status == 429:  # Retry-After was 1 s: nothing came sooner
            assert following.at - refused.at >= 1.0 - 0.02


async def test_unreachable_tenant_is_a_failed_check_not_a_traceback() -> None:
    connector = SailPointConnector("sp", base_url="http://127.0.0.1:9", client_id="c", client_secret="s")
    async with connector:
        result = await connector.check()
    assert not result.ok and "SailPoint could not be reached at http://127.0.0.1:9" in result.message


def test_odd_identity_records_map_or_fail_clearly() -> None:
    connector = SailPointConnector(
        "sp",
        base_url="https://acme.api.identitynow.com",
        client_id="c",
        client_secret="s",
        risk_attribute="attributes.riskScore",
    )
    for bad in ({}, {"id": ""}, {"id": 7}, ["not", "a", "dict"], None):
        with pytest.raises(ProviderUnavailableError, match="sent an identity without an id") as err:
            connector.to_identity(bad, "idops-0123")
        assert err.value.request_id == "idops-0123"
    # a tenant may map attributes to anything: what is not a string is unknown, never passed on
    mistyped = connector.to_identity(
        {
            "id": "x3",
            "emailAddress": 42,
            "name": ["Ada"],
            "alias": "ada",
            "identityStatus": {"state": "ACTIVE"},
            "attributes": {"email": "ada@example.com", "lastLoginIp": {"v": 4}, "lastLoginCountry": 7},
        }
    )
    assert (mistyped.email, mistyped.display_name, mistyped.status) == ("ada@example.com", "ada", None)
    assert (mistyped.last_login_ip, mistyped.last_login_country) == (None, None)
    sparse = connector.to_identity(
        {
            "id": "x1",
            "alias": "only.alias",
            "attributes": "not a map",
            "created": "yesterday",
            "identityStatus": 3,
        }
    )
    assert (sparse.display_name, sparse.status, sparse.created_at, sparse.risk_score) == (
        "only.alias",
        None,
        None,
        None,
    )
    assert sparse.tenant_id == "acme" and not sparse.privileged
    scored = connector.to_identity({"id": "x2", "attributes": {"riskScore": "77.0", "privileged": "TRUE"}})
    assert scored.risk_score == 77 and scored.risk_level is RiskLevel.CRITICAL and scored.privileged

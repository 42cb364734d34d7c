"""The Entra ID connector against the Graph simulator over loopback HTTP."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from support.sim_env import SimEnv, params, serve_env

import connectors
from connectors import (
    Action,
    AuthenticationError,
    ConfigurationError,
    NotFoundError,
    OutcomeUnknownError,
    PermissionDeniedError,
    ProviderUnavailableError,
    RiskLevel,
    ValidationError,
)
from connectors.entra import EntraConnector
from connectors.entra_api import odata_string, risk_band
from connectors.http import Response
from standins.common import Fault
from standins.entra import create_app
from standins.entra_state import ROLES, STATE, EntraState
from standins.seed import HOSTILE_NAMES

SECRET = "sim-secret"
DEFAULT = "https://graph.microsoft.com"


class Env(SimEnv):
    state: EntraState

    def connector(self, **settings: Any) -> EntraConnector:
        config = {
            "tenant_id": self.state.tenant_id,
            "client_id": self.state.client_id,
            "client_secret": SECRET,
            "authority_url": self.url,
            "graph_url": self.url,
            **settings,
        }
        built = self.build(EntraConnector, "entra", "entra", config)
        built._http._sleep = no_sleep  # type: ignore[assignment]  # waits are recorded, not slept
        return built

    def paths(self, method: str = "GET") -> list[str]:
        return [r.path for r in self.state.log if r.method == method]


SLEPT: list[float] = []


async def no_sleep(seconds: float) -> None:
    SLEPT.append(seconds)
    await asyncio.sleep(min(seconds, 0.05))


@pytest.fixture
async def env(request) -> AsyncIterator[Env]:
    SLEPT.clear()
    async with serve_env(Env, create_app(**params(request, users=300)), STATE) as built:
        yield built


async def everyone(connector: EntraConnector, **filters: Any) -> list[connectors.Identity]:
    return [identity async for identity in connector.list_identities(**filters)]


# --- configuration and rules ---------------------------------------------------------------------


def test_registry_builds_and_rejects_bad_settings() -> None:
    good = {"tenant_id": "8f3b2a10-0c55-4d6e-9a7b-1c2d3e4f5a6b", "client_id": "c", "client_secret": "s"}
    built = connectors.build("entra", "e", good)
    assert isinstance(built, EntraConnector) and built.capabilities == frozenset(Action)
    assert (
        built.token_url
        == "https://login.microsoftonline.com/8f3b2a10-0c55-4d6e-9a7b-1c2d3e4f5a6b/oauth2/v2.0/token"
    )
    assert built.can_undo(Action.DISABLE) and built.incremental
    soar_form = connectors.build("entra", "e", {**good, "base_url": "https://graph.microsoft.us"})
    assert isinstance(soar_form, EntraConnector) and soar_form.graph_url == "https://graph.microsoft.us"
    cases = [
        ({**good, "colour": "blue"}, "unknown setting 'colour'"),
        ({k: v for k, v in good.items() if k != "tenant_id"}, "setting 'tenant_id' is required"),
        (
            {k: v for k, v in good.items() if k != "client_secret"},
            "'client_secret' or 'certificate_key' is required",
        ),
        ({**good, "certificate_key": "x"}, "one of them, not both"),
        ({**good, "tenant_id": "../x"}, "'tenant_id' must be the directory (tenant) id"),
        ({**good, "page_size": 1000}, "'page_size' must be a whole number from 1 to 999"),
        ({**good, "graph_url": "https://graph.microsoft.com/v1.0"}, "'graph_url' must be the API root"),
        ({**good, "authority_url": "ftp://x"}, "'authority_url' must be an http(s) URL"),
        (
            {**good, "base_url": DEFAULT, "graph_url": DEFAULT},
            "'base_url' and 'graph_url' both name the Graph root",
        ),
    ]
    for config, message in cases:
        with pytest.raises(ConfigurationError) as bad:
            connectors.build("entra", "e", config)
        assert str(bad.value).startswith("connector 'e' (entra): ") and message in str(bad.value)


def test_odata_literals_and_the_risk_rule() -> None:
    assert odata_string("o'brien") == "'o''brien'"
    assert odata_string("x' or startswith(mail,'a") == "'x'' or startswith(mail,''a'"
    assert risk_band("confirmedCompromised", "high") == (100, RiskLevel.CRITICAL)
    assert risk_band("confirmedCompromised", "low") == (100, RiskLevel.CRITICAL)
    assert risk_band("atRisk", "high") == (75, RiskLevel.HIGH)
    assert risk_band("atRisk", "medium") == (50, RiskLevel.MEDIUM)
    assert risk_band("atRisk", "low") == (20, RiskLevel.LOW)
    assert risk_band("dismissed", "none") == risk_band("remediated", "none") == (0, RiskLevel.LOW)
    assert risk_band("atRisk", "hidden") == (None, None)
    assert risk_band("unknownFutureValue", "high") == (None, None)


# --- listing -------------------------------------------------------------------------------------


@pytest.mark.parametrize("env", [{"users": 2100}], indirect=True)
async def test_listing_follows_every_next_link_with_roles_and_risk(env: Env) -> None:
    connector = env.connector(page_size=999)
    pages = [page async for page in connector.iter_pages()]
    ids = [identity.id for page in pages for identity in page]
    assert [len(page) for page in pages] == [999, 999, 102]
    assert ids == [env.state.user_id(i) for i in range(2100)]
    users = env.state.log
    listing = [r for r in users if r.path == "/v1.0/users"]
    assert len(listing) == 3 and "$skiptoken" in listing[1].query and listing[0].query["$top"] == "999"
    assert all(r.headers.get("client-request-id") for r in users)  # every request is traceable
    by_id = {identity.id: identity for page in pages for identity in page}
    admin = by_id[env.state.user_id(3)]  # index 3 is a Global Administrator in the simulator
    assert admin.privileged and admin.roles == ("Global Administrator",)
    assert not by_id[env.state.user_id(4)].privileged
    compromised = by_id[env.state.user_id(7)]  # the first risky user: confirmed compromised
    assert (compromised.risk_score, compromised.risk_level) == (100, RiskLevel.CRITICAL)
    assert by_id[env.state.user_id(8)].risk_level is RiskLevel.LOW
    levels = {identity.risk_level for identity in by_id.values()}
    assert levels == {RiskLevel.LOW, RiskLevel.MEDIUM, RiskLevel.HIGH, RiskLevel.CRITICAL}
    hostile = by_id[env.state.user_id(49)]
    assert hostile.display_name == HOSTILE_NAMES[0]  # kept as text; escaping is the bot's job
    nomail = by_id[env.state.user_id(40)]
    assert nomail.email == env.state.upn(40)  # no mailbox: the principal name
    critical = await everyone(connector, risk_level=RiskLevel.CRITICAL, privileged=False)
    assert critical and all(i.risk_level is RiskLevel.CRITICAL and not i.privileged for i in critical)
    assert await everyone(connector, tenant_id="other") == []
    assert {i.mfa_enrolled for i in by_id.values()} == {None}  # a listing leaves MFA unknown


def test_a_next_link_to_another_host_is_not_followed() -> None:
    connector = connectors.build(
        "entra", "e", {"tenant_id": "t.example", "client_id": "c", "client_secret": "s"}
    )
    assert isinstance(connector, EntraConnector)
    answer = Response(200, {}, b"{}", "GET", "https://graph.microsoft.com/v1.0/users", "idops-x")
    ok = "https://graph.microsoft.com/v1.0/users?$skiptoken=abc"
    assert connector._checked_link(ok, answer) == ok
    for link in (
        "https://evil.example/v1.0/users",
        "https://graph.microsoft.com.evil.example/v1.0/users",
        42,
    ):
        with pytest.raises(ProviderUnavailableError, match="outside graph_url"):
            connector._checked_link(link, answer)


# --- search and filters --------------------------------------------------------------------------


async def test_find_by_email_name_id_and_principal_name(env: Env) -> None:
    connector = env.connector()
    state = env.state
    mail = state.mail(0)
    assert mail is not None
    [found] = await connector.find_identities(mail.upper())
    assert found.id == state.user_id(0)
    filters = [r.query["$filter"] for r in state.log if r.path == "/v1.0/users"]
    assert filters[-1] == f"mail eq '{mail.upper()}' or userPrincipalName eq '{mail.upper()}'"
    [by_upn] = await connector.find_identities(state.upn(5))
    assert by_upn.id == state.user_id(5) and by_upn.privileged  # index 5: User Administrator
    assert by_upn.roles == ("User Administrator",)
    [by_id] = await connector.find_identities(state.user_id(9))
    assert by_id.email == state.mail(9)
    assert await connector.find_identities("00000000-0000-4000-8000-000000000000") == []
    first = state.user(0)["givenName"]
    named = await connector.find_identities(first, limit=5)
    assert 1 <= len(named) <= 5 and all(
        first.lower() in (i.display_name or "").lower() + (i.email or "") for i in named
    )
    advanced = [r for r in state.log if r.path == "/v1.0/users" and "$orderby" in r.query]
    assert (
        advanced
        and advanced[-1].headers["ConsistencyLevel"] == "eventual"
        and advanced[-1].query["$count"] == "true"
    )
    with pytest.raises(ValidationError, match="type an email"):
        await connector.find_identities("  ")
    with pytest.raises(ValidationError, match="one line"):
        await connector.find_identities("ada\nmail eq 'x'")


async def test_quotes_and_injection_attempts_stay_literal(env: Env) -> None:
    connector = env.connector()
    state = env.state
    quoted = state.mail(11)  # the simulator gives index 11 an address with a quote in it
    assert quoted is not None and "'" in quoted
    [found] = await connector.find_identities(quoted)
    assert found.id == state.user_id(11)
    attempts = [
        "x' or startswith(mail,'",
        "nobody@example.com' or accountEnabled eq true or mail eq 'x",
        "') or (displayName ne '",
        "a'' or ''1''=''1",
        "%27 or 1 eq 1",
        "x@y'); DROP TABLE users; --",
    ]
    for text in attempts:
        assert await connector.find_identities(text) == [], text
    statuses = {r.status for r in state.log if r.path == "/v1.0/users"}
    assert statuses == {200}  # every attempt was a well-formed filter that matched nothing


async def test_graph_refuses_an_advanced_query_without_consistency_level(env: Env) -> None:
    connector = env.connector()
    with pytest.raises(ValidationError) as refused:
        await connector._api("GET", "/v1.0/users", params={"$count": "true", "$top": 1})
    assert "ConsistencyLevel" in str(refused.value) and refused.value.code == "Request_UnsupportedQuery"
    assert refused.value.request_id and refused.value.request_id.count("-") == 4  # Graph's request-id


# --- get -----------------------------------------------------------------------------------------


async def test_get_identity_reads_roles_and_risk_and_refuses_odd_ids(env: Env) -> None:
    connector = env.connector()
    got = await connector.get_identity(env.state.user_id(3))
    assert got.privileged and got.roles == ("Global Administrator",) and got.status == "active"
    assert got.risk_level is RiskLevel.LOW and got.risk_score == 0  # not in riskyUsers
    risky = await connector.get_identity(env.state.user_id(27))  # n=1: atRisk medium
    assert (risky.risk_level, risky.risk_score) == (RiskLevel.MEDIUM, 50)
    for bad in ("../users", "a/b", "x?y=1", "", "not an id"):
        with pytest.raises(NotFoundError):
            await connector.get_identity(bad)
    with pytest.raises(NotFoundError) as missing:
        await connector.get_identity("00000000-0000-4000-8000-000000000000")
    assert "no user with id" in str(missing.value) and missing.value.request_id


# --- actions -------------------------------------------------------------------------------------


async def test_disable_and_enable_with_already_done_cases(env: Env) -> None:
    connector = env.connector()
    user = env.state.user_id(1)
    done = await connector.disable(user, "phished")
    assert done.status == "completed" and "disabled" in done.message and done.reference
    assert env.state.enabled[1] is False
    again = await connector.run_action(Action.DISABLE, user, "phished")
    assert again.status == "completed" and "already disabled" in again.message
    patches = [r for r in env.state.log if r.method == "PATCH"]
    assert len(patches) == 1  # the second disable sent nothing
    assert (await connector.get_identity(user)).status == "disabled"
    back = await connector.enable(user)
    assert back.status == "completed" and env.state.enabled[1] is True
    assert "already enabled" in (await connector.enable(user)).message
    with pytest.raises(NotFoundError):
        await connector.disable("00000000-0000-4000-8000-000000000000", "x")


async def test_revoke_and_force_password_change(env: Env) -> None:
    connector = env.connector()
    result = await connector.revoke_sessions(env.state.upn(2))  # by principal name too
    assert result.identity_id == env.state.user_id(2) and env.state.revoked[2] == 1
    reset = await connector.force_password_reset(env.state.user_id(2))
    assert reset.status == "completed" and 2 in env.state.password_changes


async def test_verdict_actions_reach_identity_protection(env: Env) -> None:
    connector = env.connector()
    target = env.state.user_id(27)  # atRisk medium
    confirmed = await connector.confirm_compromised(target)
    assert confirmed.status == "completed" and env.state.risk_of(27)[1] == "confirmedCompromised"
    assert (await connector.get_identity(target)).risk_level is RiskLevel.CRITICAL
    assert "already" in (await connector.confirm_compromised(target)).message
    dismissed = await connector.run_action(Action.DISMISS_RISK, target)
    assert dismissed.status == "completed" and env.state.risk_of(27)[1] == "dismissed"
    assert (await connector.get_identity(target)).risk_level is RiskLevel.LOW
    assert "already" in (await connector.dismiss_risk(target)).message
    posts = [r.path for r in env.state.log if r.method == "POST"]
    assert posts == [
        "/v1.0/identityProtection/riskyUsers/confirmCompromised",
        "/v1.0/identityProtection/riskyUsers/dismiss",
    ]


# --- risk without P2 -----------------------------------------------------------------------------


@pytest.mark.parametrize("env", [{"p2": False}], indirect=True)
async def test_without_p2_risk_is_unknown_and_said_once(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    connector = env.connector()
    caplog.set_level(logging.WARNING, logger="connectors.entra")
    first = await everyone(connector)
    second = await everyone(connector)
    assert len(first) == len(second) == 300
    assert all(i.risk_level is None and i.risk_score is None for i in first + second)
    assert connector.risk_available is False
    warnings = [r for r in caplog.records if "risk is unknown" in r.getMessage()]
    assert len(warnings) == 1 and "P2" in warnings[0].getMessage()
    assert (await connector.get_identity(env.state.user_id(7))).risk_level is None
    check = await connector.check()
    assert check.ok and "risk UNKNOWN" in check.message and "P2" in check.message
    with pytest.raises(PermissionDeniedError, match="P2"):
        await connector.confirm_compromised(env.state.user_id(7))
    assert await everyone(connector, risk_level=RiskLevel.HIGH) == []


async def test_check_reports_users_and_risk(env: Env) -> None:
    result = await env.connector().check()
    assert result.ok and "300 users visible" in result.message and "Identity Protection" in result.message
    bad = await env.connector(client_secret="wrong").check()
    assert not bad.ok and "refused the app's credentials" in bad.message and "AADSTS7000215" in bad.message
    assert "wrong" not in bad.message


# --- tokens --------------------------------------------------------------------------------------


async def test_token_is_cached_renewed_ahead_and_refetched_once_on_401(env: Env) -> None:
    now = [1000.0]
    connector = env.connector()
    connector._clock = lambda: now[0]
    await connector.get_identity(env.state.user_id(1))
    await connector.get_identity(env.state.user_id(2))
    assert connector.tokens_fetched == 1  # cached
    form = env.state.token_forms[0]
    assert (
        form["scope"] == "https://graph.microsoft.com/.default" and form["grant_type"] == "client_credentials"
    )
    now[0] += 3599 - 300 + 1  # inside the renewal margin: renewed before it runs out
    await connector.get_identity(env.state.user_id(1))
    assert connector.tokens_fetched == 2
    env.state.expire_tokens()  # the server drops it early: one 401, a new token, the same request again
    got = await connector.get_identity(env.state.user_id(1))
    assert got.id == env.state.user_id(1) and connector.tokens_fetched == 3
    statuses = [r.status for r in env.state.log]
    assert statuses.count(401) == 1


async def test_refused_credentials_are_one_clear_error(env: Env) -> None:
    with pytest.raises(AuthenticationError) as refused:
        await env.connector(client_secret="nope").get_identity(env.state.user_id(1))
    assert "AADSTS7000215" in str(refused.value) and "nope" not in str(refused.value)
    with pytest.raises(AuthenticationError, match="AADSTS90002"):
        await env.connector(tenant_id="11111111-2222-3333-4444-555555555555").get_identity(
            env.state.user_id(1)
        )


# --- throttling and faults -----------------------------------------------------------------------


async def test_429_and_503_wait_retry_after_or_back_off(env: Env) -> None:
    connector = env.connector()
    await connector.get_identity(env.state.user_id(1))
    env.state.faults.clear()
    env.state.faults.append(Fault("429", 2, retry_after=7))
    env.state.faults.append(Fault("503", 1, retry_after=3))
    env.state.faults.append(Fault("429", 2, retry_after=None))
    SLEPT.clear()
    got = await connector.get_identity(env.state.user_id(1))
    assert got.id == env.state.user_id(1)
    assert SLEPT[:3] == [7, 7, 3]  # Retry-After, never less
    assert SLEPT[3:] == [4.0, 8.0]  # no header: backoff doubling with each 429 (3rd and 4th here)


async def test_throttling_ceiling_is_honoured(env: Env) -> None:
    env.state.throttle = (5, 0.2)
    connector = env.connector(page_size=20)
    SLEPT.clear()
    listed = await everyone(connector)
    assert len(listed) == 300 and SLEPT and all(wait >= 1 for wait in SLEPT)
    assert env.state.throttled >= 1


@pytest.mark.parametrize(
    ("kind", "expected"),
    [("500", "generalException"), ("malformed", "not valid JSON"), ("drop", "dropped the connection")],
)
async def test_faults_on_reads_are_retried_then_reported(env: Env, kind: str, expected: str) -> None:
    connector = env.connector()
    await connector.get_identity(env.state.user_id(1))
    env.state.faults.append(Fault(kind, 1))
    if kind != "malformed":  # transient: retried and succeeds
        assert (await connector.get_identity(env.state.user_id(1))).id == env.state.user_id(1)
    env.state.faults.append(Fault(kind, 10))
    with pytest.raises(ProviderUnavailableError) as failed:
        await connector.get_identity(env.state.user_id(1))
    assert expected in str(failed.value) and failed.value.request_id
    env.state.faults.clear()


async def test_a_write_without_an_answer_is_outcome_unknown(env: Env) -> None:
    connector = env.connector(timeout=0.5)
    await connector.get_identity(env.state.user_id(1))
    env.state.faults.append(Fault("slow", 10, delay=1.0, method="POST"))
    with pytest.raises(OutcomeUnknownError, match="may or may not have been done"):
        await connector.revoke_sessions(env.state.user_id(1))
    env.state.faults.clear()
    env.state.faults.append(Fault("500", 10, method="PATCH"))
    with pytest.raises(OutcomeUnknownError):
        await connector.disable(env.state.user_id(1), "x")
    env.state.faults.clear()
    # settled by reading, never by sending again
    assert await connector.action_in_effect(Action.DISABLE, env.state.user_id(1)) is False
    await connector.disable(env.state.user_id(1), "x")
    assert await connector.action_in_effect(Action.DISABLE, env.state.user_id(1)) is True
    assert await connector.action_in_effect(Action.ENABLE, env.state.user_id(1)) is False
    assert await connector.action_in_effect(Action.CONFIRM_COMPROMISED, env.state.user_id(7)) is True
    assert await connector.action_in_effect(Action.DISMISS_RISK, env.state.user_id(7)) is False
    assert await connector.action_in_effect(Action.REVOKE_SESSIONS, env.state.user_id(7)) is None


# --- changes -------------------------------------------------------------------------------------


async def test_changes_since_reads_users_whose_risk_changed(env: Env) -> None:
    connector = env.connector()
    empty = await connector.changes_since(None)
    assert empty.identities == [] and empty.cursor
    env.state.set_risk(4, "high", "atRisk")
    env.state.set_risk(6, "medium", "atRisk")
    changes = await connector.changes_since(empty.cursor)
    assert {i.id: i.risk_level for i in changes.identities} == {
        env.state.user_id(4): RiskLevel.HIGH,
        env.state.user_id(6): RiskLevel.MEDIUM,
    }
    risky = [r for r in env.state.log if r.path == "/v1.0/identityProtection/riskyUsers"]
    assert risky[-1].query["$filter"].startswith("riskLastUpdatedDateTime gt 20")
    paths = [r.path for r in env.state.log]
    assert paths.count("/v1.0/$batch") == 1 and "/v1.0/users" not in paths  # both users in one batch
    env.state.log.clear()
    for index in range(20, 60):
        env.state.set_risk(index, "low", "atRisk")
    many = await connector.changes_since(changes.cursor)
    # riskyUsers, then one batch of 3 reads of 15 users; the role members read by the call before are reused
    assert len(many.identities) == 40 and [r.path for r in env.state.log] == [
        "/v1.0/identityProtection/riskyUsers",
        "/v1.0/$batch",
    ]
    assert all(i.risk_level is RiskLevel.LOW and i.email for i in many.identities)
    # a read the batch answered 429 (each counts against the ceiling) is sent again on its own
    env.state.throttle = (2, 0.2)
    env.state.window.clear()
    for index in range(60, 100):
        env.state.set_risk(index, "medium", "atRisk")
    throttled = await connector.changes_since(many.cursor)
    assert len({i.id for i in throttled.identities}) == 40 and env.state.throttled >= 1
    env.state.throttle = None
    many = throttled
    later = await connector.changes_since(many.cursor)
    assert later.identities == []
    with pytest.raises(ValidationError, match="list identities in full"):
        await connector.changes_since("2001-01-01T00:00:00Z")
    with pytest.raises(ValidationError):
        await connector.changes_since("yesterday) or (x")


def test_roles_constant_is_what_the_listing_expects() -> None:
    assert [role[1] for role in ROLES][:2] == ["Global Administrator", "User Administrator"]


async def test_a_listing_left_early_leaves_nothing_running_after_close(env: Env) -> None:
    connector = env.connector(page_size=50)
    async for page in connector.iter_pages():
        assert len(page) == 50
        break  # the next page is already on its way
    assert connector._prefetched
    await connector.close()
    assert not connector._prefetched and connector._http._session is None


async def test_a_listing_whose_role_read_fails_leaves_no_risk_read_running(env: Env) -> None:
    connector = env.connector()
    await connector.check()
    env.state.faults.append(Fault("500", 10, path="/v1.0/directoryRoles"))
    with pytest.raises(ProviderUnavailableError, match="generalException"):
        await everyone(connector)
    env.state.faults.clear()
    pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()]
    assert [t for t in pending if "risk_by_user" in repr(t.get_coro())] == []

"""The Okta connector against the Okta simulator over loopback HTTP."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict, CIMultiDictProxy
from support.sim_env import SimEnv, params, serve_env

import connectors
from connectors import (
    Action,
    AuthenticationError,
    ConfigurationError,
    NotFoundError,
    OutcomeUnknownError,
    ProviderUnavailableError,
    RiskLevel,
    UnsupportedActionError,
    ValidationError,
)
from connectors.http import Response
from connectors.okta import OktaConnector
from connectors.okta_api import next_link, risk_band, search_term
from standins.okta import STATE, create_app
from standins.okta_data import OktaState
from standins.okta_iam import factors
from standins.okta_search import parse_search
from standins.seed import HOSTILE_NAMES

TOKEN = "sim-okta-api-token"


class Env(SimEnv):
    state: OktaState

    def connector(self, **settings: Any) -> OktaConnector:
        return self.build(
            OktaConnector, "okta", "okta", {"base_url": self.url, "api_token": TOKEN, **settings}
        )

    def statuses(self, bucket: str | None = None) -> list[int]:
        return [status for _, b, status, _ in self.state.log if bucket is None or b == bucket]


@pytest.fixture
async def env(request) -> AsyncIterator[Env]:
    async with serve_env(Env, create_app(**params(request, identities=300)), STATE) as built:
        yield built


async def everyone(connector: OktaConnector, **filters: Any) -> list[connectors.Identity]:
    return [identity async for identity in connector.list_identities(**filters)]


def active_index(state: OktaState, start: int = 0) -> int:
    return next(i for i in range(start, state.total) if state.status(i) == "ACTIVE")


# --- configuration -----------------------------------------------------------------------------------


def test_registry_builds_and_rejects_bad_settings() -> None:
    good = {"base_url": "https://acme.okta.com", "api_token": "00abcdefghijklmnop"}
    built = connectors.build("okta", "okta", good)
    assert isinstance(built, OktaConnector) and built.tenant_id == "acme" and built.incremental
    assert built.can_undo(Action.DISABLE) and built.supports(Action.CONFIRM_COMPROMISED)
    cases = [
        ({**good, "colour": "blue"}, "unknown setting 'colour'"),
        ({"base_url": good["base_url"]}, "setting 'api_token' is required"),
        ({**good, "base_url": "https://acme.okta.com/api/v1"}, "'base_url' must be the API root"),
        ({**good, "api_token": "short"}, "'api_token' must be an Okta API token"),
        ({**good, "api_token": "has a space in it"}, "'api_token' must be an Okta API token"),
        ({**good, "client_id": "0oa1", "private_key": "x"}, "'api_token' can't be combined with client_id"),
        ({**good, "page_size": 500}, "'page_size' must be a whole number from 1 to 200"),
        ({**good, "concurrency": 0}, "'concurrency' must be a whole number from 1 to 16"),
        (
            {**good, "password_action": "delete"},
            "'password_action' must be one of expire_password, reset_password",
        ),
    ]
    for config, message in cases:
        with pytest.raises(ConfigurationError) as bad:
            connectors.build("okta", "okta", config)
        assert str(bad.value).startswith("connector 'okta' (okta): ") and message in str(bad.value)
        assert "abcdefghijklmnop" not in str(bad.value)  # never the token


def test_risk_rule_never_puts_high_below_high() -> None:
    assert risk_band("NONE", False) == (0, RiskLevel.LOW)
    assert risk_band("LOW", True) == (20, RiskLevel.LOW)
    assert risk_band("MEDIUM", True) == (50, RiskLevel.MEDIUM)
    assert risk_band("HIGH", False) == (75, RiskLevel.HIGH)
    assert risk_band("HIGH", True) == (100, RiskLevel.CRITICAL)
    assert risk_band(None, True) == (None, None) and risk_band("SEVERE", False) == (None, None)


# --- search quoting ----------------------------------------------------------------------------------

INJECTIONS = [
    'x" or status eq "ACTIVE',
    'a\\" or id sw "00u',
    '") or (profile.email sw "',
    'Ada" and lastUpdated gt "1970-01-01T00:00:00.000Z',
    "\\",
]


def test_search_terms_keep_typed_text_one_literal() -> None:
    for text in INJECTIONS:
        term = search_term("profile.login", "sw", text)
        node = parse_search(term, None)
        assert (node.field, node.op, node.values) == ("profile.login", "sw", (text,)), term
    with pytest.raises(ValueError, match="not allowed"):
        search_term("profile.email", "pr", "x")
    with pytest.raises(ValueError, match="control characters"):
        search_term("profile.email", "eq", "a\nb")


async def test_find_by_email_id_and_name_and_injections_find_nothing(env: Env) -> None:
    connector = env.connector()
    person = env.state.user(12)
    by_email = await connector.find_identities(person["profile"]["email"].upper())
    assert [i.id for i in by_email] == [person["id"]]
    assert [i.id for i in await connector.find_identities(person["id"])] == [person["id"]]
    full = f"{person['profile']['firstName']} {person['profile']['lastName']}"
    by_name = await connector.find_identities(full, limit=50)
    assert person["id"] in {i.id for i in by_name}
    assert all(i.raw["profile"]["firstName"] == person["profile"]["firstName"] for i in by_name)
    for text in INJECTIONS:
        assert await connector.find_identities(text) == [], text
    assert 400 not in env.statuses()  # every expression parsed: the quoting held
    with pytest.raises(ValidationError, match="type an email"):
        await connector.find_identities("   ")
    with pytest.raises(ValidationError, match="control characters"):
        await connector.find_identities("ada\x00")


# --- listing -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("concurrency", [1, 4])
async def test_lists_every_user_but_deprovisioned_ones(env: Env, concurrency: int) -> None:
    listed = await everyone(env.connector(concurrency=concurrency, page_size=40))
    expected = {
        env.state.user_id(i) for i in range(env.state.total) if env.state.status(i) != "DEPROVISIONED"
    }
    assert len(listed) == 300 and {i.id for i in listed} == expected
    assert {i.display_name for i in listed} >= set(HOSTILE_NAMES[:6])  # hostile values arrive intact
    assert all(i.provider == "okta" and i.tenant_id == "127.0.0.1" for i in listed)
    # risk from the System Log agrees with each user's own /risk
    for identity in listed[::25]:
        assert (await env.connector().get_identity(identity.id)).risk_level == identity.risk_level


async def test_risk_levels_and_privilege(env: Env) -> None:
    state = env.state
    admin = next(i for i in range(state.total) if state.role_types(i) and state.status(i) != "DEPROVISIONED")
    plain = active_index(state, 40)
    while state.role_types(plain):
        plain = active_index(state, plain + 1)
    for index in (admin, plain):
        await env.admin(f"/_admin/users/{state.user_id(index)}/risk", {"riskLevel": "HIGH"})
    connector = env.connector()
    listed = {i.id: i for i in await everyone(connector)}
    assert listed[state.user_id(admin)].risk_level is RiskLevel.CRITICAL
    assert listed[state.user_id(plain)].risk_level is RiskLevel.HIGH
    # privilege is known for every listed user, from the role assignees, without a /roles read each
    expected_admins = {state.user_id(i) for i in range(state.total) if state.role_types(i)}
    assert len(expected_admins) >= 5
    assert {i.id for i in listed.values() if i.privileged} == expected_admins
    assert not [path for *_, path in state.log if path.endswith("/roles")]
    one = await connector.get_identity(state.user_id(admin))
    assert (one.risk_score, one.risk_level, one.privileged) == (100, RiskLevel.CRITICAL, True)
    assert one.roles == (state.role_types(admin)[0][1],)  # a single read names the roles
    high = await everyone(connector, risk_level=RiskLevel.HIGH)
    assert high and all(i.risk_level is RiskLevel.HIGH for i in high)
    admins = await everyone(connector, privileged=True)
    assert {i.id for i in admins} == expected_admins
    assert await everyone(connector, tenant_id="other") == []


async def test_mfa_read_on_lookups_and_on_request_in_listings(env: Env) -> None:
    state = env.state
    connector = env.connector()

    def active_types(index: int) -> tuple[str, ...]:
        return tuple(sorted(f["factorType"] for f in factors(state, index) if f["status"] == "ACTIVE"))

    enrolled = next(i for i in range(state.total) if len(active_types(i)) >= 2)
    pending = next(
        i
        for i in range(state.total)
        if factors(state, i) and not active_types(i) and state.status(i) != "DEPROVISIONED"
    )
    bare = next(i for i in range(state.total) if not factors(state, i) and state.status(i) == "ACTIVE")
    one = await connector.get_identity(state.user_id(enrolled))
    assert (one.mfa_enrolled, one.mfa_methods) == (True, active_types(enrolled))
    assert (await connector.get_identity(state.user_id(pending))).mfa_enrolled is False  # not activated
    assert (await connector.get_identity(state.user_id(bare))).mfa_enrolled is False
    found = await connector.find_identities(one.email or "")
    assert [(i.id, i.mfa_enrolled) for i in found] == [(one.id, True)]
    # a listing leaves MFA unknown (no request per user) unless the filter asks for it
    before = len(state.log)
    listed = await everyone(connector)
    assert all(i.mfa_enrolled is None for i in listed)
    assert not [path for *_, path in list(state.log)[before:] if path.endswith("/factors")]
    without = await everyone(connector, mfa_enrolled=False)
    assert {i.id for i in without} == {
        state.user_id(i)
        for i in range(state.total)
        if state.status(i) != "DEPROVISIONED" and not active_types(i)
    }
    assert state.user_id(bare) in {i.id for i in without} and state.user_id(enrolled) not in {
        i.id for i in without
    }


@pytest.mark.parametrize("env", [{"itp": False}], indirect=True)
async def test_org_without_itp_has_unknown_risk_said_once(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    connector = env.connector()
    with caplog.at_level(logging.WARNING, logger="connectors.okta"):
        result = await connector.check()
        listed = await everyone(connector)
        one = await connector.get_identity(listed[3].id)
    assert result.ok and "risk unknown: no Identity Threat Protection (HTTP 401 E0000015" in result.message
    assert all(i.risk_level is None and i.risk_score is None for i in [*listed, one])
    assert await everyone(connector, risk_level=RiskLevel.HIGH) == []
    warnings = [r for r in caplog.records if "no Identity Threat Protection" in r.getMessage()]
    assert len(warnings) == 1
    with pytest.raises(UnsupportedActionError, match="no Identity Threat Protection"):
        await connector.confirm_compromised(listed[3].id)


# --- actions -----------------------------------------------------------------------------------------


async def test_suspend_unsuspend_and_their_already_done_cases(env: Env) -> None:
    connector = env.connector()
    user_id = env.state.user_id(active_index(env.state))
    first = await connector.disable(user_id, "phished")
    again = await connector.disable(user_id, "phished")
    assert first.status == again.status == "completed"
    assert "already suspended" in again.message and "already" not in first.message
    assert (await connector.get_identity(user_id)).status == "suspended"
    back = await connector.enable(user_id)
    back_again = await connector.enable(user_id)
    assert "already active" in back_again.message and "already" not in back.message
    assert [a for a in env.state.actions if a[0] == user_id] == [(user_id, "suspend"), (user_id, "unsuspend")]
    assert await connector.action_in_effect(Action.ENABLE, user_id) is True
    assert await connector.action_in_effect(Action.DISABLE, user_id) is False
    assert await connector.action_in_effect(Action.REVOKE_SESSIONS, user_id) is None
    staged = env.state.user_id(next(i for i in range(env.state.total) if env.state.status(i) == "STAGED"))
    with pytest.raises(
        ValidationError, match="can suspend only a user whose status is ACTIVE; this one is staged"
    ):
        await connector.disable(staged, "x")
    with pytest.raises(NotFoundError):
        await connector.disable("00u" + "0" * 17, "x")
    with pytest.raises(NotFoundError):
        await connector.disable("../../api/v1/logs", "x")


async def test_revoke_sessions_and_password_actions(env: Env) -> None:
    user_id = env.state.user_id(active_index(env.state, 10))
    connector = env.connector()
    revoked = await connector.revoke_sessions(user_id)
    assert revoked.status == "completed" and revoked.reference
    assert await connector.revoke_sessions(user_id)  # revoking again is fine
    expired = await connector.force_password_reset(user_id)
    assert "must change it at next sign-in" in expired.message
    assert (await connector.get_identity(user_id)).status == "password_expired"
    again = await connector.force_password_reset(user_id)  # already expired: still success
    assert again.status == "completed" and await connector.action_in_effect(
        Action.FORCE_PASSWORD_RESET, user_id
    )
    other = env.state.user_id(active_index(env.state, 20))
    reset = await env.connector(password_action="reset_password").force_password_reset(other)
    assert "emailed" in reset.message and env.state.status(env.state.index_of(other)) == "RECOVERY"
    assert (user_id, "sessions+tokens") in env.state.actions and (
        other,
        "reset_password",
    ) in env.state.actions


async def test_confirm_compromised_and_dismiss_write_risk_and_the_log(env: Env) -> None:
    connector = env.connector()
    index = active_index(env.state, 30)
    user_id = env.state.user_id(index)
    cursor = (await connector.changes_since(None)).cursor
    await connector.confirm_compromised(user_id)
    assert env.state.risk_level(index)[0] == "HIGH"
    again = await connector.confirm_compromised(user_id)  # already HIGH: success again
    assert again.status == "completed" and await connector.action_in_effect(
        Action.CONFIRM_COMPROMISED, user_id
    )
    changes = await connector.changes_since(cursor)
    assert [i.id for i in changes.identities] == [user_id] and changes.identities[0].risk_level.rank >= 2
    await connector.dismiss_risk(user_id)
    assert env.state.risk_level(index)[0] == "LOW"
    again = await connector.dismiss_risk(user_id)  # already LOW: success again
    assert again.status == "completed" and await connector.action_in_effect(Action.DISMISS_RISK, user_id)
    later = await connector.changes_since(changes.cursor)
    assert [(i.id, i.risk_level) for i in later.identities] == [(user_id, RiskLevel.LOW)]


async def test_changes_since_reads_only_the_log_and_the_changed_users(env: Env) -> None:
    state = env.state
    connector = env.connector()
    cursor = (await connector.changes_since(None)).cursor
    await everyone(connector)
    changed = [state.user_id(i) for i in range(5, 300, 30)]
    admins = {user_id for user_id in changed if state.role_types(state.index_of(user_id))}
    for user_id in changed:
        await env.admin(f"/_admin/users/{user_id}/risk", {"riskLevel": "HIGH"})
    before = len(state.log)
    changes = await connector.changes_since(cursor)
    assert sorted(i.id for i in changes.identities) == sorted(changed)
    assert {i.id for i in changes.identities if i.privileged} == admins
    assert all(
        i.risk_level is (RiskLevel.CRITICAL if i.id in admins else RiskLevel.HIGH) for i in changes.identities
    )
    # one log page and one search for 10 users: no /roles read, even for users now at HIGH
    assert [path for *_, path in list(state.log)[before:]] == ["/api/v1/logs", "/api/v1/users"]
    with pytest.raises(ValidationError, match="list in full"):
        await connector.changes_since("2001-01-01T00:00:00.000Z")


async def test_changes_since_follows_admin_role_grants_and_revokes(env: Env) -> None:
    state = env.state
    connector = env.connector()
    cursor = (await connector.changes_since(None)).cursor
    await everyone(connector)
    plain = active_index(state, 60)
    while state.role_types(plain):
        plain = active_index(state, plain + 1)
    user_id = state.user_id(plain)
    await env.admin(f"/_admin/users/{user_id}/risk", {"riskLevel": "HIGH"})
    changes = await connector.changes_since(cursor)
    assert [(i.id, i.risk_level, i.privileged) for i in changes.identities] == [
        (user_id, RiskLevel.HIGH, False)
    ]
    # granted an admin role: the same HIGH user is now critical, known from the log's grant event
    await env.admin(f"/_admin/users/{user_id}/roles", {"type": "ORG_ADMIN"})
    before = len(state.log)
    changes = await connector.changes_since(changes.cursor)
    assert [(i.id, i.risk_level, i.privileged) for i in changes.identities] == [
        (user_id, RiskLevel.CRITICAL, True)
    ]
    sent = [path for *_, path in list(state.log)[before:]]
    assert "/api/v1/iam/assignees/users" not in sent and not [p for p in sent if p.endswith("/roles")]
    # revoked: that user's roles are read once, and the band drops back to high
    async with aiohttp.ClientSession() as session:
        async with session.delete(f"{env.url}/_admin/users/{user_id}/roles") as answer:
            assert answer.status == 200
    before = len(state.log)
    changes = await connector.changes_since(changes.cursor)
    assert [(i.id, i.risk_level, i.privileged) for i in changes.identities] == [
        (user_id, RiskLevel.HIGH, False)
    ]
    assert [p for *_, p in list(state.log)[before:] if p.endswith("/roles")] == [
        f"/api/v1/users/{user_id}/roles"
    ]
    # a new connector (no admin set yet) reads the set in full before it answers
    fresh = env.connector()
    await env.admin(f"/_admin/users/{user_id}/roles", {"type": "SUPER_ADMIN"})
    before = len(state.log)
    changes = await fresh.changes_since(cursor)
    assert {i.id: i.risk_level for i in changes.identities}[user_id] is RiskLevel.CRITICAL
    assert "/api/v1/iam/assignees/users" in [p for *_, p in list(state.log)[before:]]


# --- auth, paging, rate limits, faults -----------------------------------------------------------------


async def test_wrong_token_is_refused_with_okta_request_id(env: Env) -> None:
    connector = env.connector(api_token="00wrongwrongwrong")
    with pytest.raises(AuthenticationError) as refused:
        await connector.get_identity(env.state.user_id(1))
    assert "HTTP 401: Invalid token provided [E0000011]" in str(refused.value)
    assert refused.value.request_id and refused.value.request_id.startswith("oae")
    result = await connector.check()
    assert not result.ok and "check the API token" in result.message


def _response(links: list[str]) -> Response:
    headers = CIMultiDictProxy(CIMultiDict([("Link", link) for link in links]))
    return Response(200, headers, b"[]", "GET", "https://acme.okta.com/api/v1/users", "idops-1")


def test_next_link_reads_each_header_and_stays_on_the_org() -> None:
    base = "https://acme.okta.com"
    self_link = f'<{base}/api/v1/users?limit=2>; rel="self"'
    next_url = f"{base}/api/v1/users?after=00u2&limit=2"
    assert next_link(_response([self_link, f'<{next_url}>; rel="next"']), base) == next_url
    assert next_link(_response([f'<{next_url}>; rel="next"', self_link]), base) == next_url
    assert next_link(_response([self_link]), base) is None
    with pytest.raises(ProviderUnavailableError, match="another host"):
        next_link(_response([self_link, '<https://evil.example/api/v1/users?after=x>; rel="next"']), base)


@pytest.mark.parametrize(
    "env", [{"rate_limits": {"users": 6, "logs": 6, "user-other": 50}, "rate_window": 1.0}], indirect=True
)
async def test_paces_inside_the_bucket_without_429s(env: Env) -> None:
    listed = await everyone(env.connector(concurrency=1, page_size=20))
    assert len(listed) == 300
    assert env.statuses("users").count(200) == 16 and 429 not in env.statuses()
    assert env.opened[0].bucket("users").waits > 0  # it waited for resets instead of sending into 429s


async def test_rate_limited_answers_are_waited_out(env: Env) -> None:
    await env.admin("/_admin/faults", {"kind": "429", "count": 2})
    connector = env.connector()
    one = await connector.get_identity(env.state.user_id(3))
    assert one.id == env.state.user_id(3) and env.statuses()[:2] == [429, 429]


async def test_faults(env: Env) -> None:
    connector = env.connector(timeout=0.5)
    user_id = env.state.user_id(active_index(env.state, 50))
    await env.admin("/_admin/faults", {"kind": "500", "count": 1})
    assert (await connector.get_identity(user_id)).id == user_id  # a read is retried
    await env.admin("/_admin/faults", {"kind": "malformed", "count": 1})
    with pytest.raises(ProviderUnavailableError, match="not valid JSON"):
        await connector.get_identity(user_id)
    await env.admin(
        "/_admin/faults", {"kind": "500", "count": 1, "path": "/api/v1/users/" + user_id + "/lifecycle"}
    )
    with pytest.raises(OutcomeUnknownError, match="read the user before trying again"):
        await connector.disable(user_id, "x")
    await env.admin(
        "/_admin/faults", {"kind": "drop", "count": 1, "path": "/api/v1/users/" + user_id + "/lifecycle"}
    )
    with pytest.raises(OutcomeUnknownError):
        await connector.enable(user_id)
    await env.admin("/_admin/faults", {"kind": "slow", "count": 3, "delay": 2.0})
    with pytest.raises(ProviderUnavailableError, match=r"did not answer in 0\.5 s"):
        await connector.get_identity(user_id)
    await asyncio.sleep(0)
    assert env.state.actions == []  # neither lifecycle call got through

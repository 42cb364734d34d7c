"""The HomeBase connector against the HomeBase simulator over loopback HTTP: listing, filters, lookups,
actions, error mapping, faults, rate limits, MSP tenants, webhooks and flat memory while streaming."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable
from urllib.parse import parse_qs

import aiohttp
import pytest
from aiohttp import web

import connectors
from bot.config import ConnectorEntry
from connectors import (
    Action,
    ActionResult,
    AuthenticationError,
    ConfigurationError,
    ConflictError,
    ConnectorError,
    NotFoundError,
    PermissionDeniedError,
    ProviderUnavailableError,
    RateLimitedError,
    RiskLevel,
    ValidationError,
)
from connectors.errors import OutcomeUnknownError
from connectors.homebase import HomeBaseConnector, verify_webhook
from connectors.http import MAX_PAUSE
from standins import serving
from standins.homebase import STATE, HomeBaseState, create_app

KEY = "hld_test_pytest0001"
MSP_KEY = "hld_live_msp000001"


@dataclass
class Sim:
    state: HomeBaseState
    url: str

    @property
    def api(self) -> str:
        return self.url + "/v1"

    def connector(self, **settings: Any) -> HomeBaseConnector:
        return HomeBaseConnector.from_config("hb", {"api_key": KEY, "base_url": self.api, **settings})

    async def admin(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, self.url + path, json=body) as response,
        ):
            return response.status, await response.json()

    async def fault(self, **fault: Any) -> None:
        status, answer = await self.admin("POST", "/_admin/faults", fault)
        assert status == 201, answer

    def ids(self) -> list[str]:
        return [self.state.identity_id(i) for i in range(self.state.size)]

    def records(self) -> list[dict]:
        return [self.state.record(i) for i in range(self.state.size)]


@pytest.fixture
async def start() -> AsyncIterator[Callable[..., Awaitable[Sim]]]:
    """Start HomeBase simulators on loopback (settings as `create_app`); all stop at the end."""
    async with contextlib.AsyncExitStack() as stack:

        async def _start(**settings: Any) -> Sim:
            settings.setdefault("api_keys", (KEY,))
            app = create_app(**settings)
            url = await stack.enter_async_context(serving(app))
            return Sim(app[STATE], url)

        yield _start


async def collect(connector: HomeBaseConnector, **filters: Any) -> list[connectors.Identity]:
    return [identity async for identity in connector.list_identities(**filters)]


# --- listing ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("cursor", [True, False], ids=["next_cursor", "page_numbers"])
async def test_lists_every_identity_across_pages(start, cursor: bool) -> None:
    sim = await start(identities=230, cursor=cursor)
    async with sim.connector(page_size=40) as hb:
        pages = [page async for page in hb.iter_pages()]
    assert [len(page) for page in pages] == [40, 40, 40, 40, 40, 30]
    assert [identity.id for page in pages for identity in page] == sim.ids()
    queries = [parse_qs(r["query"]) for r in sim.state.requests_to("/v1/identity", "GET")]
    assert len(queries) == 6 and queries[0]["page"] == ["1"]
    if cursor:
        assert all("cursor" in q and "page" not in q for q in queries[1:])
    else:
        assert [q["page"] for q in queries] == [[str(n)] for n in range(1, 7)]
        assert not any("cursor" in q for q in queries)
    # the key travels only in the Authorization header
    assert not any(KEY in r["query"] for r in sim.state.requests)


@pytest.mark.parametrize(
    ("filters", "matches"),
    [
        ({"risk_level": RiskLevel.HIGH}, lambda r, s: r["risk_level"] == "high"),
        ({"risk_level": RiskLevel.CRITICAL}, lambda r, s: r["risk_level"] == "critical"),
        ({"tenant_id": 1}, lambda r, s: r["tenant_id"] == s.tenant_ids[1]),
        ({"privileged": True}, lambda r, s: r["privileged"]),
        ({"mfa_enrolled": False}, lambda r, s: not r["mfa_enrolled"]),
        ({"provider": "okta"}, lambda r, s: r["provider"] == "okta"),
        (
            {"provider": "azure_ad", "privileged": False, "risk_level": RiskLevel.LOW},
            lambda r, s: r["provider"] == "azure_ad" and not r["privileged"] and r["risk_level"] == "low",
        ),
    ],
    ids=["high", "critical", "tenant", "privileged", "no-mfa", "okta", "combined"],
)
@pytest.mark.parametrize("cursor", [True, False], ids=["next_cursor", "page_numbers"])
async def test_filters_return_exactly_the_matching_identities(start, filters, matches, cursor) -> None:
    sim = await start(identities=400, cursor=cursor)
    if filters.get("tenant_id") == 1:
        filters = {"tenant_id": sim.state.tenant_ids[1]}
    expected = [r["id"] for r in sim.records() if matches(r, sim.state)]
    assert 0 < len(expected) < 400
    async with sim.connector(page_size=25) as hb:
        found = await collect(hb, **filters)
    assert [i.id for i in found] == expected


async def test_filters_follow_risk_changes(start) -> None:
    sim = await start(identities=200)
    target = next(r for r in sim.records() if r["risk_level"] == "low")
    async with sim.connector() as hb:
        before = {i.id for i in await collect(hb, risk_level=RiskLevel.CRITICAL)}
        status, _ = await sim.admin("POST", f"/_admin/identity/{target['id']}/risk", {"risk_score": 97})
        assert status == 200
        after = {i.id for i in await collect(hb, risk_level=RiskLevel.CRITICAL)}
    assert target["id"] not in before
    assert after == before | {target["id"]}


async def test_simulator_serves_a_million_without_building_them(start) -> None:
    sim = await start(identities=1_000_000, rate_limits=False)
    last = sim.state.identity_id(999_999)
    async with sim.connector() as hb:
        identity = await hb.get_identity(last)
        pages = hb.iter_pages(tenant_id=sim.state.tenant_ids[1])
        first_page = await pages.__anext__()
        await pages.aclose()  # type: ignore[attr-defined]
    assert identity.email == sim.state.person(999_999).email
    assert len(first_page) == 100 and {i.tenant_id for i in first_page} == {sim.state.tenant_ids[1]}
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {KEY}"}) as session:
        async with session.get(
            sim.api + "/identity", params={"page": "10000", "per_page": "100"}
        ) as response:
            body = await response.json()
    assert body["pagination"]["total"] == 1_000_000
    assert body["data"][-1]["id"] == last and body["pagination"]["has_more"] is False
    assert len(sim.state.risk_overrides) == 0 and len(sim.state._facts) == 0


# --- lookups ----------------------------------------------------------------------------------------


async def test_get_identity_parses_every_field(start) -> None:
    sim = await start()
    record = sim.state.record(21)
    async with sim.connector() as hb:
        identity = await hb.get_identity(record["id"])
    assert identity.to_dict() == {
        **record,
        "connector": "hb",
        "last_login_at": datetime.fromisoformat(record["last_login_at"].replace("Z", "+00:00")).isoformat(),
        "created_at": datetime.fromisoformat(record["created_at"].replace("Z", "+00:00")).isoformat(),
    }
    assert identity.risk_level is RiskLevel(record["risk_level"])
    assert identity.last_login_at is not None and identity.last_login_at.tzinfo is not None


async def test_hostile_display_names_arrive_unchanged(start) -> None:
    sim = await start(identities=100)
    async with sim.connector() as hb:
        names = {i.display_name for i in await collect(hb)}
    assert "<!channel> urgent" in names and "<https://evil.example/login|Click to verify>" in names


async def test_unknown_and_unsafe_ids_are_not_found(start) -> None:
    sim = await start()
    async with sim.connector() as hb:
        with pytest.raises(NotFoundError) as missing:
            await hb.get_identity("idn_0000000000")
        with pytest.raises(NotFoundError, match="no identity with id"):
            await hb.get_identity("../identity")
    assert missing.value.request_id and missing.value.request_id.startswith("req_")
    assert missing.value.status == 404 and missing.value.code == "resource_not_found"
    # the unsafe id never left the client
    assert [r["path"] for r in sim.state.requests] == ["/v1/identity/idn_0000000000"]


async def test_find_by_id_email_and_name(start) -> None:
    sim = await start(identities=300)
    record = sim.state.record(42)
    async with sim.connector() as hb:
        assert [i.id for i in await hb.find_identities(record["id"])] == [record["id"]]
        assert [i.id for i in await hb.find_identities(record["email"].upper())] == [record["id"]]
        by_name = await hb.find_identities(record["display_name"].lower(), limit=50)
        by_part = await hb.find_identities(record["display_name"].split()[0], limit=3)
        assert await hb.find_identities("nobody@nowhere.example") == []
        assert await hb.find_identities("idn_0000000000") == []
        for blank in ("", "   ", "\t\n"):
            with pytest.raises(ValidationError, match=r"^HomeBase: type an email, an id \(idn_…\) or a name"):
                await hb.find_identities(blank)
    assert record["id"] in [i.id for i in by_name]
    assert all(i.display_name == record["display_name"] for i in by_name)
    assert len(by_part) == 3
    email_queries = [r["query"] for r in sim.state.requests if "filter[email]" in r["query"]]
    assert len(email_queries) == 2


@pytest.mark.parametrize("email_filter", [False, "reject"])
async def test_find_by_email_scans_when_the_filter_is_ignored_or_refused(start, email_filter) -> None:
    sim = await start(identities=300, email_filter=email_filter)
    record = sim.state.record(250)
    async with sim.connector(search_scan_limit=300) as hb:
        found = await hb.find_identities(record["email"])
    async with sim.connector(search_scan_limit=100) as hb:
        beyond_scan = await hb.find_identities(record["email"])
    assert [i.id for i in found] == [record["id"]]
    assert beyond_scan == []
    first = sim.state.requests_to("/v1/identity")[0]
    assert "filter[email]" in first["query"] and first["status"] == (400 if email_filter else 200)


# --- actions ----------------------------------------------------------------------------------------


async def test_actions_change_state_and_return_the_request_id(start) -> None:
    sim = await start()
    target = sim.state.identity_id(7)
    async with sim.connector() as hb:
        revoked = [await hb.revoke_sessions(target), await hb.revoke_sessions(target)]
        reset = await hb.force_password_reset(target)
        disabled = await hb.run_action(Action.DISABLE, target, "phished <!channel>")
        identity = await hb.get_identity(target)
    assert sim.state.sessions_revoked[target] == 2
    assert sim.state.password_resets[target] == 1
    assert identity.status == "disabled"
    status, log = await sim.admin("GET", "/_admin/actions")
    assert status == 200
    assert [(a["action"], a["identity_id"]) for a in log["data"]] == [
        ("revoke_sessions", target),
        ("revoke_sessions", target),
        ("force_password_reset", target),
        ("disable", target),
    ]
    assert log["data"][-1]["reason"] == "phished <!channel>"
    results = [*revoked, reset, disabled]
    assert all(r.status == ActionResult.COMPLETED and r.connector == "hb" for r in results)
    assert [r.reference for r in results] == [a["request_id"] for a in log["data"]]


async def test_second_disable_is_a_conflict_and_a_missing_reason_is_named(start) -> None:
    sim = await start()
    first, second = sim.state.identity_id(3), sim.state.identity_id(4)
    async with sim.connector() as hb:
        await hb.disable(first, "compromised")
        with pytest.raises(ConflictError, match="already disabled") as conflict:
            await hb.disable(first, "again")
        with pytest.raises(ValidationError, match="reason") as invalid:
            await hb.disable(second, " ")
        with pytest.raises(NotFoundError):
            await hb.revoke_sessions("idn_0000000000")
    assert conflict.value.status == 409 and conflict.value.request_id
    assert invalid.value.status == 422 and invalid.value.code == "validation_error"
    assert sim.state.disabled == {3: "compromised"}


async def test_disable_without_reason_answers_422_with_fields(start) -> None:
    sim = await start()
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {KEY}"}) as session:
        url = f"{sim.api}/identity/{sim.state.identity_id(0)}/disable"
        async with session.post(url, json={}) as response:
            body = await response.json()
    assert response.status == 422
    assert body["error"]["code"] == "validation_error"
    assert body["error"]["fields"] == {"reason": "required"}
    assert body["error"]["request_id"] == response.headers["X-Request-Id"]


# --- credentials, errors and faults -----------------------------------------------------------------


async def test_wrong_key_is_an_authentication_error(start) -> None:
    sim = await start()
    async with sim.connector(api_key="hld_live_notthekey") as hb:
        with pytest.raises(AuthenticationError, match="API key was refused") as refused:
            await collect(hb)
        checked = await hb.check()
    assert refused.value.request_id and refused.value.status == 401
    assert not checked.ok and "refused" in checked.message and "notthekey" not in checked.message
    assert checked.request_id


async def test_check_reports_what_the_key_sees(start) -> None:
    sim = await start(identities=123)
    async with sim.connector() as hb:
        result = await hb.check()
    assert result.ok and "123 identities" in result.message and result.request_id


@pytest.mark.parametrize(
    ("code", "error"),
    [
        ("unauthorized", AuthenticationError),
        ("forbidden", PermissionDeniedError),
        ("tenant_suspended", PermissionDeniedError),
        ("resource_not_found", NotFoundError),
        ("validation_error", ValidationError),
        ("resource_conflict", ConflictError),
        ("action_not_reversible", ConflictError),
        # a 5xx answer to an action: HomeBase may have acted, so the outcome is unknown
        ("integration_unavailable", OutcomeUnknownError),
        ("internal_error", OutcomeUnknownError),
    ],
)
async def test_each_error_code_maps_to_its_class(start, code: str, error: type) -> None:
    sim = await start()
    await sim.fault(kind="error", code=code, path="/v1/identity/", method="POST")
    async with sim.connector() as hb:
        with pytest.raises(error) as raised:
            await hb.revoke_sessions(sim.state.identity_id(0))
    assert type(raised.value) is error
    assert raised.value.code == code and raised.value.request_id.startswith("req_")
    assert str(raised.value).startswith("HomeBase: ") and "Injected" in str(raised.value)
    assert sim.state.sessions_revoked == {}


async def test_suspended_tenant_is_permission_denied(start) -> None:
    sim = await start()
    tenant = sim.state.tenant_ids[0]
    status, _ = await sim.admin("POST", f"/_admin/tenants/{tenant}/suspend", {"suspended": True})
    assert status == 200
    async with sim.connector() as hb:
        with pytest.raises(PermissionDeniedError, match="suspended"):
            await hb.get_identity(sim.state.identity_id(0))
        other = await hb.get_identity(sim.state.identity_id(1))
    assert other.tenant_id == sim.state.tenant_ids[1]


async def test_429_waits_at_least_retry_after_then_recovers(start) -> None:
    sim = await start(identities=50)
    await sim.fault(kind="429", count=2, retry_after=0.2)
    async with sim.connector() as hb:
        found = await collect(hb)
    assert len(found) == 50
    seen = sim.state.requests_to("/v1/identity")
    assert [r["status"] for r in seen] == [429, 429, 200]
    assert all(later["at"] - earlier["at"] >= 0.2 for earlier, later in zip(seen, seen[1:]))
    assert len({r["client_request_id"] for r in seen}) == 1  # one logical request, three attempts


async def test_a_retry_after_past_two_minutes_is_reported_at_once_not_waited(start) -> None:
    sim = await start(identities=5)
    await sim.fault(kind="429", count=1, retry_after=1e9)
    async with sim.connector() as hb:
        with pytest.raises(RateLimitedError) as limited:
            await collect(hb)
        assert limited.value.retry_after == 1e9 and "(request id req_" in str(limited.value)
        # every later call waits at most the cap, then asks again
        assert 60 < hb._limiters["reads"]._blocked_until - time.monotonic() <= MAX_PAUSE


async def test_429_on_an_action_is_retried_because_nothing_happened(start) -> None:
    sim = await start()
    target = sim.state.identity_id(9)
    await sim.fault(kind="429", retry_after=0.1, method="POST")
    async with sim.connector() as hb:
        result = await hb.revoke_sessions(target)
    assert result.status == ActionResult.COMPLETED
    assert sim.state.sessions_revoked[target] == 1
    assert [r["status"] for r in sim.state.requests_to("/v1/identity/", "POST")] == [429, 200]


async def test_500_on_get_is_retried(start) -> None:
    sim = await start()
    target = sim.state.identity_id(5)
    await sim.fault(kind="500", count=2)
    async with sim.connector() as hb:
        identity = await hb.get_identity(target)
    assert identity.id == target
    assert [r["status"] for r in sim.state.requests] == [500, 500, 200]


async def test_500_on_post_is_not_retried(start) -> None:
    sim = await start()
    target = sim.state.identity_id(5)
    await sim.fault(kind="500", method="POST")
    async with sim.connector() as hb:
        with pytest.raises(ProviderUnavailableError, match="went wrong") as failed:
            await hb.force_password_reset(target)
    assert failed.value.status == 500 and failed.value.request_id.startswith("req_")
    assert [r["status"] for r in sim.state.requests] == [500]


async def test_slow_answer_times_out_with_the_request_id(start) -> None:
    sim = await start()
    await sim.fault(kind="slow", delay=0.5, count=3)
    async with sim.connector(timeout=0.15) as hb:
        with pytest.raises(ProviderUnavailableError) as timed_out:
            await hb.get_identity(sim.state.identity_id(0))
    assert str(timed_out.value).startswith("HomeBase did not answer in 0.15 s (request id idops-")
    assert len(sim.state.requests) == 3  # idempotent: retried twice


async def test_dropped_connection(start) -> None:
    sim = await start()
    target = sim.state.identity_id(2)
    await sim.fault(kind="drop", method="GET")
    await sim.fault(kind="drop", method="POST")
    async with sim.connector() as hb:
        assert (await hb.get_identity(target)).id == target
        with pytest.raises(ProviderUnavailableError, match="dropped the connection") as dropped:
            await hb.disable(target, "x")
    assert dropped.value.request_id
    assert sim.state.disabled == {}


async def test_malformed_json_is_a_clear_error(start) -> None:
    sim = await start()
    await sim.fault(kind="malformed")
    async with sim.connector() as hb:
        with pytest.raises(ProviderUnavailableError, match="not valid JSON"):
            await collect(hb)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("risk_score", "high"),
        ("risk_score", 140),
        ("email", 5),
        ("last_login_at", "yesterday"),
        ("roles", "admin"),
    ],
)
async def test_bad_identity_fields_are_named(start, field: str, value: Any) -> None:
    sim = await start()
    await sim.fault(kind="corrupt", field=field, value=value)
    async with sim.connector() as hb:
        with pytest.raises(ProviderUnavailableError, match=f"bad '{field}'") as bad:
            await collect(hb)
    assert bad.value.request_id.startswith("req_")


@pytest.mark.parametrize("missing", ["risk_score", "risk_level"])
async def test_missing_half_of_the_risk_is_derived(start, missing: str) -> None:
    sim = await start()
    record = sim.state.record(0)
    await sim.fault(kind="corrupt", field=missing, value=None)
    async with sim.connector() as hb:
        identity = await hb.get_identity(record["id"])
    level = RiskLevel(record["risk_level"])
    if missing == "risk_level":
        assert (identity.risk_score, identity.risk_level) == (record["risk_score"], level)
    else:
        assert identity.risk_level is level
        assert identity.risk_score == {"low": 20, "medium": 50, "high": 75, "critical": 100}[level.value]


# --- pacing -----------------------------------------------------------------------------------------


async def test_pauses_when_the_quota_is_spent_instead_of_hitting_429(start) -> None:
    sim = await start(identities=100, rate_limits={"reads": 3}, rate_window=1.0)
    async with sim.connector(page_size=20) as hb:
        found = await collect(hb)
    assert len(found) == 100
    statuses = [r["status"] for r in sim.state.requests]
    assert statuses == [200] * 5  # five pages, no 429: the client waited for the window to reset


async def test_without_pacing_the_same_listing_meets_429s_and_waits_them_out(start) -> None:
    sim = await start(identities=60, rate_limits={"reads": 2}, rate_window=1.0)
    async with HomeBaseConnector("hb", api_key=KEY, base_url=sim.api, page_size=20, pacing=False) as hb:
        found = await collect(hb)
    assert len(found) == 60
    statuses = [r["status"] for r in sim.state.requests]
    assert 429 in statuses and statuses.count(200) == 3


async def test_rate_limit_429_from_the_simulator_is_recovered(start) -> None:
    sim = await start(rate_limits={"actions": 1}, rate_window=1.0)
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {KEY}"}) as session:
        url = f"{sim.api}/identity/{sim.state.identity_id(1)}/revoke-sessions"
        async with session.post(url, json={}) as response:
            assert response.headers["X-RateLimit-Remaining"] == "0"
        async with session.post(url, json={}) as response:
            body = await response.json()
            assert response.status == 429 and body["error"]["code"] == "rate_limited"
            assert int(response.headers["Retry-After"]) >= 1
    async with sim.connector() as hb:
        result = await hb.revoke_sessions(sim.state.identity_id(1))
    assert result.status == ActionResult.COMPLETED
    assert sim.state.sessions_revoked[sim.state.identity_id(1)] == 2


# --- MSP tenants ------------------------------------------------------------------------------------


async def test_msp_key_acts_on_its_tenant(start) -> None:
    sim = await start(identities=120, tenants=3, api_keys=(), msp_keys=(MSP_KEY,))
    tenant = sim.state.tenant_ids[2]
    other = next(r["id"] for r in sim.records() if r["tenant_id"] != tenant)
    async with sim.connector(api_key=MSP_KEY, tenant_id=tenant) as hb:
        found = await collect(hb)
        with pytest.raises(NotFoundError):
            await hb.get_identity(other)
    assert len(found) == 40 and {i.tenant_id for i in found} == {tenant}
    assert {r["tenant"] for r in sim.state.requests} == {tenant}
    async with sim.connector(api_key=MSP_KEY) as hb:
        with pytest.raises(ValidationError, match="X-Tenant-Id"):
            await collect(hb)


# --- configuration and registry ---------------------------------------------------------------------


async def test_built_from_config_through_the_registry(start, monkeypatch) -> None:
    sim = await start(identities=30)
    entry = ConnectorEntry.model_validate(
        {"name": "hb-prod", "kind": "homebase", "base_url": sim.api, "api_key_env": "HB_KEY", "page_size": 10}
    )
    hb = connectors.build(entry.kind, entry.name, entry.settings({"HB_KEY": KEY}))
    assert isinstance(hb, HomeBaseConnector) and hb.name == "hb-prod"
    assert hb.capabilities == {Action.FORCE_PASSWORD_RESET, Action.REVOKE_SESSIONS, Action.DISABLE}
    assert hb.label == "HomeBase"
    async with hb:
        found = await collect(hb)
    assert len(found) == 30 and {i.connector for i in found} == {"hb-prod"}
    assert len(sim.state.requests) == 3


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"api_key": KEY, "colour": "red"}, "unknown setting 'colour'"),
        ({}, "setting 'api_key' is required"),
        ({"api_key": "sk_live_abcdefgh"}, "'api_key' must be a HomeBase key (hld_live_… or hld_test_…)"),
        ({"api_key": KEY, "page_size": 500}, "'page_size' must be a whole number from 1 to 100"),
        ({"api_key": KEY, "page_size": "abcdefgh"}, "'page_size' must be a whole number from 1 to 100"),
        ({"api_key": KEY, "timeout": "fast"}, "'timeout' must be a number of seconds above 0, at most 300"),
        ({"api_key": KEY, "search_scan_limit": -1}, "'search_scan_limit' must be a whole number from 0"),
        ({"api_key": KEY, "base_url": "ftp://x"}, "'base_url' must be an http(s) URL like https://"),
        ({"api_key": KEY, "tenant_id": "a b"}, "'tenant_id' must be a HomeBase tenant id like ten_…"),
        ({"api_key": KEY, "tenant_id": ""}, "'tenant_id' must be a HomeBase tenant id"),
    ],
)
def test_bad_settings_are_named(settings: dict, message: str) -> None:
    with pytest.raises(ConfigurationError) as bad:
        connectors.build("homebase", "hb", settings)
    assert message in str(bad.value) and "connector 'hb'" in str(bad.value)
    assert "abcdefgh" not in str(bad.value)


async def test_injected_session_is_used_and_left_open(start) -> None:
    sim = await start(identities=10)
    async with aiohttp.ClientSession() as session:
        hb = connectors.build("homebase", "hb", {"api_key": KEY, "base_url": sim.api}, session=session)
        async with hb:
            assert len(await collect(hb)) == 10
        assert not session.closed
        assert hb._http._session is session
    own = sim.connector()
    await own.get_identity(sim.state.identity_id(0))
    opened = own._http._session
    await own.close()
    assert opened is not None and opened.closed


# --- webhooks ---------------------------------------------------------------------------------------


async def test_risk_change_sends_a_signed_webhook(start) -> None:
    received: list[tuple[bytes, str]] = []

    async def receive(request: web.Request) -> web.Response:
        received.append((await request.read(), request.headers.get("X-HLD-Signature-256", "")))
        return web.Response(status=204)

    receiver = web.Application()
    receiver.router.add_post("/webhooks/homebase", receive)
    async with serving(receiver) as receiver_url:
        sim = await start(webhook_url=receiver_url + "/webhooks/homebase", webhook_secret="whsec-test")
        target = next(
            r for r in sim.records() if r["risk_level"] == "low" and r["tenant_id"].startswith("ten_")
        )
        path = f"/_admin/identity/{target['id']}/risk"
        status, answer = await sim.admin("POST", path, {"risk_score": 82})
        unchanged = await sim.admin("POST", path, {"risk_score": 82})
        bad = [
            await sim.admin("POST", path, {"risk_score": 101}),
            await sim.admin("POST", "/_admin/identity/idn_0000000000/risk", {"risk_score": 5}),
        ]
    assert status == 200 and answer["delivery"]["status"] == 204
    assert len(received) == 1
    body, signature = received[0]
    assert verify_webhook("whsec-test", body, signature)
    assert not verify_webhook("other-secret", body, signature)
    event = json.loads(body)
    assert set(event) == {"id", "type", "created_at", "tenant_id", "data"}
    assert event["type"] == "identity.risk_changed" and event["tenant_id"] == target["tenant_id"]
    assert event["data"] == {
        "identity_id": target["id"],
        "previous_risk_score": target["risk_score"],
        "risk_score": 82,
        "previous_risk_level": "low",
        "risk_level": "critical",
    }
    assert unchanged[1]["event"] is None
    assert [code for code, _ in bad] == [400, 404]
    assert sim.state.record(sim.state.index_of(target["id"]) or 0)["risk_level"] == "critical"


async def test_admin_rejects_bad_fault_requests(start) -> None:
    sim = await start()
    answers = [
        await sim.admin("POST", "/_admin/faults", {"kind": "explode"}),
        await sim.admin("POST", "/_admin/faults", {"kind": "429", "count": 0}),
        await sim.admin("POST", "/_admin/faults", {"kind": "500", "colour": "red"}),
        await sim.admin("POST", "/_admin/faults", ["not", "an", "object"]),
    ]
    assert [status for status, _ in answers] == [400, 400, 400, 400]
    assert "kind must be one of" in answers[0][1]["error"] and "colour" in answers[2][1]["error"]
    assert sim.state.faults == []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"per_page": "101"}, "per_page"),
        ({"page": "0"}, "page"),
        ({"filter[risk_level]": "severe"}, "filter[risk_level]"),
        ({"filter[privileged]": "yes"}, "filter[privileged]"),
        ({"filter[provider]": "ldap"}, "filter[provider]"),
        ({"cursor": "!!!"}, "cursor"),
        ({"cursor": "é"}, "cursor"),
        ({"sort": "name"}, "sort"),
        ({"api_key": KEY}, "api_key"),
    ],
)
async def test_simulator_names_bad_query_parameters(start, params: dict, field: str) -> None:
    sim = await start()
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {KEY}"}) as session:
        async with session.get(sim.api + "/identity", params=params) as response:
            body = await response.json()
    assert response.status == 400
    assert body["error"]["code"] == "validation_error" and field in body["error"]["fields"]
    assert body["error"]["docs_url"].endswith("#validation_error")


async def test_every_error_is_a_connector_error_fit_for_a_person(start) -> None:
    """No KeyError or aiohttp exception escapes: an unreachable HomeBase is a clear message too."""
    sim = await start()
    async with sim.connector(base_url="http://127.0.0.1:9/v1", timeout=2) as hb:
        with pytest.raises(ConnectorError, match=r"could not be reached at http://127\.0\.0\.1:9/v1"):
            await hb.get_identity(sim.state.identity_id(0))

"""Google Workspace listing modes against the simulator over loopback HTTP: the plain listing and the
partitioned one (email-prefix searches at once, checked against the last plain listing)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from collections.abc import AsyncIterator
from typing import Any, Optional

import pytest
from aiohttp import ClientSession, TraceConfig

import connectors
from connectors import ConfigurationError, Identity, ProviderUnavailableError, RiskLevel
from connectors.google_workspace import GoogleWorkspaceConnector
from connectors.google_workspace_api import AlertIndex, user_identity
from connectors.google_workspace_listing import PREFIXES
from connectors.http import Response
from connectors.models import parse_datetime
from connectors.partitions import merged
from standins import serving
from standins.google_workspace import STATE, WorkspaceState, create_app, generate_key

KEY = generate_key()


@pytest.fixture
async def sim() -> AsyncIterator[tuple[WorkspaceState, str]]:
    app = create_app(key=KEY, identities=1300, quota_per_minute=None)
    async with serving(app) as url:
        yield app[STATE], url


def build(url: str, session: Optional[ClientSession] = None, **settings: Any) -> GoogleWorkspaceConnector:
    config = {
        "service_account_json": json.dumps(KEY),
        "admin_email": "secops-bot@acme.example",
        "token_url": f"{url}/token",
        "base_url": url,
        "alert_center_url": url,
        **settings,
    }
    built = connectors.build("google_workspace", "gw", config, session=session)
    assert isinstance(built, GoogleWorkspaceConnector)
    return built


async def listed_ids(connector: GoogleWorkspaceConnector) -> list[str]:
    return [identity.id async for identity in connector.list_identities()]


def user_queries(state: WorkspaceState) -> list[str]:
    return [r.query.get("query", "") for r in state.log if r.path.endswith("/users")]


def test_listing_settings_are_checked() -> None:
    base = {"service_account_json": json.dumps(KEY), "admin_email": "admin@acme.example"}
    built = connectors.build("google_workspace", "gw", base)
    assert (built.listing, built.listing_concurrency, built.full_listing_seconds) == ("sequential", 8, 86400)
    for bad in ({"listing": "parallel"}, {"listing_concurrency": 0}, {"full_listing_hours": 0}):
        with pytest.raises(ConfigurationError) as caught:
            connectors.build("google_workspace", "gw", {**base, **bad})
        assert next(iter(bad)) in str(caught.value)


async def test_partitioned_listing_pages_prefixes_at_once_and_lists_each_user_once(sim: Any) -> None:
    state, url = sim
    async with build(url, listing="partitioned", listing_concurrency=6) as connector:
        first = await listed_ids(connector)  # no plain listing yet: this one is plain
        assert set(user_queries(state)) == {""}
        everyone = [state.user_id(i) for i in range(1300)]
        assert first == everyone
        state.log.clear()
        second = await listed_ids(connector)
    queries = user_queries(state)
    assert set(queries) == {f"email:{prefix}*" for prefix in PREFIXES}  # no plain listing needed
    assert sorted(second) == sorted(everyone) and len(second) == len(set(second))
    # one user in ten has an alias, often under another first letter: found twice, listed once
    aliased = [i for i in range(1300) if i % 10 == 3]
    assert any(state.user(i)["aliases"][0][0] != state.user(i)["primaryEmail"][0] for i in aliased)


async def test_a_user_search_does_not_find_sends_the_listing_back_to_the_plain_one(
    sim: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Google's search lags (or a username begins with a symbol no partition covers): a user of the last
    plain listing missing from the searches is found by finishing with the plain listing."""
    state, url = sim
    async with build(url, listing="partitioned", listing_concurrency=4) as connector:
        await listed_ids(connector)
        state.unindexed = {7, 1299}
        state.log.clear()
        with caplog.at_level(logging.INFO, logger="connectors.google_workspace_listing"):
            ids = await listed_ids(connector)
        assert sorted(ids) == sorted(state.user_id(i) for i in range(1300)) and len(ids) == len(set(ids))
        queries = user_queries(state)
        assert queries.count("") == 3 and all(q.startswith("email:") for q in queries[:-3])
        assert "missed 2 user(s) of the last full listing" in caplog.text
        # a plain listing older than full_listing_hours is redone before partitioning again
        state.unindexed.clear()
        state.log.clear()
        connector._baseline_at -= 25 * 3600
        await listed_ids(connector)
        assert set(user_queries(state)) == {""}


async def test_a_refused_search_leaves_the_plain_listing_to_list_everyone(
    sim: Any, caplog: pytest.LogCaptureFixture
) -> None:
    state, url = sim
    async with build(url, listing="partitioned", listing_concurrency=2) as connector:
        await listed_ids(connector)
        await _fault(url, "400", 1, path="/admin/directory/v1/users")
        state.log.clear()
        with caplog.at_level(logging.WARNING, logger="connectors.google_workspace_listing"):
            ids = await listed_ids(connector)
        assert sorted(ids) == sorted(state.user_id(i) for i in range(1300)) and len(ids) == len(set(ids))
        assert "a partition's search was refused" in caplog.text and "Invalid Input" in caplog.text
        assert "without searches for the next 24 hours" in caplog.text
        assert user_queries(state)[-3:] == ["", "", ""]
        # the symbol prefixes go first (Google does not document them): a refusal comes before the rest
        assert user_queries(state)[0] == "email:_*"
        # a refusal that lasts is not met at every sweep: plain listings until full_listing_hours passed
        state.log.clear()
        assert sorted(await listed_ids(connector)) == sorted(ids)
        assert set(user_queries(state)) == {""}
        connector._refused_at -= 25 * 3600
        state.log.clear()
        assert sorted(await listed_ids(connector)) == sorted(ids)
        assert set(user_queries(state)) == {f"email:{prefix}*" for prefix in PREFIXES}


async def test_filtered_and_sequential_listings_stay_plain(sim: Any) -> None:
    state, url = sim
    async with build(url, listing="partitioned") as connector:
        await listed_ids(connector)
        state.log.clear()
        enrolled = [i async for i in connector.list_identities(mfa_enrolled=True)]
        assert enrolled and set(user_queries(state)) == {"isEnrolledIn2Sv=true"}
    state.log.clear()
    async with build(url) as plain:
        await listed_ids(plain)
        await listed_ids(plain)
    assert set(user_queries(state)) == {""} and plain._baseline is None  # keeps no ids


async def test_the_sequential_listing_sends_the_next_request_before_handing_over_a_page(sim: Any) -> None:
    sent: list[str] = []

    async def on_sent(session: Any, context: Any, params: Any) -> None:
        if params.url.path.endswith("/users"):
            sent.append(params.url.query.get("pageToken", ""))

    trace = TraceConfig()
    trace.on_request_headers_sent.append(on_sent)
    async with ClientSession(trace_configs=[trace]) as session:
        connector = build(sim[1], session=session)
        seen_when_handed = [len(sent) async for _ in connector.iter_pages()]
    # 1,300 users: pages of 500, 500, 300; the request for page n+1 is on the wire before page n is
    # converted and handed over, so Google (the simulator) serves it meanwhile
    assert seen_when_handed == [2, 3, 3] and sent[0] == "" and all(sent[1:])


async def test_a_failing_partition_fails_the_listing_and_stops_the_others(sim: Any) -> None:
    state, url = sim
    async with build(url, listing="partitioned", listing_concurrency=4, timeout=5) as connector:
        await listed_ids(connector)
        await _fault(url, "malformed", 1, path="/admin/directory/v1/users")
        with pytest.raises(ProviderUnavailableError):
            await listed_ids(connector)
    before = len(state.log)
    await asyncio.sleep(0.05)
    assert len(state.log) == before  # no request outlives the listing


async def test_merged_cancels_workers_when_the_consumer_stops() -> None:
    started: list[str] = []
    stopped: list[str] = []

    def partition(name: str) -> Any:
        async def pages() -> AsyncIterator[str]:
            started.append(name)
            try:
                for n in range(100):
                    await asyncio.sleep(0)
                    yield f"{name}{n}"
            finally:
                stopped.append(name)

        return pages

    got = []
    async with contextlib.aclosing(merged([partition(p) for p in "abcd"], 2)) as pages:
        async for page in pages:
            got.append(page)
            if len(got) == 5:
                break
    assert started == ["a", "b"] and sorted(stopped) == ["a", "b"]
    everything = [page async for page in merged([partition(p) for p in "xyz"], 2)]
    assert sorted(everything) == sorted(f"{p}{n}" for p in "xyz" for n in range(100))


async def _fault(url: str, kind: str, count: int, **extra: Any) -> None:
    async with ClientSession() as session:
        body = {"kind": kind, "count": count, **extra}
        async with session.post(f"{url}/_admin/faults", json=body) as response:
            assert response.status == 200, await response.text()


def test_a_listed_user_converts_as_the_general_parsers_read_it() -> None:
    response = Response(200, {}, b"", "GET", "http://127.0.0.1/admin/directory/v1/users", "idops-test")
    user = {
        "id": "1001",
        "primaryEmail": "ada@acme.example",
        "aliases": ["lovelace@acme.example"],
        "name": {"fullName": "Ada Lovelace"},
        "isAdmin": False,
        "isDelegatedAdmin": True,
        "isEnrolledIn2Sv": True,
        "suspended": False,
        "archived": True,
        "customerId": "C01",
        "lastLoginTime": "2026-11-30T08:15:02.123Z",
        "creationTime": "2024-02-29T23:59:59.000+01:00",  # not Google's own form: the general parser
    }
    alerts = AlertIndex({"lovelace@acme.example": (75, ("Suspicious login",))}, 0.0)
    identity = user_identity("gw", user, response, alerts)
    assert identity == Identity(
        id="1001",
        connector="gw",
        email="ada@acme.example",
        display_name="Ada Lovelace",
        tenant_id="C01",
        status="archived",
        risk_score=75,
        risk_level=RiskLevel.HIGH,
        mfa_enrolled=True,
        privileged=True,
        last_login_at=parse_datetime("2026-11-30T08:15:02.123Z"),
        provider="google_workspace",
        provider_id="1001",
        roles=("delegated_admin",),
        created_at=parse_datetime("2024-02-29T23:59:59.000+01:00"),
        raw=user,
    )
    assert identity.last_login_at is not None and identity.last_login_at.tzinfo is not None
    assert identity.raw is user
    # built past the constructor: exactly Identity's fields, still frozen, as the constructor's would be
    assert vars(identity) == vars(Identity(**vars(identity)))
    assert list(vars(identity)) == [f.name for f in dataclasses.fields(Identity)]
    with pytest.raises(dataclasses.FrozenInstanceError):
        identity.status = "active"  # type: ignore[misc]
    assert hash(identity) == hash(Identity(**vars(identity))) and dataclasses.replace(identity) == identity
    # an alias with a higher alert than the primary address wins, and one in another case still matches
    alerts.by_email["ada@acme.example"] = (50, ("User reported phishing",))
    assert user_identity("gw", user, response, alerts).risk_score == 75
    upper = {**user, "aliases": ["LOVELACE@acme.example", 7]}
    assert user_identity("gw", upper, response, alerts).risk_score == 75
    assert user_identity("gw", {**user, "aliases": None}, response, alerts).risk_score == 50
    # a users.get answer names every part; Google's "never" and unreadable timestamps are unknown
    odd = {
        **user,
        "name": {"givenName": "Ada", "familyName": "Lovelace"},
        "lastLoginTime": "1970-01-01T00:00:00.000Z",
        "creationTime": "2024-13-45T99:00:00.000Z",
        "isEnrolledIn2Sv": "yes",
        "customerId": 7,
    }
    converted = user_identity("gw", odd, response, None)
    assert converted.display_name == "Ada Lovelace" and converted.last_login_at is None
    assert (converted.created_at, converted.mfa_enrolled, converted.tenant_id, converted.risk_level) == (
        None,
        None,
        None,
        None,
    )
    with pytest.raises(ProviderUnavailableError, match="a user without an id"):
        user_identity("gw", {**user, "id": 1001}, response, None)

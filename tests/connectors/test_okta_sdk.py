"""The official Okta Python SDK (`okta` 3.x), pointed at the simulator, sees what our connector sees:
every user across pages, one user read by id, and a suspend."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from okta.client import Client as OktaClient
from okta.pagination import PaginationHelper

import connectors
from standins import serving
from standins.okta import STATE, create_app

TOKEN = "sim-okta-api-token"


async def sdk_listing(url: str) -> tuple[list, object, list[str]]:
    """Every user through the SDK's own paging helper (the `after` cursor of the next link), one read by
    id, one suspend."""
    async with OktaClient({"orgUrl": url, "token": TOKEN}) as client:
        users, resp, err = await client.list_users(limit=50)
        assert err is None, err
        pages = 1
        while (cursor := PaginationHelper.extract_next_cursor(resp.headers)) is not None:
            more, resp, err = await client.list_users(limit=50, after=cursor)
            assert err is None, err
            users.extend(more)
            pages += 1
        one, _, err = await client.get_user(users[123].id)
        assert err is None, err
        _, _, err = await client.suspend_user(users[124].id)
        assert err is None, err
    return users, one, [str(pages)]


async def test_sdk_and_connector_list_the_same_users(monkeypatch: pytest.MonkeyPatch) -> None:
    # the SDK refuses a plain-http org URL unless its testing switch is on: set here only
    monkeypatch.setenv("OKTA_TESTING_TESTINGDISABLEHTTPSCHECK", "true")
    app = create_app(identities=420)
    async with serving(app) as url:
        sdk_users, sdk_one, pages = await sdk_listing(url)
        config = {"base_url": url, "api_token": TOKEN}
        async with connectors.build("okta", "okta", config) as connector:
            ours = [identity async for identity in connector.list_identities()]
            our_one = await connector.get_identity(sdk_one.id)  # type: ignore[attr-defined]
            suspended = await connector.get_identity(sdk_users[124].id)
    assert int(pages[0]) == 9  # 420 users, 50 a page: the SDK followed every next link
    assert len(sdk_users) == len(ours) == 420
    assert {(u.id, u.profile.email) for u in sdk_users} == {(i.id, i.email) for i in ours}
    by_id = {i.id: i for i in ours}
    assert all(by_id[u.id].display_name == u.profile.display_name for u in sdk_users)
    assert all(
        by_id[u.id].status == str(u.status.value).lower() for u in sdk_users if u.id != sdk_users[124].id
    )
    assert (sdk_one.id, sdk_one.profile.email) == (our_one.id, our_one.email)  # type: ignore[attr-defined]
    assert suspended.status == "suspended"
    assert (sdk_users[124].id, "suspend") in app[STATE].actions


async def test_sdk_reads_role_assignees_and_factors_like_the_connector(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Both endpoints lie outside the spec subset: the simulator follows Okta's documented shapes, and the
    SDK's own models (strict about e.g. phone numbers) must parse them."""
    monkeypatch.setenv("OKTA_TESTING_TESTINGDISABLEHTTPSCHECK", "true")
    app = create_app(identities=900)
    state = app[STATE]
    async with serving(app) as url:
        sdk_admins: list[str] = []
        sdk_factors: dict[str, tuple[str, ...]] = {}
        async with OktaClient({"orgUrl": url, "token": TOKEN}) as client:
            after = None
            while True:
                page, _, err = await client.list_users_with_role_assignments(limit=7, after=after)
                assert err is None, err
                sdk_admins.extend(user.id for user in page.value)
                if page.links is None or page.links.next is None:
                    break
                after = parse_qs(urlsplit(page.links.next.href).query)["after"][0]
            for index in range(0, 40, 3):
                factors, _, err = await client.list_factors(state.user_id(index))
                assert err is None, err
                sdk_factors[state.user_id(index)] = tuple(
                    sorted(f.factor_type.value for f in factors if f.status.value == "ACTIVE")
                )
        async with connectors.build("okta", "okta", {"base_url": url, "api_token": TOKEN}) as connector:
            ours = {i.id: i async for i in connector.list_identities()}
            looked_up = {user_id: await connector.get_identity(user_id) for user_id in sdk_factors}
    assert len(sdk_admins) == len(set(sdk_admins)) > 7  # several pages, no repeats
    assert set(sdk_admins) == {user_id for user_id, identity in ours.items() if identity.privileged}
    assert any(sdk_factors.values()) and not all(sdk_factors.values())
    assert {k: v.mfa_methods for k, v in looked_up.items()} == sdk_factors
    assert all(v.mfa_enrolled is bool(sdk_factors[k]) for k, v in looked_up.items())

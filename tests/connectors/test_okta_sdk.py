"""The official Okta Python SDK (`okta` 3.x), pointed at the simulator, sees what our connector sees:
every user across pages, one user read by id, and a suspend."""

from __future__ import annotations

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

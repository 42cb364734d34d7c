"""The official SailPoint Python SDK, pointed at the simulator, sees what our connector sees."""

from __future__ import annotations

import asyncio

from sailpoint import ApiClient, Configuration, ConfigurationParams
from sailpoint.accounts import AccountsApi, AccountToggleRequest
from support.sailpoint_sdk import sdk_listing

import connectors
from connectors import Action
from standins import serving
from standins.sailpoint import STATE, create_app

CLIENT_ID, CLIENT_SECRET = "sdk-client", "sdk-secret"


async def test_sdk_and_connector_list_the_same_identities() -> None:
    # three pages (250, 250, 120), the last one short; the SDK runs in a process of its own (see
    # support/sailpoint_sdk.py: its cost per identity grows with every module this process imported)
    app = create_app(identities=620, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    async with serving(app) as url:
        sdk = await sdk_listing(url, CLIENT_ID, CLIENT_SECRET, page=250, pick=123)
        config = {"base_url": url, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
        async with connectors.build("sailpoint", "sp", config) as connector:
            ours = [identity async for identity in connector.list_identities()]
            our_one = await connector.get_identity(sdk["one"]["id"])
    assert len(sdk["identities"]) == len(ours) == 620
    assert [(i["id"], i["email"]) for i in sdk["identities"]] == [(i.id, i.email) for i in ours]
    assert [i["name"] for i in sdk["identities"]] == [i.display_name for i in ours]
    assert (sdk["one"]["id"], sdk["one"]["email"]) == (our_one.id, our_one.email)
    assert sdk["one"]["id"] == ours[123].id
    paths = {record.path for record in app[STATE].log}
    assert "/identities/v1" in paths and "/v2024/identities" in paths  # each used its own API
    listed = [r for r in app[STATE].log if r.path == "/identities/v1"]
    assert len(listed) >= 3  # the SDK's Paginator went through every page


def sdk_toggle(base_url: str, account_id: str) -> tuple[str, str]:
    """Disable then enable one account through the SDK's AccountsApi; the two task ids (blocking)."""
    params = ConfigurationParams()
    params.base_url, params.client_id, params.client_secret = base_url, CLIENT_ID, CLIENT_SECRET
    with ApiClient(Configuration(params)) as client:
        api = AccountsApi(client)
        disabled = api.disable_account_v1(account_id, AccountToggleRequest(forceProvisioning=True))
        enabled = api.enable_account_v1(account_id, AccountToggleRequest())
    return disabled.id, enabled.id


async def test_sdk_enable_and_our_enable_leave_the_same_state() -> None:
    app = create_app(identities=40, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    state = app[STATE]
    async with serving(app) as url:
        account = state.account_id(9, 0)
        disabled, enabled = await asyncio.wait_for(asyncio.to_thread(sdk_toggle, url, account), 20)
        assert state.tasks[disabled]["action"] == "disable" and state.tasks[enabled]["action"] == "enable"
        assert (
            account not in state.disabled_accounts
        )  # the SDK parsed both 202 answers as AccountsAsyncResult
        config = {"base_url": url, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
        async with connectors.build("sailpoint", "sp", config) as connector:
            target = state.identity_id(9)
            await connector.disable(target, "token theft")
            assert (await connector.enable(target)).status == "queued"
            assert await connector.action_in_effect(Action.ENABLE, target) is True
    assert not {state.account_id(9, n) for n in range(2)} & state.disabled_accounts
    posted = {(record.method, record.path) for record in state.log}
    assert ("POST", f"/accounts/v1/{account}/enable") in posted  # the SDK's path
    assert ("POST", f"/v3/accounts/{account}/enable") in posted  # ours

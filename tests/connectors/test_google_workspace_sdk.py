"""Google's own client pointed at the simulator sees what our connector sees: google-api-python-client
with the static discovery document it ships for admin directory_v1, and google-auth service-account
credentials (the simulator's token URI, `with_subject` for domain-wide delegation)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from google.oauth2 import service_account
from googleapiclient.discovery import build

import connectors
from connectors.google_workspace_api import DIRECTORY_SCOPES
from standins import serving
from standins.google_workspace import STATE, create_app, generate_key

KEY = generate_key()
ADMIN = "secops-bot@acme.example"


def sdk_session(url: str) -> tuple[list[dict], dict, dict]:
    """Every user across pages, one read by email, one suspended (blocking: httplib2)."""
    credentials = service_account.Credentials.from_service_account_info(
        {**KEY, "token_uri": f"{url}/token"}, scopes=list(DIRECTORY_SCOPES)
    ).with_subject(ADMIN)
    service = build(
        "admin",
        "directory_v1",
        credentials=credentials,
        static_discovery=True,
        client_options={"api_endpoint": url},
    )
    users: list[dict] = []
    request: Any = service.users().list(customer="my_customer", maxResults=500)
    while request is not None:
        page = request.execute()
        users += page.get("users", [])
        request = service.users().list_next(request, page)
    one = service.users().get(userKey=users[123]["primaryEmail"]).execute()
    suspended = service.users().patch(userKey=users[7]["id"], body={"suspended": True}).execute()
    # the search the partitioned listing pages: an email prefix (primary addresses and aliases)
    found: list[dict] = []
    request = service.users().list(customer="my_customer", maxResults=100, query="email:m*")
    while request is not None:
        page = request.execute()
        found += page.get("users", [])
        request = service.users().list_next(request, page)
    return users, one, suspended, found


async def test_google_client_and_connector_agree() -> None:
    app = create_app(key=KEY, identities=1207)
    async with serving(app) as url:
        state = app[STATE]
        assert not state.user(7)["suspended"]
        sdk_users, sdk_one, sdk_suspended, sdk_m = await asyncio.wait_for(
            asyncio.to_thread(sdk_session, url), 60
        )
        sdk_tokens = state.tokens_issued
        config = {
            "service_account_json": json.dumps(KEY),
            "admin_email": ADMIN,
            "token_url": f"{url}/token",
            "base_url": url,
            "alert_center_url": url,
        }
        async with connectors.build("google_workspace", "gw", config) as connector:
            ours = [identity async for identity in connector.list_identities()]
            our_one = await connector.get_identity(sdk_one["primaryEmail"])
            our_seven = await connector.get_identity(sdk_users[7]["id"])
            again = await connector.disable(sdk_users[7]["id"], "already done by the SDK")
    assert len(sdk_users) == len(ours) == 1207
    assert [(u["id"], u["primaryEmail"]) for u in sdk_users] == [(i.id, i.email) for i in ours]
    assert [u["name"]["fullName"] for u in sdk_users] == [i.display_name for i in ours]
    assert [u["isAdmin"] or u["isDelegatedAdmin"] for u in sdk_users] == [i.privileged for i in ours]
    assert (sdk_one["id"], sdk_one["primaryEmail"]) == (our_one.id, our_one.email)
    assert sdk_suspended["suspended"] is True and our_seven.status == "suspended"
    assert again.message == "was already suspended"
    addresses = [(u["primaryEmail"], *u.get("aliases", ())) for u in sdk_users]
    assert [u["id"] for u in sdk_m] == [
        u["id"] for u, mine in zip(sdk_users, addresses) if any(a.startswith("m") for a in mine)
    ]
    assert any(not u["primaryEmail"].startswith("m") for u in sdk_m)  # found through an alias
    assert sdk_tokens == 1 and state.tokens_issued == 2  # one token each, both checked by the simulator
    pages = [r for r in state.log if r.path == "/admin/directory/v1/users"]
    assert len([p for p in pages if "query" not in p.query]) == 6  # three pages each

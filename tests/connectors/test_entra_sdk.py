"""Microsoft's own Python SDK (msgraph-sdk with azure-identity and MSAL), pointed at the Entra simulator,
sees what our connector sees: every user through its page iterator, one user, a session revocation and
the risky users.

azure-identity and MSAL insist on an https authority, so the credential is given the real
`https://login.microsoftonline.com` and a transport that carries those requests to the simulator on
loopback (it refuses any other host: nothing leaves 127.0.0.1). Kiota allows plain http to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

from azure.core.pipeline.transport import RequestsTransport
from azure.identity import ClientSecretCredential
from kiota_abstractions.base_request_configuration import RequestConfiguration
from kiota_authentication_azure.azure_identity_authentication_provider import (
    AzureIdentityAuthenticationProvider,
)
from msgraph import GraphRequestAdapter, GraphServiceClient
from msgraph.generated.identity_protection.risky_users.risky_users_request_builder import (
    RiskyUsersRequestBuilder,
)
from msgraph.generated.users.users_request_builder import UsersRequestBuilder
from msgraph_core.tasks.page_iterator import PageIterator
from support.sims import entra_connector

from connectors.entra_api import NO_RISK, risk_band

AUTHORITY = "login.microsoftonline.com"


class LoopbackTransport(RequestsTransport):
    """Sends the credential's https requests for login.microsoftonline.com to the simulator."""

    def __init__(self, target: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.target = target
        self.seen: list[str] = []

    def send(self, request: Any, **kwargs: Any) -> Any:
        parts = urlsplit(request.url)
        assert parts.scheme == "https" and parts.hostname == AUTHORITY, request.url  # nothing else
        self.seen.append(parts.path)
        request.headers["X-Forwarded-Host"], request.headers["X-Forwarded-Proto"] = AUTHORITY, "https"
        request.url = self.target + parts.path + (f"?{parts.query}" if parts.query else "")
        return super().send(request, **kwargs)


def sdk_session(url: str, tenant: str, client_id: str, secret: str) -> dict:
    """List, read, revoke and list risky users with the SDK (in its own thread and event loop)."""
    transport = LoopbackTransport(url)
    credential = ClientSecretCredential(
        tenant, client_id, secret, authority=f"https://{AUTHORITY}", transport=transport
    )
    auth = AzureIdentityAuthenticationProvider(
        credential, scopes=["https://graph.microsoft.com/.default"], allowed_hosts=["127.0.0.1"]
    )
    adapter = GraphRequestAdapter(auth)
    adapter.base_url = f"{url}/v1.0"
    client = GraphServiceClient(request_adapter=adapter)

    async def run() -> dict:
        query = UsersRequestBuilder.UsersRequestBuilderGetQueryParameters(
            select=["id", "displayName", "mail", "userPrincipalName", "accountEnabled"], top=100
        )
        first = await client.users.get(request_configuration=RequestConfiguration(query_parameters=query))
        users: list = []

        def keep(user: Any) -> bool:
            users.append(user)
            return True

        iterator = PageIterator(first, adapter)  # pages parsed as the first one's type
        await iterator.iterate(keep)
        one = await client.users.by_user_id(users[123].id).get()
        revoked = await client.users.by_user_id(users[5].id).revoke_sign_in_sessions.post()
        risky_query = RiskyUsersRequestBuilder.RiskyUsersRequestBuilderGetQueryParameters(top=5)
        risky_first = await client.identity_protection.risky_users.get(
            request_configuration=RequestConfiguration(query_parameters=risky_query)
        )
        risky: list = []

        def keep_risky(row: Any) -> bool:
            risky.append(row)
            return True

        pages = PageIterator(risky_first, adapter)
        await pages.iterate(keep_risky)
        return {"users": users, "one": one, "revoked": revoked, "risky": risky, "auth": transport.seen}

    return asyncio.run(run())


async def test_sdk_and_connector_agree() -> None:
    # kiota parses ~30 users/s here: small, but three pages
    async with entra_connector(230) as (state, connector):
        url = connector.graph_url  # the simulator's: Graph and its token endpoint
        sdk = await asyncio.wait_for(
            asyncio.to_thread(sdk_session, url, state.tenant_id, state.client_id, state.client_secret), 60
        )
        ours = [identity async for identity in connector.list_identities()]
        our_one = await connector.get_identity(sdk["one"].id)
        risky_bands = await connector.risk_by_user()
    users = sdk["users"]
    assert len(users) == len(ours) == 230
    assert [(u.id, u.mail or u.user_principal_name) for u in users] == [(i.id, i.email) for i in ours]
    assert [u.display_name for u in users] == [i.display_name for i in ours]  # hostile names intact
    assert [("active" if u.account_enabled else "disabled") for u in users] == [i.status for i in ours]
    assert (sdk["one"].id, sdk["one"].user_principal_name) == (our_one.id, state.upn(123))
    assert sdk["revoked"].value is True and state.revoked[5] == 1
    # the SDK sees every riskyUser record; the connector keeps those not at "no risk", same bands
    assert len(sdk["risky"]) == len(list(state.risky_indices()))
    expected = {
        r.id: risk_band(r.risk_state.value, r.risk_level.value)
        for r in sdk["risky"]
        if risk_band(r.risk_state.value, r.risk_level.value) != NO_RISK
    }
    assert risky_bands is not None and {k: v[:2] for k, v in risky_bands.items()} == expected
    # MSAL found the token endpoint through the OpenID discovery document, then used it once
    assert any(path.endswith("/v2.0/.well-known/openid-configuration") for path in sdk["auth"])
    assert sum(path.endswith("/oauth2/v2.0/token") for path in sdk["auth"]) == 1
    sdk_pages = [r for r in state.log if r.path == "/v1.0/users" and r.query.get("$top") == "100"]
    assert len(sdk_pages) == 3 and "$skiptoken" in sdk_pages[2].query  # it followed @odata.nextLink
    risky_pages = [r for r in state.log if r.path.endswith("/riskyUsers") and r.query.get("$top") == "5"]
    assert len(risky_pages) == 3

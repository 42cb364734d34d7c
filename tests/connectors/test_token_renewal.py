"""The one 401 path of the OAuth connectors (`connectors.tokens.TokenCache.authorized`), for each of
SailPoint, Okta (service app), Entra ID and Google Workspace against its simulator over loopback: a 401
renews the token once and the call goes through; a second 401 is an error, never a third try; calls
refused together fetch one new token between them.

The refusals come from the simulators' fault API: kind "401" (the vendor's own invalid-token answer
while the token is still good) and "expire_token" (every issued token forgotten)."""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Callable

import pytest
from aiohttp import web
from support.keys import rsa_pem_pair
from support.sim_env import SimEnv, serve_env

import connectors
from connectors import AuthenticationError
from standins import entra as entra_sim
from standins import google_workspace as google_sim
from standins import okta as okta_sim
from standins import sailpoint as sailpoint_sim
from standins.okta_auth import OAuthApp

OKTA_CLIENT = "0oasimserviceapp0001"


@functools.cache
def okta_key() -> tuple[str, str]:
    return rsa_pem_pair()  # made on first use: only the Okta cases need it


@functools.cache
def google_key() -> dict:
    return google_sim.generate_key()


@dataclass(frozen=True)
class Vendor:
    """How to serve one simulator, build its connector, name its users and read what it logged."""

    kind: str
    app: Callable[[], web.Application]
    state_key: Any
    settings: Callable[[Any, str], dict[str, Any]]
    user_id: Callable[[Any, int], str]
    tokens_issued: Callable[[Any], int]
    requests: Callable[[Any], list[tuple[str, int]]]  # (path, status) of each API request
    refusal: str  # what the vendor's own 401 body says, as the connector's error quotes it


VENDORS = {
    "sailpoint": Vendor(
        kind="sailpoint",
        app=lambda: sailpoint_sim.create_app(identities=20),
        state_key=sailpoint_sim.STATE,
        settings=lambda state, url: {
            "base_url": url,
            "client_id": state.client_id,
            "client_secret": state.client_secret,
        },
        user_id=lambda state, i: state.identity_id(i),
        tokens_issued=lambda state: state.tokens_issued,
        requests=lambda state: [(r.path, r.status) for r in state.log],
        refusal="JWT validation failed: JWT is not valid",
    ),
    "okta": Vendor(
        kind="okta",
        app=lambda: okta_sim.create_app(identities=20, oauth=OAuthApp(OKTA_CLIENT, okta_key()[1])),
        state_key=okta_sim.STATE,
        settings=lambda state, url: {"base_url": url, "client_id": OKTA_CLIENT, "private_key": okta_key()[0]},
        user_id=lambda state, i: state.user_id(i),
        tokens_issued=lambda state: sum(1 for _, b, status, _ in state.log if b == "token" and status == 200),
        requests=lambda state: [(path, status) for _, bucket, status, path in state.log if bucket != "token"],
        refusal="Invalid token provided [E0000011]",
    ),
    "entra": Vendor(
        kind="entra",
        app=lambda: entra_sim.create_app(users=20),
        state_key=entra_sim.STATE,
        settings=lambda state, url: {
            "tenant_id": state.tenant_id,
            "client_id": state.client_id,
            "client_secret": "sim-secret",
            "authority_url": url,
            "graph_url": url,
        },
        user_id=lambda state, i: state.user_id(i),
        tokens_issued=lambda state: state.tokens_issued,
        requests=lambda state: [(r.path, r.status) for r in state.log],
        refusal="InvalidAuthenticationToken: Access token is empty or not valid.",
    ),
    "google_workspace": Vendor(
        kind="google_workspace",
        app=lambda: google_sim.create_app(key=google_key(), identities=20),
        state_key=google_sim.STATE,
        settings=lambda state, url: {
            "service_account_json": json.dumps(google_key()),
            "admin_email": "secops-bot@acme.example",
            "token_url": f"{url}/token",
            "base_url": url,
            "alert_center_url": url,
        },
        user_id=lambda state, i: state.user_id(i),
        tokens_issued=lambda state: state.tokens_issued,
        requests=lambda state: [(r.path, r.status) for r in state.log],
        refusal="Request had invalid authentication credentials.",
    ),
}


class Env(SimEnv):
    vendor: Vendor

    def connector(self) -> connectors.Connector:
        settings = self.vendor.settings(self.state, self.url)
        return self.build(connectors.Connector, self.vendor.kind, "c", settings)

    def user(self, index: int) -> str:
        return self.vendor.user_id(self.state, index)

    def tokens(self) -> int:
        return self.vendor.tokens_issued(self.state)

    def statuses(self, path: str) -> list[int]:
        return [status for logged, status in self.vendor.requests(self.state) if logged == path]

    async def user_path(self, connector: connectors.Connector, index: int) -> str:
        """The path of the request that reads this user: the first one `get_identity` sends."""
        before = len(self.vendor.requests(self.state))
        assert (await connector.get_identity(self.user(index))).id == self.user(index)
        return self.vendor.requests(self.state)[before][0]

    async def fault(self, kind: str, **extra: Any) -> None:
        await self.admin("/_admin/faults", {"kind": kind, **extra})


@pytest.fixture(params=sorted(VENDORS))
async def env(request: pytest.FixtureRequest) -> AsyncIterator[Env]:
    vendor = VENDORS[request.param]
    async with serve_env(Env, vendor.app(), vendor.state_key) as built:
        built.vendor = vendor
        yield built


async def test_a_401_renews_the_token_once_and_the_call_goes_through(env: Env) -> None:
    connector = env.connector()
    path = await env.user_path(connector, 1)
    assert env.tokens() == 1
    await env.fault("401", count=1, path=path, method="GET")  # the token refused though still good
    assert (await connector.get_identity(env.user(1))).id == env.user(1)
    assert env.tokens() == 2 and env.statuses(path) == [200, 401, 200]
    await connector.get_identity(env.user(2))  # the renewed token is kept
    assert env.tokens() == 2


async def test_a_second_401_is_an_error_not_a_third_try(env: Env) -> None:
    connector = env.connector()
    path = await env.user_path(connector, 1)
    await env.fault("401", count=3, path=path, method="GET")
    with pytest.raises(AuthenticationError) as refused:
        await connector.get_identity(env.user(1))
    assert refused.value.status == 401 and env.vendor.refusal in str(refused.value)
    assert env.statuses(path) == [200, 401, 401]  # sent twice, then given up
    assert env.tokens() == 2  # renewed once, not once per refusal
    assert [fault.remaining for fault in env.state.faults] == [1]  # the third refusal never asked for
    env.state.faults.clear()
    assert (await connector.get_identity(env.user(1))).id == env.user(1)
    assert env.tokens() == 2 and env.statuses(path)[-1] == 200


async def test_calls_refused_together_fetch_one_new_token(env: Env) -> None:
    connector = env.connector()
    await connector.get_identity(env.user(0))
    paths = [await env.user_path(connector, i) for i in range(1, 8)]
    assert env.tokens() == 1
    await env.fault("expire_token")  # every token the simulator issued is now refused
    # the last call's refusal comes late, after the others renewed the token: it must not drop the new one
    await env.fault("slow", count=1, delay=0.5, path=paths[-1], method="GET")
    found = await asyncio.gather(*(connector.get_identity(env.user(i)) for i in range(1, 8)))
    assert [identity.id for identity in found] == [env.user(i) for i in range(1, 8)]
    assert env.tokens() == 2  # seven refusals, one fresh token
    assert [env.statuses(path)[1:] for path in paths] == [[401, 200]] * 7
    await connector.get_identity(env.user(8))
    assert env.tokens() == 2

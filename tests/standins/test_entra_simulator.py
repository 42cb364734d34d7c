"""The Entra ID simulator answers as Microsoft's token endpoint and Graph do (shapes, errors, limits)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from support.sims import sim_process

import connectors
from connectors import RiskLevel
from standins import serving
from standins.entra import create_app
from standins.entra_odata import FilterError, parse_filter
from standins.entra_state import STATE, EntraState


class Sim:
    def __init__(self, state: EntraState, url: str, session: aiohttp.ClientSession) -> None:
        self.state, self.url, self.session = state, url, session
        self.token = ""

    async def sign_in(self, **extra: str) -> tuple[int, dict]:
        form = {
            "client_id": self.state.client_id,
            "client_secret": self.state.client_secret,
            "grant_type": "client_credentials",
            "scope": "https://graph.microsoft.com/.default",
            **extra,
        }
        async with self.session.post(f"{self.url}/{self.state.tenant_id}/oauth2/v2.0/token", data=form) as r:
            body = await r.json()
            self.token = body.get("access_token", "")
            return r.status, body

    async def get(self, path: str, headers: Any = None, **params: str) -> tuple[int, Any, Any]:
        send = {
            "Authorization": f"Bearer {self.token}",
            "client-request-id": "3f1c0e3a-0000-4000-8000-0000000000aa",
        }
        async with self.session.get(self.url + path, params=params, headers={**send, **(headers or {})}) as r:
            return r.status, await r.json(), r.headers


@pytest.fixture
async def sim(request) -> AsyncIterator[Sim]:
    app = create_app(**{"users": 120, **getattr(request, "param", {})})
    async with serving(app) as url, aiohttp.ClientSession() as session:
        harness = Sim(app[STATE], url, session)
        yield harness


async def test_token_accepts_msal_fields_and_refuses_bad_input(sim: Sim) -> None:
    status, body = await sim.sign_in(
        client_info="1", claims='{"access_token": {"xms_cc": {"values": ["CP1"]}}}'
    )
    assert status == 200 and body["token_type"] == "Bearer" and body["expires_in"] == 3599
    status, body = await sim.sign_in(client_secret="wrong")
    assert status == 401 and body["error"] == "invalid_client" and body["error_codes"] == [7000215]
    status, body = await sim.sign_in(scope="User.Read")
    assert status == 400 and body["error"] == "invalid_scope"
    status, body = await sim.sign_in(grant_type="password")
    assert status == 400 and body["error"] == "unsupported_grant_type"
    assert all("client_secret" not in form for form in sim.state.token_forms)  # never kept


async def test_openid_discovery_names_the_token_endpoint(sim: Sim) -> None:
    path = f"/{sim.state.tenant_id}/v2.0/.well-known/openid-configuration"
    async with sim.session.get(sim.url + path) as response:
        doc = await response.json()
    assert doc["token_endpoint"] == f"{sim.url}/{sim.state.tenant_id}/oauth2/v2.0/token"
    assert doc["issuer"] == f"{sim.url}/{sim.state.tenant_id}/v2.0"
    async with sim.session.get(
        sim.url + path,
        headers={"X-Forwarded-Host": "login.microsoftonline.com", "X-Forwarded-Proto": "https"},
    ) as response:
        forwarded = await response.json()
    assert forwarded["token_endpoint"].startswith("https://login.microsoftonline.com/")


async def test_users_collection_shapes_paging_and_select(sim: Sim) -> None:
    await sim.sign_in()
    status, body, headers = await sim.get("/v1.0/users", **{"$top": "50", "$select": "id,mail"})
    assert status == 200 and set(body) == {"@odata.context", "@odata.nextLink", "value"}
    assert all(set(row) == {"id", "mail"} for row in body["value"])
    assert headers["client-request-id"] == "3f1c0e3a-0000-4000-8000-0000000000aa" and headers["request-id"]
    seen = [row["id"] for row in body["value"]]
    link = body["@odata.nextLink"]
    while link:
        async with sim.session.get(link, headers={"Authorization": f"Bearer {sim.token}"}) as r:
            page = await r.json()
        seen += [row["id"] for row in page["value"]]
        link = page.get("@odata.nextLink")
    assert seen == [sim.state.user_id(i) for i in range(120)]
    status, body, _ = await sim.get("/v1.0/users", **{"$top": "1000"})
    assert status == 400 and "between 1 and 999" in body["error"]["message"]
    status, body, _ = await sim.get("/v1.0/users", **{"$select": "id,password"})
    assert status == 400 and "password" in body["error"]["message"]


async def test_errors_have_graphs_shape(sim: Sim) -> None:
    status, body, _ = await sim.get("/v1.0/users")
    assert status == 401 and body["error"]["code"] == "InvalidAuthenticationToken"
    await sim.sign_in()
    status, body, headers = await sim.get("/v1.0/users/00000000-0000-4000-8000-000000000000")
    assert status == 404 and body["error"]["code"] == "Request_ResourceNotFound"
    inner = body["error"]["innerError"]
    assert inner["request-id"] == headers["request-id"] and inner["client-request-id"].startswith("3f1c0e3a")
    status, body, _ = await sim.get("/v1.0/users", **{"$filter": "mail eq 'a' or", "$top": "1"})
    assert status == 400 and "Invalid filter clause" in body["error"]["message"]
    status, body, _ = await sim.get("/v1.0/users", **{"$filter": "endswith(mail,'.example')"})
    assert status == 400 and body["error"]["code"] == "Request_UnsupportedQuery"
    status, body, _ = await sim.get(
        "/v1.0/users",
        headers={"ConsistencyLevel": "eventual"},
        **{"$filter": "endswith(mail,'.example')", "$count": "true"},
    )
    assert status == 200 and body["@odata.count"] >= len(body["value"]) > 0


def test_filter_literals_keep_doubled_quotes_inside() -> None:
    node = parse_filter(
        "mail eq 'o''brien@x' or userPrincipalName eq 'a'' or ''1''=''1'",
        {"mail": "eq", "userPrincipalName": "eq"},
    )
    assert (
        node.op == "or"
        and node.parts[0].values == ("o'brien@x",)
        and node.parts[1].values == ("a' or '1'='1",)
    )
    for bad in ("mail eq 'x", "password eq 'x'", "mail gt 'x'", "mail eq 'x' )"):
        with pytest.raises(FilterError):
            parse_filter(bad, {"mail": "eq"})


async def test_admin_risk_throttling_and_p2(sim: Sim) -> None:
    await sim.sign_in()
    user = sim.state.user_id(3)
    async with sim.session.post(f"{sim.url}/_admin/users/{user}/risk", json={"riskLevel": "high"}) as r:
        assert r.status == 200 and (await r.json())["riskState"] == "atRisk"
    async with sim.session.post(f"{sim.url}/_admin/users/{user}/risk", json={"riskLevel": "severe"}) as r:
        assert r.status == 400
    status, body, _ = await sim.get(f"/v1.0/identityProtection/riskyUsers/{user}")
    assert status == 200 and body["riskLevel"] == "high"
    async with sim.session.post(f"{sim.url}/_admin/settings", json={"p2": False, "throttle": [2, 60]}) as r:
        assert r.status == 200
    status, body, _ = await sim.get("/v1.0/identityProtection/riskyUsers")
    assert status == 403 and "not licensed" in body["error"]["message"]
    await sim.get("/v1.0/users")  # the second of two allowed
    status, body, headers = await sim.get("/v1.0/users")
    assert status == 429 and body["error"]["code"] == "TooManyRequests" and int(headers["Retry-After"]) >= 1
    async with sim.session.post(f"{sim.url}/_admin/faults", json={"kind": "melt"}) as r:
        assert r.status == 400


@pytest.mark.parametrize("sim", [{"users": 1_000_000}], indirect=True)
async def test_a_million_users_without_holding_them(sim: Sim) -> None:
    await sim.sign_in()
    status, body, _ = await sim.get(
        "/v1.0/users", headers={"ConsistencyLevel": "eventual"}, **{"$count": "true", "$top": "1"}
    )
    assert status == 200 and body["@odata.count"] == 1_000_000
    last = sim.state.user_id(999_999)
    status, body, _ = await sim.get(f"/v1.0/users/{last}")
    assert status == 200 and body["id"] == last
    assert sim.state.risk == {} and sim.state.enabled == {}


def test_main_prints_generated_credentials_and_serves() -> None:
    with sim_process("entra", "--identities", "5", drop=("ENTRA_",)) as sim:
        # `# Entra ID simulator: …`, five `NAME=value` lines and `export …` (standins.print_env)
        printed = sim.env()
        url = printed.pop("ENTRA_AUTHORITY_URL")
        assert printed.pop("ENTRA_GRAPH_URL") == url
        creds = printed
        assert set(creds) == {"ENTRA_TENANT_ID", "ENTRA_CLIENT_ID", "ENTRA_CLIENT_SECRET"}

        async def use() -> int:
            async with aiohttp.ClientSession() as session:
                form = {
                    "grant_type": "client_credentials",
                    "client_id": creds["ENTRA_CLIENT_ID"],
                    "client_secret": creds["ENTRA_CLIENT_SECRET"],
                    "scope": "https://graph.microsoft.com/.default",
                }
                async with session.post(
                    f"{url}/{creds['ENTRA_TENANT_ID']}/oauth2/v2.0/token", data=form
                ) as r:
                    return r.status

        assert asyncio.run(asyncio.wait_for(use(), 10)) == 200
        sim.process.terminate()  # SIGTERM, as a service manager stops it: a clean exit
        assert sim.process.wait(timeout=10) == 0


async def test_a_risk_score_sets_the_record_the_connector_reads_as_that_band(sim: Sim) -> None:
    user = sim.state.user_id(2)
    config = {
        "tenant_id": sim.state.tenant_id,
        "client_id": sim.state.client_id,
        "client_secret": sim.state.client_secret,
        "authority_url": sim.url,
        "graph_url": sim.url,
    }
    async with connectors.build("entra", "e", config) as connector:
        for score in (92, 60, 35, 5):
            async with sim.session.post(
                f"{sim.url}/_admin/identity/{user}/risk", json={"risk_score": score}
            ) as r:
                assert r.status == 200
            assert (await connector.get_identity(user)).risk_level is RiskLevel.for_score(score)
    async with sim.session.post(f"{sim.url}/_admin/identity/{user}/risk", json={"risk_score": 101}) as r:
        assert r.status == 400

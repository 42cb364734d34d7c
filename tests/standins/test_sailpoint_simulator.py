"""The SailPoint simulator over loopback HTTP: spec shapes, filters, paging, auth, rate limit, admin API."""

from __future__ import annotations

import asyncio
import copy
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from openapi_schema_validator import OAS30ReadValidator, oas30_format_checker
from support.sims import sim_process

from bot import cli
from standins import serving
from standins.sailpoint import IDENTITY_FILTERS, STATE, create_app, parse_filter
from standins.seed import person

REPO = Path(__file__).resolve().parents[2]
SPEC_PATH = REPO.parent / "shared" / "specs" / "sailpoint-isc-v2024-identities.openapi.json"
if not SPEC_PATH.exists():  # CI clones main with shared/ beside it; a worktree may sit one level deeper
    SPEC_PATH = Path("/work/shared/specs/sailpoint-isc-v2024-identities.openapi.json")
SPEC = json.loads(SPEC_PATH.read_text())


def validator(schema: dict) -> OAS30ReadValidator:
    """A validator for `schema` whose `#/components/...` refs resolve inside the spec."""
    return OAS30ReadValidator(
        {**schema, "components": SPEC["components"]}, format_checker=oas30_format_checker
    )


def spec_errors(schema: dict, document: Any) -> list[str]:
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator(schema).iter_errors(document)]


def response_schema(path: str, method: str, status: str) -> dict:
    answer = SPEC["paths"][path][method]["responses"][status]
    if "$ref" in answer:
        answer = SPEC["components"]["responses"][answer["$ref"].rsplit("/", 1)[1]]
    return copy.deepcopy(answer["content"]["application/json"]["schema"])


def properties(name: str) -> set[str]:
    """Every property the spec names for schema `name` (through allOf)."""
    schema = SPEC["components"]["schemas"][name]
    names = set(schema.get("properties", {}))
    for part in schema.get("allOf", []):
        if "$ref" in part:
            names |= properties(part["$ref"].rsplit("/", 1)[1])
        names |= set(part.get("properties", {}))
    return names


class Sim:
    """A running simulator plus a client session and a token for it."""

    def __init__(self, app, url: str, session: aiohttp.ClientSession) -> None:
        self.app, self.url, self.session = app, url, session
        self.state = app[STATE]
        self.token = ""

    async def login(
        self,
        client_id: str = "sim-client",
        secret: str = "sim-secret",  # noqa: S107
    ) -> aiohttp.ClientResponse:
        form = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
        response = await self.session.post(f"{self.url}/oauth/token", data=form)
        if response.status == 200:
            self.token = (await response.json())["access_token"]
        return response

    async def get(self, path: str, **params: Any) -> tuple[int, Any, aiohttp.ClientResponse]:
        headers = {"Authorization": f"Bearer {self.token}"}
        async with self.session.get(f"{self.url}{path}", params=params, headers=headers) as response:
            return response.status, await response.json(content_type=None), response

    async def post(self, path: str, body: Any = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.token}"}
        async with self.session.post(f"{self.url}{path}", json=body, headers=headers) as response:
            return response.status, await response.json(content_type=None)


@pytest.fixture
async def sim(request) -> AsyncIterator[Sim]:
    options = getattr(request, "param", {})
    app = create_app(**{"identities": 300, **options})
    async with serving(app) as url, aiohttp.ClientSession() as session:
        harness = Sim(app, url, session)
        await harness.login()
        yield harness


# --- spec shapes -------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v2024/identities", "/v2025/identities", "/identities/v1"])
async def test_identity_list_and_get_match_the_spec(sim: Sim, path: str) -> None:
    status, rows, _ = await sim.get(path, limit=60)
    assert status == 200 and len(rows) == 60
    assert spec_errors(response_schema("/identities", "get", "200"), rows) == []
    allowed = properties("Identity")
    for row in rows:
        assert set(row) <= allowed, set(row) - allowed
        assert len(row["id"]) == 32 and int(row["id"], 16) >= 0
    status, one, _ = await sim.get(f"{path}/{rows[7]['id']}")
    assert status == 200 and one == rows[7]
    assert spec_errors(response_schema("/identities/{id}", "get", "200"), one) == []


async def test_accounts_and_disable_match_the_spec(sim: Sim) -> None:
    status, accounts, _ = await sim.get("/v3/accounts", limit=10)
    assert status == 200 and len(accounts) == 10
    assert spec_errors(response_schema("/accounts", "get", "200"), accounts) == []
    allowed = properties("Account") | properties("BaseCommonDto")
    assert all(set(account) <= allowed for account in accounts)
    status, task = await sim.post(f"/v3/accounts/{accounts[0]['id']}/disable", {})
    assert status == 202
    assert spec_errors(response_schema("/accounts/{id}/disable", "post", "202"), task) == []
    status, again, _ = await sim.get("/v3/accounts", filters=f'id eq "{accounts[0]["id"]}"')
    assert status == 200 and again[0]["disabled"] is True


async def test_enable_matches_the_spec_and_undoes_disable(sim: Sim) -> None:
    owner = sim.state.identity_id(5)
    status, accounts, _ = await sim.get("/v3/accounts", filters=f'identityId eq "{owner}"')
    assert status == 200 and len(accounts) == 2
    for account in accounts:
        assert (await sim.post(f"/v3/accounts/{account['id']}/disable", {}))[0] == 202
    status, task = await sim.post(f"/v3/accounts/{accounts[0]['id']}/enable", {})
    assert status == 202
    assert spec_errors(response_schema("/accounts/{id}/enable", "post", "202"), task) == []
    assert sim.state.tasks[task["id"]] == {"action": "enable", "account": accounts[0]["id"]}
    status, again, _ = await sim.get("/v3/accounts", filters=f'identityId eq "{owner}"')
    assert [a["disabled"] for a in again] == [False, True]
    _, identity, _ = await sim.get(f"/v2024/identities/{owner}")
    assert identity["identityStatus"] != "DISABLED"
    # the spec's error answers: 404 for an unknown account, 400 for a body that is no AccountToggleRequest
    status, body = await sim.post(f"/v3/accounts/{'0' * 32}/enable", {})
    assert status == 404
    assert spec_errors(response_schema("/accounts/{id}/enable", "post", "404"), body) == []
    status, body = await sim.post(f"/v3/accounts/{accounts[1]['id']}/enable", [1])
    assert status == 400
    assert spec_errors(response_schema("/accounts/{id}/enable", "post", "400"), body) == []
    status, task = await sim.post(f"/v3/identities-accounts/{owner}/enable", {})
    assert status == 202
    assert spec_errors(response_schema("/identities-accounts/{id}/enable", "post", "202"), task) == []


async def test_an_identity_deleted_by_the_admin_api_is_gone(sim: Sim) -> None:
    victim = sim.state.identity_id(3)
    async with sim.session.delete(f"{sim.url}/_admin/identity/{victim}") as answer:
        assert answer.status == 200
    assert (await sim.get(f"/v2024/identities/{victim}"))[0] == 404
    status, rows, response = await sim.get("/v2024/identities", limit=250, count="true")
    assert status == 200 and victim not in [row["id"] for row in rows]
    assert len(rows) == 250 and response.headers["X-Total-Count"] == "299"
    status, rest, _ = await sim.get("/v2024/identities", limit=250, offset=250)
    assert len(rest) == 49 and rest[0]["id"] == sim.state.identity_id(251)
    _, accounts, _ = await sim.get("/v3/accounts", filters=f'identityId eq "{victim}"')
    assert accounts == []
    async with sim.session.delete(f"{sim.url}/_admin/identity/{victim}") as answer:
        assert answer.status == 404


async def test_error_answers_match_the_spec(sim: Sim) -> None:
    status, body, _ = await sim.get("/v2024/identities", filters='name eq "unterminated')
    assert status == 400
    assert spec_errors(response_schema("/identities", "get", "400"), body) == []
    assert "unterminated string" in body["messages"][0]["text"]
    status, body, _ = await sim.get("/v2024/identities/" + "0" * 32)
    assert status == 404
    assert spec_errors(response_schema("/identities/{id}", "get", "404"), body) == []
    await sim.session.post(f"{sim.url}/_admin/faults", json={"kind": "500"})
    status, body, _ = await sim.get("/v2024/identities")
    assert status == 500 and body["detailCode"].startswith("500")
    assert spec_errors(response_schema("/identities", "get", "500"), body) == []
    await sim.session.post(f"{sim.url}/_admin/faults", json={"kind": "429", "retry_after": 3})
    status, body, response = await sim.get("/v2024/identities")
    assert status == 429 and response.headers["Retry-After"] == "3"
    assert spec_errors(response_schema("/identities", "get", "429"), body) == []
    sim.token = "not-a-token"
    status, body, _ = await sim.get("/v2024/identities")
    assert status == 401 and "JWT" in body["error"]
    assert spec_errors(response_schema("/identities", "get", "401"), body) == []


# --- paging, filters, sorters ------------------------------------------------------------------------


async def test_paging_with_count_covers_every_identity_once(sim: Sim) -> None:
    seen: list[str] = []
    for offset in range(0, 300, 250):
        status, rows, response = await sim.get("/v2024/identities", offset=offset, count="true")
        assert status == 200 and response.headers["X-Total-Count"] == "300"
        seen += [row["id"] for row in rows]
    assert len(seen) == len(set(seen)) == 300
    status, rows, response = await sim.get("/v2024/identities", offset=290, limit=50)
    assert len(rows) == 10 and "X-Total-Count" not in response.headers
    for bad in ({"limit": 251}, {"limit": "ten"}, {"offset": -1}, {"count": "maybe"}):
        status, body, _ = await sim.get("/v2024/identities", **bad)
        assert status == 400, bad
        assert next(iter(bad)) in body["messages"][0]["text"]


async def test_filters_select_what_they_say(sim: Sim) -> None:
    target = person(42)
    status, rows, _ = await sim.get("/v2024/identities", filters=f'email eq "{target.email.upper()}"')
    assert [row["emailAddress"] for row in rows] == [target.email]  # eq ignores case, as SailPoint's does
    first = target.first
    status, rows, response = await sim.get(
        "/v2024/identities",
        filters=f'name sw "{first}" or (alias sw "zz" and cloudStatus eq "ACTIVE")',
        count="true",
    )
    expected = [i for i in range(300) if person(i).display_name.startswith(first)]
    assert sorted(int(row["id"][-8:], 16) for row in rows) == expected
    assert response.headers["X-Total-Count"] == str(len(expected))
    _, first_page, _ = await sim.get("/v2024/identities", limit=3)
    ids = ", ".join(f'"{row["id"]}"' for row in first_page)
    status, rows, _ = await sim.get("/v2024/identities", filters=f"id in ({ids})")
    assert status == 200 and [row["id"] for row in rows] == [row["id"] for row in first_page]
    status, rows, _ = await sim.get("/v2024/identities", filters='name co "ing"')
    assert status == 200 and rows and all("ing" in row["name"].lower() for row in rows)


@pytest.mark.parametrize(
    ("expression", "complaint"),
    [
        ('name eq "open', "unterminated string"),
        ('riskScore eq "1"', "filtering on 'riskScore' is not supported"),
        ('cloudStatus sw "A"', "operator 'sw' is not supported for 'cloudStatus'"),
        ('name EQ "x"', "operator 'EQ' is not supported"),
        ('name eq "x" junk', "unexpected 'junk'"),
        ('name eq "x" or', "the filter ends"),
        ('id in ("a", )', "expected value"),
        ("name eq 'x'", "unexpected character"),
        ("", "the filter is empty"),
    ],
)
async def test_bad_filters_are_400_naming_the_problem(sim: Sim, expression: str, complaint: str) -> None:
    status, body, _ = await sim.get("/v2024/identities", filters=expression)
    assert status == 400
    assert body["detailCode"] == "400.1 Bad Request Content"
    assert complaint in body["messages"][0]["text"]


def test_escaped_quotes_and_backslashes_stay_inside_the_value() -> None:
    node = parse_filter(
        r'name eq "a\" or id ne \"x\\" and alias sw "line' + "\n" + 'break é"', IDENTITY_FILTERS
    )
    assert node.op == "and"
    assert node.parts[0].values == ('a" or id ne "x\\',)
    assert node.parts[1].values == ("line\nbreak é",)


async def test_sorters_order_and_reject_unknown_fields(sim: Sim) -> None:
    _, rows, _ = await sim.get("/v2024/identities", sorters="-name,alias", limit=250)
    keys = [(row["name"].casefold(), row["alias"]) for row in rows]
    assert [k[0] for k in keys] == sorted((k[0] for k in keys), reverse=True)
    status, body, _ = await sim.get("/v2024/identities", sorters="riskScore")
    assert status == 400 and "sorting by 'riskScore'" in body["messages"][0]["text"]
    status, body, _ = await sim.get("/v2024/identities", defaultFilter="ALL")
    assert status == 400 and "defaultFilter" in body["messages"][0]["text"]


async def test_accounts_by_identity(sim: Sim) -> None:
    _, rows, _ = await sim.get("/v2024/identities", limit=1, offset=5)
    status, accounts, _ = await sim.get(
        "/v3/accounts", filters=f'identityId eq "{rows[0]["id"]}"', count="true"
    )
    assert status == 200 and len(accounts) == 2
    assert {a["identityId"] for a in accounts} == {rows[0]["id"]}
    assert {a["sourceName"] for a in accounts} == {"IdentityNow", "Active Directory"}


# --- auth, rate limit, experimental header -----------------------------------------------------------


async def test_token_endpoint_rejects_bad_credentials_and_grants(sim: Sim) -> None:
    response = await sim.login(secret="wrong")
    assert response.status == 401 and (await response.json())["error"] == "invalid_client"
    response = await sim.session.post(f"{sim.url}/oauth/token", data={"grant_type": "password"})
    assert response.status == 400
    sim.state.expire_tokens()
    status, body, _ = await sim.get("/v2024/identities")
    assert status == 401 and body["error"] == "JWT validation failed: JWT is expired"
    async with sim.session.get(f"{sim.url}/v2024/identities") as response:
        assert response.status == 401


@pytest.mark.parametrize("sim", [{"rate_limit_requests": 3, "rate_limit_period": 5.0}], indirect=True)
async def test_rate_limit_per_client_with_retry_after(sim: Sim) -> None:
    statuses = [(await sim.get("/v2024/identities", limit=1))[0] for _ in range(3)]
    assert statuses == [200, 200, 200]
    status, body, response = await sim.get("/v2024/identities", limit=1)
    assert status == 429 and body == {"message": " Rate Limit Exceeded "}
    assert 1 <= int(response.headers["Retry-After"]) <= 5
    sim.state.rate_limit = False
    assert (await sim.get("/v2024/identities", limit=1))[0] == 200


@pytest.mark.parametrize("sim", [{"require_experimental": True}], indirect=True)
async def test_experimental_header_when_required(sim: Sim) -> None:
    status, body, _ = await sim.get("/v2024/identities", limit=1)
    assert status == 400 and "X-SailPoint-Experimental" in body["messages"][0]["text"]
    async with sim.session.get(
        f"{sim.url}/v2024/identities",
        headers={"Authorization": f"Bearer {sim.token}", "X-SailPoint-Experimental": "true"},
    ) as response:
        assert response.status == 200
    assert (await sim.get("/identities/v1", limit=1))[0] == 200  # the v1 API is not experimental


# --- admin API and scale -----------------------------------------------------------------------------


async def test_admin_risk_and_fault_validation(sim: Sim) -> None:
    _, rows, _ = await sim.get("/v2024/identities", limit=1)
    async with sim.session.post(
        f"{sim.url}/_admin/identity/{rows[0]['id']}/risk", json={"risk_score": 97}
    ) as r:
        assert r.status == 200
    _, row, _ = await sim.get(f"/v2024/identities/{rows[0]['id']}")
    assert row["attributes"]["riskScore"] == 97
    for body in ({"risk_score": 101}, {"risk_score": "high"}, {"risk_score": True}):
        async with sim.session.post(f"{sim.url}/_admin/identity/{rows[0]['id']}/risk", json=body) as r:
            assert r.status == 400 and "risk_score" in (await r.json())["error"]
    async with sim.session.post(f"{sim.url}/_admin/faults", json={"kind": "meteor"}) as r:
        assert r.status == 400 and "kind must be one of" in (await r.json())["error"]
    async with sim.session.post(f"{sim.url}/_admin/faults", json={"kind": "500", "count": 0}) as r:
        assert r.status == 400
    await sim.session.post(f"{sim.url}/_admin/faults", json={"kind": "malformed"})
    async with sim.session.get(
        f"{sim.url}/v2024/identities", headers={"Authorization": f"Bearer {sim.token}"}
    ) as response:
        with pytest.raises(json.JSONDecodeError):
            json.loads(await response.read())


@pytest.mark.parametrize("sim", [{"identities": 1_000_000}], indirect=True)
async def test_a_million_identities_served_without_holding_them(sim: Sim) -> None:
    status, rows, response = await sim.get("/v2024/identities", offset=999_900, limit=250, count="true")
    assert status == 200 and len(rows) == 100
    assert response.headers["X-Total-Count"] == "1000000"
    last = rows[-1]
    assert int(last["id"][-8:], 16) == 999_999
    _, by_email, _ = await sim.get("/v2024/identities", filters=f'email eq "{last["emailAddress"]}"')
    assert [row["id"] for row in by_email] == [last["id"]]
    assert sim.state.touched == set() and sim.state.risk == {}


def test_main_prints_generated_credentials_and_serves() -> None:
    with sim_process("sailpoint", "--identities", "5", drop=("SAILPOINT_",)) as sim:
        # `# SailPoint simulator: …`, three `NAME=value` lines and `export …` (standins.print_env)
        creds = sim.env()
        url = creds["SAILPOINT_BASE_URL"]

        async def use() -> int:
            async with aiohttp.ClientSession() as session:
                form = {
                    "grant_type": "client_credentials",
                    "client_id": creds["SAILPOINT_CLIENT_ID"],
                    "client_secret": creds["SAILPOINT_CLIENT_SECRET"],
                }
                async with session.post(f"{url}/oauth/token", data=form) as response:
                    return response.status

        assert asyncio.run(asyncio.wait_for(use(), 10)) == 200
        sim.process.terminate()  # SIGTERM, as a service manager stops it: a clean exit
        assert sim.process.wait(timeout=10) == 0


def test_a_taken_port_is_one_line(capsys) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert cli.main(["sim", "sailpoint", "--port", str(port)]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(f"idops sim sailpoint: cannot listen on 127.0.0.1:{port} (")
    assert len(captured.err.splitlines()) == 1 and "Traceback" not in captured.err

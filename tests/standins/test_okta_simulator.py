"""The Okta simulator over loopback HTTP: its answers validate against Okta's own spec subset."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from openapi_schema_validator import OAS30ReadValidator, oas30_format_checker

from standins import serving
from standins.okta import STATE, create_app
from standins.okta_auth import OAuthApp

REPO = Path(__file__).resolve().parents[2]
SPEC_PATH = REPO.parent / "shared" / "specs" / "okta-management-users.openapi.yaml"
if not SPEC_PATH.exists():  # CI clones main with shared/ beside it; a worktree may sit one level deeper
    SPEC_PATH = Path("/work/shared/specs/okta-management-users.openapi.yaml")
SPEC = yaml.safe_load(SPEC_PATH.read_text())
TOKEN = "sim-okta-api-token"


def spec_errors(path: str, method: str, status: str, document: Any) -> list[str]:
    answer = SPEC["paths"][path][method]["responses"][status]
    if "$ref" in answer:
        answer = SPEC["components"]["responses"][answer["$ref"].rsplit("/", 1)[1]]
    schema = copy.deepcopy(answer["content"]["application/json"]["schema"])
    validator = OAS30ReadValidator(
        {**schema, "components": SPEC["components"]}, format_checker=oas30_format_checker
    )
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(document)]


class Sim:
    def __init__(self, app: Any, url: str, session: aiohttp.ClientSession) -> None:
        self.app, self.url, self.session, self.state = app, url, session, app[STATE]

    async def call(
        self, method: str, path: str, *, token: str = TOKEN, **kwargs: Any
    ) -> tuple[int, Any, Any]:
        headers = {"Authorization": f"SSWS {token}", "Accept": "application/json"}
        async with self.session.request(method, f"{self.url}{path}", headers=headers, **kwargs) as answer:
            text = await answer.text()
            body = yaml.safe_load(text) if text else None
            return answer.status, body, answer.headers


@pytest.fixture
async def sim(request) -> AsyncIterator[Sim]:
    app = create_app(**{"identities": 250, **getattr(request, "param", {})})
    async with serving(app) as url, aiohttp.ClientSession() as session:
        yield Sim(app, url, session)


async def test_users_list_get_and_link_headers(sim: Sim) -> None:
    status, users, headers = await sim.call("GET", "/api/v1/users", params={"limit": "100"})
    assert status == 200 and len(users) == 100
    assert spec_errors("/api/v1/users", "get", "200", users) == []
    links = headers.getall("Link")
    assert len(links) == 2 and links[0].endswith('rel="self"') and links[1].endswith('rel="next"')
    seen = list(users)
    while 'rel="next"' in links[-1]:
        next_url = links[-1][1 : links[-1].index(">")]
        async with sim.session.get(next_url, headers={"Authorization": f"SSWS {TOKEN}"}) as answer:
            seen += await answer.json()
            links = answer.headers.getall("Link")
    assert len(seen) == 250 and len({u["id"] for u in seen}) == 250
    assert all(u["status"] != "DEPROVISIONED" for u in seen)
    status, one, headers = await sim.call("GET", f"/api/v1/users/{seen[9]['id']}")
    assert status == 200 and one == seen[9] and headers["X-Rate-Limit-Limit"] == "600"
    assert spec_errors("/api/v1/users/{id}", "get", "200", one) == []
    status, by_login, _ = await sim.call("GET", f"/api/v1/users/{seen[9]['profile']['login']}")
    assert by_login["id"] == seen[9]["id"]


async def test_search_includes_deprovisioned_and_filters(sim: Sim) -> None:
    status, found, _ = await sim.call("GET", "/api/v1/users", params={"search": 'status eq "DEPROVISIONED"'})
    assert status == 200 and len(found) == 2 and {u["status"] for u in found} == {"DEPROVISIONED"}
    status, found, _ = await sim.call("GET", "/api/v1/users", params={"filter": 'status eq "SUSPENDED"'})
    assert status == 200 and found and all(u["status"] == "SUSPENDED" for u in found)
    status, body, _ = await sim.call(
        "GET", "/api/v1/users", params={"search": 'profile.email eq "unterminated'}
    )
    assert status == 400 and body["errorCode"] == "E0000031"
    assert spec_errors("/api/v1/users/{id}/lifecycle/suspend", "post", "400", body) == []
    status, body, _ = await sim.call("GET", "/api/v1/users", params={"filter": 'profile.city eq "x"'})
    assert status == 400 and "not supported" in body["errorSummary"]


async def test_lifecycle_sessions_roles_risk_and_log_match_the_spec(sim: Sim) -> None:
    state = sim.state
    index = next(i for i in range(state.total) if state.status(i) == "ACTIVE" and state.role_types(i))
    user_id = state.user_id(index)
    status, body, _ = await sim.call("POST", f"/api/v1/users/{user_id}/lifecycle/suspend")
    assert status == 200
    status, body, _ = await sim.call("POST", f"/api/v1/users/{user_id}/lifecycle/suspend")
    assert (
        status == 400 and body["errorCauses"][0]["errorSummary"] == "Cannot suspend a user that is not active"
    )
    assert spec_errors("/api/v1/users/{id}/lifecycle/suspend", "post", "400", body) == []
    assert (await sim.call("POST", f"/api/v1/users/{user_id}/lifecycle/unsuspend"))[0] == 200
    status, body, _ = await sim.call("POST", f"/api/v1/users/{user_id}/lifecycle/expire_password")
    assert status == 200 and body["status"] == "PASSWORD_EXPIRED"
    assert spec_errors("/api/v1/users/{id}/lifecycle/expire_password", "post", "200", body) == []
    status, body, _ = await sim.call("POST", f"/api/v1/users/{user_id}/lifecycle/reset_password")
    assert status == 400 and body["errorCode"] == "E0000028"
    status, body, _ = await sim.call(
        "POST", f"/api/v1/users/{user_id}/lifecycle/reset_password?sendEmail=false"
    )
    assert (
        status == 200
        and spec_errors("/api/v1/users/{id}/lifecycle/reset_password", "post", "200", body) == []
    )
    assert (await sim.call("DELETE", f"/api/v1/users/{user_id}/sessions?oauthTokens=true"))[0] == 204
    status, roles, _ = await sim.call("GET", f"/api/v1/users/{user_id}/roles")
    assert status == 200 and roles and spec_errors("/api/v1/users/{userId}/roles", "get", "200", roles) == []
    status, risk, _ = await sim.call("GET", f"/api/v1/users/{user_id}/risk")
    assert status == 200 and spec_errors("/api/v1/users/{userId}/risk", "get", "200", risk) == []
    status, risk, _ = await sim.call(
        "PUT", f"/api/v1/users/{user_id}/risk", json={"riskLevel": "HIGH", "riskReason": "confirmed, by SOC"}
    )
    assert status == 200 and spec_errors("/api/v1/users/{userId}/risk", "put", "200", risk) == []
    status, body, _ = await sim.call("PUT", f"/api/v1/users/{user_id}/risk", json={"riskLevel": "SEVERE"})
    assert status == 400 and spec_errors("/api/v1/users/{userId}/risk", "put", "400", body) == []
    status, events, headers = await sim.call(
        "GET",
        "/api/v1/logs",
        params={"filter": 'eventType eq "user.risk.change"', "since": "2020-01-01T00:00:00Z"},
    )
    assert status == 200 and [e["target"][0]["id"] for e in events] == [user_id]
    assert events[0]["securityContext"]["risk"]["level"] == "HIGH"
    assert spec_errors("/api/v1/logs", "get", "200", events) == []
    assert len(headers.getall("Link")) == 2  # a polling query always offers its next link
    status, body, _ = await sim.call("GET", f"/api/v1/users/{'00u' + '0' * 17}")
    assert status == 404 and spec_errors("/api/v1/users/{id}", "get", "404", body) == []


@pytest.mark.parametrize(
    "sim", [{"itp": False, "rate_limits": {"user": 2}, "rate_window": 30.0}], indirect=True
)
async def test_no_itp_bad_token_and_rate_limits(sim: Sim) -> None:
    user_id = sim.state.user_id(1)
    status, body, _ = await sim.call("GET", f"/api/v1/users/{user_id}/risk")
    assert status == 401 and body["errorCode"] == "E0000015"
    status, body, _ = await sim.call("GET", f"/api/v1/users/{user_id}", token="wrong")
    assert status == 401 and body["errorCode"] == "E0000011"
    status, _, headers = await sim.call("GET", f"/api/v1/users/{user_id}")
    assert status == 200 and headers["X-Rate-Limit-Remaining"] == "0"
    status, body, headers = await sim.call("GET", f"/api/v1/users/{user_id}")
    assert status == 429 and body["errorCode"] == "E0000047" and int(headers["X-Rate-Limit-Reset"]) > 0
    assert spec_errors("/api/v1/users/{id}", "get", "429", body) == []


async def test_role_assignees_factors_and_role_grants(sim: Sim) -> None:
    """Outside the spec subset: shapes per Okta's docs (the SDK test parses them); errors as Okta's."""
    state = sim.state
    status, page, headers = await sim.call("GET", "/api/v1/iam/assignees/users", params={"limit": 3})
    admins = [i for i in range(state.total) if state.role_types(i)]
    assert status == 200 and [u["id"] for u in page["value"]] == [state.user_id(i) for i in admins[:3]]
    assert page["value"][0]["_links"]["roles"]["href"].endswith(f"/users/{state.user_id(admins[0])}/roles")
    assert "Link" not in headers and "after=" in page["_links"]["next"]["href"]
    assert int(headers["X-Rate-Limit-Limit"]) == 600  # its own bucket
    status, body, _ = await sim.call("GET", "/api/v1/iam/assignees/users", params={"limit": 101})
    assert status == 400 and spec_errors("/api/v1/users/{id}/lifecycle/suspend", "post", "400", body) == []
    status, body, _ = await sim.call("GET", "/api/v1/iam/assignees/users", token="wrong")
    assert status == 401 and body["errorCode"] == "E0000011"
    plain = next(i for i in range(state.total) if not state.role_types(i) and state.status(i) == "ACTIVE")
    user_id = state.user_id(plain)
    async with sim.session.post(f"{sim.url}/_admin/users/{user_id}/roles", json={"type": "ORG_ADMIN"}) as r:
        event = await r.json()
    assert event["eventType"] == "user.account.privilege.grant" and event["target"][0]["id"] == user_id
    assert spec_errors("/api/v1/logs", "get", "200", [event]) == []
    status, roles, _ = await sim.call("GET", f"/api/v1/users/{user_id}/roles")
    assert [r["type"] for r in roles] == ["ORG_ADMIN"]
    async with sim.session.delete(f"{sim.url}/_admin/users/{user_id}/roles") as r:
        assert (await r.json())["eventType"] == "user.account.privilege.revoke"
    assert (await sim.call("GET", f"/api/v1/users/{user_id}/roles"))[1] == []
    status, factors, _ = await sim.call("GET", f"/api/v1/users/{state.user_id(2)}/factors")
    assert status == 200 and {f["status"] for f in factors} <= {"ACTIVE", "PENDING_ACTIVATION"} and factors
    status, body, _ = await sim.call("GET", f"/api/v1/users/{'00u' + '0' * 17}/factors")
    assert status == 404 and spec_errors("/api/v1/users/{id}", "get", "404", body) == []


def test_cli_prints_a_generated_token() -> None:
    env = {k: v for k, v in os.environ.items() if k != "OKTA_API_TOKEN"}
    process = subprocess.Popen(
        [sys.executable, "-m", "standins.cli", "sim", "okta", "--port", "0", "--identities", "5"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(4)]
    finally:
        process.terminate()
        process.wait(10)
    assert lines[0] == "# Okta simulator: 5 users\n"
    assert lines[1].startswith("OKTA_BASE_URL=http://127.0.0.1:")
    assert lines[2].startswith("OKTA_API_TOKEN=00") and len(lines[2].strip()) > 30
    assert lines[3] == "export OKTA_BASE_URL OKTA_API_TOKEN\n"


async def test_a_token_without_a_scope_is_refused_as_okta_words_it() -> None:
    """403 E0000006 with `WWW-Authenticate: Bearer ..., error="insufficient_scope"` naming the scope (as
    Okta's support article shows it), where an org without ITP answers /risk with 401 E0000015."""
    app = create_app(identities=5, oauth=OAuthApp("0oasim", "unused", token_ttl=60))
    app[STATE].oauth_tokens["scoped"] = (time.monotonic() + 60, frozenset({"okta.users.read"}))
    user_id = app[STATE].user_id(1)
    async with serving(app) as url, aiohttp.ClientSession() as session:
        headers = {"Authorization": "Bearer scoped", "Accept": "application/json"}
        async with session.get(f"{url}/api/v1/users/{user_id}", headers=headers) as answer:
            assert answer.status == 200
        async with session.get(f"{url}/api/v1/users/{user_id}/risk", headers=headers) as answer:
            status, body, challenge = answer.status, await answer.json(), answer.headers["WWW-Authenticate"]
    assert status == 403 and body["errorCode"] == "E0000006"
    assert spec_errors("/api/v1/users/{userId}/risk", "get", "403", body) == []
    assert challenge.startswith(f'Bearer authorization_uri="{url}/oauth2/v1/authorize", realm="{url}"')
    assert 'scope="okta.userRisk.read", error="insufficient_scope"' in challenge
    assert challenge.endswith(f'resource="/api/v1/users/{user_id}/risk"')

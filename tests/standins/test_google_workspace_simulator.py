"""The Google Workspace simulator itself: the token endpoint checks what Google checks, the Directory
and Alert Center answer in Google's shapes and errors, the quota ceiling, and `idops sim
google_workspace` as a real process that `idops check` passes against."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp import ClientSession
from support.sims import sim_process

from standins import serving
from standins.google_workspace import (
    GOOGLE_TOKEN_URL,
    JWT_BEARER,
    SCOPE_ALERTS,
    SCOPE_USER,
    SCOPE_USER_READONLY,
    STATE,
    WorkspaceState,
    create_app,
    generate_key,
    parse_query,
)
from standins.google_workspace_data import PREFIX_CACHE

ROOT = Path(__file__).resolve().parents[2]
KEY = generate_key()


def assertion(key: dict = KEY, **claims: Any) -> str:
    now = int(time.time())
    body = {
        "iss": key["client_email"],
        "sub": "admin@acme.example",
        "scope": SCOPE_USER,
        "aud": GOOGLE_TOKEN_URL,
        "iat": now,
        "exp": now + 3600,
        **claims,
    }
    body = {k: v for k, v in body.items() if v is not None}
    return jwt.encode(body, key["private_key"], algorithm="RS256")


class Sim:
    def __init__(self, state: WorkspaceState, url: str, session: ClientSession) -> None:
        self.state, self.url, self.session = state, url, session

    async def token(self, signed: str, grant: str = JWT_BEARER, path: str = "/token") -> tuple[int, dict]:
        form = {"grant_type": grant, "assertion": signed}
        async with self.session.post(self.url + path, data=form) as response:
            return response.status, await response.json()

    async def call(self, method: str, path: str, token: str, **kwargs: Any) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"}
        async with self.session.request(method, self.url + path, headers=headers, **kwargs) as response:
            text = await response.text()
            return response.status, json.loads(text) if text else None

    async def access(self, **claims: Any) -> str:
        status, body = await self.token(assertion(**claims))
        assert status == 200, body
        return str(body["access_token"])


@pytest.fixture
async def sim(request) -> AsyncIterator[Sim]:
    app = create_app(key=KEY, **{"identities": 120, **getattr(request, "param", {})})
    async with serving(app) as url, ClientSession() as session:
        yield Sim(app[STATE], url, session)


async def test_token_endpoint_checks_what_google_checks(sim: Sim) -> None:
    status, body = await sim.token(assertion())
    assert status == 200 and body["token_type"] == "Bearer" and body["expires_in"] == 3599
    assert body["access_token"].startswith("ya29.")
    now = int(time.time())
    cases = [
        (
            assertion(generate_key(client_email=KEY["client_email"])),
            400,
            "invalid_grant",
            "Invalid JWT Signature",
        ),
        (assertion(aud=f"{sim.url}/token"), 400, "invalid_grant", "Failed audience check"),
        (assertion(iat=now - 7200, exp=now - 3600), 400, "invalid_grant", "short-lived token"),
        (assertion(exp=now + 7200), 400, "invalid_grant", "short-lived token"),
        (
            assertion(scope=SCOPE_USER + " https://mail.google.com/"),
            400,
            "invalid_scope",
            "Invalid OAuth scope",
        ),
        (assertion(iss="who@else.iam.gserviceaccount.com"), 400, "invalid_grant", "account not found"),
        (assertion(scope=None), 400, "invalid_grant", "Invalid JWT"),
        ("not.a.jwt", 400, "invalid_grant", "not a JWT"),
    ]
    for signed, want_status, error, description in cases:
        status, body = await sim.token(signed)
        assert (status, body["error"]) == (want_status, error) and description in body["error_description"]
    status, body = await sim.token(assertion(), grant="client_credentials")
    assert (status, body["error"]) == (400, "unsupported_grant_type")
    unsigned = jwt.encode({"iss": KEY["client_email"], "aud": GOOGLE_TOKEN_URL}, "k" * 32, algorithm="HS256")
    assert (await sim.token(unsigned))[0] == 400  # only RS256 with the trusted key


@pytest.mark.parametrize(
    "sim", [{"admin": "root@acme.example", "granted_scopes": {SCOPE_USER}}], indirect=True
)
async def test_delegation_is_limited_to_the_admin_and_the_granted_scopes(sim: Sim) -> None:
    status, body = await sim.token(assertion(sub="someone@acme.example"))
    assert (status, body["error"], body["error_description"]) == (
        400,
        "invalid_grant",
        "Invalid email or User ID",
    )
    status, body = await sim.token(assertion(sub="root@acme.example", scope=f"{SCOPE_USER} {SCOPE_ALERTS}"))
    assert (status, body["error"]) == (401, "unauthorized_client")
    assert (await sim.token(assertion(sub="ROOT@acme.example")))[0] == 200


async def test_directory_answers_in_googles_shapes(sim: Sim) -> None:
    token = await sim.access()
    status, body = await sim.call(
        "GET", "/admin/directory/v1/users", token, params={"customer": "my_customer"}
    )
    assert status == 200 and body["kind"] == "admin#directory#users" and len(body["users"]) == 100
    status, rest = await sim.call(
        "GET",
        "/admin/directory/v1/users",
        token,
        params={"customer": "C03az79cb", "maxResults": "500", "pageToken": body["nextPageToken"]},
    )
    assert len(rest["users"]) == 20 and "nextPageToken" not in rest
    errors = [
        ({"customer": "my_customer", "maxResults": "501"}, 400, "invalid"),
        ({"customer": "my_customer", "maxResults": "0"}, 400, "invalid"),
        ({"customer": "my_customer", "pageToken": "forged"}, 400, "invalid"),
        ({"customer": "my_customer", "query": "isAdmin:true"}, 400, "invalid"),
        ({"customer": "my_customer", "query": "password='x'"}, 400, "invalid"),
        ({}, 400, "badRequest"),
        ({"customer": "C0other"}, 404, "notFound"),
    ]
    for params, want, reason in errors:
        status, body = await sim.call("GET", "/admin/directory/v1/users", token, params=params)
        assert status == want and body["error"]["code"] == want, params
        assert body["error"]["errors"][0]["reason"] == reason and body["error"]["message"]
    status, body = await sim.call(
        "GET", "/admin/directory/v1/users", token, params={"customer": "my_customer", "query": "isAdmin=true"}
    )
    assert body["users"] and all(u["isAdmin"] for u in body["users"])
    status, body = await sim.call("GET", "/admin/directory/v1/users/nobody@acme.example", token)
    assert (status, body["error"]["message"]) == (404, "Resource Not Found: userKey")
    user_id = sim.state.user_id(5)
    status, body = await sim.call(
        "PATCH", f"/admin/directory/v1/users/{user_id}", token, json={"suspended": "yes"}
    )
    assert status == 400 and "suspended must be true or false" in body["error"]["message"]
    status, body = await sim.call("POST", f"/admin/directory/v1/users/{user_id}/signOut", token)
    assert (status, body) == (403, body) and body["error"]["errors"][0]["reason"] == "insufficientPermissions"
    readonly = await sim.access(scope=SCOPE_USER_READONLY)
    status, body = await sim.call(
        "PATCH", f"/admin/directory/v1/users/{user_id}", readonly, json={"suspended": True}
    )
    assert status == 403 and body["error"]["status"] == "PERMISSION_DENIED"
    status, body = await sim.call("GET", "/admin/directory/v1/users", "ya29.forged", params={"customer": "x"})
    assert status == 401 and body["error"]["errors"][0]["reason"] == "authError"


def test_query_parser_reads_googles_syntax() -> None:
    (a, b, c) = parse_query("name:'Valentine\\'s Day' email:ada* isSuspended=false")
    assert (a.field, a.op, a.value, a.prefix) == ("name", ":", "Valentine's Day", False)
    assert (b.field, b.value, b.prefix) == ("email", "ada", True)
    assert (c.field, c.op, c.value) == ("isSuspended", "=", "false")
    for bad in ("name:'unterminated", "name='a'b", "isAdmin:true", "secret=1", "name:'a''b'"):
        with pytest.raises(ValueError):
            parse_query(bad)


async def test_email_prefix_search_matches_primary_addresses_and_aliases(sim: Sim) -> None:
    """Google: `email:{PREFIX}*` matches "the user's email addresses, including aliases", any case; a
    search leaves out users not indexed yet, which the plain listing still has."""
    token = await sim.access()
    (aliased,) = [
        i
        for i in range(3, 120, 10)
        if sim.state.user(i)["aliases"][0][0] != sim.state.user(i)["primaryEmail"][0]
    ][:1]
    user = sim.state.user(aliased)

    async def search(query: str, size: int = 7) -> list[str]:
        found, page_token = [], None
        while True:
            params = {"customer": "my_customer", "query": query, "maxResults": str(size)}
            status, body = await sim.call(
                "GET",
                "/admin/directory/v1/users",
                token,
                params={**params, **({"pageToken": page_token} if page_token else {})},
            )
            assert status == 200, body
            found += [u["id"] for u in body.get("users", [])]
            page_token = body.get("nextPageToken")
            if not page_token:
                return found

    for address in (user["primaryEmail"], user["aliases"][0]):
        letter = address[0]
        expected = [
            sim.state.user_id(i)
            for i in range(120)
            if any(
                a.startswith(letter)
                for a in (sim.state.user(i)["primaryEmail"], *sim.state.user(i).get("aliases", ()))
            )
        ]
        assert user["id"] in expected and await search(f"email:{letter.upper()}*") == expected
    everyone = await search("email:" + user["primaryEmail"][:3] + "*", size=500)
    sim.state.unindexed = {aliased}
    assert await search("email:" + user["primaryEmail"][:3] + "*", size=500) == [
        i for i in everyone if i != user["id"]
    ]
    status, body = await sim.call(
        "GET", "/admin/directory/v1/users", token, params={"customer": "my_customer", "maxResults": "500"}
    )
    assert status == 200 and user["id"] in [u["id"] for u in body["users"]]
    # each prefix's answer is kept for the next pages (any case), and the cache stays bounded
    kept = sim.state.with_address_prefix(user["primaryEmail"][:3].upper())
    assert kept is sim.state.with_address_prefix(user["primaryEmail"][:3]) and len(kept) == len(everyone)
    for n in range(PREFIX_CACHE + 5):
        sim.state.with_address_prefix(f"zz{n}")
    assert len(sim.state._prefixed) <= PREFIX_CACHE


async def test_alerts_list_pages_and_filters(sim: Sim) -> None:
    token = await sim.access(scope=SCOPE_ALERTS)
    seeded = len(sim.state.alerts)
    user = sim.state.user(9)["primaryEmail"]
    async with sim.session.post(
        f"{sim.url}/_admin/alerts", json={"user": user, "type": "Leaked password"}
    ) as r:
        assert r.status == 201 and (await r.json())["data"]["email"] == user
    seen: list[dict] = []
    page_token = None
    while True:
        params = {"pageSize": "3", **({"pageToken": page_token} if page_token else {})}
        status, body = await sim.call("GET", "/v1beta1/alerts", token, params=params)
        assert status == 200
        seen += body.get("alerts", [])
        page_token = body.get("nextPageToken")
        if not page_token:
            break
    assert len(seen) == seeded + 1 and seen[0]["data"]["email"] == user  # newest first
    assert seen[0]["metadata"]["status"] == "NOT_STARTED" and seen[0]["source"] == "Google identity"
    status, body = await sim.call(
        "GET", "/v1beta1/alerts", token, params={"filter": 'createTime >= "2999-01-01T00:00:00Z"'}
    )
    assert (status, body) == (200, {})
    status, body = await sim.call("GET", "/v1beta1/alerts", token, params={"filter": "deleted = true"})
    assert status == 400 and body["error"]["status"] == "INVALID_ARGUMENT"
    directory_only = await sim.access()
    status, body = await sim.call("GET", "/v1beta1/alerts", directory_only)
    assert status == 403 and "insufficient authentication scopes" in body["error"]["message"]


@pytest.mark.parametrize("sim", [{"quota_per_minute": 5}], indirect=True)
async def test_the_quota_ceiling_answers_user_rate_limit_exceeded(sim: Sim) -> None:
    token = await sim.access()
    statuses = []
    for _ in range(7):
        status, body = await sim.call("GET", f"/admin/directory/v1/users/{sim.state.user_id(1)}", token)
        statuses.append(status)
    assert statuses == [200] * 5 + [403, 403]
    assert body["error"]["errors"][0] == {
        "message": body["error"]["message"],
        "domain": "usageLimits",
        "reason": "userRateLimitExceeded",
    }
    async with sim.session.get(f"{sim.url}/_admin/stats") as response:
        stats = await response.json()
    assert stats["peak_per_minute"] == 5 and stats["quota_per_minute"] == 5


def test_sim_process_prints_a_key_and_idops_check_passes(tmp_path: Path) -> None:
    with sim_process("google_workspace", "--identities", "40", drop=("GOOGLE_",)) as sim:
        printed = sim.env()
        url = printed["GOOGLE_WORKSPACE_BASE_URL"]
        key = json.loads(printed["GOOGLE_SERVICE_ACCOUNT_JSON"])
        assert key["type"] == "service_account" and key["token_uri"] == f"{url}/token"
        config = tmp_path / "idops.toml"
        config.write_text(
            "[slack]\nalert_channel = 'C0ALERTS'\napproval_channel = 'C0APPROVALS'\n\n"
            "[[connectors]]\nname = 'workspace'\nkind = 'google_workspace'\n"
            "service_account_json_env = 'GOOGLE_SERVICE_ACCOUNT_JSON'\n"
            "admin_email = 'secops-bot@acme.example'\n"
            "base_url_env = 'GOOGLE_WORKSPACE_BASE_URL'\nalert_center_url_env = 'GOOGLE_WORKSPACE_BASE_URL'\n"
        )
        checked = subprocess.run(
            [sys.executable, "-m", "bot.cli", "check", "--config", str(config)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env={**os.environ, **printed},
            timeout=60,
        )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "ok   workspace (google_workspace): signed in as secops-bot@acme.example" in checked.stdout
    assert "Alert Center readable" in checked.stdout and "PRIVATE KEY" not in checked.stdout + checked.stderr


async def test_sim_process_trusts_the_key_it_is_given_and_waits_as_told() -> None:
    """GOOGLE_SERVICE_ACCOUNT_JSON set: the simulator trusts that key and prints no other; --latency
    delays every API answer (the token endpoint is not an API call)."""
    given = {**KEY, "token_uri": GOOGLE_TOKEN_URL}
    args = ("--identities", "5", "--latency", "0.3")
    with sim_process(
        "google_workspace", *args, env={"GOOGLE_SERVICE_ACCOUNT_JSON": json.dumps(given)}
    ) as sim:
        printed = sim.env()
        assert set(printed) == {"GOOGLE_WORKSPACE_BASE_URL"}
        url = printed["GOOGLE_WORKSPACE_BASE_URL"]
        async with ClientSession() as session:
            form = {"grant_type": JWT_BEARER, "assertion": assertion()}
            async with session.post(f"{url}/token", data=form) as response:
                assert response.status == 200
                token = (await response.json())["access_token"]
            other = {"grant_type": JWT_BEARER, "assertion": assertion(generate_key())}
            async with session.post(f"{url}/token", data=other) as response:
                assert response.status == 400 and (await response.json())["error"] == "invalid_grant"
            started = time.monotonic()
            headers = {"Authorization": f"Bearer {token}"}
            async with session.get(
                f"{url}/admin/directory/v1/users", params={"customer": "my_customer"}, headers=headers
            ) as response:
                assert response.status == 200 and len((await response.json())["users"]) == 5
            assert time.monotonic() - started >= 0.3


async def test_partial_responses_follow_the_fields_mask(sim: Sim) -> None:
    token = await sim.access()
    params = {"customer": "my_customer", "maxResults": "2", "fields": "nextPageToken,users(id,name/fullName)"}
    status, body = await sim.call("GET", "/admin/directory/v1/users", token, params=params)
    assert status == 200 and set(body) == {"users", "nextPageToken"}
    assert body["users"][0] == {
        "id": sim.state.user_id(0),
        "name": {"fullName": sim.state.user(0)["name"]["fullName"]},
    }
    params["query"] = "isAdmin=true"
    status, body = await sim.call("GET", "/admin/directory/v1/users", token, params=params)
    assert body["users"] and all(set(u) == {"id", "name"} for u in body["users"])
    for bad in ("users(id", "users/", ",", "users(id))"):
        status, body = await sim.call(
            "GET", "/admin/directory/v1/users", token, params={**params, "fields": bad}
        )
        assert status == 400 and body["error"]["message"] == "Invalid Input: fields", bad


async def test_answers_are_indented_unless_pretty_print_is_false(sim: Sim) -> None:
    """Google's standard `prettyPrint` defaults to true: two-space indentation, `"key": value`, a final
    newline; `prettyPrint=false` answers compact. Pages, users, alerts and errors alike, and a page's users
    come from the per-user cache in both forms."""
    token = await sim.access(scope=f"{SCOPE_USER} {SCOPE_ALERTS}")
    headers = {"Authorization": f"Bearer {token}"}
    user_id = sim.state.user_id(40)  # patched below, so rendered afresh: not on the page checked for caching
    page = {"customer": "my_customer", "maxResults": "7"}
    partial = {**page, "fields": "nextPageToken,users(id,name/fullName)"}
    requests = [
        ("GET", "/admin/directory/v1/users", page, 200),
        ("GET", "/admin/directory/v1/users", partial, 200),
        ("GET", "/admin/directory/v1/users", {**page, "query": "email:zzz*"}, 200),  # no users: {}
        ("GET", f"/admin/directory/v1/users/{user_id}", {}, 200),
        ("PATCH", f"/admin/directory/v1/users/{user_id}", {}, 200),
        ("GET", "/v1beta1/alerts", {"pageSize": "2"}, 200),
        ("GET", "/admin/directory/v1/users", {"customer": "my_customer", "maxResults": "0"}, 400),
        ("GET", "/admin/directory/v1/users/nobody@acme.example", {}, 404),
    ]
    for method, path, query, status in requests:
        bodies = {}
        for form in ("default", "true", "false", "FALSE"):
            params = query if form == "default" else {**query, "prettyPrint": form}
            async with sim.session.request(
                method, sim.url + path, params=params, headers=headers, json={"suspended": False}
            ) as response:
                assert response.status == status and response.content_type == "application/json", path
                bodies[form] = await response.read()
        value = json.loads(bodies["default"])
        assert bodies["default"] == bodies["true"] == (json.dumps(value, indent=2) + "\n").encode(), path
        assert bodies["false"] == bodies["FALSE"] == json.dumps(value, separators=(",", ":")).encode(), path
        assert (value and b'\n  "' in bodies["default"]) or value == {}
    # a page's users are rendered once per form and mask, then served from the cache
    cache = sim.state._cached
    before = cache.cache_info()
    for form in ("true", "false"):
        status, body = await sim.call(
            "GET", "/admin/directory/v1/users", token, params={**page, "prettyPrint": form}
        )
        assert len(body["users"]) == 7
    assert cache.cache_info().hits - before.hits == 14 and cache.cache_info().misses == before.misses

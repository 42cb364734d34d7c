"""The Google Workspace connector against the simulator over loopback HTTP."""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import ClientSession
from support.sim_env import SimEnv, params, serve_env

import connectors
from connectors import (
    Action,
    AuthenticationError,
    ConfigurationError,
    NotFoundError,
    OutcomeUnknownError,
    ProviderUnavailableError,
    RateLimitedError,
    RiskLevel,
    ValidationError,
)
from connectors.google_workspace import GoogleWorkspaceConnector
from connectors.google_workspace_api import (
    SCOPE_ALERTS,
    USER_FIELDS,
    QuotaRetry,
    ServiceAccountKey,
    alert_level,
    query_term,
)
from standins.google_workspace import (
    ALL_SCOPES,
    STATE,
    WorkspaceState,
    create_app,
    generate_key,
    parse_query,
)
from standins.seed import HOSTILE_NAMES

KEY = generate_key()  # one RSA key for the module: generating one takes a while


class Env(SimEnv):
    """A simulator on loopback and connectors pointed at it, with a fake sleep that records waits."""

    state: WorkspaceState

    def __init__(self, state: WorkspaceState, url: str) -> None:
        super().__init__(state, url)
        self.sleeps: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    def settings(self, **overrides: Any) -> dict[str, Any]:
        return {
            "service_account_json": json.dumps(KEY),
            "admin_email": "secops-bot@acme.example",
            "token_url": f"{self.url}/token",
            "base_url": self.url,
            "alert_center_url": self.url,
            **overrides,
        }

    def connector(
        self, *, key: dict = KEY, clock: Any = time.time, **settings: Any
    ) -> GoogleWorkspaceConnector:
        """Built from settings like `idops serve` does, then with pacing off and the fake sleep."""
        read = GoogleWorkspaceConnector.from_config("gw", self.settings(**settings))
        built = GoogleWorkspaceConnector(
            "gw",
            key=ServiceAccountKey.parse(json.dumps(key)),
            admin_email=read.admin_email,
            token_url=read.token_url,
            base_url=read.base_url,
            alert_center=read.alert_center_problem is None,
            alert_center_url=read.alert_center_url,
            pacing=False,
            sleep=self.sleep,
            clock=clock,
        )
        return self.keep(built)

    def queries(self) -> list[str]:
        return [r.query.get("query", "") for r in self.state.log if r.path.endswith("/users")]

    async def fault(self, kind: str, count: int = 1, **extra: Any) -> None:
        await self.admin("/_admin/faults", {"kind": kind, "count": count, **extra})


@pytest.fixture
async def env(request) -> AsyncIterator[Env]:
    async with serve_env(Env, create_app(key=KEY, **params(request, identities=300)), STATE) as built:
        yield built


async def everyone(connector: GoogleWorkspaceConnector, **filters: Any) -> list[connectors.Identity]:
    return [identity async for identity in connector.list_identities(**filters)]


# --- configuration ---------------------------------------------------------------------------------


def test_registry_builds_and_rejects_bad_settings() -> None:
    good = {"service_account_json": json.dumps(KEY), "admin_email": "admin@acme.example"}
    built = connectors.build("google_workspace", "gw", good)
    assert isinstance(built, GoogleWorkspaceConnector)
    assert built.capabilities == {
        Action.REVOKE_SESSIONS,
        Action.FORCE_PASSWORD_RESET,
        Action.DISABLE,
        Action.ENABLE,
    }
    assert built.can_undo(Action.DISABLE) and built.token_url == "https://oauth2.googleapis.com/token"
    assert "PRIVATE KEY" not in repr(built.key) and KEY["client_email"] in repr(built.key)
    assert (built.customer, built.page_size, built.scopes[-1]) == ("my_customer", 500, SCOPE_ALERTS)
    secret = KEY["private_key"]
    cases = [
        ({**good, "service_account_json": "/etc/keys/sa.json"}, "must be the key file's JSON content or"),
        ({**good, "service_account_json": "bm90IGpzb24="}, "that JSON base64-encoded (not its path)"),
        ({**good, "service_account_json": "{" + secret}, "is not valid JSON"),
        ({**good, "service_account_json": json.dumps({**KEY, "type": "user"})}, "is not a service account"),
        ({**good, "service_account_json": json.dumps({**KEY, "private_key": ""})}, 'has no "private_key"'),
        ({**good, "admin_email": "admin"}, "'admin_email' must be the email of the admin"),
        ({**good, "page_size": 501}, "'page_size' must be a whole number from 1 to 500"),
        ({**good, "alert_center": "maybe"}, "'alert_center' must be one of true, false"),
        ({**good, "customer": "my customer"}, "'customer' must be my_customer or a customer id"),
        ({**good, "base_url": "https://admin.googleapis.com/admin"}, "'base_url' must be the API root"),
        ({k: v for k, v in good.items() if k != "admin_email"}, "setting 'admin_email' is required"),
    ]
    for config, message in cases:
        with pytest.raises(ConfigurationError) as bad:
            connectors.build("google_workspace", "gw", config)
        text = str(bad.value)
        assert text.startswith("connector 'gw' (google_workspace): ") and message in text
        assert "PRIVATE KEY" not in text and secret[40:80] not in text  # never the key
    encoded = base64.b64encode(json.dumps(KEY).encode()).decode()
    decoded = connectors.build("google_workspace", "gw", {**good, "service_account_json": encoded})
    assert isinstance(decoded, GoogleWorkspaceConnector) and decoded.key.private_key == KEY["private_key"]
    # the key file's token_uri is used unless token_url is set; alert_center may be a TOML bool
    own = connectors.build(
        "google_workspace",
        "gw",
        {
            **good,
            "service_account_json": json.dumps({**KEY, "token_uri": "http://127.0.0.1:9/token"}),
            "alert_center": False,
        },
    )
    assert isinstance(own, GoogleWorkspaceConnector)
    assert own.token_url == "http://127.0.0.1:9/token" and SCOPE_ALERTS not in own.scopes


def test_query_terms_quote_and_escape_whatever_is_typed() -> None:
    assert query_term("name", ":", "Ada Lovelace") == "name:'Ada Lovelace'"
    assert query_term("name", ":", "O'Brien") == "name:'O\\'Brien'"
    assert query_term("name", ":", "a\\' isAdmin=true") == "name:'a\\\\\\' isAdmin=true'"
    assert query_term("email", ":", "ada", prefix=True) == "email:ada*"
    assert query_term("isEnrolledIn2Sv", "=", False) == "isEnrolledIn2Sv=false"
    for text in ("x' isAdmin=true", "a\\' isAdmin=true", "*", "' OR '1'='1", "Ada' name:'Bob"):
        (clause,) = parse_query(query_term("name", ":", text))  # one clause, the text intact
        assert (clause.field, clause.op, clause.value, clause.prefix) == ("name", ":", text, False)
    for bad in (
        lambda: query_term("isAdmin", ":", "true"),
        lambda: query_term("orgUnitPath", "=", "/"),
        lambda: query_term("isAdmin", "=", "true"),
        lambda: query_term("name", ":", "bell\x07"),
        lambda: query_term("email", ":", "a b", prefix=True),
        lambda: query_term("name", ":", "  "),
    ):
        with pytest.raises(ValueError):
            bad()
    assert [alert_level(t) for t in ("Leaked password", "Government attack warning")] == ["critical"] * 2
    assert (alert_level("Suspicious login"), alert_level("User reported phishing")) == ("high", "medium")


# --- listing and reading --------------------------------------------------------------------------


@pytest.mark.parametrize("env", [{"identities": 1234}], indirect=True)
async def test_listing_follows_page_tokens_and_maps_users(env: Env) -> None:
    connector = env.connector()
    pages = [page async for page in connector.iter_pages()]
    assert [len(page) for page in pages] == [500, 500, 234]
    ids = [identity.id for page in pages for identity in page]
    assert ids == [env.state.user_id(i) for i in range(1234)]
    listed = [r for r in env.state.log if r.path.endswith("/users")]
    assert [r.query.get("maxResults") for r in listed] == ["500"] * 3
    assert {r.query.get("customer") for r in listed} == {"my_customer"}
    assert "pageToken" not in listed[0].query and listed[1].query["pageToken"]
    by_id = {identity.id: identity for page in pages for identity in page}
    for index in (0, 5, 49, 96, 137, 1233):
        user, identity = env.state.user(index), by_id[env.state.user_id(index)]
        assert identity.email == user["primaryEmail"] and identity.tenant_id == "C03az79cb"
        assert identity.display_name == user["name"]["fullName"]
        assert identity.privileged == (user["isAdmin"] or user["isDelegatedAdmin"])
        assert identity.mfa_enrolled is user["isEnrolledIn2Sv"]
        assert identity.status == ("suspended" if user["suspended"] else "active")
        assert identity.last_login_at is None or identity.last_login_at.year == 2026
    assert by_id[env.state.user_id(96)].last_login_at is None  # "1970-01-01…": never signed in
    hostile = [i.display_name for i in by_id.values() if i.display_name and i.display_name[0] == "<"]
    assert hostile and all(name.split(" ")[0] in " ".join(HOSTILE_NAMES) for name in hostile)
    admins = [i for i in by_id.values() if "super_admin" in i.roles]
    delegated = [i for i in by_id.values() if "delegated_admin" in i.roles]
    assert admins and delegated and all(i.privileged for i in admins + delegated)


@pytest.mark.parametrize("env", [{"identities": 1600}], indirect=True)
async def test_listing_asks_for_what_it_reads_and_prefetches_one_page(env: Env) -> None:
    connector = env.connector()
    async for page in connector.iter_pages():
        assert len(page) == 500
        break  # stopping early cancels the page requested ahead, and nothing more is asked
    listed = [r for r in env.state.log if r.path.endswith("/users")]
    assert 1 <= len(listed) <= 2 and all(r.query["fields"] == USER_FIELDS for r in listed)
    full = await connector.get_identity(env.state.user_id(3))  # users.get: the whole user as raw
    assert full.raw["changePasswordAtNextLogin"] is False and full.email == env.state.user(3)["primaryEmail"]


async def test_filters_go_into_the_query_or_apply_per_page(env: Env) -> None:
    connector = env.connector()
    enrolled = await everyone(connector, mfa_enrolled=True)
    assert env.queries()[-1] == "isEnrolledIn2Sv=true"
    assert enrolled and all(i.mfa_enrolled for i in enrolled)
    plain = await everyone(connector, privileged=False)
    assert env.queries()[-1] == "isAdmin=false isDelegatedAdmin=false"
    admins = await everyone(connector, privileged=True)
    assert env.queries()[-1] == ""  # the query has no OR: filtered here
    assert len(plain) + len(admins) == 300 and all(i.privileged for i in admins)
    assert await everyone(connector, tenant_id="C0other") == []
    assert await everyone(connector, provider="okta") == []
    assert len(await everyone(connector, tenant_id="C03az79cb", provider="google_workspace")) == 300


async def test_find_by_email_alias_id_and_name(env: Env) -> None:
    connector = env.connector()
    user = env.state.user(3)
    alias = user["aliases"][0]
    for key in (user["primaryEmail"], user["primaryEmail"].upper(), alias, user["id"]):
        (found,) = await connector.find_identities(key)
        assert found.id == user["id"]
    assert await connector.find_identities("nobody.1@acme.example") == []
    assert await connector.find_identities("123456789012345678901") == []
    name = env.state.user(7)["name"]["fullName"]
    found = await connector.find_identities(name)
    assert found[0].display_name == name  # exact names first
    assert env.queries()[-1] == f"name:'{name}'"
    with pytest.raises(ValidationError, match="type an email"):
        await connector.find_identities("   ")
    with pytest.raises(ValidationError, match="control characters"):
        await connector.find_identities("Ada\nisAdmin=true")
    with pytest.raises(ValidationError, match="longer than 256"):
        await connector.find_identities("a" * 300)
    (got,) = [await connector.get_identity(alias)]
    assert got.id == user["id"]
    for bad in ("../users", "a/b@acme.example", "x@y/../../z", ""):
        with pytest.raises(NotFoundError):
            await connector.get_identity(bad)


async def test_typed_text_never_changes_what_the_query_means(env: Env) -> None:
    connector = env.connector()
    hostile = 'Robert "Bobby" O\'Brien'
    found = await connector.find_identities(hostile)
    assert found and all(hostile in (i.display_name or "") for i in found)
    for attempt in ("x' isAdmin=true", "x\\' isAdmin=true", "' isAdmin=true name:'", "Ada isAdmin=true"):
        assert await connector.find_identities(attempt) == []
        (clause,) = parse_query(env.queries()[-1])  # the simulator saw one name clause: the whole text
        assert (clause.field, clause.value) == ("name", attempt)


async def test_every_api_request_asks_for_compact_answers(env: Env) -> None:
    """Google indents its answers unless told `prettyPrint=false`; the connector always says it: listing
    (both modes), search, reads, each action, Alert Center, and a call sent again after a 401."""
    connector = env.connector()
    partitioned = env.keep(GoogleWorkspaceConnector.from_config("gw2", env.settings(listing="partitioned")))
    await everyone(connector)
    await everyone(partitioned)
    await everyone(partitioned)  # partitioned now: the email-prefix searches
    await connector.find_identities(env.state.user(7)["name"]["fullName"])
    user_id = env.state.user_id(next(i for i in range(300) if not env.state.user(i)["suspended"]))
    for action in (Action.REVOKE_SESSIONS, Action.FORCE_PASSWORD_RESET, Action.DISABLE, Action.ENABLE):
        await connector.run_action(action, user_id)
    await env.fault("expire_token")
    await connector.get_identity(user_id)  # 401, a new token, the same request again
    seen = {(r.method, r.path.rsplit("/", 1)[-1] if "signOut" in r.path else r.path) for r in env.state.log}
    assert ("GET", "/v1beta1/alerts") in seen and ("POST", "signOut") in seen and len(seen) >= 5
    assert any("email:" in r.query.get("query", "") for r in env.state.log)
    assert [r.status for r in env.state.log].count(401) == 1
    assert {r.query.get("prettyPrint") for r in env.state.log} == {"false"}


# --- actions -------------------------------------------------------------------------------------


async def test_each_action_and_its_already_done_case(env: Env) -> None:
    connector = env.connector()
    index = next(i for i in range(300) if not env.state.user(i)["suspended"])
    user_id = env.state.user_id(index)
    done = await connector.disable(user_id, "phished")
    assert (done.status, done.message) == ("completed", "suspended in Google Workspace")
    assert env.state.user(index)["suspended"] is True and done.reference
    again = await connector.disable(user_id, "phished")
    assert (again.status, again.message) == ("completed", "was already suspended")
    patches = [r for r in env.state.log if r.method == "PATCH"]
    assert len(patches) == 1  # the second read the user and sent nothing
    assert (await connector.get_identity(user_id)).status == "suspended"
    # what settles an action whose answer was lost: read, never send again
    assert await connector.action_in_effect(Action.DISABLE, user_id) is True
    assert await connector.action_in_effect(Action.ENABLE, user_id) is False
    assert await connector.action_in_effect(Action.FORCE_PASSWORD_RESET, user_id) is False
    assert await connector.action_in_effect(Action.REVOKE_SESSIONS, user_id) is None
    back = await connector.run_action(Action.ENABLE, env.state.user(index)["primaryEmail"])
    assert back.message == "unsuspended in Google Workspace" and env.state.user(index)["suspended"] is False
    assert (await connector.enable(user_id)).message == "was already active"
    forced = await connector.force_password_reset(user_id)
    assert forced.status == "completed" and "next sign-in" in forced.message
    assert env.state.user(index)["changePasswordAtNextLogin"] is True
    assert "already" in (await connector.force_password_reset(user_id)).message
    for _ in range(2):  # signing out has no "already" state: each one ends whatever sessions exist
        revoked = await connector.revoke_sessions(user_id)
        assert revoked.status == "completed" and "signed out" in revoked.message
    assert env.state.sign_outs[index] == 2
    for action in (connector.revoke_sessions, connector.force_password_reset):
        with pytest.raises(NotFoundError):
            await action("999999999999999999999")
    with pytest.raises(NotFoundError):
        await connector.disable("nobody.5@acme.example", "x")


# --- risk from Alert Center ------------------------------------------------------------------------


def expected_levels(state: WorkspaceState) -> dict[str, RiskLevel]:
    """The documented rule, applied to the simulator's alerts."""
    scores: dict[str, int] = {}
    for alert in state.alerts:
        if alert["metadata"]["status"] == "CLOSED" or alert["deleted"]:
            continue
        score = {"critical": 100, "high": 75, "medium": 50}[alert_level(alert["type"])]
        email = alert["data"]["email"]
        scores[email] = max(scores.get(email, 0), score)
    return {
        state.user_id(i): RiskLevel.for_score(scores.get(state.user(i)["primaryEmail"], 0))
        for i in range(state.identities)
    }


async def admin_alert(env: Env, user: str, alert_type: str, status: str = "NOT_STARTED") -> None:
    async with ClientSession() as session:
        body = {"user": user, "type": alert_type, "status": status}
        async with session.post(f"{env.url}/_admin/alerts", json=body) as response:
            assert response.status == 201, await response.text()


async def test_risk_follows_open_alerts(env: Env) -> None:
    connector = env.connector()
    listed = {i.id: i.risk_level for i in await everyone(connector)}
    assert listed == expected_levels(env.state)
    assert RiskLevel.CRITICAL in listed.values() and RiskLevel.HIGH in listed.values()
    closed = [a for a in env.state.alerts if a["metadata"]["status"] == "CLOSED"]
    assert closed  # seeded closed alerts count for nothing
    low = [i for i in range(300) if listed[env.state.user_id(i)] is RiskLevel.LOW][:4]
    await admin_alert(env, env.state.user(low[0])["primaryEmail"], "Government attack warning")
    await admin_alert(env, env.state.user_id(low[1]), "User reported phishing")
    await admin_alert(env, env.state.user_id(low[2]), "Leaked password", status="CLOSED")
    alias_user = next(i for i in range(3, 300, 10) if listed[env.state.user_id(i)] is RiskLevel.LOW)
    await admin_alert(env, env.state.user(alias_user)["aliases"][0], "Suspicious login")
    critical = await everyone(connector, risk_level=RiskLevel.CRITICAL)  # a sweep reads alerts afresh
    assert env.state.user_id(low[0]) in {i.id for i in critical}
    assert all(i.risk_score == 100 for i in critical)
    got = {i: (await connector.get_identity(env.state.user_id(i))).risk_level for i in low[1:3]}
    assert got == {low[1]: RiskLevel.MEDIUM, low[2]: RiskLevel.LOW}
    # the alert names the user's primary address; an alias is matched too (admin_alert used the alias)
    assert env.state.alerts[-1]["data"]["email"] == env.state.user(alias_user)["primaryEmail"]
    assert (await connector.get_identity(env.state.user_id(alias_user))).risk_level is RiskLevel.HIGH
    alert_reads = [r for r in env.state.log if r.path == "/v1beta1/alerts"]
    assert all(r.query["filter"].startswith('createTime >= "') for r in alert_reads)


async def test_the_simulators_risk_endpoint_agrees_with_the_connectors_rule(env: Env) -> None:
    connector = env.connector()
    user_id = env.state.user_id(11)
    async with ClientSession() as session:
        for score, level in (
            (90, RiskLevel.CRITICAL),
            (60, RiskLevel.HIGH),
            (30, RiskLevel.MEDIUM),
            (5, RiskLevel.LOW),
        ):
            async with session.post(
                f"{env.url}/_admin/identity/{user_id}/risk", json={"risk_score": score}
            ) as r:
                assert r.status == 200
            (found,) = [i async for i in connector.list_identities() if i.id == user_id]
            assert found.risk_level is level and found.risk_score == env.state.risk_score(11)
        async with session.post(f"{env.url}/_admin/identity/{user_id}/risk", json={"risk_score": 101}) as r:
            assert r.status == 400


@pytest.mark.parametrize("env", [{"granted_scopes": ALL_SCOPES - {SCOPE_ALERTS}}], indirect=True)
async def test_without_the_alert_center_scope_risk_is_unknown(env: Env, caplog) -> None:
    connector = env.connector()
    with caplog.at_level(logging.WARNING, logger="connectors.google_workspace"):
        check = await connector.check()
        listed = await everyone(connector)
        await everyone(connector)
    assert check.ok and "Alert Center not readable, risk unknown" in check.message
    assert "unauthorized_client" in check.message
    assert len(listed) == 300 and {i.risk_level for i in listed} == {None}
    assert {i.risk_score for i in listed} == {None}
    assert await everyone(connector, risk_level=RiskLevel.CRITICAL) == []
    warnings = [r for r in caplog.records if "Alert Center can't be read" in r.getMessage()]
    assert len(warnings) == 1 and SCOPE_ALERTS in warnings[0].getMessage()  # once, naming the scope
    assert not [r for r in env.state.log if r.path == "/v1beta1/alerts"]
    assert env.state.tokens_issued == 1 and {s for t in env.state.tokens.values() for s in t[2]} == set(
        ALL_SCOPES - {SCOPE_ALERTS, "https://www.googleapis.com/auth/admin.directory.user.readonly"}
    )


@pytest.mark.parametrize("env", [{"alert_center": False}], indirect=True)
async def test_an_admin_without_alert_center_access_gets_unknown_risk(env: Env) -> None:
    connector = env.connector()
    assert {i.risk_level for i in await everyone(connector)} == {None}
    assert "The caller does not have permission" in (await connector.check()).message
    off = env.connector(alert_center="false")
    assert {i.risk_level for i in await everyone(off)} == {None}
    assert "off (alert_center = false)" in (await off.check()).message


# --- auth ----------------------------------------------------------------------------------------


async def test_token_is_cached_and_renewed_once_when_expired(env: Env) -> None:
    connector = env.connector()
    await everyone(connector)
    await connector.get_identity(env.state.user_id(1))
    assert env.state.tokens_issued == 1
    await env.fault("expire_token")
    await connector.get_identity(env.state.user_id(2))
    assert env.state.tokens_issued == 2
    (issuer, subject, scopes, _), *_ = env.state.tokens.values()
    assert (issuer, subject) == (KEY["client_email"], "secops-bot@acme.example")
    assert SCOPE_ALERTS in scopes


async def test_bad_and_expired_keys_are_refused_with_a_reason(env: Env) -> None:
    other = generate_key(client_email=KEY["client_email"])  # same account, a key Google doesn't know
    with pytest.raises(AuthenticationError, match="Invalid JWT Signature") as bad:
        await env.connector(key=other).get_identity(env.state.user_id(0))
    assert "rotated key" in str(bad.value)
    stale = env.connector(clock=lambda: time.time() - 7200)  # signed two hours ago: expired
    with pytest.raises(AuthenticationError, match="short-lived token"):
        await stale.get_identity(env.state.user_id(0))
    check = await env.connector(key=other).check()
    assert not check.ok and "Invalid JWT Signature" in check.message
    unknown = generate_key(client_email="someone@else.iam.gserviceaccount.com")
    with pytest.raises(AuthenticationError, match="account not found"):
        await env.connector(key=unknown).get_identity(env.state.user_id(0))


@pytest.mark.parametrize("env", [{"admin": "root@acme.example"}], indirect=True)
async def test_only_the_configured_admin_is_accepted(env: Env) -> None:
    with pytest.raises(AuthenticationError, match=r"admin_email secops-bot@acme\.example is not a user"):
        await env.connector().get_identity(env.state.user_id(0))
    assert (await env.connector(admin_email="root@acme.example").check()).ok


@pytest.mark.parametrize("env", [{"granted_scopes": frozenset({SCOPE_ALERTS})}], indirect=True)
async def test_missing_directory_scopes_name_what_to_grant(env: Env) -> None:
    with pytest.raises(AuthenticationError) as refused:
        await env.connector().get_identity(env.state.user_id(0))
    text = str(refused.value)
    assert "unauthorized_client" in text and "grant domain-wide delegation to client id" in text
    assert KEY["client_id"] in text and "admin.directory.user.security" in text


# --- quota and faults -----------------------------------------------------------------------------


async def test_quota_errors_back_off_exponentially(env: Env) -> None:
    connector = env.connector()
    await connector.check()
    for kind in ("403_user_rate", "403_rate", "429"):
        await env.fault(kind, count=2)
    env.sleeps.clear()
    found = await connector.get_identity(env.state.user_id(4))  # the 7th attempt gets through
    assert found.id == env.state.user_id(4)
    # six quota answers: 1, 2, 4, 8, 16 s each plus up to 1 s of jitter, then the 32 s cap
    assert len(env.sleeps) == 6 and env.sleeps == sorted(env.sleeps) and env.sleeps[-1] == 32
    assert all(2**n <= wait <= 2**n + 1 for n, wait in enumerate(env.sleeps[:5]))
    await env.fault("429", count=1, retry_after=7)
    env.sleeps.clear()
    await connector.revoke_sessions(env.state.user_id(4))  # a write retries too: Google did nothing
    assert env.sleeps == [7]


async def test_quota_that_stays_exceeded_is_a_rate_limit_error(env: Env) -> None:
    connector = env.connector()
    await connector.check()
    await env.fault("403_user_rate", count=20)
    with pytest.raises(RateLimitedError, match="quota still exceeded") as limited:
        await connector.get_identity(env.state.user_id(1))
    assert limited.value.code == "userRateLimitExceeded" and limited.value.status == 403
    assert len(env.sleeps) == QuotaRetry().max_retries


async def test_faults_are_retried_or_reported(env: Env) -> None:
    connector = env.connector()
    await connector.check()
    await env.fault("500", count=2)
    assert (await connector.get_identity(env.state.user_id(2))).id == env.state.user_id(2)
    await env.fault("malformed", count=1, path="/admin/directory/v1/users/")
    with pytest.raises(ProviderUnavailableError, match="not valid JSON"):
        await connector.get_identity(env.state.user_id(2))
    await env.fault("503", count=3, path="/admin/directory/v1/users/")  # three tries
    with pytest.raises(ProviderUnavailableError, match="Backend Error"):
        await connector.get_identity(env.state.user_id(2))
    await env.fault("drop", count=3, path=f"/admin/directory/v1/users/{env.state.user_id(2)}/signOut")
    with pytest.raises(OutcomeUnknownError, match="outcome is unknown"):
        await connector.revoke_sessions(env.state.user_id(2))
    await env.fault("drop", count=1, path=f"/admin/directory/v1/users/{env.state.user_id(2)}/signOut")
    assert (await connector.revoke_sessions(env.state.user_id(2))).status == "completed"
    # a connection that never opened sent nothing: unavailable, not an unknown outcome
    unreachable = env.connector(base_url="http://127.0.0.1:1")
    with pytest.raises(ProviderUnavailableError, match="could not be reached") as down:
        await unreachable.revoke_sessions(env.state.user_id(2))
    assert not isinstance(down.value, OutcomeUnknownError)
    # the token expires and Google no longer knows the service account (its key deleted): one 401,
    # one refused renewal, and the error says so
    env.state.keys.clear()
    await env.fault("expire_token")
    with pytest.raises(AuthenticationError, match="account not found"):
        await connector.get_identity(env.state.user_id(3))

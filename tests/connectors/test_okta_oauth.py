"""The Okta connector's OAuth 2.0 service-app mode against the simulator: a private_key_jwt assertion
(RS256) checked against the app's registered public key, the access token cached until it expires."""

from __future__ import annotations

import base64
import logging
import subprocess
import sys
from collections.abc import AsyncIterator

import aiohttp
import pytest
from support.keys import rsa_pem_pair

import connectors
from connectors import AuthenticationError, ConfigurationError, PermissionDeniedError
from connectors.okta import OktaConnector
from connectors.okta_oauth import SCOPES
from standins import serving
from standins.okta import STATE, create_app
from standins.okta_auth import GRANTABLE, OAuthApp
from standins.okta_data import OktaState

CLIENT_ID = "0oasimserviceapp0001"


PRIVATE, PUBLIC = rsa_pem_pair()


class Env:
    def __init__(self, state: OktaState, url: str) -> None:
        self.state, self.url = state, url

    def connector(self, **settings: object) -> OktaConnector:
        config = {"base_url": self.url, "client_id": CLIENT_ID, "private_key": PRIVATE, **settings}
        built = connectors.build("okta", "okta", config)
        assert isinstance(built, OktaConnector)
        return built

    def token_requests(self) -> list[int]:
        return [status for _, bucket, status, _ in self.state.log if bucket == "token"]


@pytest.fixture
async def env(request) -> AsyncIterator[Env]:
    scopes = getattr(request, "param", OAuthApp(CLIENT_ID, PUBLIC).scopes)
    app = create_app(identities=120, oauth=OAuthApp(CLIENT_ID, PUBLIC, scopes=scopes, token_ttl=3600))
    async with serving(app) as url:
        yield Env(app[STATE], url)


async def test_service_app_lists_and_acts_with_one_cached_token(env: Env) -> None:
    async with env.connector() as connector:
        listed = [identity async for identity in connector.list_identities()]
        one = await connector.get_identity(listed[7].id)
        await connector.revoke_sessions(listed[7].id)
        result = await connector.check()
    assert len(listed) == 120 and one.id == listed[7].id
    assert result.ok and result.message.startswith("OAuth service app accepted")
    assert env.token_requests() == [200]  # fetched once, reused for every call
    assert [set(token[1]) for token in env.state.oauth_tokens.values()] == [set(SCOPES)]


async def test_expired_token_is_fetched_again_once(env: Env) -> None:
    async with env.connector() as connector, aiohttp.ClientSession() as session:
        first = await connector.get_identity(env.state.user_id(3))
        async with session.post(f"{env.url}/_admin/faults", json={"kind": "expire_token"}) as answer:
            assert answer.status == 200
        again = await connector.get_identity(env.state.user_id(3))
    assert first.id == again.id
    assert env.token_requests() == [200, 200]
    assert [status for _, bucket, status, _ in env.state.log if bucket == "user"] == [200, 401, 200]


async def test_wrong_key_is_refused_and_named(env: Env) -> None:
    other_private, _ = rsa_pem_pair()
    async with env.connector(private_key=other_private) as connector:
        with pytest.raises(AuthenticationError) as refused:
            await connector.get_identity(env.state.user_id(3))
        result = await connector.check()
    text = str(refused.value)
    assert "invalid_client: The client_assertion signature is invalid." in text and "check client_id" in text
    assert "PRIVATE KEY" not in text and not result.ok
    assert all(bucket == "token" for _, bucket, _, _ in env.state.log)  # nothing else was sent


@pytest.mark.parametrize("env", [("okta.users.read",)], indirect=True)
async def test_scopes_not_granted(env: Env) -> None:
    async with env.connector() as connector:
        with pytest.raises(AuthenticationError, match="invalid_scope"):
            await connector.get_identity(env.state.user_id(3))
    async with env.connector(scopes="okta.users.read") as connector:
        # privilege decides approvals: a user whose roles (or risk) can't be read is an error, never
        # "not privileged" (nor "no risk"); the answer names the scope the token lacks
        lacks = (
            r"HTTP 403.*\[E0000006\]; the service app's token lacks the scope okta\.(roles|userRisk)\.read"
        )
        with pytest.raises(PermissionDeniedError, match=lacks):
            await connector.get_identity(env.state.user_id(3))
        result = await connector.check()
        with pytest.raises(PermissionDeniedError, match="E0000006"):
            await connector.disable(env.state.user_id(3), "x")
        # nor is a listing that can't read the admin role assignees (okta.roles.read)
        with pytest.raises(PermissionDeniedError, match=r"/iam/assignees/users failed with HTTP 403"):
            [identity async for identity in connector.list_identities()]
    assert not result.ok and "/risk" in result.message and "okta.userRisk.read" in result.message


NO_RISK_READ = tuple(scope for scope in GRANTABLE if scope != "okta.userRisk.read")


@pytest.mark.parametrize("env", [NO_RISK_READ], indirect=True)
async def test_a_token_without_the_risk_scope_is_named_never_taken_for_no_itp(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="connectors.okta"):
        async with env.connector(scopes=" ".join(NO_RISK_READ)) as connector:
            with pytest.raises(
                PermissionDeniedError, match=r"lacks the scope okta\.userRisk\.read"
            ) as refused:
                await connector.get_identity(env.state.user_id(3))
            result = await connector.check()
            assert connector.itp is not False  # risk is not "unknown for every user": it can't be read
    assert refused.value.code == "insufficient_scope" and refused.value.status == 403
    assert "Okta API Scopes" in str(refused.value)
    assert not result.ok and "okta.userRisk.read" in result.message
    assert "Identity Threat Protection" not in result.message
    assert not [r for r in caplog.records if "Identity Threat Protection" in r.getMessage()]


async def test_an_org_without_itp_still_reads_as_one_over_oauth(caplog: pytest.LogCaptureFixture) -> None:
    app = create_app(identities=20, itp=False, oauth=OAuthApp(CLIENT_ID, PUBLIC, token_ttl=3600))
    async with serving(app) as url:
        with caplog.at_level(logging.WARNING, logger="connectors.okta"):
            async with Env(app[STATE], url).connector() as connector:
                one = await connector.get_identity(app[STATE].user_id(3))
                result = await connector.check()
    assert one.risk_level is None and connector.itp is False
    assert result.ok and "no Identity Threat Protection (HTTP 401 E0000015" in result.message
    assert len([r for r in caplog.records if "Identity Threat Protection" in r.getMessage()]) == 1


def test_bad_oauth_settings_and_pyjwt_only_in_that_mode() -> None:
    base = {"base_url": "https://acme.okta.com"}
    cases = [
        ({**base, "client_id": CLIENT_ID}, "'private_key' is required"),
        ({**base, "private_key": PRIVATE}, "'client_id' is required with private_key"),
        (
            {**base, "client_id": CLIENT_ID, "private_key": PRIVATE, "scopes": "users.read"},
            "'scopes' must be Okta scopes",
        ),
    ]
    cases.append(
        ({**base, "client_id": CLIENT_ID, "private_key": "bm90IGEga2V5"}, "must be a PEM private key")
    )
    for config, message in cases:
        with pytest.raises(ConfigurationError, match=message):
            connectors.build("okta", "okta", config)
    # a one-line form field (SOAR, Cortex) may carry the PEM base64-encoded
    encoded = base64.b64encode(PRIVATE.encode()).decode()
    built = connectors.build("okta", "okta", {**base, "client_id": CLIENT_ID, "private_key": encoded})
    assert isinstance(built, OktaConnector)
    code = (
        "import sys, connectors; connectors.build('okta', 'o', {'base_url': 'https://a.okta.com',"
        " 'api_token': '00abcdefghij'}); print('jwt' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


async def test_key_that_is_not_a_key(env: Env) -> None:
    async with env.connector(
        private_key="-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----"
    ) as connector:
        with pytest.raises(ConfigurationError, match="not a PEM RSA private key") as bad:
            await connector.get_identity(env.state.user_id(3))
    assert "nope" not in str(bad.value)

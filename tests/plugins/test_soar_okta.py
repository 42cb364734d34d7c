"""The SOAR app over Okta (simulator on loopback): an API-token asset and a service-app asset (its
private_key_jwt signed with PyJWT inside the app's own environment), the actions changing the user in the
simulator; and the built package carrying the PyJWT and cryptography wheels that mode needs, running it
on Python 3.9 from the unpacked package."""

from __future__ import annotations

import asyncio
import base64
import json
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support.keys import rsa_pem_pair
from support.soar import PACKAGE, RUNTIMES, SoarApp, require, run_process

from standins import okta, serving
from standins.okta_auth import OAuthApp
from standins.okta_data import OktaState

TOKEN = "00soar-okta-token-00000"
CLIENT_ID = "0oasoarserviceapp001"
PRIVATE, PUBLIC = rsa_pem_pair()
PRIVATE_B64 = base64.b64encode(PRIVATE.encode()).decode()


@pytest.fixture
async def sim() -> AsyncIterator[tuple[str, OktaState]]:
    app = okta.create_app(
        identities=40, rate_limits=False, api_token=TOKEN, oauth=OAuthApp(CLIENT_ID, PUBLIC)
    )
    async with serving(app) as url:
        yield url, app[okta.STATE]


def active(state: OktaState) -> list[int]:
    return [i for i in range(state.total) if state.status(i) == "ACTIVE" and not state.role_types(i)]


async def test_okta_assets_token_and_service_app(sim: tuple[str, OktaState], tmp_path: Path) -> None:
    url, state = sim
    token_asset = {"connector_kind": "okta", "connector_name": "okta", "base_url": url, "api_token": TOKEN}
    app_asset = {
        "connector_kind": "okta",
        "connector_name": "okta",
        "base_url": url,
        "client_id": CLIENT_ID,
        "private_key": PRIVATE_B64,
    }
    by_token, by_app = SoarApp(tmp_path / "t", token_asset), SoarApp(tmp_path / "a", app_asset)
    (tmp_path / "t").mkdir()
    (tmp_path / "a").mkdir()
    first, second, third = active(state)[:3]
    connectivity, got, disable, reset, revoke, bad = await asyncio.gather(
        by_app.run("test_connectivity"),
        by_token.run("get_identity", {"identity_id": state.user_id(first)}),
        by_app.run("disable_account", {"identity_id": state.user_id(second), "reason": "SOAR case 4"}),
        by_token.run("force_password_reset", {"identity_id": state.user_id(third)}),
        by_app.run("revoke_sessions", {"identity_id": state.user_id(first)}),
        by_token.run("get_identity", {"identity_id": state.user_id(first)}, api_token="00wrong-token-0000"),
    )
    assert connectivity.ok, connectivity.message
    assert "OAuth service app accepted" in connectivity.stderr
    assert got.ok and got.data[0]["email"] == state.user(first)["profile"]["email"], got.message
    assert disable.ok and state.status(second) == "SUSPENDED", disable.message
    assert reset.ok and state.status(third) == "PASSWORD_EXPIRED", reset.message
    assert revoke.ok and (state.user_id(first), "sessions+tokens") in state.actions, revoke.message
    assert not bad.ok and bad.message.startswith("Asset misconfiguration in get identity: Okta")
    assert "00wrong-token-0000" not in bad.stdout + bad.stderr


def test_package_carries_the_jwt_wheels() -> None:
    require(PACKAGE, "soar")
    with tarfile.open(PACKAGE) as tar:
        manifest = json.load(tar.extractfile("idops/manifest.json"))  # type: ignore[arg-type]
    config = manifest["configuration"]
    assert "okta" in config["connector_kind"]["value_list"]
    assert config["api_token"]["data_type"] == config["private_key"]["data_type"] == "password"
    for runtime in ("pip39_dependencies", "pip313_dependencies"):
        modules = {w["module"].lower() for w in manifest[runtime]["wheel"]}
        assert {"pyjwt", "cryptography", "cffi"} <= modules, (runtime, modules)


async def test_unpacked_package_signs_the_assertion_on_python_3_9(
    sim: tuple[str, OktaState], tmp_path: Path
) -> None:
    url, state = sim
    python = require(RUNTIMES / "3.9" / "bin" / "python", "soar")
    with tarfile.open(PACKAGE) as tar:
        tar.extractall(tmp_path, filter="data")
    asset = {"connector_kind": "okta", "base_url": url, "client_id": CLIENT_ID, "private_key": PRIVATE_B64}
    (tmp_path / "asset.json").write_text(json.dumps(asset))
    (tmp_path / "params.json").write_text(json.dumps({"identity_id": state.user_id(active(state)[0])}))
    code, out, err = await run_process(
        str(python),
        "-m",
        "src.app",
        "action",
        "get_identity",
        "-a",
        "../asset.json",
        "-p",
        "../params.json",
        cwd=tmp_path / "idops",
        env={"PATH": "/usr/bin:/bin"},
    )
    assert code == 0, out + err
    assert state.user(active(state)[0])["profile"]["email"] in out
    assert len(state.oauth_tokens) == 1  # the token came from the assertion the package signed

"""The SOAR app over SailPoint (simulator on loopback): the risk attribute, disable as a queued task, and
the actions SailPoint does not have failing as unsupported, without touching the provider."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support.soar import SoarApp

from standins import sailpoint, serving


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[tuple[str, sailpoint.SailPointState]]:
    app = sailpoint.create_app(identities=30, rate_limit=False)
    async with serving(app) as url:
        yield url, app[sailpoint.STATE]


@pytest.fixture
def soar(sim: tuple[str, sailpoint.SailPointState], tmp_path: Path) -> SoarApp:
    url, state = sim
    asset = {
        "connector_kind": "sailpoint",
        "connector_name": "isc",
        "base_url": url,
        "client_id": state.client_id,
        "client_secret": state.client_secret,
        "risk_attribute": "attributes.riskScore",
    }
    return SoarApp(tmp_path, asset)


async def test_sailpoint_actions(soar: SoarApp, sim: tuple[str, sailpoint.SailPointState]) -> None:
    _, state = sim
    first, second = state.identity(1), state.identity(2)
    got, reset, revoke, disable, bad_secret, wrong_setting = await asyncio.gather(
        soar.run("get_identity", {"identity_id": first["id"]}),
        soar.run("force_password_reset", {"identity_id": first["id"]}),
        soar.run("revoke_sessions", {"identity_id": first["id"]}),
        soar.run("disable_account", {"identity_id": second["id"], "reason": "SOAR case 9"}),
        soar.run("get_identity", {"identity_id": first["id"]}, client_secret="not-the-secret"),
        soar.run("get_identity", {"identity_id": first["id"]}, api_key="hld_test_simulator"),
    )
    assert got.ok, got.message
    assert got.data[0]["email"] == first["emailAddress"]
    assert got.data[0]["risk_score"] == first["attributes"]["riskScore"]

    assert not reset.ok, reset.message
    assert (
        reset.message
        == "Action failure in force password reset: SailPoint has no 'Force password reset' action"
    )
    assert not revoke.ok and "SailPoint has no 'Revoke sessions' action" in revoke.message, revoke.message

    assert disable.ok, disable.message
    assert disable.data[0]["status"] == "queued" and disable.data[0]["reference"]
    assert state.identity(2)["identityStatus"] == "DISABLED"
    assert state.identity(1)["identityStatus"] != "DISABLED"
    assert {task["action"] for task in state.tasks.values()} == {"disable"}

    assert not bad_secret.ok, bad_secret.message
    assert bad_secret.message.startswith("Asset misconfiguration in get identity: SailPoint"), (
        bad_secret.message
    )
    assert "not-the-secret" not in bad_secret.message + bad_secret.stderr
    assert not wrong_setting.ok, wrong_setting.message
    assert (
        "Asset misconfiguration in get identity: connector 'isc' (sailpoint): unknown setting 'api_key'"
        in (wrong_setting.message)
    )

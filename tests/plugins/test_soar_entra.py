"""The SOAR app and the Cortex responders over Entra ID (Graph simulator on loopback): an Entra asset
(base_url is the Graph root), the containment actions and the two verdict actions reaching Identity
Protection, and a refused secret named as an asset misconfiguration without echoing it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from support.soar import SoarApp
from test_cortex_workers import RESPONDERS, config, observable, run_worker

from standins import serving
from standins.entra import create_app
from standins.entra_state import STATE, EntraState


@pytest.fixture
async def sim() -> AsyncIterator[tuple[str, EntraState]]:
    app = create_app(users=60)
    async with serving(app) as url:
        yield url, app[STATE]


def settings(url: str, state: EntraState) -> dict[str, Any]:
    return {
        "connector_kind": "entra",
        "connector_name": "entra",
        "base_url": url,
        "authority_url": url,
        "tenant_id": state.tenant_id,
        "client_id": state.client_id,
        "client_secret": state.client_secret,
    }


async def test_soar_actions_on_entra(sim: tuple[str, EntraState], tmp_path: Path) -> None:
    url, state = sim
    soar = SoarApp(tmp_path, settings(url, state))
    got, revoke, disable, confirm, dismiss, bad_secret = await asyncio.gather(
        soar.run("get_identity", {"identity_id": state.user_id(7)}),
        soar.run("revoke_sessions", {"identity_id": state.upn(1)}),
        soar.run("disable_account", {"identity_id": state.user_id(2), "reason": "SOAR case 12"}),
        soar.run("confirm_compromised", {"identity_id": state.user_id(27)}),
        soar.run("dismiss_risk", {"identity_id": state.user_id(47)}),
        soar.run("get_identity", {"identity_id": state.user_id(1)}, client_secret="not-the-secret"),
    )
    assert got.ok, got.message
    assert got.data[0]["risk_level"] == "critical" and got.data[0]["email"] == state.mail(7)
    assert revoke.ok and state.revoked[1] == 1, revoke.message
    assert disable.ok and state.enabled[2] is False, disable.message
    assert confirm.ok and state.risk_of(27)[1] == "confirmedCompromised", confirm.message
    assert confirm.data[0]["action"] == "confirm_compromised" and confirm.data[0]["status"] == "completed"
    assert dismiss.ok and state.risk_of(47)[1] == "dismissed", dismiss.message
    assert not bad_secret.ok
    assert bad_secret.message.startswith("Asset misconfiguration in get identity: Microsoft Entra ID"), (
        bad_secret.message
    )
    assert "not-the-secret" not in bad_secret.message + bad_secret.stderr


async def test_cortex_verdict_responders_on_entra(sim: tuple[str, EntraState], tmp_path: Path) -> None:
    url, state = sim

    def job(worker: str, artifact: dict[str, Any]) -> dict[str, Any]:
        cfg = config(worker, RESPONDERS, **settings(url, state))
        return {"dataType": "thehive:case_artifact", "data": artifact, "tlp": 2, "pap": 2, "config": cfg}

    script = RESPONDERS / "idops_responder.py"
    confirm, dismiss = await asyncio.gather(
        run_worker(script, job("Idops_ConfirmCompromised.json", observable(state.mail(27) or "")), tmp_path),
        run_worker(script, job("Idops_DismissRisk.json", observable(state.user_id(47), "other")), tmp_path),
    )
    assert confirm["success"] is True, confirm
    assert confirm["full"]["result"]["action"] == "confirm_compromised"
    assert state.risk_of(27)[1] == "confirmedCompromised"
    assert dismiss["success"] is True, dismiss
    assert state.risk_of(47)[1] == "dismissed"

"""The SOAR app over a Google Workspace asset (simulator on loopback): lookup with risk from Alert
Center, the three actions, and a bad key as an asset misconfiguration that never shows the key."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support.soar import SoarApp

from standins import google_workspace, serving

KEY = google_workspace.generate_key()


@pytest.fixture
async def sim() -> AsyncIterator[tuple[str, google_workspace.WorkspaceState]]:
    app = google_workspace.create_app(key=KEY, identities=40)
    async with serving(app) as url:
        yield url, app[google_workspace.STATE]


def asset(url: str, key: dict = KEY) -> dict[str, str]:
    return {
        "connector_kind": "google_workspace",
        "connector_name": "workspace",
        "base_url": url,
        # base64: SOAR stores the field encrypted, and the SDK's local stand-in for that splits on ":"
        "service_account_json": base64.b64encode(
            json.dumps({**key, "token_uri": f"{url}/token"}).encode()
        ).decode(),
        "admin_email": "secops-bot@acme.example",
        "alert_center_url": url,
    }


async def test_workspace_actions(sim: tuple[str, google_workspace.WorkspaceState], tmp_path: Path) -> None:
    url, state = sim
    soar = SoarApp(tmp_path, asset(url))
    plain = [i for i in range(40) if not state.user(i)["suspended"] and not state.user(i)["isAdmin"]]
    first, second, third = (state.user(i) for i in plain[:3])
    other = google_workspace.generate_key(client_email=KEY["client_email"])
    got, reset, revoke, disable, refused = await asyncio.gather(
        soar.run("get_identity", {"identity_id": first["primaryEmail"]}),
        soar.run("force_password_reset", {"identity_id": first["id"]}),
        soar.run("revoke_sessions", {"identity_id": second["id"]}),
        soar.run("disable_account", {"identity_id": third["id"], "reason": "SOAR case 9"}),
        soar.run("get_identity", {"identity_id": first["id"]}, **asset(url, other)),
    )
    assert got.ok, got.message
    assert got.data[0]["email"] == first["primaryEmail"] and got.data[0]["provider"] == "google_workspace"
    assert got.data[0]["risk_level"] in ("low", "medium", "high", "critical")
    assert reset.ok and state.user(plain[0])["changePasswordAtNextLogin"] is True, reset.message
    assert revoke.ok and state.sign_outs[plain[1]] == 1, revoke.message
    assert disable.ok and state.user(plain[2])["suspended"] is True, disable.message
    assert not refused.ok and "Invalid JWT Signature" in refused.message, refused.message
    assert "PRIVATE KEY" not in refused.message + refused.stdout + refused.stderr

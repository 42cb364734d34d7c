"""TheHive Cortex workers with an Okta configuration (simulator on loopback): lookup with ITP risk, the
three responders, and a refused token kept out of the echoed job."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from test_cortex_workers import ANALYZER, RESPONDERS, config, observable, run_worker

from standins import okta, serving

TOKEN = "00cortex-okta-token-0000"


def settings(url: str, token: str = TOKEN) -> dict[str, Any]:
    return {"connector_kind": "okta", "connector_name": "okta", "base_url": url, "api_token": token}


async def test_okta_lookup_and_responders(tmp_path: Path) -> None:
    app = okta.create_app(identities=60, rate_limits=False, api_token=TOKEN)
    state = app[okta.STATE]
    active = [i for i in range(state.total) if state.status(i) == "ACTIVE" and not state.role_types(i)]
    target, reset_one, revoke_one, disable_one = active[:4]
    async with serving(app) as url:
        state.set_risk(target, "HIGH", "Impossible travel", "user.risk.detect", actor="itp")
        email = state.user(target)["profile"]["email"]
        lookup = {
            "dataType": "mail",
            "data": email,
            "tlp": 2,
            "config": config("Idops_Lookup.json", ANALYZER, **settings(url)),
        }

        def job(worker: str, artifact: dict[str, Any]) -> dict[str, Any]:
            cfg = config(worker, RESPONDERS, **settings(url))
            return {"dataType": "thehive:case_artifact", "data": artifact, "tlp": 2, "pap": 2, "config": cfg}

        script = RESPONDERS / "idops_responder.py"
        found, reset, revoke, disable = await asyncio.gather(
            run_worker(ANALYZER / "idops_lookup.py", lookup, tmp_path),
            run_worker(
                script,
                job("Idops_ForcePasswordReset.json", observable(state.user(reset_one)["profile"]["email"])),
                tmp_path,
            ),
            run_worker(
                script,
                job("Idops_RevokeSessions.json", observable(state.user_id(revoke_one), "other")),
                tmp_path,
            ),
            run_worker(
                script,
                job(
                    "Idops_DisableAccount.json",
                    observable(state.user(disable_one)["profile"]["email"], message="Case 9"),
                ),
                tmp_path,
            ),
        )
        bad_cfg = config("Idops_Lookup.json", ANALYZER, **settings(url, "00not-the-token-000"))
        refused = await run_worker(ANALYZER / "idops_lookup.py", {**lookup, "config": bad_cfg}, tmp_path)
    assert found["success"] and [i["id"] for i in found["full"]["identities"]] == [state.user_id(target)]
    assert found["summary"]["taxonomies"][0]["value"] == "high (75)"
    assert reset["success"] and state.status(reset_one) == "PASSWORD_EXPIRED"
    assert revoke["success"] and (state.user_id(revoke_one), "sessions+tokens") in state.actions
    assert disable["success"] and state.status(disable_one) == "SUSPENDED"
    assert not refused["success"] and "Invalid token provided" in refused["errorMessage"]
    assert refused["input"]["config"]["api_token"] == "REMOVED"
    assert "00not-the-token-000" not in refused["_stdout"]

"""TheHive Cortex workers with a Google Workspace configuration (simulator on loopback): lookup with
risk from Alert Center, the three responders, and a refused key kept out of the echoed job."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from test_cortex_workers import ANALYZER, RESPONDERS, config, observable, run_worker

from standins import google_workspace, serving

KEY = google_workspace.generate_key()


def settings(url: str, key: dict = KEY) -> dict[str, Any]:
    return {
        "connector_kind": "google_workspace",
        "base_url": url,
        "service_account_json": json.dumps({**key, "token_uri": f"{url}/token"}),
        "admin_email": "secops-bot@acme.example",
        "alert_center_url": url,
    }


async def test_workspace_lookup_and_responders(tmp_path: Path) -> None:
    app = google_workspace.create_app(key=KEY, identities=60)
    state = app[google_workspace.STATE]
    plain = [i for i in range(60) if not state.user(i)["suspended"] and not state.user(i)["isAdmin"]]
    target, others = plain[0], plain[1:]
    state.raise_alert(target, "Leaked password")
    async with serving(app) as url:
        lookup_cfg = config("Idops_Lookup.json", ANALYZER, **settings(url))
        lookup = {
            "dataType": "mail",
            "data": state.user(target)["primaryEmail"],
            "tlp": 2,
            "config": lookup_cfg,
        }

        def job(worker: str, artifact: dict[str, Any]) -> dict[str, Any]:
            cfg = config(worker, RESPONDERS, **settings(url))
            return {"dataType": "thehive:case_artifact", "data": artifact, "tlp": 2, "pap": 2, "config": cfg}

        script = RESPONDERS / "idops_responder.py"
        email = state.user(others[0])["primaryEmail"]
        found, reset, revoke, disable = await asyncio.gather(
            run_worker(ANALYZER / "idops_lookup.py", lookup, tmp_path),
            run_worker(script, job("Idops_ForcePasswordReset.json", observable(email)), tmp_path),
            run_worker(
                script,
                job("Idops_RevokeSessions.json", observable(state.user_id(others[1]), "other")),
                tmp_path,
            ),
            run_worker(
                script,
                job(
                    "Idops_DisableAccount.json",
                    observable(state.user(others[2])["primaryEmail"], message="Case 7"),
                ),
                tmp_path,
            ),
        )
        other_key = google_workspace.generate_key(client_email=KEY["client_email"])
        bad_cfg = config("Idops_Lookup.json", ANALYZER, **settings(url, other_key))
        refused = await run_worker(ANALYZER / "idops_lookup.py", {**lookup, "config": bad_cfg}, tmp_path)
    assert found["success"] and [i["id"] for i in found["full"]["identities"]] == [state.user_id(target)]
    assert found["summary"]["taxonomies"][0]["value"] == "critical (100)"
    assert reset["success"] and state.user(others[0])["changePasswordAtNextLogin"] is True
    assert revoke["success"] and state.sign_outs[others[1]] == 1
    assert disable["success"] and state.user(others[2])["suspended"] is True
    assert disable["full"]["result"]["message"] == "suspended in Google Workspace"
    assert not refused["success"] and "Invalid JWT Signature" in refused["errorMessage"]
    assert refused["input"]["config"]["service_account_json"] == "REMOVED"
    assert "PRIVATE KEY" not in refused["_stdout"]

"""TheHive Cortex analyzer and responders run as Cortex runs them (the job JSON on stdin, the report on
stdout) against the HomeBase and SailPoint simulators: success, not found, rate limit recovered, bad
credentials (redacted in the echoed input) and an action the provider does not have."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from support.sims import HomeBaseSim

from standins import homebase, sailpoint, serving
from standins.homebase import Fault

ROOT = Path(__file__).resolve().parents[2]
CORTEX = ROOT / "plugins" / "cortex"
ANALYZER = CORTEX / "analyzers" / "IdopsLookup"
RESPONDERS = CORTEX / "responders" / "Idops"
API_KEY = "hld_test_simulator"
pytestmark = pytest.mark.homebase(identities=40)


def definition(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


async def run_worker(script: Path, job: dict[str, Any], cwd: Path) -> dict[str, Any]:
    """Run a worker with `job` on stdin (no /job folder, as Cortex's process runner does) and parse
    its report."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        cwd=cwd,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(json.dumps(job).encode()), 60)
    report = json.loads(out)
    assert report["success"] == (process.returncode == 0), err.decode()
    report["_stdout"] = out.decode()
    return report


def config(worker_json: str, folder: Path, **settings: Any) -> dict[str, Any]:
    """The config Cortex hands a worker: its definition's `config` plus the configured items."""
    defined = definition(folder / worker_json)
    names = {item["name"] for item in defined["configurationItems"]}
    assert set(settings) <= names, set(settings) - names
    return {**defined["config"], **settings, "check_tlp": False, "max_tlp": 2}


def observable(value: str, data_type: str = "mail", message: str = "") -> dict[str, Any]:
    return {"_type": "case_artifact", "dataType": data_type, "data": value, "message": message, "tlp": 2}


def active(state: homebase.HomeBaseState) -> list[dict[str, Any]]:
    """Active identities' records, each with its simulator index."""
    records = ({**state.record(i), "index": i} for i in range(state.size))
    return [r for r in records if r["status"] == "active"]


async def test_lookup_analyzer(homebase_sim: HomeBaseSim, tmp_path: Path) -> None:
    url, state = homebase_sim.url, homebase_sim.state
    person = active(state)[0]
    settings = {"connector_kind": "homebase", "base_url": url + "/v1", "api_key": API_KEY}
    cfg = config("Idops_Lookup.json", ANALYZER, **settings)
    script = ANALYZER / "idops_lookup.py"
    found, nothing, refused = await asyncio.gather(
        run_worker(script, {"dataType": "mail", "data": person["email"], "tlp": 2, "config": cfg}, tmp_path),
        run_worker(script, {"dataType": "mail", "data": "nobody@nowhere.example", "config": cfg}, tmp_path),
        run_worker(
            script,
            {"dataType": "mail", "data": person["email"], "config": {**cfg, "api_key": "hld_live_wrong1"}},
            tmp_path,
        ),
    )
    assert found["success"] is True
    assert [i["id"] for i in found["full"]["identities"]] == [person["id"]]
    [taxonomy] = found["summary"]["taxonomies"]
    expected = {"low": "safe", "medium": "suspicious", "high": "malicious", "critical": "malicious"}
    assert taxonomy["level"] == expected[person["risk_level"]]
    assert taxonomy["value"] == f"{person['risk_level']} ({person['risk_score']})"

    assert nothing["success"] is True and nothing["full"]["identities"] == []
    assert nothing["summary"]["taxonomies"][0]["value"] == "not found"

    assert refused["success"] is False
    assert (
        refused["errorMessage"].startswith("HomeBase")
        and "Check the worker's configuration" in refused["errorMessage"]
    )
    assert "(request id " in refused["errorMessage"]
    assert refused["input"]["config"]["api_key"] == "REMOVED"
    assert "hld_live_wrong1" not in refused["_stdout"]

    state.faults.append(Fault(kind="429", count=1, retry_after=0.2, path="/v1/identity", method="GET"))
    waited = await run_worker(script, {"dataType": "other", "data": person["id"], "config": cfg}, tmp_path)
    assert waited["success"] is True and waited["full"]["identities"][0]["id"] == person["id"]
    assert len(state.requests_to(f"/v1/identity/{person['id']}", "GET")) == 2  # the 429, then the answer


async def test_responders_act_once_each(homebase_sim: HomeBaseSim, tmp_path: Path) -> None:
    url, state = homebase_sim.url, homebase_sim.state
    people = active(state)
    settings = {"connector_kind": "homebase", "base_url": url + "/v1", "api_key": API_KEY}
    script = RESPONDERS / "idops_responder.py"

    def job(worker: str, artifact: dict[str, Any], **extra: Any) -> dict[str, Any]:
        cfg = config(worker, RESPONDERS, **settings, **extra)
        return {"dataType": "thehive:case_artifact", "data": artifact, "tlp": 2, "pap": 2, "config": cfg}

    state.faults.append(Fault(kind="429", count=1, retry_after=0.2, path="/v1/identity", method="POST"))
    reset, revoke, disable, no_reason, missing, wrong_type = await asyncio.gather(
        run_worker(script, job("Idops_ForcePasswordReset.json", observable(people[0]["email"])), tmp_path),
        run_worker(script, job("Idops_RevokeSessions.json", observable(people[1]["id"], "other")), tmp_path),
        run_worker(
            script,
            job("Idops_DisableAccount.json", observable(people[2]["email"], message="Case 12: token theft")),
            tmp_path,
        ),
        run_worker(script, job("Idops_DisableAccount.json", observable(people[3]["email"])), tmp_path),
        run_worker(script, job("Idops_RevokeSessions.json", observable("ghost@nowhere.example")), tmp_path),
        run_worker(
            script,
            {**job("Idops_RevokeSessions.json", observable(people[4]["email"])), "dataType": "thehive:case"},
            tmp_path,
        ),
    )
    assert reset["success"] and reset["full"]["result"]["action"] == "force_password_reset"
    assert reset["operations"] == [{"type": "AddTagToArtifact", "tag": "idops:force_password_reset"}]
    assert revoke["success"] and revoke["full"]["identity"]["id"] == people[1]["id"]
    assert disable["success"] and disable["full"]["reason"] == "Case 12: token theft"
    assert state.password_resets[people[0]["id"]] == 1
    assert state.sessions_revoked[people[1]["id"]] == 1
    assert state.record(people[2]["index"])["status"] == "disabled"
    assert [a["reason"] for a in state.actions if a["action"] == "disable"] == ["Case 12: token theft"]
    # one of the POSTs met the 429 and was retried: still exactly three actions
    assert sorted(a["action"] for a in state.actions) == [
        "disable",
        "force_password_reset",
        "revoke_sessions",
    ]
    assert len(state.requests_to("/v1/identity/", "POST")) == 4

    assert not no_reason["success"] and "needs a reason" in no_reason["errorMessage"]
    assert not missing["success"]
    assert missing["errorMessage"] == "No identity in 'homebase' matches 'ghost@nowhere.example'."
    assert not wrong_type["success"] and "not thehive:case" in wrong_type["errorMessage"]


async def test_unsupported_action_on_sailpoint(tmp_path: Path) -> None:
    app = sailpoint.create_app(identities=10, rate_limit=False)
    state = app[sailpoint.STATE]
    async with serving(app) as url:
        settings = {
            "connector_kind": "sailpoint",
            "base_url": url,
            "client_id": state.client_id,
            "client_secret": state.client_secret,
        }
        cfg = config("Idops_ForcePasswordReset.json", RESPONDERS, **settings)
        person = state.identity(1)
        job = {"dataType": "thehive:case_artifact", "data": observable(person["emailAddress"]), "config": cfg}
        report = await run_worker(RESPONDERS / "idops_responder.py", job, tmp_path)
    assert not report["success"]
    assert report["errorMessage"] == "SailPoint has no 'Force password reset' action"
    assert report["input"]["config"]["client_secret"] == "REMOVED"
    assert state.client_secret not in report["_stdout"]
    assert state.tasks == {}


def test_definitions_point_at_their_scripts() -> None:
    for folder in (ANALYZER, RESPONDERS):
        for path in folder.glob("*.json"):
            worker = definition(path)
            assert (folder.parent / worker["command"]).is_file(), path
            secrets = {item["name"] for item in worker["configurationItems"]} & {"api_key", "client_secret"}
            assert secrets == {"api_key", "client_secret"}, path
    services = {definition(p)["config"]["service"] for p in RESPONDERS.glob("*.json")}
    assert services == {
        "force_password_reset",
        "revoke_sessions",
        "disable",
        "confirm_compromised",
        "dismiss_risk",
    }

"""The Splunk SOAR app's actions, run through the SDK's AppCliRunner in the app's own environment,
against the HomeBase simulator on loopback: success, not found, rate limit recovered, bad credentials,
bad parameters, and what each action changed on the provider."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support.sims import HomeBaseSim
from support.soar import SOAR_DIR, SOAR_PY, SoarApp, run_process

import connectors
from standins import homebase
from standins.homebase import Fault

API_KEY = "hld_test_simulator"


@dataclass
class Sim:
    url: str
    state: homebase.HomeBaseState

    def records(self) -> list[dict[str, Any]]:
        return [self.state.record(i) for i in range(self.state.size)]

    def status_of(self, identity_id: str) -> str:
        index = self.state.index_of(identity_id)
        assert index is not None, identity_id
        return str(self.state.record(index)["status"])

    def connector(self) -> connectors.Connector:
        return connectors.build("homebase", "homebase", {"base_url": self.url + "/v1", "api_key": API_KEY})


@pytest.fixture
def sim(homebase_sim: HomeBaseSim) -> Sim:
    return Sim(homebase_sim.url, homebase_sim.state)


@pytest.fixture
def soar(sim: Sim, tmp_path: Path) -> SoarApp:
    asset = {"connector_kind": "homebase", "connector_name": "homebase", "base_url": sim.url + "/v1"}
    return SoarApp(tmp_path, {**asset, "api_key": API_KEY})


def active(sim: Sim) -> list[dict[str, Any]]:
    return [r for r in sim.records() if r["status"] == "active"]


async def test_connectivity_ok_and_bad_credentials(soar: SoarApp) -> None:
    ok, bad_key, bad_kind = await asyncio.gather(
        soar.run("test_connectivity"),
        soar.run("test_connectivity", api_key="hld_test_not_a_known_key"),
        soar.run("test_connectivity", connector_kind="nosuch"),
    )
    assert ok.ok, ok.message
    assert "API key accepted; 60 identities visible" in ok.stderr
    assert not bad_key.ok, bad_key.message
    assert bad_key.message.startswith("Asset misconfiguration in test connectivity: HomeBase")
    assert "request id" in bad_key.message and "Check the asset's credentials" in bad_key.message
    assert "hld_test_not_a_known_key" not in bad_key.stdout + bad_key.stderr  # the key is never echoed
    assert not bad_kind.ok and "unknown kind 'nosuch'" in bad_kind.message, bad_kind.message


async def test_list_identities_filters_and_limit(soar: SoarApp, sim: Sim) -> None:
    high, privileged, bad_level, bad_limit = await asyncio.gather(
        soar.run("list_identities", {"risk_level": "high", "limit": 3}),
        soar.run("list_identities", {"privileged": "yes", "limit": 1000}),
        soar.run("list_identities", {"risk_level": "severe"}),
        soar.run("list_identities", {"limit": 0}),
    )
    expected_high = [r["id"] for r in sim.records() if r["risk_level"] == "high"][:3]
    assert high.ok, high.message
    assert [i["id"] for i in high.data] == expected_high
    assert all(i["risk_level"] == "high" for i in high.data)
    assert privileged.ok, privileged.message
    assert {i["id"] for i in privileged.data} == {r["id"] for r in sim.records() if r["privileged"]}
    assert not bad_level.ok and "unknown risk level 'severe'" in bad_level.message, bad_level.message
    assert not bad_limit.ok and "'limit' must be between 1 and 1000" in bad_limit.message, bad_limit.message


async def test_get_identity_found_and_not_found(soar: SoarApp, sim: Sim) -> None:
    person = active(sim)[0]
    found, missing = await asyncio.gather(
        soar.run("get_identity", {"identity_id": person["id"]}),
        soar.run("get_identity", {"identity_id": "idn_0000000000"}),
    )
    async with sim.connector() as connector:
        expected = (await connector.get_identity(person["id"])).to_dict()
    assert found.ok, found.message
    assert found.data == [expected]
    assert not missing.ok, missing.message
    assert missing.message.startswith("Action failure in get identity: HomeBase")
    assert "request id" in missing.message


async def test_lookup_by_email_name_and_no_match(soar: SoarApp, sim: Sim) -> None:
    person = active(sim)[3]
    by_email, by_name, nothing = await asyncio.gather(
        soar.run("lookup_identity", {"query": person["email"].upper()}),
        soar.run("lookup_identity", {"query": person["display_name"], "limit": 50}),
        soar.run("lookup_identity", {"query": "nobody.at.all@nowhere.example"}),
    )
    assert by_email.ok and [i["id"] for i in by_email.data] == [person["id"]], by_email.message
    assert by_name.ok and person["id"] in {i["id"] for i in by_name.data}, by_name.message
    assert all(person["display_name"] in i["display_name"] for i in by_name.data)
    assert not nothing.ok, nothing.message
    assert "no identity in 'homebase' matches 'nobody.at.all@nowhere.example'" in nothing.message


async def test_response_actions_change_the_provider(soar: SoarApp, sim: Sim) -> None:
    people = active(sim)
    reset, revoke, disable, blank_reason, missing = await asyncio.gather(
        soar.run("force_password_reset", {"identity_id": people[0]["id"]}),
        soar.run("revoke_sessions", {"identity_id": people[1]["id"]}),
        soar.run("disable_account", {"identity_id": people[2]["id"], "reason": "SOAR case 42"}),
        soar.run("disable_account", {"identity_id": people[3]["id"], "reason": "   "}),
        soar.run("revoke_sessions", {"identity_id": "idn_0000000000"}),
    )
    assert reset.ok and reset.data[0]["status"] == "completed" and reset.data[0]["reference"], reset.message
    assert revoke.ok and revoke.data[0]["action"] == "revoke_sessions", revoke.message
    assert disable.ok and disable.data[0]["identity_id"] == people[2]["id"], disable.message
    assert sim.state.password_resets[people[0]["id"]] == 1
    assert sim.state.sessions_revoked[people[1]["id"]] == 1
    assert sim.status_of(people[2]["id"]) == "disabled"
    assert sorted((a["identity_id"], a["action"]) for a in sim.state.actions) == sorted(
        [
            (people[0]["id"], "force_password_reset"),
            (people[1]["id"], "revoke_sessions"),
            (people[2]["id"], "disable"),
        ]
    )
    assert not blank_reason.ok and "parameter 'reason' is required" in blank_reason.message, (
        blank_reason.message
    )
    assert sim.status_of(people[3]["id"]) == "active"
    assert not missing.ok and "HomeBase" in missing.message and "request id" in missing.message, (
        missing.message
    )

    again = await soar.run("disable_account", {"identity_id": people[2]["id"], "reason": "twice"})
    assert not again.ok and again.message.startswith("Action failure in disable account: HomeBase"), (
        again.message
    )


async def test_rate_limit_is_waited_out(soar: SoarApp, sim: Sim) -> None:
    person = active(sim)[0]
    sim.state.faults.append(Fault(kind="429", count=1, retry_after=0.2, path="/v1/identity", method="GET"))
    sim.state.faults.append(Fault(kind="429", count=1, retry_after=0.2, path="/v1/identity", method="POST"))
    got = await soar.run("get_identity", {"identity_id": person["id"]})
    revoked = await soar.run("revoke_sessions", {"identity_id": person["id"]})
    assert got.ok and got.data[0]["id"] == person["id"], got.message
    assert revoked.ok, revoked.message
    assert len(sim.state.requests_to(f"/v1/identity/{person['id']}", "GET")) == 2
    assert len(sim.state.requests_to(f"/v1/identity/{person['id']}/revoke-sessions", "POST")) == 2
    assert sim.state.sessions_revoked[person["id"]] == 1  # the 429 was not an action


async def test_bad_credentials_fail_actions_as_misconfiguration(soar: SoarApp, sim: Sim) -> None:
    person = active(sim)[0]
    result = await soar.run(
        "disable_account", {"identity_id": person["id"], "reason": "x"}, api_key="hld_live_wrong"
    )
    assert not result.ok, result.message
    assert result.message.startswith("Asset misconfiguration in disable account: HomeBase")
    assert sim.status_of(person["id"]) == "active"


async def test_provider_error_names_the_request_id(soar: SoarApp, sim: Sim) -> None:
    sim.state.faults.append(Fault(kind="500", count=5, path="/v1/identity"))
    result = await soar.run("list_identities", {"limit": 5})
    assert not result.ok, result.message
    assert result.message.startswith("Action failure in list identities: HomeBase")
    assert "(request id " in result.message
    assert "Traceback" not in result.message


async def test_unknown_action_is_refused_by_the_runner(soar: SoarApp) -> None:
    code, _out, err = await run_process(
        str(SOAR_PY), "-m", "src.app", "action", "reset_mfa", "-a", "asset.json", cwd=SOAR_DIR
    )
    assert code == 2
    assert "invalid choice: 'reset_mfa'" in err and "disable_account" in err

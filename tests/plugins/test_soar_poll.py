"""The SOAR app's on poll against the HomeBase simulator: one container per identity and risk episode,
never duplicated across polls, escalations added to the open episode, CEF fields and severities."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support.sims import HomeBaseSim
from support.soar import SoarApp

from standins import homebase

API_KEY = "hld_test_simulator"
RISKY = ("high", "critical")


@pytest.fixture
def sim(homebase_sim: HomeBaseSim) -> homebase.HomeBaseState:
    return homebase_sim.state


@pytest.fixture
def soar(homebase_sim: HomeBaseSim, tmp_path: Path) -> SoarApp:
    asset = {"connector_kind": "homebase", "connector_name": "hld-prod", "api_key": API_KEY}
    return SoarApp(tmp_path, {**asset, "base_url": homebase_sim.api_url})


def records(sim: homebase.HomeBaseState) -> list[dict[str, Any]]:
    return [sim.record(i) for i in range(sim.size)]


def by_identity(containers: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for container in containers:
        out.setdefault(container["data"]["id"], []).append(container)
    return out


async def poll(soar: SoarApp, **params: Any) -> list[dict[str, Any]]:
    run = await soar.run("on_poll", params)
    assert run.ok, run.message + run.stderr[-2000:]
    return soar.containers()


async def test_episodes_are_ingested_once(soar: SoarApp, sim: homebase.HomeBaseState) -> None:
    risky = {r["id"]: r for r in records(sim) if r["risk_level"] in RISKY}
    assert len(risky) >= 3  # the seeded population has some to work with

    first = await poll(soar)
    assert set(by_identity(first)) == set(risky)
    for container in first:
        record = risky[container["data"]["id"]]
        assert container["severity"] == {"high": "medium", "critical": "high"}[record["risk_level"]]
        assert container["source_data_identifier"] == f"idops:hld-prod:{record['id']}:episode-1"
        assert container["label"] == "identity"
        [artifact] = container["artifacts"]
        cef = artifact["cef"]
        assert cef["sourceUserName"] == record["email"] and cef["emailAddress"] == record["email"]
        assert cef["sourceAddress"] == record["last_login_ip"]
        assert cef["sourceCountry"] == record["last_login_country"]
        assert cef["idopsIdentityId"] == record["id"] and cef["riskScore"] == record["risk_score"]
        assert artifact["cef_types"]["sourceAddress"] == ["ip"]
        assert artifact["cef_types"]["emailAddress"] == ["email"]

    # nothing changed: nothing new
    assert await poll(soar) == first

    high = next(r for r in risky.values() if r["risk_level"] == "high")
    calm = next(r for r in risky.values() if r["id"] != high["id"])
    newcomer = next(r for r in records(sim) if r["risk_level"] == "low" and r["status"] == "active")
    sim.set_risk(high["id"], 95)  # escalation within the open episode
    sim.set_risk(calm["id"], 5)  # the episode ends...
    sim.set_risk(newcomer["id"], 60)  # ...and a new identity turns risky
    third = by_identity(await poll(soar))
    assert len(third) == len(risky) + 1
    [escalated] = third[high["id"]]
    assert [a["cef"]["riskLevel"] for a in escalated["artifacts"]] == ["high", "critical"]
    assert [c["source_data_identifier"] for c in third[newcomer["id"]]] == [
        f"idops:hld-prod:{newcomer['id']}:episode-1"
    ]
    assert len(third[calm["id"]]) == 1

    sim.set_risk(calm["id"], 88)  # risky again: a new episode, so a new container
    fourth = by_identity(await poll(soar))
    assert [c["source_data_identifier"] for c in fourth[calm["id"]]] == [
        f"idops:hld-prod:{calm['id']}:episode-1",
        f"idops:hld-prod:{calm['id']}:episode-2",
    ]
    assert fourth[calm["id"]][1]["severity"] == "high"
    assert sum(len(v) for v in fourth.values()) == len(risky) + 2


async def test_container_count_keeps_the_worst_and_ends_no_episode(
    soar: SoarApp, sim: homebase.HomeBaseState
) -> None:
    critical = [r["id"] for r in records(sim) if r["risk_level"] == "critical"]
    assert critical
    first = await poll(soar, container_count=1)
    assert [c["data"]["id"] for c in first] == critical[:1]
    everything = await poll(soar)  # a full poll adds the rest, not the first one again
    assert len(by_identity(everything)[critical[0]]) == 1
    assert len(everything) == sum(r["risk_level"] in RISKY for r in records(sim))


async def test_poll_failure_is_an_action_failure(soar: SoarApp) -> None:
    run = await soar.run("on_poll", {}, api_key="hld_test_unknown_key")
    assert not run.ok
    assert run.message.startswith("Asset misconfiguration in on poll: HomeBase")
    assert soar.containers() == []

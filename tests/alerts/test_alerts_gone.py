"""Identities deleted at the provider: a complete sweep of their scope resolves their open alerts as gone
and forgets them (no more App Home counts); failed sweeps, other scopes and webhook re-checks don't."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from support.alerts import (
    ALERTS,
    Alerts,
    action_ids,
    all_text,
    fail_listing_from,
    on_listing,
    running,
)
from support.bot import APPROVER

from bot.alerts.detector import Scope
from bot.config import AlertSettings
from connectors import NotFoundError, RiskLevel
from standins import homebase

# on SQLite and on PostgreSQL: tests/alerts/conftest.py hands the store_url to running()
pytestmark = pytest.mark.usefixtures("store_url")


async def delete(sim_url: str, identity_id: str) -> None:
    """Delete an identity through the simulator's admin API, as an admin at the provider would."""
    async with aiohttp.ClientSession() as http, http.delete(f"{sim_url}/_admin/identity/{identity_id}") as r:
        assert r.status == 200, await r.text()
        assert await r.json() == {"deleted": identity_id}


def stored(a: Alerts, identity_id: str) -> Any:
    return a.db.execute(
        "SELECT level, alert_id FROM alert_identities WHERE identity_id = ?", [identity_id]
    ).fetchone()


def alert_id(card: dict[str, Any]) -> str:
    return str(card["metadata"]["event_payload"]["alert_id"])


def counts(a: Alerts) -> dict[RiskLevel, int]:
    risk = a.detector.stored_risk("hld")
    assert risk is not None
    return risk.counts


async def test_a_deleted_identity_is_resolved_as_gone_only_by_a_complete_sweep(tmp_path: Path) -> None:
    app = homebase.create_app(identities=60, rate_limits=False, api_keys=("hld_test_simulator",))
    # 3 pages per sweep: the third sweep fails on its last page
    fail_listing_from(app, page=9, kind="malformed", count=1)
    async with running(tmp_path, sim_app=app, page_size=20) as a:
        await a.sweep()
        alerting = a.index_at(RiskLevel.LOW)
        quiet = a.index_at(RiskLevel.MEDIUM)
        alerting_id = a.set_risk(alerting, 88)
        quiet_id = a.sim.identity_id(quiet)
        assert (await a.sweep()).changes == {"open": 1}
        (card,) = a.cards()
        before = counts(a)

        await delete(a.sim_url, alerting_id)
        await delete(a.sim_url, quiet_id)
        with pytest.raises(NotFoundError):
            await a.connector.get_identity(alerting_id)
        # a webhook re-check finds nothing, and changes nothing: only a whole sweep can tell
        assert await a.detector.recheck("hld", alerting_id) is None
        failed = await a.sweep()
        assert failed.error and failed.seen == 40
        assert stored(a, alerting_id) is not None and stored(a, quiet_id) is not None
        assert counts(a) == before
        (card,) = a.cards()
        assert "alert:ack" in action_ids(card) and not card.get("replies")

        result = await a.sweep()
        assert result.error is None and result.seen == 58
        assert result.changes == {"gone": 2}
        assert stored(a, alerting_id) is None and stored(a, quiet_id) is None
        after = counts(a)
        assert after[RiskLevel.CRITICAL] == before[RiskLevel.CRITICAL] - 1
        assert after[RiskLevel.MEDIUM] == before[RiskLevel.MEDIUM] - 1
        assert sum(after.values()) == 58
        (card,) = a.cards()
        assert action_ids(card) == []
        text = all_text(card)
        assert "Resolved" in text and "no longer reported by HomeBase (hld)" in text
        assert "last seen at *88, critical*" in text
        (reply,) = card["replies"]
        assert "no longer reported by HomeBase (hld)" in all_text(reply)
        alert = a.detector.alert(alert_id(card))
        assert alert is not None and alert["status"] == "resolved" and alert["gone"] == 1

        # said once: the next sweep has nothing more to say
        posted = len(a.slack.calls_to("chat.postMessage")), len(a.slack.calls_to("chat.update"))
        assert (await a.sweep()).changes == {}
        assert (len(a.slack.calls_to("chat.postMessage")), len(a.slack.calls_to("chat.update"))) == posted
        assert len(a.cards(ALERTS)) == 1
        assert [row["kind"] for row in a.outbox() if row["alert_id"] == alert["id"]] == ["alert", "resolve"]


async def test_only_the_swept_tenant_forgets_its_deleted_identities(tmp_path: Path) -> None:
    app = homebase.create_app(identities=60, rate_limits=False, api_keys=("hld_test_simulator",))
    tenants = app[homebase.STATE].tenant_ids
    settings = AlertSettings(tenants={"hld": tenants})
    async with running(tmp_path, sim_app=app, settings=settings) as a:
        for tenant in tenants:
            await a.sweep(Scope("hld", tenant))
        # the simulator deals identities to tenants in turn: even indexes in the first, odd in the second
        first, second = a.sim.identity_id(4), a.sim.identity_id(5)
        await delete(a.sim_url, first)
        await delete(a.sim_url, second)
        assert (await a.sweep(Scope("hld", tenants[1]))).changes == {"gone": 1}
        assert stored(a, first) is not None and stored(a, second) is None
        assert (await a.sweep(Scope("hld", tenants[0]))).changes == {"gone": 1}
        assert stored(a, first) is None
        assert sum(counts(a).values()) == 58


async def test_an_identity_new_since_the_sweep_passed_it_is_kept_when_a_webhook_stored_it(
    tmp_path: Path,
) -> None:
    app = homebase.create_app(identities=60, rate_limits=False, api_keys=("hld_test_simulator",))
    sim = app[homebase.STATE]
    index = next(i for i in range(20) if homebase.risk_level(sim.risk_score(i)) == "low")  # page 1
    sim.delete(sim.identity_id(index))  # not there yet
    rechecked: list[Any] = []

    async def created_and_webhook() -> None:
        sim.deleted.discard(index)  # created at the provider after the sweep listed its page
        a.set_risk(index, 95)
        rechecked.append(await a.detector.recheck("hld", sim.identity_id(index)))

    on_listing(app, 6, created_and_webhook)  # the second sweep's last page
    async with running(tmp_path, sim_app=app, page_size=20) as a:
        assert (await a.sweep()).seen == 59
        result = await a.sweep()
        assert rechecked == ["open"] and result.error is None and result.seen == 59
        assert "gone" not in result.changes
        (card,) = a.cards()
        assert stored(a, sim.identity_id(index)) == ("critical", alert_id(card))
        assert "alert:ack" in action_ids(card)


async def test_app_home_stops_counting_an_identity_deleted_at_the_provider(s) -> None:
    await s.started()

    async def critical_on_home() -> int:
        await s.slack.open_home(s.events_url, APPROVER)
        await s.settle()
        home = s.slack.home(APPROVER)
        assert home is not None
        return int(home["blocks"][1]["fields"][0]["text"].rsplit("\n", 1)[1])

    index = s.hb_low()
    identity_id = s.hb.identity_id(index)
    async with s.http.post(f"{s.hb_url}/_admin/identity/{identity_id}/risk", json={"risk_score": 97}) as r:
        assert r.status == 200
    await s.settle()
    (card,) = s.cards()
    shown = await critical_on_home()
    async with s.http.delete(f"{s.hb_url}/_admin/identity/{identity_id}") as r:
        assert r.status == 200 and json.loads(await r.text()) == {"deleted": identity_id}
    assert await critical_on_home() == shown
    await s.service.sweep(s.service.detector.scopes()[0])
    await s.settle()
    assert await critical_on_home() == shown - 1
    (card,) = s.cards()
    assert action_ids(card) == [] and "no longer reported by HomeBase (homebase)" in all_text(card)


async def test_a_sweep_that_lists_nobody_forgets_nobody(tmp_path: Path) -> None:
    async with running(tmp_path, identities=4) as a:
        await a.sweep()
        ids = [a.sim.identity_id(i) for i in range(4)]
        for identity_id in ids:
            await delete(a.sim_url, identity_id)
        # an empty answer is likelier a provider fault than everyone deleted: nothing is resolved on it
        result = await a.sweep()
        assert result.error is None and result.seen == 0 and result.changes == {}
        assert all(stored(a, identity_id) is not None for identity_id in ids)

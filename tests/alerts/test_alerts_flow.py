"""Sweeps against the HomeBase simulator, delivered to FakeSlack: baseline, alert, escalation, resolve,
cooldown, routing, mentions, escaping, a provider failing mid-sweep and Slack failing then recovering."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest
from support.alerts import ALERTS, action_ids, all_text, eventually, fail_listing_from, running

from bot.alerts.detector import Scope
from bot.config import AlertRoute, AlertSettings
from connectors import RiskLevel
from standins import homebase
from standins.seed import HOSTILE_NAMES

# on SQLite and on PostgreSQL: tests/alerts/conftest.py hands the store_url to running()
pytestmark = pytest.mark.usefixtures("store_url")


async def test_first_sweep_posts_one_summary_then_changes_alert_one_by_one(tmp_path: Path) -> None:
    async with running(tmp_path, identities=80) as a:
        expected = a.alerting_count()
        assert expected > 3  # the seeded population has some risky people to summarise
        result = await a.sweep()
        assert result.baseline and result.seen == 80 and result.error is None
        messages = a.slack.messages(ALERTS)
        assert len(messages) == 1 and not a.cards()
        summary = messages[0]
        assert f"{expected} identities are high or critical" in all_text(summary)
        assert action_ids(summary) == ["alert:list"]

        # the same population again: nothing new to say
        again = await a.sweep()
        assert not again.baseline and again.changes == {}
        assert len(a.slack.messages(ALERTS)) == 1

        index = a.index_at(RiskLevel.LOW)
        before = a.sim.risk_score(index)
        identity_id = a.set_risk(index, 82)
        result = await a.sweep()
        assert result.changes == {"open": 1}
        (card,) = a.cards()
        text = all_text(card)
        assert f"{before} → 82, low → critical" in text
        assert card["metadata"]["event_payload"]["alert_id"]
        person = a.sim.person(index)
        assert person.email in text
        ids = action_ids(card)
        requests = ["request:revoke_sessions", "request:force_password_reset", "request:disable"]
        assert ids == [*requests, "alert:ack", "alert:snooze"]
        values = {e["value"] for b in card["blocks"] if b["type"] == "actions" for e in b["elements"]}
        assert f"hld:{identity_id}" in values


async def test_escalation_updates_the_card_and_notifies_in_its_thread(tmp_path: Path) -> None:
    settings = AlertSettings(mention="S0ONCALL")
    async with running(tmp_path, settings=settings) as a:
        await a.sweep()
        index = a.index_at(RiskLevel.MEDIUM, privileged=True)
        a.set_risk(index, 60)
        await a.sweep()
        (card,) = a.cards()
        assert "→ 60" in all_text(card) and "medium → high" in all_text(card)
        assert "<!subteam^S0ONCALL>" not in all_text(card)  # only critical on privileged mentions

        a.set_risk(index, 91)
        result = await a.sweep()
        assert result.changes == {"escalate": 1}
        (updated,) = a.cards()
        assert updated["ts"] == card["ts"] and "edited" in updated
        assert "→ 91" in all_text(updated) and "medium → critical" in all_text(updated)
        (reply,) = updated["replies"]
        assert reply["subtype"] == "thread_broadcast"  # shown in the channel too: a fresh notification
        assert "60 → 91, high → critical" in all_text(reply)
        assert "<!subteam^S0ONCALL>" in reply["text"]
        posts = a.slack.calls_to("chat.postMessage")
        assert sum(1 for p in posts if not p.get("thread_ts")) == 2  # summary and the one card


async def test_resolve_removes_the_buttons_and_cooldown_damps_flapping(tmp_path: Path) -> None:
    async with running(tmp_path, settings=AlertSettings(cooldown_minutes=60)) as a:
        await a.sweep()
        index = a.index_at(RiskLevel.LOW)
        a.set_risk(index, 70)
        await a.sweep()
        a.set_risk(index, 15)
        result = await a.sweep()
        assert result.changes == {"resolve": 1}
        (card,) = a.cards()
        assert action_ids(card) == []
        assert "Resolved" in all_text(card) and "70 → 15, high → low" in all_text(card)
        assert "Resolved" in all_text(card["replies"][0])

        # back to high ten minutes later: damped, no second card
        a.clock.advance(600)
        a.set_risk(index, 70)
        assert (await a.sweep()).changes == {"none": 1}
        assert len(a.cards()) == 1
        # critical breaks through the cooldown
        a.set_risk(index, 95)
        assert (await a.sweep()).changes == {"open": 1}
        assert len(a.cards()) == 2

        # another identity: resolve, wait out the cooldown, high again → alerts
        other = a.index_at(RiskLevel.LOW)
        a.set_risk(other, 65)
        assert (await a.sweep()).changes == {"open": 1}
        a.set_risk(other, 10)
        assert (await a.sweep()).changes == {"resolve": 1}
        a.clock.advance(3601)
        a.set_risk(other, 66)
        assert (await a.sweep()).changes == {"open": 1}
        assert len(a.cards()) == 4


async def test_routes_choose_the_channel_by_tenant_and_level(tmp_path: Path) -> None:
    app = homebase.create_app(identities=60, rate_limits=False, api_keys=("hld_test_simulator",))
    tenant0, tenant1 = app[homebase.STATE].tenant_ids
    settings = AlertSettings(
        routes=[
            AlertRoute(channel="C0CRIT", level=RiskLevel.CRITICAL, tenant=tenant1),
            AlertRoute(channel="C0TENANT1", tenant=tenant1),
            AlertRoute(channel="C0OKTA", provider="okta"),
        ]
    )
    async with running(tmp_path, sim_app=app, settings=settings) as a:
        await a.sweep()
        lows = [i for i in range(60) if homebase.risk_level(a.sim.risk_score(i)) == "low"]
        t1 = [i for i in lows if i % 2 == 1 and a.sim.person(i).provider != "okta"]
        t0_okta = next(i for i in lows if i % 2 == 0 and a.sim.person(i).provider == "okta")
        t0_other = next(i for i in lows if i % 2 == 0 and a.sim.person(i).provider != "okta")
        a.set_risk(t1[0], 60)
        a.set_risk(t1[1], 90)
        a.set_risk(t0_okta, 60)
        a.set_risk(t0_other, 60)
        await a.sweep()
        assert len(a.cards("C0TENANT1")) == 1 and len(a.cards("C0CRIT")) == 1
        assert len(a.cards("C0OKTA")) == 1 and len(a.cards(ALERTS)) == 1
        assert tenant0 in all_text(a.cards("C0OKTA")[0])


async def test_hostile_provider_strings_are_escaped_on_cards(tmp_path: Path) -> None:
    async with running(tmp_path, identities=100) as a:
        await a.sweep()
        hostile = [i for i in range(100) if a.sim.person(i).display_name in HOSTILE_NAMES]
        for index in hostile:
            a.set_risk(index, 99 if a.sim.risk_score(index) < 51 else 10)
        await a.sweep()
        cards = a.cards()
        assert cards
        for card in cards:
            text = all_text(card)
            for raw in ("<!channel>", "<https://evil", "<@U0BOB>", "<!here", "<#C0APPROVALS>"):
                assert raw not in text
        assert any("&lt;!channel&gt;" in all_text(card) for card in cards)


async def test_provider_failing_mid_sweep_changes_nothing_past_the_failure_and_reports_once(
    tmp_path: Path,
) -> None:
    app = homebase.create_app(identities=100, rate_limits=False, api_keys=("hld_test_simulator",))
    # 5 pages per sweep: the second sweep fails on its page 2, the next two sweeps on their page 1
    fail_listing_from(app, page=7, kind="malformed", count=3)
    async with running(tmp_path, sim_app=app, page_size=20) as a:
        assert (await a.sweep()).error is None
        low = [i for i in range(100) if homebase.risk_level(a.sim.risk_score(i)) == "low"]
        early = next(i for i in low if i < 20)  # on page 1
        late = next(i for i in low if i >= 60)  # on page 4
        a.set_risk(early, 80)
        a.set_risk(late, 80)
        query = "SELECT level, score, observed_at FROM alert_identities WHERE identity_id = ?"
        stored_late = a.db.execute(query, [a.sim.identity_id(late)]).fetchone()

        result = await a.sweep()
        assert result.error and "HomeBase" in result.error and result.seen == 20
        assert result.changes == {"open": 1}
        (card,) = a.cards()
        assert a.sim.person(early).email in all_text(card)
        assert a.db.execute(query, [a.sim.identity_id(late)]).fetchone() == stored_late  # not reached
        outage = [n for n in a.notices() if "is failing" in all_text(n)]
        assert len(outage) == 1 and "HomeBase (hld)" in all_text(outage[0])

        # still failing on the next runs: no new notice
        assert (await a.sweep()).error
        assert (await a.sweep()).error
        assert len([n for n in a.notices() if "is failing" in all_text(n)]) == 1

        result = await a.sweep()
        assert result.error is None and result.changes == {"open": 1}
        assert len(a.cards()) == 2
        assert len([n for n in a.notices() if "answers again" in all_text(n)]) == 1
        await a.sweep()
        assert len([n for n in a.notices() if "answers again" in all_text(n)]) == 1
        assert len([n for n in a.notices() if "is failing" in all_text(n)]) == 1


async def test_failing_first_page_through_the_simulator(tmp_path: Path) -> None:
    app = homebase.create_app(identities=60, rate_limits=False, api_keys=("hld_test_simulator",))
    fail_listing_from(app, page=2, kind="malformed", count=1)
    async with running(tmp_path, sim_app=app, page_size=20) as a:
        result = await a.sweep()
        assert result.error and result.seen == 20 and result.baseline
        stored = a.db.execute("SELECT count(*) FROM alert_identities").fetchone()[0]
        assert stored == 20
        # the baseline is only complete after a whole sweep: its summary comes with the recovery
        result = await a.sweep()
        assert result.error is None and result.baseline
        texts = [all_text(m) for m in a.slack.messages(ALERTS)]
        assert any("is failing" in t for t in texts) and any("answers again" in t for t in texts)
        assert any("First sweep" in t for t in texts) and not a.cards()


async def test_slack_failing_then_recovering_loses_and_repeats_nothing(tmp_path: Path) -> None:
    async with running(tmp_path) as a:
        await a.sweep()
        first = a.index_at(RiskLevel.LOW)
        second = a.index_at(RiskLevel.LOW, skip=1)
        a.slack.fail_next("chat.postMessage", 429, retry_after=1)
        a.set_risk(first, 70)
        await a.detector.sweep(Scope("hld"))
        await a.sender.wait_idle(timeout=10)
        assert len(a.cards()) == 1
        posts = a.slack.calls_to("chat.postMessage")
        assert len(posts) == 3  # summary, the 429, the retry

        a.slack.fail_next("chat.postMessage", 500)
        a.slack.down("drop")
        a.set_risk(second, 71)
        await a.detector.sweep(Scope("hld"))
        await eventually(
            lambda: (
                a.db.execute("SELECT attempts FROM alert_outbox ORDER BY id DESC LIMIT 1").fetchone()[0] >= 2
            ),
            what="retries while Slack is down",
        )
        assert len(a.cards()) == 1
        a.slack.up()
        await a.sender.wait_idle(timeout=10)
        await eventually(lambda: len(a.cards()) == 2, what="the second card after Slack came back")
        assert all(row["status"] == "sent" for row in a.outbox())
        assert len({c["metadata"]["event_payload"]["alert_id"] for c in a.cards()}) == 2


async def _traced_sweep_peak(tmp_path: Path, identities: int) -> int:
    """Peak traced memory of a second sweep (2% of identities changed) over `identities`."""
    db_name = f"sweep-{identities}.db"
    async with running(
        tmp_path, identities=identities, page_size=100, start_sender=False, db_name=db_name
    ) as a:
        await a.detector.sweep(Scope("hld"))
        for index in range(0, identities, 50):
            a.set_risk(index, 99 if a.sim.risk_score(index) < 51 else 5)
        tracemalloc.start()
        try:
            result = await a.detector.sweep(Scope("hld"))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert result.error is None and sum(result.changes.values()) == identities // 50
        return peak


async def test_sweep_memory_stays_flat_with_the_number_of_identities(tmp_path: Path) -> None:
    small = await _traced_sweep_peak(tmp_path, 300)
    large = await _traced_sweep_peak(tmp_path, 3000)
    # ten times the identities, the same pages in memory: the peak barely moves
    assert large < small * 1.5, (small, large)


async def test_stored_risk_counts_once_a_whole_sweep_has_run_and_names_a_failing_sweep(
    tmp_path: Path,
) -> None:
    app = homebase.create_app(identities=60, rate_limits=False, api_keys=("hld_test_simulator",))
    # the first sweep fails on its page 2; the third on its page 1
    fail_listing_from(app, page=2, kind="malformed", count=1)
    fail_listing_from(app, page=6, kind="malformed", count=1)
    async with running(tmp_path, sim_app=app, page_size=20) as a:
        assert a.detector.stored_risk("hld") is None  # never swept: the App Home scans instead
        assert (await a.sweep()).error
        assert a.detector.stored_risk("hld") is None  # a partial sweep is no count
        assert (await a.sweep()).error is None
        stored = a.detector.stored_risk("hld")
        assert stored is not None and stored.faults == []
        levels = [RiskLevel(homebase.risk_level(a.sim.risk_score(i))) for i in range(60)]
        assert stored.counts == {level: levels.count(level) for level in RiskLevel}
        ranked = sorted(range(60), key=lambda i: -a.sim.risk_score(i))
        top = [i for i in ranked if levels[i] in (RiskLevel.HIGH, RiskLevel.CRITICAL)][:10]
        assert [i.risk_score for i in stored.riskiest] == [a.sim.risk_score(i) for i in top]
        assert stored.swept_at.timestamp() == a.clock()

        low = a.index_at(RiskLevel.LOW)
        a.set_risk(low, 90)
        assert (await a.sweep()).error  # fails on page 1: still the last known state, and says why
        failing = a.detector.stored_risk("hld")
        assert failing is not None and failing.counts == stored.counts
        (fault,) = failing.faults
        assert fault.startswith("the risk sweep of HomeBase (hld) is failing: HomeBase")
        await a.sweep()
        after = a.detector.stored_risk("hld")
        assert after is not None and after.faults == []
        assert after.counts[RiskLevel.CRITICAL] == stored.counts[RiskLevel.CRITICAL] + 1
        assert after.counts[RiskLevel.LOW] == stored.counts[RiskLevel.LOW] - 1


async def test_an_ended_snooze_leaves_the_card_offering_snooze_again(tmp_path: Path) -> None:
    async with running(tmp_path, settings=AlertSettings(snooze_minutes=30)) as a:
        await a.sweep()
        index = a.index_at(RiskLevel.LOW)
        a.set_risk(index, 70)
        await a.sweep()
        (card,) = a.cards()
        alert_id = card["metadata"]["event_payload"]["alert_id"]
        a.detector.snooze(alert_id, "U0BOB")
        await a.sender.wait_idle()
        (card,) = a.cards()
        assert "snoozed by <@U0BOB> until" in all_text(card) and "alert:snooze" not in action_ids(card)

        a.clock.advance(30 * 60 - 1)
        assert a.detector.end_snoozes() == 0
        a.clock.advance(1)
        assert a.detector.end_snoozes() == 1
        assert a.detector.end_snoozes() == 0  # once
        await a.sender.wait_idle()
        (card,) = a.cards()
        assert "snoozed" not in all_text(card) and "alert:snooze" in action_ids(card)
        assert [row["kind"] for row in a.outbox()][-2:] == ["refresh", "refresh"]  # snooze, then its end

        # and an escalation notifies again
        a.set_risk(index, 95)
        await a.sweep()
        (card,) = a.cards()
        assert len(card["replies"]) == 1 and "Escalated" in all_text(card["replies"][0])

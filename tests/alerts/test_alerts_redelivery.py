"""Deliveries Slack refused because of the channel (unknown, bot not invited) are sent after all once the
channel takes a delivery again: once each, in their order; refusals of the message itself stay failed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support.alerts import Alerts, action_ids, all_text, running

from bot.config import AlertRoute, AlertSettings
from connectors import RiskLevel

NOWHERE = "C0NOWHERE"  # routed to, but unknown to Slack until the test creates it
SETTINGS = AlertSettings(routes=[AlertRoute(channel=NOWHERE, level=RiskLevel.CRITICAL)])

# on SQLite and on PostgreSQL: tests/alerts/conftest.py hands the store_url to running()
pytestmark = pytest.mark.usefixtures("store_url")


def alert_id(message: dict[str, Any]) -> str:
    return str(message["metadata"]["event_payload"]["alert_id"])


def statuses(a: Alerts) -> list[tuple[str, str, str]]:
    """(kind, status, alert id) of every delivery routed to NOWHERE, in outbox order."""
    return [(r["kind"], r["status"], r["alert_id"]) for r in a.outbox() if r["channel"] == NOWHERE]


async def test_alerts_refused_for_an_unknown_channel_arrive_once_in_order_when_it_exists(
    tmp_path: Path,
) -> None:
    async with running(tmp_path, settings=SETTINGS) as a:
        await a.sweep()
        first, second, third = (a.index_at(RiskLevel.LOW, skip=n) for n in range(3))
        a.set_risk(first, 95)
        a.set_risk(second, 96)
        assert (await a.sweep()).changes == {"open": 2}
        a.set_risk(second, 10)
        assert (await a.sweep()).changes == {"resolve": 1}
        early = statuses(a)
        assert [(kind, status) for kind, status, _ in early] == [
            ("alert", "failed"),
            ("alert", "failed"),
            ("resolve", "failed"),
        ]
        assert all(r["error"].endswith(": channel_not_found") for r in a.outbox() if r["channel"] == NOWHERE)
        assert a.slack.messages(NOWHERE) == []
        # nothing else tries again while the channel still fails
        assert (await a.sweep()).changes == {}
        assert statuses(a) == early

        a.slack.channels[NOWHERE] = "nowhere"  # the channel is created (or the bot invited)
        a.set_risk(third, 97)
        assert (await a.sweep()).changes == {"open": 1}
        assert [status for _, status, _ in statuses(a)] == ["sent"] * 4
        cards = a.cards(NOWHERE)
        # the delivery that found the channel working first, then the earlier ones in their order
        opened = [row[2] for row in statuses(a) if row[0] == "alert"]
        assert [alert_id(card) for card in cards] == [opened[2], opened[0], opened[1]]
        for index, card in zip((third, first, second), cards):
            assert a.sim.person(index).email in all_text(card)
        resolved = cards[2]
        assert action_ids(resolved) == [] and "Resolved" in all_text(resolved)
        (reply,) = resolved["replies"]
        assert "96 → 10, critical → low" in all_text(reply)
        assert "alert:ack" in action_ids(cards[1])
        # once each: three cards and one reply posted, whatever was tried before
        assert len(a.slack.messages(NOWHERE)) == 3
        stored = dict(a.db.execute("SELECT id, ts FROM alerts WHERE channel = ?", [NOWHERE]).fetchall())
        assert stored == {alert_id(card): card["ts"] for card in cards}


async def test_a_bot_invited_late_gets_its_alerts_but_a_refused_message_stays_failed(tmp_path: Path) -> None:
    async with running(tmp_path, settings=SETTINGS) as a:
        a.slack.channels[NOWHERE] = "nowhere"
        await a.sweep()
        uninvited, refused, invited = (a.index_at(RiskLevel.LOW, skip=n) for n in range(3))
        a.slack.fail_next("chat.postMessage", error="not_in_channel")
        a.slack.fail_next("chat.postMessage", error="invalid_blocks")
        a.set_risk(uninvited, 95)
        await a.sweep()
        a.set_risk(refused, 96)
        await a.sweep()
        assert [status for _, status, _ in statuses(a)] == ["failed", "failed"]
        a.set_risk(invited, 97)
        await a.sweep()
        assert [status for _, status, _ in statuses(a)] == ["sent", "failed", "sent"]
        cards = a.cards(NOWHERE)
        assert [a.sim.person(i).email in all_text(c) for i, c in zip((invited, uninvited), cards)] == [
            True
        ] * 2
        assert len(cards) == 2
        posts = [p for p in a.slack.calls_to("chat.postMessage") if p.get("channel") == NOWHERE]
        assert len(posts) == 4  # the message Slack refused for itself was not tried again

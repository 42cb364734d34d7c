"""Alert storms: when more cards wait for a channel than Slack shows at a readable pace, they are folded
into digests. Every identity is named once, soon (counted in Slack posts, never timed), with its level;
a folded alert still escalates (its own card), resolves and is acknowledged (the digest is redrawn)."""

from __future__ import annotations

import collections
import json
from pathlib import Path
from typing import Any

import pytest
from support.alerts import ALERTS, action_ids, all_text, running, served
from support.bot import OUTSIDER, REQUESTER

from bot.alerts import digests
from bot.blocks import esc
from bot.config import AlertSettings
from standins import homebase

# at one message a second per channel, 60 posts are the 60 s
POSTS_BUDGET = 60

# on SQLite and on PostgreSQL: tests/alerts/conftest.py hands the store_url to running()
pytestmark = pytest.mark.usefixtures("store_url")


def _payload(message: dict[str, Any]) -> dict[str, Any]:
    metadata = message.get("metadata") or {}
    return metadata.get("event_payload") or {} if metadata.get("event_type") == "idops_alert" else {}


def named(a: Any, channel: str = ALERTS) -> collections.Counter[str]:
    """How often each identity is named in the channel: its own card, or a line of a digest (checked to
    show its escaped name and level)."""
    counts: collections.Counter[str] = collections.Counter()
    for message in a.slack.messages(channel):
        payload = _payload(message)
        if payload.get("part") == "card":
            counts[a.detector.alert(payload["alert_id"])["identity_id"]] += 1
        elif payload.get("part") == "digest":
            text = all_text(message)
            _, alerts = digests.members(a.db, int(payload["delivery"]))
            for alert in alerts:
                name = json.loads(alert["identity"])["display_name"]
                assert esc(name, digests.LINE_NAME_CHARS) in text, name
                if alert["status"] == "open":
                    assert f"*{alert['score']}* {alert['level']}" in text
                counts[alert["identity_id"]] += 1
    return counts


def storm(a: Any, count: int) -> set[str]:
    """Move `count` identities at low or medium to high or critical; their ids."""
    moved: set[str] = set()
    for index in range(a.sim.size):
        if len(moved) == count:
            break
        if homebase.risk_level(a.sim.risk_score(index)) in ("low", "medium"):
            moved.add(a.set_risk(index, 90 if index % 3 == 0 else 60))
    assert len(moved) == count
    return moved


def top_level_posts(a: Any, since: int) -> list[dict[str, Any]]:
    return [p for p in a.slack.calls_to("chat.postMessage")[since:] if not p.get("thread_ts")]


async def test_a_thousand_alerts_at_once_are_named_in_ten_digests(tmp_path: Path) -> None:
    async with running(tmp_path, identities=2400, page_size=100, start_sender=False) as a:
        a.sender.fold_after = 10
        a.sender.start()
        await a.sweep()  # baseline: one summary
        posts = len(a.slack.calls_to("chat.postMessage"))
        await a.sender.stop()  # the storm's cards all wait for the sender, as behind a slow channel
        moved = storm(a, 1000)
        result = await a.detector.sweep(a.detector.scopes()[0])
        assert result.changes == {"open": 1000}
        a.sender.start()
        await a.sender.wait_idle(timeout=30)

        sent = top_level_posts(a, posts)
        assert len(sent) == 10  # 1000 cards, 100 to a digest, instead of 1000 posts (17 minutes)
        counts = named(a)
        assert set(counts) == moved and set(counts.values()) == {1}
        statuses = collections.Counter(row["status"] for row in a.outbox())
        assert statuses == {"sent": 11, "folded": 990}  # the summary, 10 digests; nothing pending
        digest = a.slack.messages(ALERTS)[1]
        text = all_text(digest)
        levels = collections.Counter(
            row["level"] for row in digests.members(a.db, int(_payload(digest)["delivery"]))[1]
        )
        assert f"{levels['critical']} critical" in text and f"{levels['high']} high" in text
        assert action_ids(digest) == ["alert:digest"]


async def test_cards_flow_while_the_sweep_runs_and_a_storm_still_lands_in_a_minute(tmp_path: Path) -> None:
    async with running(tmp_path, identities=2400, page_size=100) as a:
        a.sender.fold_after = 10
        await a.sweep()
        posts = len(a.slack.calls_to("chat.postMessage"))
        moved = storm(a, 1000)
        await a.sweep()  # the sender folds what waits while the sweep's pages commit
        assert set(named(a)) == moved and set(named(a).values()) == {1}
        assert len(top_level_posts(a, posts)) <= POSTS_BUDGET

        # a few changes later are cards again, one each
        quiet = storm(a, 3)
        before = len(a.slack.calls_to("chat.postMessage"))
        await a.sweep()
        assert len(top_level_posts(a, before)) == 3
        assert all(named(a)[identity_id] == 1 for identity_id in quiet)


async def test_a_folded_alert_escalates_resolves_and_is_acknowledged_through_its_digest(
    tmp_path: Path,
) -> None:
    alerts = {"poll_seconds": 3600, "fold_after": 5}
    async with served(tmp_path, identities=200, alerts=alerts) as s:
        await s.started()
        scope = s.service.detector.scopes()[0]
        # on the sweep's first page (100 identities), so the sender finds all 12 waiting at once
        lows = [index for index in (s.hb_low(skip) for skip in range(12)) if index < 100]
        assert len(lows) == 12
        for index in lows:
            s.hb.set_risk(s.hb.identity_id(index), 60)
        await s.service.sweep(scope)
        await s.settle()
        (digest,) = [m for m in s.slack.messages(ALERTS) if _payload(m).get("part") == "digest"]
        assert not s.cards() and "*12 high*" in all_text(digest)

        # escalation: the identity gets its own card, and the thread says so out loud
        escalated = s.hb.identity_id(lows[0])
        s.hb.set_risk(escalated, 95)
        # resolve: the digest is redrawn, no card for it
        resolved = s.hb.identity_id(lows[1])
        s.hb.set_risk(resolved, 10)
        await s.service.sweep(scope)
        await s.settle()
        (card,) = s.cards()
        assert s.service.detector.alert(_payload(card)["alert_id"])["identity_id"] == escalated
        (reply,) = card["replies"]
        assert reply["subtype"] == "thread_broadcast" and "60 → 95, high → critical" in all_text(reply)
        digest = s.slack.message(ALERTS, digest["ts"])
        text = all_text(digest)
        assert "1 resolved since" in text and "resolved (now 10, low)" in text
        assert "escalated: see its own card" in text

        # List them: a private page with each identity's buttons; outsiders are refused
        await s.click(OUTSIDER, digest, "alert:digest")
        assert "Only responders and approvers" in all_text(s.slack.visible_ephemerals(OUTSIDER)[-1])
        await s.click(REQUESTER, digest, "alert:digest")
        page = s.slack.visible_ephemerals(REQUESTER)[-1]
        assert "identities 1-10 of 12" in all_text(page)
        assert action_ids(page).count("alert:ack") == 10  # open ones first: the resolved one is last
        assert "request:revoke_sessions" in action_ids(page) and action_ids(page)[-1] == "alert:digest:page"
        await s.click(REQUESTER, page, "alert:digest:page")
        second = s.slack.visible_ephemerals(REQUESTER)[-1]
        assert "identities 11-12 of 12" in all_text(second)
        assert len(s.slack.visible_ephemerals(REQUESTER)) == 1  # paged in place

        # acknowledging a folded alert redraws the digest with who took it
        await s.click(REQUESTER, second, "alert:ack")
        digest = s.slack.message(ALERTS, digest["ts"])
        assert f"acknowledged by <@{REQUESTER}>" in all_text(digest)
        assert all(row["status"] in ("sent", "folded") for row in s.db.query("SELECT * FROM alert_outbox"))
        assert len(s.cards()) == 1  # still only the escalated one


async def test_redraws_of_one_digest_are_absorbed_into_one_update(tmp_path: Path) -> None:
    async with running(tmp_path, identities=400, page_size=100) as a:
        a.sender.fold_after = 5
        await a.sweep()
        moved = sorted(storm(a, 40))
        await a.sweep()
        assert not a.cards()
        await a.sender.stop()
        for identity_id in moved[:30]:
            a.sim.set_risk(identity_id, 5)
        updates = len(a.slack.calls_to("chat.update"))
        result = await a.detector.sweep(a.detector.scopes()[0])
        assert result.changes == {"resolve": 30}
        a.sender.start()
        await a.sender.wait_idle()
        # one redraw per digest that had resolves, not one per resolved identity
        digests_touched = {
            a.detector.alert(r["alert_id"])["digest"] for r in a.outbox() if r["kind"] == "resolve"
        }
        assert len(a.slack.calls_to("chat.update")) - updates == len(digests_touched)
        assert named(a) == {identity_id: 1 for identity_id in moved}
        shown = "".join(all_text(m) for m in a.slack.messages(ALERTS))
        assert shown.count("resolved (now 5, low)") == 30


async def test_an_escalation_storm_of_folded_alerts_is_one_broadcast_reply_per_digest(tmp_path: Path) -> None:
    settings = AlertSettings(mention="S0ONCALL")
    async with running(tmp_path, identities=400, page_size=100, settings=settings) as a:
        a.sender.fold_after = 5
        await a.sweep()
        moved = sorted(storm(a, 40))
        await a.sweep()
        assert not a.cards()
        await a.sender.stop()  # the second recalibration's escalations all wait, as behind a slow channel
        escalated = [i for i in moved if a.sim.risk_score(a.sim.index_of(i)) == 60][:20]
        for identity_id in escalated:
            a.sim.set_risk(identity_id, 97)
        posts, updates = len(a.slack.calls_to("chat.postMessage")), len(a.slack.calls_to("chat.update"))
        result = await a.detector.sweep(a.detector.scopes()[0])
        assert result.changes == {"escalate": 20}
        a.sender.start()
        await a.sender.wait_idle()

        assert not a.cards()  # no card (and reply) each: they stay named in their digests
        touched = {a.detector.alert(r["alert_id"])["digest"] for r in a.outbox() if r["kind"] == "escalate"}
        touched |= {json.loads(r["payload"])["digest"] for r in a.outbox() if r["kind"] == "escalations"}
        assert len(a.slack.calls_to("chat.postMessage")) - posts == len(touched)
        assert len(a.slack.calls_to("chat.update")) - updates == len(touched)
        replies = [
            reply
            for message in a.slack.messages(ALERTS)
            if _payload(message).get("part") == "digest"
            for reply in message["replies"]
        ]
        assert len(replies) == len(touched) and all(r["subtype"] == "thread_broadcast" for r in replies)
        text = "\n".join(all_text(reply) for reply in replies)
        for identity_id in escalated:
            alert = next(a.db.query("SELECT * FROM alerts WHERE identity_id = ?", [identity_id]))
            name = json.loads(alert["identity"])["display_name"]
            assert esc(name, digests.LINE_NAME_CHARS) in text and alert["level"] == "critical"
        assert text.count("60 → 97, high → critical") == 20
        privileged = [i for i in escalated if a.sim.person(a.sim.index_of(i)).privileged]
        assert ("<!subteam^S0ONCALL>" in text) == bool(privileged)
        assert named(a) == {identity_id: 1 for identity_id in moved}
        assert {r["status"] for r in a.outbox()} == {"sent", "folded"}


def test_list_them_values_are_read_strictly() -> None:
    assert digests.parse_value("12:30") == (12, 30)
    arabic_one = "\u0661"
    for bad in (
        "",
        "12",
        "12:",
        ":3",
        "-1:0",
        "1:-10",
        "1:1e3",
        f"{arabic_one}:0",
        "1:" + "9" * 30,
        "9" * 13 + ":0",
    ):
        assert digests.parse_value(bad) is None, bad

"""Auto-containment inside the real server: a `[[auto_containment]]` rule runs its action once when an
identity enters critical (HomeBase revoke, SailPoint disable), posts the outcome on the alert card and
in its thread, audited with the rule as actor; a restart or a second replica never runs it twice; a
responder's one click undoes it where the provider can; config errors name their key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from support.alerts import ENVIRON, Served, action_ids, all_text, eventually, served, server_config
from support.bot import GROUP_RESPONDER, OUTSIDER, REQUESTER, forged_click, slack_secrets

from bot.alerts.detector import Scope
from bot.alerts.scheduler import ALERTS, install
from bot.alerts.transitions import State
from bot.config import ConfigError
from bot.extension import BOT
from bot.server import build_web_app
from connectors import RiskLevel
from standins import serving

REVOKE = [{"connector": "homebase", "action": "revoke", "name": "hb-revoke"}]
DISABLE = [{"connector": "sp", "action": "disable"}]


def critical_card(s: Served, name: str) -> dict[str, Any]:
    """The alert card of the identity named `name` (the newest one)."""
    return [c for c in s.cards() if "Critical risk" in all_text(c) and name in all_text(c)][-1]


def audit_rows(s: Served, event: str) -> list[dict[str, Any]]:
    return [row for row in s.db.query("SELECT * FROM audit WHERE event = ? ORDER BY id", [event])]


async def enter_critical_hb(s: Served, index: int) -> str:
    identity_id = s.hb.identity_id(index)
    s.hb.set_risk(identity_id, 95)
    await s.service.sweep(Scope("homebase"))
    await eventually(lambda: s.hb.sessions_revoked[identity_id] >= 1, what="the automatic revoke")
    await s.service.auto.run()  # what the periodic job does; tells nothing twice
    await s.settle()
    return identity_id


async def test_a_rule_revokes_once_on_entering_critical_and_says_so(tmp_path: Path) -> None:
    async with served(tmp_path, auto_containment=REVOKE) as s:
        await s.started()
        index = s.hb_low()
        identity_id = await enter_critical_hb(s, index)
        card = critical_card(s, s.hb.record(index)["display_name"])
        text = all_text(card)
        assert "Auto-containment (rule `hb-revoke`) ran *Revoke sessions*" in text
        assert "auto:undo" not in action_ids(card)  # HomeBase has no undo of a revocation
        replies = [r["text"] for r in card.get("replies", [])]
        assert len([r for r in replies if "Auto-containment" in r]) == 1
        # audited with the rule as the actor, and run by the approvals' execution (exactly once)
        (started,) = audit_rows(s, "auto_containment")
        assert started["actor"] == "auto-containment:hb-revoke" and started["identity_id"] == identity_id
        request = s.web_app[BOT].service.get(started["request_id"])
        assert request.source == "auto" and request.status.value == "executed"
        assert request.requested_by == "auto-containment:hb-revoke"
        # more sweeps and runs while it stays critical: nothing more
        for _ in range(2):
            await s.service.sweep(Scope("homebase"))
            await s.service.auto.run()
        await s.settle()
        assert s.hb.sessions_revoked[identity_id] == 1
        # down to high, then critical again: a new entry, run once more
        s.clock.advance(60)
        s.hb.set_risk(identity_id, 70)
        await s.service.sweep(Scope("homebase"))
        s.clock.advance(60)
        s.hb.set_risk(identity_id, 96)
        await s.service.sweep(Scope("homebase"))
        await eventually(lambda: s.hb.sessions_revoked[identity_id] == 2, what="the second entry's revoke")
        assert len(audit_rows(s, "auto_containment")) == 2


async def test_a_restart_and_a_second_replica_never_run_it_twice(tmp_path: Path) -> None:
    async with served(tmp_path, auto_containment=REVOKE) as s:
        await s.started()
        index = s.hb_low(1)
        identity_id = await enter_critical_hb(s, index)
        stored = next(
            s.db.query(
                "SELECT level, score, observed_at FROM alert_identities WHERE identity_id = ?", [identity_id]
            )
        )
        assert stored["level"] == "critical"
        # a second replica that read the same stored state before this one wrote it: the entry's row
        # exists, so it writes nothing and runs nothing
        (row,) = s.db.query("SELECT * FROM auto_actions WHERE identity_id = ?", [identity_id])
        observed, level, score = row["entry"].split(":")
        previous = State(level=RiskLevel(level), score=int(score), observed_at=float(observed))
        identity = await s.web_app[BOT].connectors["homebase"].get_identity(identity_id)
        with s.db.atomic():
            again = s.service.auto.entered(
                s.web_app[BOT].connectors["homebase"], identity, previous, row["alert_id"], s.clock()
            )
        assert again is False
        assert len(list(s.db.query("SELECT * FROM auto_actions"))) == 1
        # a second server on the same store (a restart, or a replica): it sweeps, it settles, nothing runs
        config = server_config(tmp_path, s.hb_url, s.hb_url, auto_containment=REVOKE)
        config.connectors[1:] = []
        secrets = slack_secrets(s.slack)

        def extension(web_app: Any, bot: Any, environ: Any) -> None:
            install(web_app, bot, environ=environ, clock=s.clock)

        second = build_web_app(config, secrets, environ=ENVIRON, extensions=[extension], expiry_seconds=3600)
        async with serving(second):
            other = second[ALERTS]
            # the first server holds the scope's claim, so the second sweeps only when told to
            await other.sweep(Scope("homebase"))
            await other.auto.run()
            await second[BOT].flow.recover()
        assert s.hb.sessions_revoked[identity_id] == 1
        assert len(audit_rows(s, "auto_containment")) == 1


async def test_a_responder_undoes_an_automatic_disable_with_one_click(tmp_path: Path) -> None:
    async with served(tmp_path, auto_containment=DISABLE) as s:
        await s.started()
        index = next(
            i for i in range(s.sp.identities) if (s.sp.identity(i)["attributes"]["riskScore"] or 0) < 40
        )
        identity_id = s.sp.identity_id(index)
        s.sp.set_risk(index, 97)
        await s.service.sweep(Scope("sp"))
        await eventually(lambda: all(s.sp.account_id(index, n) in s.sp.disabled_accounts for n in range(2)))
        await s.service.auto.run()
        await s.settle()
        card = critical_card(s, s.sp.identity(index)["name"])
        assert "Auto-containment (rule `sp-disable`) ran *Disable account*" in all_text(card)
        (undo,) = [b for b in card["blocks"] if b.get("type") == "actions"][-1]["elements"][-1:]
        assert undo["action_id"] == "auto:undo" and undo["confirm"]
        request_id = undo["value"]
        # someone who is not a responder is refused, and nothing is sent
        await s.click(OUTSIDER, card, "auto:undo", request_id)
        assert "Only responders" in s.slack.visible_ephemerals(OUTSIDER)[-1]["text"]
        assert all(s.sp.account_id(index, n) in s.sp.disabled_accounts for n in range(2))
        # one responder's click: enabled, once, told on the card and in the thread
        await s.click(GROUP_RESPONDER, card, "auto:undo", request_id)
        await eventually(
            lambda: not any(s.sp.account_id(index, n) in s.sp.disabled_accounts for n in range(2))
        )
        await s.settle()
        card = next(c for c in s.cards() if c["ts"] == card["ts"])
        assert f"Undone by <@{GROUP_RESPONDER}>" in all_text(card)
        assert "auto:undo" not in action_ids(card)
        assert any(
            f"<@{GROUP_RESPONDER}> undid the automatic *Disable account*" in r["text"]
            for r in card["replies"]
        )
        # a second click (stale card, double click): nothing more
        await forged_click(s, REQUESTER, "auto:undo", request_id)
        assert "Already undone" in s.slack.visible_ephemerals(REQUESTER)[-1]["text"]
        assert sum(task["action"] == "enable" for task in s.sp.tasks.values()) == 2
        (undone,) = audit_rows(s, "auto_undo")
        assert undone["actor"] == GROUP_RESPONDER and undone["identity_id"] == identity_id
        refused = audit_rows(s, "refused")
        assert [(r["actor"], json.loads(r["detail"])["rule"]) for r in refused] == [
            (OUTSIDER, "not_responders")
        ]
        undo_request = s.web_app[BOT].service.get(json.loads(undone["detail"])["undo_id"])
        assert undo_request.source == "auto_undo" and undo_request.approvers == (GROUP_RESPONDER,)


@pytest.mark.parametrize(
    ("rules", "alerts", "said"),
    [
        (
            [{"connector": "nope", "action": "revoke"}],
            {},
            "auto_containment[0].connector: names no configured connector",
        ),
        (
            [{"connector": "homebase", "action": "enable"}],
            {},
            "auto_containment[0].action: is not an action a rule may run",
        ),
        ([{"connector": "sp", "action": "revoke"}], {}, "SailPoint (sp) has no 'Revoke sessions' action"),
        (REVOKE + REVOKE, {}, "auto_containment[1].connector: a second rule for 'homebase'"),
        (REVOKE, {"enabled": False}, "auto_containment: needs [alerts] enabled"),
        (REVOKE, {"levels": ["high"]}, "needs critical among [alerts] levels"),
    ],
)
async def test_config_errors_name_the_key(tmp_path: Path, rules: list, alerts: dict, said: str) -> None:
    with pytest.raises(ConfigError) as raised:
        async with served(tmp_path, auto_containment=rules, alerts={"poll_seconds": 3600, **alerts}):
            pass
    assert said in str(raised.value)


async def test_an_unknown_outcome_is_told_and_never_sent_again(tmp_path: Path) -> None:
    async with served(tmp_path, auto_containment=REVOKE) as s:
        await s.started()
        index = s.hb_low(2)
        identity_id = s.hb.identity_id(index)
        path = f"/v1/identity/{identity_id}/revoke-sessions"
        fault = {"kind": "drop", "count": 1000, "path": path}
        async with s.http.post(f"{s.hb_url}/_admin/faults", json=fault) as answer:
            assert answer.status == 201
        s.hb.set_risk(identity_id, 95)
        await s.service.sweep(Scope("homebase"))
        (row,) = s.db.query("SELECT request_id FROM auto_actions WHERE identity_id = ?", [identity_id])
        service = s.web_app[BOT].service
        await eventually(
            lambda: service.get(row["request_id"]).status.value == "unknown", 15, "outcome unknown"
        )
        sent = len(s.hb.requests_to(path, "POST"))
        assert sent >= 1
        for _ in range(3):  # the periodic job: reads back, never sends again
            await s.service.auto.run()
        await s.settle()
        assert len(s.hb.requests_to(path, "POST")) == sent
        # read back once when it turned unknown, not at every run (each read is audited)
        checks = [r for r in audit_rows(s, "reconciled") if r["request_id"] == row["request_id"]]
        assert len(checks) == 1
        card = critical_card(s, s.hb.record(index)["display_name"])
        assert "outcome unknown" in all_text(card)
        replies = [r["text"] for r in card.get("replies", []) if "Auto-containment" in r["text"]]
        assert len(replies) == 1 and "never sends it again" in replies[0]

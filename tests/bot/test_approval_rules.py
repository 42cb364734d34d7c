"""Approval rules end to end: signed slash commands and clicks into the real server, HomeBase (and
SailPoint) simulators on loopback, FakeSlack's user groups. Which rule applies and in what order, what
the card says, who each rule lets decide (and refuses), the old `privileged_approvals` setting, and
break-glass at critical risk only."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from support.bot import (
    APPROVER,
    APPROVER2,
    GROUP_RESPONDER,
    OUTSIDER,
    REQUESTER,
    TARGET,
    BotHarness,
    buttons,
    harness,
    second_server,
    status_of,
    until,
)

from bot.approvals import Status
from bot.config import ConfigError, load_config
from bot.extension import BOT
from bot.services import Bot

LEADS = "S0SECLEADS"  # carol and mallory (mallory is not in [access] approvers: the rule's group decides)
ONCALL = "S0ONCALL"  # dave
GLASS = "S0BREAKGLASS"  # mallory and alice

RULES = [
    {
        "name": "privileged-disable",
        "action": ["disable"],
        "privileged": True,
        "approvals": 2,
        "groups": [LEADS],
    },
    {"name": "critical-revoke", "action": ["revoke_sessions"], "risk": ["critical"], "groups": [ONCALL]},
    {"name": "any-privileged", "privileged": True, "approvals": 3},
]


@contextlib.asynccontextmanager
async def ruled(tmp_path: Any, rules: list[dict[str, Any]], **sections: Any) -> AsyncIterator[BotHarness]:
    approvals = {
        "expire_minutes": 30,
        "privileged_approvals": 2,
        "rules": rules,
        **sections.pop("approvals", {}),
    }
    async with harness(tmp_path, approvals=approvals, **sections) as h:
        h.slack.usergroups.update(
            {LEADS: [APPROVER2, OUTSIDER], ONCALL: [GROUP_RESPONDER], GLASS: [OUTSIDER, REQUESTER]}
        )
        yield h


def field_of(card: dict[str, Any], name: str) -> str:
    for block in card["blocks"]:
        for item in block.get("fields", []):
            if item["text"].startswith(f"*{name}*"):
                return str(item["text"].split("\n", 1)[1])
    raise AssertionError(f"no {name} field on the card")


def request_id(card: dict[str, Any]) -> str:
    return str(card["metadata"]["event_payload"]["request_id"])


def audit_events(h: BotHarness, rid: str) -> list[str]:
    rows = h.bot.service.db.query("SELECT event FROM audit WHERE request_id = ? ORDER BY id", [rid])
    return [row["event"] for row in rows]


async def test_the_first_matching_rule_applies_and_the_card_names_it(tmp_path) -> None:
    async with ruled(tmp_path, RULES) as h:
        # disable on a privileged identity: the first rule, although the third also matches
        card = await h.request_card("privileged", "disable", "stolen laptop")
        assert field_of(card, "Rule") == f"privileged-disable · 2 more from members of {LEADS}"
        assert field_of(card, "Approvals") == "0 of 2"
        assert h.bot.service.get(request_id(card)).rule["groups"] == [LEADS]
        # revoke on the same privileged identity (risk not critical): the second rule does not match,
        # the third does
        card = await h.request_card("privileged", "revoke", "phished")
        assert field_of(card, "Rule") == "any-privileged · 3 more from [access] approvers"
        # a plain identity matches no rule of the file nor privileged_approvals: the default
        card = await h.request_card("plain", "reset", "phished")
        assert field_of(card, "Rule") == "default · 1 more from [access] approvers"
        h.sim.set_risk(h.people["plain2"]["id"], 95)  # critical
        card = await h.request_card("plain2", "revoke", "token theft")
        assert field_of(card, "Rule") == f"critical-revoke · 1 more from members of {ONCALL}"
        requested = h.bot.service.db.query("SELECT detail FROM audit WHERE event = 'requested' ORDER BY id")
        assert [json.loads(row["detail"])["rule"] for row in requested] == [
            "privileged-disable",
            "any-privileged",
            "default",
            "critical-revoke",
        ]


async def test_a_rule_s_groups_decide_and_four_eyes_hold(tmp_path) -> None:
    async with ruled(tmp_path, RULES) as h:
        card = await h.request_card("privileged", "disable", "stolen laptop")
        rid = request_id(card)
        # waiting on the group's members only (the App Home's list), never on the requester
        assert [r.id for r in await h.bot.service.pending(for_user=APPROVER2)] == [rid]
        assert await h.bot.service.pending(for_user=APPROVER) == []
        assert await h.bot.service.pending(for_user=REQUESTER) == []
        # bob is an [access] approver but not in the rule's group
        await h.click(APPROVER, card, "approval:approve")
        assert (
            f"Only members of {LEADS} can decide this request (rule privileged-disable)"
            in h.last_seen(APPROVER)["text"]
        )
        await h.click(APPROVER, card, "approval:deny")  # the Deny form does not open either
        assert "Only members of" in h.last_seen(APPROVER)["text"]
        # mallory is in the group (and in no [access] list): her approval counts
        await h.click(OUTSIDER, card, "approval:approve")
        assert "1 of 2" in h.last_seen(OUTSIDER)["text"]
        card = h.cards()[-1]
        assert field_of(card, "Rule") == f"privileged-disable · 1 more from members of {LEADS}"
        # the same person again: distinct approvers
        await h.click(OUTSIDER, card, "approval:approve")
        assert "You already approved" in h.last_seen(OUTSIDER)["text"]
        assert h.bot.service.get(rid).status is Status.PENDING
        assert h.actions() == []
        await h.click(APPROVER2, card, "approval:approve")
        assert h.bot.service.get(rid).status is Status.EXECUTED
        assert field_of(h.cards()[-1], "Rule") == "privileged-disable"
        refused = h.bot.service.db.query(
            "SELECT actor, detail FROM audit WHERE event = 'refused' AND request_id = ?", [rid]
        )
        assert {(row["actor"], json.loads(row["detail"])["rule"]) for row in refused} >= {
            (APPROVER, "not_in_rule_groups"),
            (OUTSIDER, "already_approved"),
        }


async def test_the_requester_and_the_target_never_approve_even_in_the_rule_s_group(tmp_path) -> None:
    rules = [{"name": "everyone-leads", "groups": [LEADS], "approvals": 1}]
    async with ruled(tmp_path, rules) as h:
        h.slack.usergroups[LEADS] = [REQUESTER, TARGET, APPROVER2]
        card = await h.request_card("plain", "revoke", "phished")  # ted is the `plain` identity
        await h.click(REQUESTER, card, "approval:approve")
        assert "can't approve your own request" in h.last_seen(REQUESTER)["text"]
        await h.click(TARGET, card, "approval:approve")
        assert "your own account" in h.last_seen(TARGET)["text"]
        assert h.bot.service.get(request_id(card)).status is Status.PENDING
        await h.click(APPROVER2, card, "approval:approve")
        assert h.bot.service.get(request_id(card)).status is Status.EXECUTED


async def test_tenant_and_connector_conditions(tmp_path) -> None:
    async with harness(tmp_path, with_sailpoint=True) as base:
        tenant = base.people["plain"]["tenant_id"]
        other = base.people["privileged"]["tenant_id"]
        assert tenant != other
    rules = [
        {"name": "emea", "tenant": [tenant], "approvals": 2},
        {"name": "sailpoint", "connector": ["sailpoint"], "groups": [LEADS]},
    ]
    async with ruled(tmp_path, rules, with_sailpoint=True, approvals={"privileged_approvals": 1}) as h:
        assert field_of(await h.request_card("plain", "revoke", "x"), "Rule").startswith("emea · 2 more")
        assert field_of(await h.request_card("privileged", "revoke", "x"), "Rule").startswith("default")
        sp = h.extra["sailpoint"]
        email = sp.identity(3)["attributes"]["email"]
        await h.command(REQUESTER, f"disable {email} leaver")
        assert field_of(h.cards()[-1], "Rule") == f"sailpoint · 1 more from members of {LEADS}"


async def test_privileged_approvals_from_before_rules_is_a_rule(tmp_path) -> None:
    async with harness(tmp_path, approvals={"expire_minutes": 30, "privileged_approvals": 3}) as h:
        card = await h.request_card("privileged", "revoke", "phished")
        assert field_of(card, "Rule") == "privileged_approvals · 3 more from [access] approvers"
        assert field_of(await h.request_card("plain", "revoke", "phished"), "Rule").startswith("default · 1")
    (tmp_path / "one").mkdir()
    async with harness(tmp_path / "one", approvals={"expire_minutes": 30, "privileged_approvals": 1}) as h:
        assert field_of(await h.request_card("privileged", "revoke", "x"), "Rule").startswith("default · 1")


async def test_a_target_that_turns_critical_switches_to_the_stricter_rule(tmp_path) -> None:
    rules = [
        {"name": "critical", "risk": ["critical"], "approvals": 2, "groups": ["S0APPROVERS"]},
    ]
    async with ruled(tmp_path, rules) as h:
        card = await h.request_card("plain", "revoke", "phished")  # high: default, 1 approval
        rid = request_id(card)
        h.sim.set_risk(h.people["plain"]["id"], 97)
        await h.click(APPROVER, card, "approval:approve")
        assert "The target now matches rule critical: needs 2 approvals" in h.last_seen(APPROVER)["text"]
        request = h.bot.service.get(rid)
        assert (request.status, request.approvals_needed, request.rule["name"]) == (
            Status.PENDING,
            2,
            "critical",
        )
        await h.click(APPROVER2, h.cards()[-1], "approval:approve")
        assert h.bot.service.get(rid).status is Status.EXECUTED
        assert "escalated" in audit_events(h, rid)


# --- break-glass ----------------------------------------------------------------------------------

GLASS_RULES = [
    {"name": "glass", "action": ["revoke"], "approvals": 2, "groups": [LEADS], "break_glass": GLASS},
]


async def test_break_glass_lets_one_member_approve_alone_at_critical_risk(tmp_path) -> None:
    async with ruled(tmp_path, GLASS_RULES) as h:
        h.slack.usergroups[LEADS] = [APPROVER2]
        h.sim.set_risk(h.people["plain"]["id"], 96)
        card = await h.request_card("plain", "revoke", "token theft")
        rid = request_id(card)
        assert field_of(card, "Rule") == (
            f"glass · 2 more from members of {LEADS}; or one of {GLASS} alone at critical risk (break-glass)"
        )
        # bob: neither in the rule's group nor in the break-glass group
        await h.click(APPROVER, card, "approval:approve")
        assert "Only members of" in h.last_seen(APPROVER)["text"]
        # alice is in the break-glass group but asked: four eyes hold
        await h.click(REQUESTER, card, "approval:approve")
        assert "your own request" in h.last_seen(REQUESTER)["text"]
        # the break-glass group may approve, not deny
        await h.click(OUTSIDER, card, "approval:deny")
        assert "may only approve, at critical risk" in h.last_seen(OUTSIDER)["text"]
        await h.click(OUTSIDER, card, "approval:approve")
        request = h.bot.service.get(rid)
        assert (request.status, request.break_glass_by) == (Status.EXECUTED, OUTSIDER)
        card = h.cards()[-1]
        assert (
            field_of(card, "Rule") == f"glass · :rotating_light: break-glass: approved alone by <@{OUTSIDER}>"
        )
        assert "approved_break_glass" in audit_events(h, rid)
        headers = {"Authorization": "Bearer test-api-token"}
        async with h.http.get(f"{h.url}/api/v1/approvals/{rid}", headers=headers) as response:
            body = await response.json()
        assert (body["rule"]["name"], body["rule"]["break_glass"], body["break_glass_by"]) == (
            "glass",
            GLASS,
            OUTSIDER,
        )
        assert "approved" not in audit_events(h, rid)
        assert buttons(card) == []


async def test_break_glass_is_refused_below_critical(tmp_path) -> None:
    async with ruled(tmp_path, GLASS_RULES) as h:
        h.slack.usergroups[LEADS] = [APPROVER2]  # mallory is in the break-glass group only
        card = await h.request_card("plain", "revoke", "phished")  # high risk
        rid = request_id(card)
        await h.click(OUTSIDER, card, "approval:approve")
        said = h.last_seen(OUTSIDER)["text"]
        assert "break-glass approval (rule glass) is only for critical risk" in said
        assert "risk is high now" in said
        request = h.bot.service.get(rid)
        assert (request.status, request.approvers, request.break_glass_by) == (Status.PENDING, (), None)
        assert "Waiting" in status_of(h.cards()[-1])
        rows = h.bot.service.db.query(
            "SELECT detail FROM audit WHERE event = 'refused' AND request_id = ?", [rid]
        )
        assert [json.loads(row["detail"])["rule"] for row in rows] == ["rule_groups"]
        # a regular approval from the rule's group still counts as usual
        await h.click(APPROVER2, card, "approval:approve")
        assert h.bot.service.get(rid).approvers == (APPROVER2,)


# --- config errors --------------------------------------------------------------------------------

CONFIG = """
[slack]
alert_channel = "C0ALERTS"
approval_channel = "C0APPROVALS"

[[connectors]]
name = "homebase"
kind = "homebase"
api_key_env = "HOMEBASE_API_KEY"

[approvals]
expire_minutes = 30
"""


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ('action = ["nuke"]', "approvals.rules[0].action[0]: unknown action (expected one of: revoke, reset"),
        (
            'groups = ["secleads"]',
            "approvals.rules[0].groups[0]: must be a Slack user group id like S0ONCALL",
        ),
        ("approvals = 0", "approvals.rules[0].approvals: Input should be greater than or equal to 1"),
        ('colour = "red"', "approvals.rules[0].colour: unknown key"),
        ('connector = ["okta"]', "approvals.rules[0].connector: no connector named 'okta' (known: homebase)"),
        ('break_glass = "U0ALICE"', "approvals.rules[0].break_glass: must be a Slack user group id"),
        (
            'risk = ["severe"]',
            "approvals.rules[0].risk[0]: Input should be 'low', 'medium', 'high' or 'critical'",
        ),
        (
            "escalate_after_minutes = 10",
            "rules[0].escalate_after_minutes: needs escalate_to or escalate_oncall",
        ),
        (
            'escalate_after_minutes = 45\nescalate_to = "S0LEADS"',
            "approvals.rules[0].escalate_after_minutes: must be shorter than expire_minutes (30)",
        ),
        ('escalate_to = "S0A"\nescalate_oncall = "S0B"', "give one of them, not both"),
        (
            'escalate_oncall = "S0ROTA"',
            "approvals.rules[0]: escalate_to and escalate_oncall need escalate_after_minutes",
        ),
    ],
)
def test_config_errors_name_the_file_and_the_key(tmp_path, rule: str, message: str) -> None:
    path = tmp_path / "idops.toml"
    path.write_text(CONFIG + f'\n[[approvals.rules]]\nname = "r"\n{rule}\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(str(path) + ": ")
    assert message in str(caught.value)


def test_a_global_escalation_needs_someone_to_tell(tmp_path) -> None:
    path = tmp_path / "idops.toml"
    path.write_text(CONFIG + "escalate_after_minutes = 10\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == (
        f"{path}: approvals.escalate_after_minutes: needs escalate_to or escalate_oncall"
    )


def test_two_rules_with_one_name_are_refused(tmp_path) -> None:
    path = tmp_path / "idops.toml"
    path.write_text(CONFIG + '\n[[approvals.rules]]\nname = "r"\n\n[[approvals.rules]]\nname = "r"\n')
    with pytest.raises(
        ConfigError, match=r"idops.toml: approvals.rules\[1\]\.name: two rules are named 'r'$"
    ):
        load_config(path)


# --- escalation -----------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def replica(h: BotHarness) -> AsyncIterator[Bot]:
    """A second server on the same store, Slack and clock: a replica, or the process after a restart."""
    async with second_server(h) as app:
        yield app[BOT]


def replies(h: BotHarness) -> list[str]:
    return [reply["text"] for reply in h.cards()[-1]["replies"]]


ESCALATING = {"escalate_after_minutes": 10, "escalate_to": LEADS}


async def test_escalation_mentions_once_per_step_across_replicas_and_restarts_then_expires(tmp_path) -> None:
    async with ruled(tmp_path, [], approvals=ESCALATING, expiry_seconds=0.05) as h:
        card = await h.request_card("plain", "revoke", "phished")
        rid = request_id(card)
        h.clock.advance(minutes=9, seconds=59)
        assert await h.bot.flow.escalate_due() == []
        assert replies(h) == []
        h.clock.advance(seconds=1)  # 10 minutes: step 1, said by the server's own sweep
        await until(lambda: len(replies(h)) == 1)
        assert replies(h)[0].startswith(f":rotating_light: <!subteam^{LEADS}> *Revoke sessions* for *")
        assert (
            "has waited 10 min for approval (rule default: 1 more from [access] approvers)" in replies(h)[0]
        )
        assert h.bot.service.get(rid).escalation_step == 1
        await until(lambda: "escalated" in field_of(h.cards()[-1], "Rule"))  # redrawn after the reply
        assert field_of(h.cards()[-1], "Rule") == (
            f"default · 1 more from [access] approvers · :rotating_light: escalated ({LEADS})"
        )
        async with replica(h) as second:
            # both sweeps run on one store: the step is claimed once
            assert await second.flow.escalate_due() == []
            assert await h.bot.flow.escalate_due() == []
            h.clock.advance(minutes=10)  # step 2 while both loops sweep
            await until(lambda: len(replies(h)) == 2)
            assert await second.flow.escalate_due() == []
            assert await h.bot.flow.escalate_due() == []
            assert "has waited 20 min" in replies(h)[1]
        async with replica(h) as restarted:  # a process started later on the same store
            assert await restarted.flow.escalate_due() == []
        events = audit_events(h, rid)
        assert events.count("escalation") == 2
        # expiry follows: the card is updated, and no step is said after it
        h.clock.advance(minutes=10)
        await until(lambda: "Expired" in status_of(h.cards()[-1]))
        assert buttons(h.cards()[-1]) == []
        assert len(replies(h)) == 2
        assert h.bot.service.get(rid).status is Status.EXPIRED
        assert audit_events(h, rid)[-1] == "expired"


async def test_a_rule_s_own_escalation_and_the_on_call_person(tmp_path) -> None:
    rules = [
        {"name": "fast", "action": ["reset"], "escalate_after_minutes": 5, "escalate_oncall": "S0ROTA"},
        {"name": "nobody", "action": ["disable"], "escalate_after_minutes": 3, "escalate_oncall": "S0NOBODY"},
    ]
    async with ruled(tmp_path, rules, approvals=ESCALATING) as h:
        h.slack.usergroups.update({"S0ROTA": [GROUP_RESPONDER], "S0NOBODY": []})
        reset = request_id(await h.request_card("plain", "reset", "phished"))
        revoke = request_id(await h.request_card("plain2", "revoke", "phished"))
        h.clock.advance(minutes=5)
        assert [r.id for r in await h.bot.flow.escalate_due()] == [reset]
        said = h.cards()[0]["replies"][-1]["text"]
        assert said.startswith(f":rotating_light: <@{GROUP_RESPONDER}> *Force password reset*")
        assert "rule fast" in said
        h.clock.advance(minutes=5)  # the global 10 minutes: the other request; the reset's step 2
        assert {r.id for r in await h.bot.flow.escalate_due()} == {reset, revoke}
        assert h.cards()[1]["replies"][-1]["text"].startswith(f":rotating_light: <!subteam^{LEADS}>")
        # a rotation group with nobody on call: the group itself is mentioned
        disable = request_id(await h.request_card("privileged", "disable", "stolen laptop"))
        h.clock.advance(minutes=3)
        assert [r.id for r in await h.bot.flow.escalate_due()] == [disable]
        assert h.cards()[2]["replies"][-1]["text"].startswith(":rotating_light: <!subteam^S0NOBODY>")


async def test_a_decided_request_is_not_escalated(tmp_path) -> None:
    async with ruled(tmp_path, [], approvals=ESCALATING) as h:
        card = await h.request_card("plain", "revoke", "phished")
        await h.click(APPROVER, card, "approval:approve")
        h.clock.advance(minutes=15)
        assert await h.bot.flow.escalate_due() == []
        assert [r for r in replies(h) if r.startswith(":rotating_light:")] == []


async def test_extend_and_make_permanent_take_a_decider_of_the_original_rule(tmp_path) -> None:
    rules = [{"name": "sp-disable", "connector": ["sailpoint"], "action": ["disable"], "groups": [LEADS]}]
    async with ruled(tmp_path, rules, with_sailpoint=True) as h:
        sp = h.extra["sailpoint"]
        index = next(i for i in range(sp.identities) if (sp.identity(i)["attributes"]["riskScore"] or 0) < 40)
        await h.command(REQUESTER, f"disable {sp.identity(index)['attributes']['email']} for 4h token theft")
        card = h.cards()[-1]
        rid = request_id(card)
        assert field_of(card, "Rule") == f"sp-disable · 1 more from members of {LEADS}"
        await h.click(APPROVER2, card, "approval:approve")
        item = h.bot.service.containment(rid)
        assert h.bot.service.get(rid).status is Status.EXECUTED and item is not None
        card = h.cards()[-1]
        # bob may approve under [access], but not under this request's rule
        await h.click(APPROVER, card, "containment:extend", f"{rid}:4h")
        assert (
            f"Only members of {LEADS} can decide this request (rule sp-disable)"
            in h.last_seen(APPROVER)["text"]
        )
        await h.click(APPROVER, card, "containment:permanent")
        assert "Only members of" in h.last_seen(APPROVER)["text"]
        assert h.bot.service.containment(rid) == item
        await h.click(OUTSIDER, card, "containment:extend", f"{rid}:4h")  # mallory is in the group
        extended = h.bot.service.containment(rid)
        assert extended is not None and extended.due_at == item.due_at + timedelta(hours=4)
        assert extended.decided_by == OUTSIDER

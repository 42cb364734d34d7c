"""Alerts inside the real server: start-up sweeps, webhooks (good, bad, replayed), the card's buttons
clicked as Slack sends them, per-tenant sweeps and config errors."""

from __future__ import annotations

import collections
import hashlib
import hmac
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from aiohttp import encode_basic_auth
from sailpoint.triggers.models.identity_attributes_changed import IdentityAttributesChanged
from support.alerts import (
    ALERTS,
    API_TOKEN,
    ENVIRON,
    HOOK_SECRET,
    SP_TOKEN,
    Served,
    action_ids,
    all_text,
    eventually,
    served,
)
from support.bot import APPROVER, OUTSIDER, REQUESTER, TARGET

from bot import audit
from bot.config import ConfigError
from bot.extension import BOT
from connectors import RiskLevel
from standins import homebase


def signed(body: bytes, secret: str = HOOK_SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-HLD-Signature-256": f"sha256={digest}", "Content-Type": "application/json"}


def event(s: Served, index: int, event_id: str = "evt_test1") -> bytes:
    return json.dumps(
        {
            "id": event_id,
            "type": "identity.risk_changed",
            "created_at": "2026-11-01T09:00:00Z",
            "tenant_id": s.hb.tenant_ids[index % s.hb.tenants],
            "data": {"identity_id": s.hb.identity_id(index), "risk_score": s.hb.risk_score(index)},
        }
    ).encode()


async def post(s: Served, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
    async with s.http.post(s.url + path, data=body, headers=headers) as response:
        return response.status, await response.json(content_type=None) if response.status != 404 else None


def gets_of(s: Served, index: int) -> int:
    return len(s.hb.requests_to(f"/v1/identity/{s.hb.identity_id(index)}", "GET"))


async def test_start_up_sweeps_then_a_signed_webhook_alerts_in_seconds(s) -> None:
    await s.started()
    summaries = [all_text(n) for n in s.notices()]
    assert any("HomeBase (homebase)" in t and "First sweep" in t for t in summaries)
    assert any("SailPoint (sp)" in t and "First sweep" in t for t in summaries)
    assert not s.cards()

    index = s.hb_low()
    async with s.http.post(
        f"{s.hb_url}/_admin/identity/{s.hb.identity_id(index)}/risk", json={"risk_score": 93}
    ) as response:
        assert response.status == 200
        delivery = (await response.json())["delivery"]
    assert delivery["status"] == 202  # the simulator's signed webhook was accepted
    await s.settle()
    (card,) = s.cards()
    assert s.hb.person(index).email in all_text(card) and "→ 93" in all_text(card)


async def test_homebase_webhook_signatures_and_replays(s) -> None:
    await s.started()
    index = s.hb_low()
    s.hb.set_risk(s.hb.identity_id(index), 88)
    body = event(s, index)
    before = gets_of(s, index)

    status, answer = await post(s, "/webhooks/homebase", body, {"Content-Type": "application/json"})
    assert status == 401 and "missing X-HLD-Signature-256" in answer["error"]
    status, answer = await post(s, "/webhooks/homebase", body, signed(body, "not-the-secret"))
    assert status == 401 and "does not match" in answer["error"]
    tampered = body.replace(b"evt_test1", b"evt_test2")
    status, _ = await post(s, "/webhooks/homebase", tampered, signed(body))
    assert status == 401
    await s.settle()
    assert gets_of(s, index) == before and not s.cards()  # nothing was re-checked

    status, answer = await post(s, "/webhooks/homebase", body, signed(body))
    assert status == 202 and answer == {"ok": True, "rechecking": 1}
    await s.settle()
    assert gets_of(s, index) == before + 1 and len(s.cards()) == 1

    status, answer = await post(s, "/webhooks/homebase", body, signed(body))  # replayed
    assert status == 200 and answer["duplicate"] is True
    await s.settle()
    assert gets_of(s, index) == before + 1 and len(s.cards()) == 1

    not_json = b"{not json"
    status, answer = await post(s, "/webhooks/homebase", not_json, signed(not_json))
    assert status == 400 and answer["error"] == "body is not a JSON object"
    no_id = json.dumps({"type": "identity.risk_changed", "data": {}}).encode()
    status, answer = await post(s, "/webhooks/homebase", no_id, signed(no_id))
    assert status == 400 and answer["error"] == "HomeBase event: field 'id' is required"
    other = json.dumps({"id": "evt_x", "type": "tenant.updated", "data": {"name": "x"}}).encode()
    status, answer = await post(s, "/webhooks/homebase", other, signed(other))
    assert status == 202 and answer["rechecking"] == 0


async def test_sailpoint_trigger_with_bearer_auth(s) -> None:
    await s.started()
    index = next(i for i in range(40) if s.sp.risk.get(i, None) is None and _sp_score(s, i) <= 20)
    s.sp.set_risk(index, 95)
    identity_id = s.sp.identity_id(index)
    # the body exactly as the official SDK models the idn:identity-attributes-changed trigger
    body = IdentityAttributesChanged.from_dict(
        {
            "identity": {"type": "IDENTITY", "id": identity_id, "name": "someone"},
            "changes": [{"attribute": "riskScore", "oldValue": "10", "newValue": "95"}],
        }
    ).to_json()
    assert body is not None
    payload = body.encode()
    json_type = {"Content-Type": "application/json"}

    status, answer = await post(s, "/webhooks/sailpoint", payload, json_type)
    assert status == 401 and answer["error"] == "missing bearer token"
    status, answer = await post(
        s, "/webhooks/sailpoint", payload, {**json_type, "Authorization": "Bearer nope"}
    )
    assert status == 401 and answer["error"] == "wrong bearer token"
    await s.settle()
    assert not s.cards()

    auth = {**json_type, "Authorization": f"Bearer {SP_TOKEN}"}
    bad = json.dumps({"identity": {"name": "x"}, "changes": []}).encode()
    status, answer = await post(s, "/webhooks/sailpoint", bad, auth)
    assert (
        status == 400
        and answer["error"] == "idn:identity-attributes-changed: field 'identity.id' is required"
    )

    status, answer = await post(s, "/webhooks/sailpoint", payload, auth)
    assert status == 202 and answer["rechecking"] == 1
    await s.settle()
    (card,) = s.cards()
    text = all_text(card)
    assert "SailPoint (sp)" in text and "→ 95" in text
    assert action_ids(card) == ["request:disable", "request:enable", "alert:ack", "alert:snooze"]  # SailPoint


def _sp_score(s: Served, index: int) -> int:
    from standins.seed import person

    return person(index, seed=s.sp.seed).risk_score


async def test_sailpoint_trigger_with_basic_auth(tmp_path: Path) -> None:
    environ = {**ENVIRON, "SP_USER": "idops", "SP_PASS": "s3cret"}
    webhooks = {
        "homebase_secret_env": "HLD_HOOK_SECRET",
        "sailpoint_auth": "basic",
        "sailpoint_username_env": "SP_USER",
        "sailpoint_password_env": "SP_PASS",
    }
    async with served(tmp_path, environ=environ, webhooks=webhooks) as s:
        await s.started()
        body = json.dumps(
            {"identity": {"id": s.sp.identity_id(0), "type": "IDENTITY"}, "changes": []}
        ).encode()
        wrong = encode_basic_auth("idops", "guess")
        status, answer = await post(s, "/webhooks/sailpoint", body, {"Authorization": wrong})
        assert status == 401 and answer["error"] == "wrong basic credentials"
        right = encode_basic_auth("idops", "s3cret")
        status, answer = await post(s, "/webhooks/sailpoint", body, {"Authorization": right})
        assert status == 202


async def test_card_buttons_ack_snooze_and_request(tmp_path: Path) -> None:
    async with served(tmp_path, alerts={"poll_seconds": 3600, "snooze_minutes": 30}) as s:
        await s.started()
        index = s.hb_low()
        s.hb.set_risk(s.hb.identity_id(index), 60)
        await s.service.sweep(s.service.detector.scopes()[0])
        await s.settle()
        (card,) = s.cards()

        await s.click(OUTSIDER, card, "alert:ack")
        assert "Only responders and approvers" in all_text(s.slack.visible_ephemerals(OUTSIDER)[-1])
        (card,) = s.cards()
        assert "alert:ack" in action_ids(card)

        await s.click(REQUESTER, card, "alert:ack")
        (card,) = s.cards()
        assert f"acknowledged by <@{REQUESTER}>" in all_text(card)
        assert "alert:ack" not in action_ids(card) and "alert:snooze" in action_ids(card)

        await s.click(APPROVER, card, "alert:snooze")
        (card,) = s.cards()
        assert f"snoozed by <@{APPROVER}>" in all_text(card) and "alert:snooze" not in action_ids(card)
        assert "Snoozed for 30 minutes" in all_text(s.slack.visible_ephemerals(APPROVER)[-1])
        trail = [
            (row["event"], row["actor"])
            for row in s.db.query(
                "SELECT * FROM audit WHERE identity_id = ? ORDER BY id", [s.hb.identity_id(index)]
            )
        ]
        assert trail == [("alert_acknowledged", REQUESTER), ("alert_snoozed", APPROVER)]
        assert audit.verify(s.db)[0]

        # snoozed: escalation updates the card without a thread notification
        s.hb.set_risk(s.hb.identity_id(index), 97)
        await s.service.sweep(s.service.detector.scopes()[0])
        await s.settle()
        (card,) = s.cards()
        assert "→ 97" in all_text(card) and not card["replies"]

        # the request buttons start the bot's approval flow
        await s.click(REQUESTER, card, "request:revoke_sessions")
        approvals = s.slack.messages("C0APPROVALS")
        assert len(approvals) == 1 and "Revoke sessions" in all_text(approvals[0])


async def test_list_them_shows_the_baseline(s) -> None:
    await s.started()
    (summary,) = [n for n in s.notices() if "HomeBase (homebase)" in all_text(n)]
    expected = sum(homebase.risk_level(s.hb.risk_score(i)) in ("high", "critical") for i in range(s.hb.size))
    await s.click(REQUESTER, summary, "alert:list")
    shown = all_text(s.slack.visible_ephemerals(REQUESTER)[-1])
    assert f"{expected} identities high or critical" in shown
    await s.click(OUTSIDER, summary, "alert:list")
    assert "Only responders and approvers" in all_text(s.slack.visible_ephemerals(OUTSIDER)[-1])


async def test_per_tenant_sweeps_report_a_suspended_tenant_alone(tmp_path: Path) -> None:
    app_tenants = homebase.HomeBaseState(identities=1).tenant_ids  # the simulator's seeded tenant ids
    async with served(tmp_path, alerts={"poll_seconds": 3600, "tenants": {"homebase": app_tenants}}) as s:
        s.hb.suspended_tenants.add(app_tenants[1])
        await s.started()
        texts = [all_text(n) for n in s.notices()]
        failing = [t for t in texts if "is failing" in t]
        assert len(failing) == 1 and app_tenants[1] in failing[0] and app_tenants[0] not in failing[0]
        assert any("First sweep" in t and app_tenants[0] in t for t in texts)


@pytest.mark.parametrize(
    ("sections", "environ", "message"),
    [
        ({"webhooks": {"homebase_secret_env": "NOT_SET_ANYWHERE"}}, ENVIRON, "NOT_SET_ANYWHERE"),
        ({"alerts": {"tenants": {"nope": ["ten_1"]}}}, ENVIRON, "no connector named 'nope'"),
        (
            {"webhooks": {"sailpoint_auth": "basic", "sailpoint_username_env": "TEST_SP_ID"}},
            ENVIRON,
            "sailpoint_password_env",
        ),
        ({"alerts": {"routes": [{"channel": "#alerts", "level": "high"}]}}, ENVIRON, r"routes\[0\].channel"),
        ({"alerts": {"mention": "@oncall"}}, ENVIRON, "mention: must be a Slack user group id"),
    ],
)
async def test_config_errors_name_what_is_wrong(
    tmp_path: Path, sections: dict[str, Any], environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        async with served(tmp_path, environ=environ, **sections):
            pass


async def test_alerts_can_be_switched_off(tmp_path: Path) -> None:
    async with served(tmp_path, alerts={"enabled": False}) as s:
        status, _ = await post(s, "/webhooks/homebase", b"{}", signed(b"{}"))
        assert status == 404
        assert not s.slack.messages(ALERTS)


async def test_one_scheduled_job_per_scope_never_overlapping(s) -> None:
    await eventually(lambda: s.service.results, 15, "a first sweep")
    assert s.service.scheduler is not None
    jobs = s.service.scheduler.get_jobs()
    assert sorted(job.id for job in jobs) == ["alerts:homebase", "alerts:snoozes", "alerts:sp"]
    assert all(job.max_instances == 1 and job.coalesce for job in jobs)


async def test_a_provider_without_risk_scores_says_so_instead_of_zero(tmp_path: Path) -> None:
    async with served(tmp_path, sp_risk=None) as s:
        await s.started()
        texts = [all_text(n) for n in s.notices()]
        (sp_notice,) = [t for t in texts if "SailPoint (sp)" in t]
        assert "reports no risk score" in sp_notice and "risk_attribute" in sp_notice
        assert not any("First sweep of SailPoint" in t for t in texts)
        assert any("First sweep of HomeBase" in t for t in texts)


async def test_app_home_counts_from_the_sweeps_exactly_without_scanning_providers(tmp_path: Path) -> None:
    async with served(tmp_path, identities=1600) as s:
        await s.started()
        bot = s.web_app[BOT]
        every = [i for c in bot.connectors.values() async for i in c.list_identities()]
        expected = collections.Counter(i.risk_level for i in every if i.risk_level is not None)
        assert expected[RiskLevel.LOW] > 1000  # beyond what a provider scan would count (1000+)
        listings = len(s.hb.requests_to("/v1/identity", "GET"))
        await s.slack.open_home(s.events_url, APPROVER)
        await s.settle()
        home = s.slack.home(APPROVER)
        assert home is not None
        shown = {
            f["text"].split("*")[1].lower(): f["text"].rsplit("\n", 1)[1] for f in home["blocks"][1]["fields"]
        }
        assert shown == {level.value: str(expected[level]) for level in RiskLevel}
        assert len(s.hb.requests_to("/v1/identity", "GET")) == listings  # no provider was scanned
        assert "HomeBase (homebase): as of its last risk sweep" in all_text(home)
        top = max((i for i in every), key=lambda i: i.risk_score or 0)
        assert ("identity:show", f"{top.connector}:{top.id}") in [
            (b["accessory"]["action_id"], b["accessory"]["value"]) for b in home["blocks"] if "accessory" in b
        ]

        # the next sweep's changes show on the next visit
        index = s.hb_low()
        s.hb.set_risk(s.hb.identity_id(index), 99)
        await s.service.sweep(s.service.detector.scopes()[0])
        await s.slack.open_home(s.events_url, APPROVER)
        await s.settle()
        fields = s.slack.home(APPROVER)["blocks"][1]["fields"]
        assert fields[0]["text"].endswith(f"\n{expected[RiskLevel.CRITICAL] + 1}")
        assert fields[3]["text"].endswith(f"\n{expected[RiskLevel.LOW] - 1}")


async def test_the_scheduler_redraws_a_card_when_its_snooze_ends(tmp_path: Path) -> None:
    async with served(tmp_path, alerts={"poll_seconds": 3600, "snooze_minutes": 30}) as s:
        await s.started()
        s.hb.set_risk(s.hb.identity_id(s.hb_low()), 60)
        await s.service.sweep(s.service.detector.scopes()[0])
        await s.settle()
        (card,) = s.cards()
        await s.click(APPROVER, card, "alert:snooze")
        (card,) = s.cards()
        assert "snoozed by" in all_text(card)
        s.clock.advance(30 * 60)

        def offered_again() -> bool:
            (now,) = s.cards()
            return "snoozed" not in all_text(now) and "alert:snooze" in action_ids(now)

        await s.slack.wait_for(offered_again, timeout=10, what="the card without its ended snooze")


async def test_nobody_acknowledges_or_snoozes_an_alert_about_their_own_account(s) -> None:
    await s.started()
    scope = s.service.detector.scopes()[0]
    plain = s.people["plain"]  # TARGET's Slack email is this identity's, and TARGET is an approver
    s.hb.set_risk(plain["id"], 10)
    await s.service.sweep(scope)
    s.hb.set_risk(plain["id"], 85)
    await s.service.sweep(scope)
    await s.settle()
    (card,) = s.cards()
    for action in ("alert:ack", "alert:snooze"):
        await s.click(TARGET, card, action)
        assert "about your own account" in all_text(s.slack.visible_ephemerals(TARGET)[-1])
    (card,) = s.cards()
    assert "acknowledged" not in all_text(card) and "snoozed" not in all_text(card)
    refused = s.db.execute(
        "SELECT actor, detail FROM audit WHERE event = 'refused' AND identity_id = ?", [plain["id"]]
    ).fetchall()
    assert [
        (actor, json.loads(detail)["attempted"], json.loads(detail)["rule"]) for actor, detail in refused
    ] == [
        (TARGET, "acknowledge", "own_alert"),
        (TARGET, "snooze", "own_alert"),
    ]
    await s.click(APPROVER, card, "alert:ack")
    (card,) = s.cards()
    assert f"acknowledged by <@{APPROVER}>" in all_text(card)


async def healthz(s: Served) -> dict[str, Any]:
    async with s.http.get(s.url + "/healthz", headers={"Authorization": f"Bearer {API_TOKEN}"}) as response:
        assert response.status == 200
        body = await response.json()
    # the store and this replica's claims (tests/bot/test_claims.py, test_replicas.py) are fine here
    assert body.pop("store") == {"ok": True, "backend": "sqlite"}
    replica = body.pop("replica")
    assert replica["ok"] is True
    # this one replica holds every sweep scope (alerts.scopes), among its claims
    scopes = body["alerts"].pop("scopes")
    assert scopes == ["homebase", "sp"] and {f"sweep:{scope}" for scope in scopes} <= set(replica["claims"])
    return body


async def raise_risk(s: Served, index: int, score: int) -> None:
    """Change a HomeBase identity's risk; the simulator's signed webhook tells the bot."""
    identity_id = s.hb.identity_id(index)
    async with s.http.post(f"{s.hb_url}/_admin/identity/{identity_id}/risk", json={"risk_score": score}) as r:
        assert r.status == 200 and (await r.json())["delivery"]["status"] == 202


def sender_log(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "bot.alerts.sender"]


async def test_healthz_reports_alerts_that_fail_for_good_and_the_log_names_the_channel_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    routes = [{"channel": "C0NOWHERE", "level": "critical"}]  # a channel Slack doesn't know
    async with served(tmp_path, alerts={"poll_seconds": 3600, "routes": routes}) as s:
        await s.started()
        none = {"count": 0, "oldest_age_s": None}
        assert await healthz(s) == {
            "ok": True,
            "connectors": ["homebase", "sp"],
            "alerts": {"ok": True, "stuck": none, "failed": none, "channels": {}},
        }
        caplog.set_level(logging.INFO, "bot.alerts.sender")
        for _ in range(2):
            await raise_risk(s, s.hb_low(), 95)
            await s.settle()
            s.clock.advance(60)
        assert s.slack.messages("C0NOWHERE") == []
        body = await healthz(s)
        assert body["ok"] is False and body["alerts"] == {
            "ok": False,
            "stuck": none,
            "failed": {"count": 2, "oldest_age_s": 120.0},
            "channels": {"C0NOWHERE": "Slack refused chat_postMessage: channel_not_found"},
        }
        assert sender_log(caplog) == [
            "alert deliveries to C0NOWHERE fail for good: Slack refused chat_postMessage: channel_not_found;"
            " check the channel id in the config (kept as failed; logged once until one works)"
        ]
        # the channel is fixed: the next alert there gets through, then the two refused before it, and
        # the server is healthy again
        s.slack.channels["C0NOWHERE"] = "nowhere"
        await raise_risk(s, s.hb_low(), 95)
        await s.settle()
        assert len(s.cards("C0NOWHERE")) == 3
        assert (await healthz(s))["alerts"] == {"ok": True, "stuck": none, "failed": none, "channels": {}}
        assert sender_log(caplog)[1:] == [
            "alert deliveries to C0NOWHERE work again; sending the 2 that failed there before"
        ]


async def test_healthz_reports_alerts_stuck_while_slack_is_down_and_the_log_says_so_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with served(tmp_path) as s:
        await s.started()
        caplog.set_level(logging.INFO, "bot.alerts.sender")
        s.slack.down()
        await raise_risk(s, s.hb_low(), 95)
        await s.web_app[BOT].replies.join(timeout=15)
        await s.service.join(timeout=15)
        attempts = "SELECT coalesce(max(attempts), 0) FROM alert_outbox WHERE status = 'pending'"
        await eventually(lambda: s.db.execute(attempts).fetchone()[0] >= 3, what="three failed attempts")
        assert (await healthz(s))["ok"] is True  # retrying, but not for long yet
        s.clock.advance(301)
        body = await healthz(s)
        assert body["ok"] is False and body["alerts"]["ok"] is False
        assert body["alerts"]["stuck"] == {"count": 1, "oldest_age_s": 301.0}
        assert body["alerts"]["failed"] == {"count": 0, "oldest_age_s": None}
        assert "HTTP 503" in body["alerts"]["channels"][ALERTS]
        s.slack.up()
        await s.settle()
        assert len(s.cards()) == 1 and (await healthz(s))["ok"] is True
        assert sender_log(caplog) == [
            f"alert deliveries to {ALERTS}: Slack answered HTTP 503; retrying (logged once until one works)",
            f"alert deliveries to {ALERTS} work again",
        ]

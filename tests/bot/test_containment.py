"""Time-boxed containment end to end: signed slash commands and clicks into the real server, the Okta
connector over loopback to its simulator (which supports unsuspend), a fake clock moved past the due
time and the server's own periodic job doing the revert."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any, Optional

import pytest
from support.bot import (
    APPROVER,
    APPROVER2,
    GROUP_RESPONDER,
    OUTSIDER,
    REQUESTER,
    BotHarness,
    buttons,
    forged_click,
    okta_bot,
    pg_store,
    sweeps,
    text_of,
    until,
)
from support.postgres import PgDatabase

from bot.approvals import State, Status
from standins.okta_data import OktaState


@pytest.fixture
async def ok(tmp_path, server_pg: Optional[PgDatabase]) -> AsyncIterator[BotHarness]:
    """The bot on Okta, sweeping every 50 ms; on SQLite, then on PostgreSQL (`server_pg`)."""
    async with okta_bot(tmp_path, expiry_seconds=0.05, **pg_store(server_pg)) as built:
        yield built


def pick(state: OktaState, skip: int = 0) -> tuple[int, str, str]:
    """An ordinary active Okta user without risk: (index, id, email)."""
    found = [
        i
        for i in range(4, state.total)
        if state.status(i) == "ACTIVE" and not state.role_types(i) and state.risk_level(i)[0] == "NONE"
    ]
    index = found[skip]
    user = state.user(index)
    return index, user["id"], user["profile"]["email"]


def field(card: dict[str, Any], name: str) -> str:
    for block in card["blocks"]:
        for item in block.get("fields", []):
            if item["text"].startswith(f"*{name}*"):
                return str(item["text"].split("\n", 1)[1])
    raise AssertionError(f"no {name} field on the card")


async def high_risk(h: BotHarness, user_id: str) -> None:
    """Okta ITP flags the user HIGH."""
    async with h.http.post(
        f"{h.extra['okta_url']}/_admin/users/{user_id}/risk", json={"riskLevel": "HIGH"}
    ) as r:
        assert r.status == 200


async def contained(h: BotHarness, email: str, duration: str = "4h") -> tuple[dict[str, Any], str]:
    """Request `disable <email> for <duration>`, approve it; returns the card and the request id."""
    await h.command(REQUESTER, f"disable {email} for {duration} stolen laptop")
    card = h.card()
    request_id = card["metadata"]["event_payload"]["request_id"]
    await h.click(APPROVER, card, "approval:approve")
    return h.card(), request_id


async def test_disable_for_4h_reverts_once_at_the_due_time(ok: BotHarness) -> None:
    state: OktaState = ok.extra["okta"]
    index, user_id, email = pick(state)
    await ok.command(REQUESTER, f"disable {email} for 4h stolen laptop")
    assert "for 4 h" in ok.last_seen(REQUESTER)["text"]
    card = ok.card()
    assert "4 h from when it runs" in field(card, "Time box")  # shown on the approval card
    request_id = card["metadata"]["event_payload"]["request_id"]
    assert ok.bot.service.get(request_id).duration_seconds == 4 * 3600

    ran_at = ok.clock()
    await ok.click(APPROVER, card, "approval:approve")
    card = ok.card()
    assert state.status(index) == "SUSPENDED"
    due = ran_at + timedelta(hours=4)
    assert field(card, "Time box") == (
        f":stopwatch: Reverts <!date^{int(due.timestamp())}^{{date_short_pretty}} {{time}}|"
        f"{due:%Y-%m-%d %H:%M} UTC>"
    )
    item = ok.bot.service.containment(request_id)
    assert item is not None and item.status is State.ACTIVE and item.due_at == due

    # `/idops pending` lists it with its end time
    await ok.command(GROUP_RESPONDER, "pending")
    listed = text_of(ok.last_seen(GROUP_RESPONDER))
    assert "Active containments" in listed and f"<!date^{int(due.timestamp())}^" in listed

    # and so does the App Home
    await ok.slack.open_home(ok.events_url, GROUP_RESPONDER)
    await ok.settle()
    home = text_of(ok.slack.home(GROUP_RESPONDER) or {})
    assert "Active containments" in home and f"<!date^{int(due.timestamp())}^" in home and "Disable" in home

    # a minute before: the server's sweep leaves it alone
    ok.clock.advance(hours=3, minutes=59)
    await sweeps(ok.bot)
    assert state.status(index) == "SUSPENDED" and (user_id, "unsuspend") not in state.actions

    # past due: the server's periodic job reverts it, once, and says so in the thread and on the card
    ok.clock.advance(minutes=2)
    await until(lambda: state.status(index) == "ACTIVE")
    await until(lambda: ok.bot.service.containment(request_id).status is State.REVERTED)
    # the action's result, the reminder 30 minutes before, the revert
    await until(lambda: len(ok.card()["replies"]) == 3)
    await asyncio.gather(*(ok.bot.containment.sweep() for _ in range(3)))  # more sweeps change nothing
    await sweeps(ok.bot)
    assert state.actions.count((user_id, "unsuspend")) == 1
    card = ok.card()
    assert field(card, "Time box").startswith(":leftwards_arrow_with_hook: Reverted")
    reply = card["replies"][-1]["text"]
    assert "Revert of the containment" in reply and "Enable" in reply
    assert f"Asked by <@{REQUESTER}>, approved by <@{APPROVER}>" in reply
    assert len(card["replies"]) == 3
    # the revert is an audited action of its own
    item = ok.bot.service.containment(request_id)
    assert item is not None and item.revert_id
    revert = ok.bot.service.get(item.revert_id)
    assert revert.status is Status.EXECUTED and revert.source == "containment"
    assert revert.approvers == (APPROVER,) and revert.requested_by == REQUESTER
    events = [row["event"] for row in ok.bot.service.history("okta", user_id, limit=50)]
    assert {"contained", "revert_started", "executed"} <= set(events)
    # no longer listed as active
    await ok.command(GROUP_RESPONDER, "pending")
    assert "Active containments" not in text_of(ok.last_seen(GROUP_RESPONDER))


async def test_revert_waits_while_the_risk_is_still_high(ok: BotHarness) -> None:
    state: OktaState = ok.extra["okta"]
    index, user_id, email = pick(state, 1)
    card, request_id = await contained(ok, email, "15m")
    assert state.status(index) == "SUSPENDED"
    await high_risk(ok, user_id)
    ok.clock.advance(minutes=16)
    await until(lambda: ok.bot.service.containment(request_id).status is State.HELD)
    await until(lambda: len(ok.card()["replies"]) == 2)
    await sweeps(ok.bot)  # more sweeps: still held, told once
    card = ok.card()
    assert len(card["replies"]) == 2 and state.status(index) == "SUSPENDED"
    assert (user_id, "unsuspend") not in state.actions
    held = card["replies"][-1]["text"]
    assert f"<@{REQUESTER}>" in held and "not restored" in held and "high" in held
    assert field(card, "Time box").startswith(":warning: Revert held")
    events = [row["event"] for row in ok.bot.service.history("okta", user_id, limit=50)]
    assert "revert_held" in events


async def test_time_boxing_is_refused_where_the_provider_cannot_undo(h: BotHarness) -> None:
    email = h.people["plain"]["email"]
    await h.command(REQUESTER, f"disable {email} for 4h stolen laptop")
    said = h.last_seen(REQUESTER)["text"]
    assert "can't undo" in said and "HomeBase" in said and "time-box" in said
    assert h.cards() == []
    # without a duration it is an ordinary request
    await h.command(REQUESTER, f"disable {email} for phishing")
    assert len(h.cards()) == 1 and "Time box" not in text_of(h.card())
    assert h.bot.service.get(h.card()["metadata"]["event_payload"]["request_id"]).reason == "for phishing"


@pytest.mark.parametrize(
    ("duration", "said"),
    [
        ("0m", "out of range"),
        ("31d", "out of range"),
        ("4x", "not a duration"),
        ("99999999h", "not a duration"),
    ],
)
async def test_bad_durations_are_named(h: BotHarness, duration: str, said: str) -> None:
    await h.command(REQUESTER, f"disable someone@example.com for {duration} reason")
    shown = h.last_seen(REQUESTER)["text"]
    assert said in shown and f"'{duration}'" in shown and "Usage" in shown
    assert h.cards() == []


def thread(h: BotHarness) -> list[str]:
    return [reply["text"] for reply in h.card()["replies"]]


def reminders(h: BotHarness) -> list[dict[str, Any]]:
    return [r for r in h.card()["replies"] if r["text"].startswith(":alarm_clock:")]


async def test_reminder_30_minutes_before_the_end_then_once(ok: BotHarness) -> None:
    _, _, email = pick(ok.extra["okta"], 2)
    _, request_id = await contained(ok, email, "4h")
    ok.clock.advance(hours=3, minutes=29)
    await sweeps(ok.bot)
    assert reminders(ok) == []
    ok.clock.advance(minutes=2)
    await until(lambda: len(reminders(ok)) == 1)
    await sweeps(ok.bot)  # more sweeps: one reminder
    (reminder,) = reminders(ok)
    assert reminder["text"].startswith(f":alarm_clock: <@{REQUESTER}>") and "ends <!date^" in reminder["text"]
    assert [b[0] for b in buttons(reminder)] == [
        "containment:extend",
        "containment:extend",
        "containment:extend",
        "containment:permanent",
        "containment:revert",
    ]
    assert [b[1] for b in buttons(reminder)][:3] == [
        f"{request_id}:1h",
        f"{request_id}:4h",
        f"{request_id}:24h",
    ]


async def test_a_short_containment_is_reminded_at_half_time(ok: BotHarness) -> None:
    _, _, email = pick(ok.extra["okta"], 3)
    await contained(ok, email, "20m")
    ok.clock.advance(minutes=9)
    await sweeps(ok.bot)
    assert reminders(ok) == []
    ok.clock.advance(minutes=1, seconds=1)
    await until(lambda: len(reminders(ok)) == 1)


async def test_extend_takes_four_eyes_and_moves_the_end(ok: BotHarness) -> None:
    state: OktaState = ok.extra["okta"]
    index, user_id, email = pick(state, 4)
    card, request_id = await contained(ok, email, "1h")
    due = ok.bot.service.containment(request_id).due_at  # type: ignore[union-attr]
    # the requester, a responder who is no approver, and an outsider are refused, each told why
    for user, said in (
        (REQUESTER, "neither the requester nor the target"),
        (GROUP_RESPONDER, "Only approvers"),
        (OUTSIDER, "Only approvers"),
    ):
        await ok.click(user, card, "containment:extend", f"{request_id}:4h")
        assert said in ok.last_seen(user)["text"]
    assert ok.bot.service.containment(request_id).due_at == due  # type: ignore[union-attr]
    # a forged length is refused before anything is read
    await forged_click(ok, APPROVER, "containment:extend", f"{request_id}:720h")
    assert "can't read" in ok.last_seen(APPROVER)["text"]
    # another approver: at once
    await ok.click(APPROVER2, card, "containment:extend", f"{request_id}:4h")
    item = ok.bot.service.containment(request_id)
    assert item is not None and item.due_at == due + timedelta(hours=4) and item.status is State.ACTIVE
    new_due = f"<!date^{int(item.due_at.timestamp())}^"
    assert new_due in field(ok.card(), "Time box") and f"extended by <@{APPROVER2}>" in field(
        ok.card(), "Time box"
    )
    assert any(f"<@{APPROVER2}> extended" in t and new_due in t for t in thread(ok))
    # past the old end: still contained; past the new one: reverted
    ok.clock.advance(hours=1, minutes=5)
    await sweeps(ok.bot)
    assert state.status(index) == "SUSPENDED"
    ok.clock.advance(hours=4)
    await until(lambda: state.status(index) == "ACTIVE")
    events = [row["event"] for row in ok.bot.service.history("okta", user_id, limit=50)]
    assert "extended" in events and events.count("refused") >= 3


async def test_make_permanent_takes_four_eyes_and_is_never_reverted(ok: BotHarness) -> None:
    state: OktaState = ok.extra["okta"]
    index, user_id, email = pick(state, 5)
    card, request_id = await contained(ok, email, "1h")
    await ok.click(REQUESTER, card, "containment:permanent", request_id)
    assert "neither the requester nor the target" in ok.last_seen(REQUESTER)["text"]
    await ok.click(APPROVER2, card, "containment:permanent", request_id)
    item = ok.bot.service.containment(request_id)
    assert item is not None and item.status is State.PERMANENT and item.decided_by == APPROVER2
    assert field(ok.card(), "Time box") == f":lock: Made permanent by <@{APPROVER2}>"
    assert buttons(ok.card()) == []
    await until(lambda: any("made the containment" in t for t in thread(ok)))
    ok.clock.advance(days=31)
    await sweeps(ok.bot)
    assert state.status(index) == "SUSPENDED" and (user_id, "unsuspend") not in state.actions
    # a late click on an old button (e.g. a reminder's) changes nothing
    await forged_click(ok, APPROVER, "containment:extend", f"{request_id}:1h")
    assert "permanent" in ok.last_seen(APPROVER)["text"]
    rows = ok.bot.service.history("okta", user_id, limit=50)
    assert "made_permanent" in [row["event"] for row in rows]
    refused = [(row["actor"], row["detail"]["rule"]) for row in rows if row["event"] == "refused"]
    assert (APPROVER, "containment_closed") in refused and (REQUESTER, "four_eyes") in refused


async def test_revert_now_by_a_responder_not_by_an_outsider(ok: BotHarness) -> None:
    state: OktaState = ok.extra["okta"]
    index, user_id, email = pick(state, 6)
    card, request_id = await contained(ok, email, "3d")
    await ok.click(OUTSIDER, card, "containment:revert", request_id)
    assert "Only the requester or a responder" in ok.last_seen(OUTSIDER)["text"]
    assert state.status(index) == "SUSPENDED"
    await ok.click(GROUP_RESPONDER, card, "containment:revert", request_id)
    assert state.status(index) == "ACTIVE" and state.actions.count((user_id, "unsuspend")) == 1
    item = ok.bot.service.containment(request_id)
    assert item is not None and item.status is State.REVERTED
    assert f"Asked by <@{GROUP_RESPONDER}>" in thread(ok)[-1]
    assert buttons(ok.card()) == []
    await forged_click(ok, GROUP_RESPONDER, "containment:revert", request_id)  # a late click: nothing
    assert "reverted" in ok.last_seen(GROUP_RESPONDER)["text"]
    assert state.actions.count((user_id, "unsuspend")) == 1


async def test_a_held_revert_is_decided_by_revert_now(ok: BotHarness) -> None:
    state: OktaState = ok.extra["okta"]
    index, user_id, email = pick(state, 7)
    _, request_id = await contained(ok, email, "15m")
    await high_risk(ok, user_id)
    ok.clock.advance(minutes=16)
    await until(lambda: any("not restored" in t for t in thread(ok)))
    held = next(r for r in ok.card()["replies"] if "not restored" in r["text"])
    assert ("containment:revert", request_id) in buttons(held)
    await ok.click(REQUESTER, held, "containment:revert", request_id)  # the requester decides
    assert state.status(index) == "ACTIVE"
    assert ok.bot.service.containment(request_id).status is State.REVERTED  # type: ignore[union-attr]


async def test_the_reminder_lead_is_configurable(tmp_path, server_pg: Optional[PgDatabase]) -> None:
    lead = {"remind_minutes_before": 90}
    async with okta_bot(tmp_path, expiry_seconds=0.05, approvals=lead, **pg_store(server_pg)) as h:
        _, _, email = pick(h.extra["okta"], 8)
        await contained(h, email, "4h")
        h.clock.advance(hours=2, minutes=29)
        await sweeps(h.bot)
        assert reminders(h) == []
        h.clock.advance(minutes=2)
        await until(lambda: len(reminders(h)) == 1)


async def api_call(
    h: BotHarness, method: str, path: str = "", body: Any = None
) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": "Bearer test-api-token"}
    async with h.http.request(
        method, f"{h.url}/api/v1/approvals{path}", json=body, headers=headers
    ) as answer:
        return answer.status, await answer.json()


async def test_the_soar_api_requests_a_time_boxed_action(ok: BotHarness) -> None:
    state: OktaState = ok.extra["okta"]
    index, user_id, email = pick(state, 9)
    body = {
        "connector": "okta",
        "identity": email,
        "action": "disable",
        "reason": "SOAR playbook 7: token theft",
        "requested_by": REQUESTER,
        "duration": "4h",
    }
    for bad, said in (("4x", "not a duration"), ("45d", "out of range"), (4, "must be a string")):
        status, answer = await api_call(ok, "POST", body={**body, "duration": bad})
        assert status == 400 and answer["field"] == "duration" and said in answer["error"]
    assert ok.cards() == []
    status, created = await api_call(ok, "POST", body=body)
    assert status == 201 and created["duration_seconds"] == 4 * 3600 and "containment" not in created
    await ok.settle()
    assert "4 h from when it runs" in field(ok.card(), "Time box")
    await ok.click(APPROVER, ok.card(), "approval:approve")
    assert state.status(index) == "SUSPENDED"
    status, shown = await api_call(ok, "GET", f"/{created['id']}")
    item = ok.bot.service.containment(created["id"])
    assert item is not None
    assert status == 200 and shown["status"] == "executed"
    due = datetime.fromisoformat(shown["containment"].pop("due_at"))
    assert due == item.due_at and shown["containment"] == {"status": "active", "revert_id": None}
    ok.clock.advance(hours=4, minutes=1)
    await until(lambda: state.status(index) == "ACTIVE")
    await until(lambda: ok.bot.service.containment(created["id"]).status is State.REVERTED)
    status, shown = await api_call(ok, "GET", f"/{created['id']}")
    assert shown["containment"]["status"] == "reverted" and shown["containment"]["revert_id"]
    status, revert = await api_call(ok, "GET", f"/{shown['containment']['revert_id']}")
    assert (
        revert["status"] == "executed" and revert["action"] == "enable" and revert["source"] == "containment"
    )
    assert state.actions.count((user_id, "unsuspend")) == 1


async def test_the_soar_api_refuses_a_time_box_where_there_is_no_undo(h: BotHarness) -> None:
    status, answer = await api_call(
        h,
        "POST",
        body={
            "connector": "homebase",
            "identity": h.people["plain"]["email"],
            "action": "disable",
            "reason": "x",
            "requested_by": REQUESTER,
            "duration": "1h",
        },
    )
    assert status == 400 and answer["field"] == "duration" and "can't undo" in answer["error"]
    assert h.cards() == []


async def test_the_request_form_offers_a_duration_where_the_provider_can_undo(ok: BotHarness) -> None:
    state: OktaState = ok.extra["okta"]
    _, user_id, email = pick(state, 10)
    await ok.command(REQUESTER, f"whois {email}")
    await ok.click(REQUESTER, ok.last_seen(REQUESTER), "request:disable", f"okta:{user_id}")
    view = ok.slack.views(REQUESTER)[-1]
    (select,) = [b for b in view["blocks"] if b.get("block_id") == "duration"]
    offered = [o["value"] for o in select["element"]["options"]]
    assert offered == ["never", "1h", "4h", "24h", "72h"] and select["optional"] is True
    await ok.slack.submit_view(
        ok.events_url,
        REQUESTER,
        view["id"],
        {"reason": {"reason": "token theft"}, "duration": {"duration": "24h"}},
    )
    await ok.settle()
    request_id = ok.card()["metadata"]["event_payload"]["request_id"]
    assert ok.bot.service.get(request_id).duration_seconds == 24 * 3600
    assert "1 d from when it runs" in field(ok.card(), "Time box")
    # `for 72h` typed without a reason: the reason form keeps the duration
    other = pick(state, 11)[2]
    await ok.command(REQUESTER, f"disable {other} for 72h")
    await ok.submit(REQUESTER, ok.slack.views(REQUESTER)[-1], "phished")
    (second,) = [c for c in ok.cards() if c["metadata"]["event_payload"]["request_id"] != request_id]
    assert ok.bot.service.get(second["metadata"]["event_payload"]["request_id"]).duration_seconds == 72 * 3600


async def test_the_request_form_offers_no_duration_on_homebase(h: BotHarness) -> None:
    person = h.people["plain"]
    await h.command(REQUESTER, f"whois {person['email']}")
    await h.click(REQUESTER, h.last_seen(REQUESTER), "request:disable", f"homebase:{person['id']}")
    view = h.slack.views(REQUESTER)[-1]
    assert [b for b in view["blocks"] if b.get("block_id") == "duration"] == []
    await h.submit(REQUESTER, view, "phished")
    assert h.bot.service.get(h.card()["metadata"]["event_payload"]["request_id"]).duration_seconds is None


async def test_a_revert_waits_while_the_identity_cannot_be_read(ok: BotHarness) -> None:
    state: OktaState = ok.extra["okta"]
    index, user_id, email = pick(state, 12)
    _, request_id = await contained(ok, email, "15m")
    fault = {"kind": "500", "count": 10_000, "path": f"/api/v1/users/{user_id}"}
    async with ok.http.post(f"{ok.extra['okta_url']}/_admin/faults", json=fault) as answer:
        assert answer.status < 300
    ok.clock.advance(minutes=16)
    await sweeps(ok.bot)  # Okta answers 500 to the read before the revert
    assert any(entry[2] == 500 and entry[3] == f"/api/v1/users/{user_id}" for entry in state.log)
    assert ok.bot.service.containment(request_id).status is State.ACTIVE  # type: ignore[union-attr]
    assert state.status(index) == "SUSPENDED" and (user_id, "unsuspend") not in state.actions
    async with ok.http.delete(f"{ok.extra['okta_url']}/_admin/faults") as answer:
        assert answer.status < 300
    await until(lambda: state.status(index) == "ACTIVE")
    assert state.actions.count((user_id, "unsuspend")) == 1

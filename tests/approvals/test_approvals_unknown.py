"""An action sent without an answer coming back is an *unknown* outcome, never a failure to retry
(issue 15, item 1), as people see it in Slack: the real server, signed clicks, the HomeBase simulator
(which carries a slow action out after the connector gave up, as a slow provider does) and a SQLite file.
"""

from __future__ import annotations

import asyncio

import pytest
from support.bot import APPROVER, APPROVER2, OUTSIDER, REQUESTER, buttons, harness, status_of, until

from bot import audit


@pytest.fixture
async def h(tmp_path):
    async with harness(tmp_path) as built:
        yield built


def audit_events(h, request_id: str) -> list[str]:
    db = h.bot.flow.service.db
    return [
        r["event"] for r in db.query("SELECT event FROM audit WHERE request_id = ? ORDER BY id", [request_id])
    ]


async def test_a_timed_out_action_is_unknown_and_no_click_runs_it_twice(h):
    person = h.people["plain"]
    card = await h.request_card()
    request_id = card["metadata"]["event_payload"]["request_id"]
    # HomeBase takes 2 s; the connector gives up after 1 s; HomeBase carries it out anyway
    await h.fault(kind="slow", delay=2.0, count=1, path=f"/v1/identity/{person['id']}/revoke-sessions")
    await h.click(APPROVER, card, "approval:approve")
    card = h.card()
    assert status_of(card).startswith(":warning: Outcome unknown: it may or may not have been done.")
    assert "has no way to read whether 'Revoke sessions' was done" in status_of(card)
    assert [b[0] for b in buttons(card)] == ["approval:check", "approval:rerun"]  # no plain Retry
    (reply,) = card["replies"]
    assert "outcome unknown" in reply["text"] and "will not send it again by itself" in reply["text"]
    await until(lambda: h.sim.sessions_revoked[person["id"]] == 1)
    # a Retry (an old card's button, a forged payload) is refused: it takes the confirmed Run again
    retry = await h.bot.flow.retry(request_id, APPROVER2)
    assert retry is not None and "the outcome is unknown" in retry["text"]
    assert h.sim.sessions_revoked[person["id"]] == 1
    # Run again asks to confirm; two clicks at once (a double click, a redelivery) run it once, and
    # its Idempotency-Key (the same as the first attempt's) keeps HomeBase from revoking twice
    (rerun,) = [e for b in h.card()["blocks"] if b.get("type") == "actions" for e in b["elements"]][1:]
    assert rerun["confirm"]["confirm"]["text"] == "Run again"
    assert "may already have done" in rerun["confirm"]["text"]["text"]
    card = h.card()
    await asyncio.gather(
        h.slack.click(h.events_url, APPROVER, card, "approval:rerun"),
        h.slack.click(h.events_url, APPROVER2, card, "approval:rerun"),
    )
    await h.settle()
    card = h.card()
    assert status_of(card).startswith(":white_check_mark: Done") and buttons(card) == []
    assert h.sim.sessions_revoked[person["id"]] == 1 and h.sim.idempotency.replays == 1
    events = audit_events(h, request_id)
    assert events.count("rerun") == 1 and events.count("executing") == 2 and events[-1] == "executed"
    assert audit.verify(h.bot.flow.service.db)[0] is True


async def test_a_timed_out_disable_is_read_back_as_done_without_a_second_call(h):
    person = h.people["plain"]
    card = await h.request_card(action="disable", reason="stolen laptop")
    await h.fault(kind="slow", delay=2.0, count=1, path=f"/v1/identity/{person['id']}/disable")
    await h.click(APPROVER, card, "approval:approve")
    # read back at once: HomeBase is still working on it, so it does not show yet
    assert "does not show it done yet" in status_of(h.card())
    await until(lambda: len(h.actions()) == 1)
    await h.click(APPROVER2, h.card(), "approval:check")
    card = h.card()
    assert status_of(card).startswith(":white_check_mark: Done") and buttons(card) == []
    assert "read back after its answer was lost; not sent again" in card["replies"][-1]["text"]
    assert len(h.actions()) == 1 and len(h.sim.requests_to("/v1/identity", "POST")) == 1


async def test_run_again_is_for_approvers_only(h):
    person = h.people["plain"]
    card = await h.request_card()
    await h.fault(kind="500", count=1, path=f"/v1/identity/{person['id']}/revoke-sessions")
    await h.click(APPROVER, card, "approval:approve")
    assert status_of(h.card()).startswith(":warning: Outcome unknown")
    await h.click(OUTSIDER, h.card(), "approval:rerun")
    assert "Only approvers can decide requests" in h.last_seen(OUTSIDER)["text"]
    await h.click(REQUESTER, h.card(), "approval:check")  # responders may read it back
    assert "Still unknown" in h.last_seen(REQUESTER)["text"]
    assert h.actions() == []

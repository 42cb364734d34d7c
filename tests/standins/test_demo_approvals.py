"""The demo's approval rules (standins/demo.toml `[[approvals.rules]]`), through the running demo: the
Slack stand-in's driver sends Alice's commands and Bob's and Carol's clicks to the bot as Slack would, and
the HomeBase simulator shows what was done. Disabling a privileged identity takes both approvers; disabling
one at critical risk takes two as well, or Bob alone as the on-call member (break-glass); revoking
sessions, the browser demo's flow, still takes one approver."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from support.bot import text_of

from standins import demo, homebase
from standins.slack.page import APPROVER_1, APPROVER_2, RESPONDER

APPROVALS = "C0APPROVALS"


@pytest.fixture
async def run(tmp_path: Path) -> AsyncIterator[demo.Demo]:
    # one drift step (the spotlight turns critical) and no more: the risks below stay as set
    options: dict[str, Any] = {"slack_port": 0, "identities": 40, "drift_seconds": 3600}
    async with demo.running(tmp_path, log=lambda _: None, **options) as on:
        yield on


def person(run: demo.Demo, wanted: Callable[[Any], bool]) -> tuple[int, str, str]:
    """(index, identity id, email) of the first active HomeBase person `wanted` accepts, not the spotlight."""
    state = run.homebase[homebase.STATE]
    for index in range(state.size):
        p = state.person(index)
        if p.status == "active" and wanted(p) and p.email != run.spotlight.email:
            return index, state.identity_id(index), p.email
    raise AssertionError("no such HomeBase person in the demo")


async def request(run: demo.Demo, line: str) -> dict[str, Any]:
    """Alice's `/idops <line>`; the approval card it made."""
    before = len(run.slack.messages(APPROVALS))
    await run.slack.command(run.bot_url, RESPONDER, line, channel_id="C0ALERTS")
    cards = await run.slack.wait_for(
        lambda: run.slack.messages(APPROVALS)[before:], timeout=60, what=f"the card for {line!r}"
    )
    return cards[0]


async def approve(run: demo.Demo, user: str, card: dict[str, Any], shows: str) -> dict[str, Any]:
    """`user` approves `card`; the card once the bot has redrawn it to show `shows`."""
    before = text_of(card)
    await run.slack.click(run.bot_url, user, card, "approval:approve")

    def redrawn() -> Any:
        now = next(c for c in run.slack.messages(APPROVALS) if c["ts"] == card["ts"])
        return now if text_of(now) != before and shows in text_of(now) else None

    return await run.slack.wait_for(
        redrawn, timeout=60, what=f"{shows!r} on the card after {user}'s approval"
    )


def disabled(run: demo.Demo, index: int) -> bool:
    return index in run.homebase[homebase.STATE].disabled


async def test_disabling_a_privileged_identity_takes_both_approvers(run: demo.Demo) -> None:
    index, _, email = person(run, lambda p: p.privileged)
    card = await request(run, f"disable {email} shared admin password")
    assert "privileged-disable" in text_of(card)
    card = await approve(run, APPROVER_1, card, "Waiting")
    assert not disabled(run, index)
    await approve(run, APPROVER_2, card, "Done")
    assert disabled(run, index)


async def test_disabling_at_critical_risk_lets_the_on_call_approver_act_alone(run: demo.Demo) -> None:
    state = run.homebase[homebase.STATE]
    index, identity_id, email = person(run, lambda p: not p.privileged)
    assert state.set_risk(identity_id, 96) is not None  # critical
    card = await request(run, f"disable {email} token theft in progress")
    assert "critical-disable" in text_of(card) and "break-glass" in text_of(card)
    card = await approve(run, APPROVER_1, card, "Done")  # Bob is @secops-oncall, the break-glass group
    assert disabled(run, index)
    assert f"break-glass: approved alone by <@{APPROVER_1}>" in text_of(card)


async def test_revoking_sessions_still_takes_one_approver(run: demo.Demo) -> None:
    card = await request(run, f"revoke {run.spotlight.email} phished")  # the browser demo's request
    assert "critical-disable" not in text_of(card) and "privileged-disable" not in text_of(card)
    await approve(run, APPROVER_2, card, "Done")

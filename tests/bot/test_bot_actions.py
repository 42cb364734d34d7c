"""Every response action through Slack: the one table of action words (`bot.action_names`), buttons
offered by each connector's capabilities, Enable asking for a reason like Disable, and the verdicts
(confirm compromised, dismiss risk) reaching Entra ID's Identity Protection after approval. Signed
requests into the real server, the Entra simulator over loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from support.bot import APPROVER, REQUESTER, BotHarness, buttons, entra_bot, text_of

from bot.action_names import TABLE, WORDS, named_action, needs_reason
from bot.approvals import InvalidRequest, parse_action
from bot.listeners.commands import SUBCOMMANDS
from connectors import Action
from standins import entra


def test_one_row_per_action_and_each_word_or_value_names_it() -> None:
    assert sorted(row.action for row in TABLE) == sorted(Action)
    assert len(WORDS) == len(TABLE)
    for row in TABLE:
        for spelling in (row.word, row.action.value, f" {row.word.upper()} "):
            assert named_action(spelling) is row.action
            assert parse_action(spelling) is row.action
        # the slash command offers every word, and says when the reason is required
        assert SUBCOMMANDS[row.word] == f"{row.word} <who> {'<reason>' if row.needs_reason else '[reason]'}"
    assert WORDS["confirm"] is Action.CONFIRM_COMPROMISED and WORDS["dismiss"] is Action.DISMISS_RISK
    assert {a for a in Action if needs_reason(a)} == {Action.DISABLE, Action.ENABLE}
    assert named_action("nuke") is None
    with pytest.raises(InvalidRequest, match="Unknown action 'nuke'"):
        parse_action("nuke")


@pytest.fixture
async def h(tmp_path) -> AsyncIterator[BotHarness]:
    # seed 5: nobody here shares an email with the Slack users the harness makes from HomeBase people
    async with entra_bot(tmp_path, sim={"seed": 5, "throttle": None}) as built:
        yield built


def sim(h: BotHarness) -> entra.EntraState:
    return h.extra["entra"]  # type: ignore[no-any-return]


async def pick(h: BotHarness, *, risk_state: str) -> tuple[int, str]:
    """(index, object id) of an enabled, unprivileged Entra user whose risk state is `risk_state`."""
    connector = h.bot.connectors["entra"]
    for index in range(sim(h).users):
        risk = sim(h).risk_of(index)
        if risk is None or risk[1] != risk_state or sim(h).roles_of(index):
            continue
        identity = await connector.get_identity(sim(h).user_id(index))
        if identity.status == "active" and not identity.privileged:
            return index, identity.id
    raise AssertionError(f"no enabled, unprivileged user at risk state {risk_state}")


async def approve_last(h: BotHarness) -> dict[str, Any]:
    await h.click(APPROVER, h.cards()[-1], "approval:approve")
    card = h.cards()[-1]
    assert ":white_check_mark: Done" in text_of(card), text_of(card)
    return card


async def test_an_entra_card_offers_a_button_for_every_action_in_table_order(h: BotHarness) -> None:
    _, user_id = await pick(h, risk_state="atRisk")
    await h.command(REQUESTER, f"whois {user_id}")
    ref = f"entra:{user_id}"
    assert buttons(h.last_seen(REQUESTER)) == [(f"request:{row.action.value}", ref) for row in TABLE]


async def test_confirm_and_dismiss_reach_identity_protection_after_approval(h: BotHarness) -> None:
    index, user_id = await pick(h, risk_state="atRisk")
    await h.command(REQUESTER, f"confirm {user_id} the sign-ins came from a botnet")
    assert h.slack.views(REQUESTER) == []  # a verdict needs no reason form
    card = await approve_last(h)
    assert "Confirm compromised" in text_of(card)
    assert sim(h).risk_of(index)[1] == "confirmedCompromised"  # type: ignore[index]
    await h.command(REQUESTER, f"dismiss {user_id}")
    card = await approve_last(h)
    assert "Dismiss risk" in text_of(card)
    assert sim(h).risk_of(index)[1] == "dismissed"  # type: ignore[index]


async def test_enable_asks_for_a_reason_like_disable_and_undoes_it(h: BotHarness) -> None:
    index, user_id = await pick(h, risk_state="atRisk")
    await h.command(REQUESTER, f"disable {user_id} token theft")
    await approve_last(h)
    assert sim(h).enabled[index] is False
    # the service refuses it without a reason whoever asks (the SOAR API too)
    with pytest.raises(InvalidRequest, match="Enabling an account needs a reason"):
        await h.bot.service.request(
            connector="entra", identity_id=user_id, action=Action.ENABLE, reason=" ", requested_by=REQUESTER
        )
    # no reason typed: the form asks for one before anything is requested
    await h.command(REQUESTER, f"enable {user_id}")
    (modal,) = h.slack.views(REQUESTER)
    assert modal["callback_id"] == "request:reason" and "Enable account" in text_of(modal)
    assert len(h.cards()) == 1
    await h.submit(REQUESTER, modal, "password changed, device wiped")
    card = await approve_last(h)
    assert "Enable account" in text_of(card) and "password changed, device wiped" in text_of(card)
    assert sim(h).enabled[index] is True
    # the Enable button on the identity card asks for the reason too
    await h.command(REQUESTER, f"whois {user_id}")
    await h.click(REQUESTER, h.last_seen(REQUESTER), "request:enable")
    (form,) = h.slack.views(REQUESTER)
    assert form["callback_id"] == "request:reason" and "Enable account" in text_of(form)

"""Approval requests as people see them in Slack: the card, every policy rule (refused and allowed),
N-of-M, expiry, denial and reason modals, double and concurrent clicks, failure and retry."""

from __future__ import annotations

import asyncio
import collections

import pytest
from support.bot import (
    APPROVAL_CHANNEL,
    APPROVER,
    APPROVER2,
    COMMAND_CHANNEL,
    GROUP_RESPONDER,
    OUTSIDER,
    REQUESTER,
    TARGET,
    buttons,
    harness,
    status_of,
    text_of,
)


def field_of(card: dict, name: str) -> str:
    for block in card["blocks"]:
        for field in block.get("fields", []):
            if field["text"].startswith(f"*{name}*"):
                return field["text"].split("\n", 1)[1]
    raise AssertionError(f"no {name} field on the card")


# --- requesting -------------------------------------------------------------------------------------


async def test_a_request_posts_an_approval_card_and_tells_the_requester(h):
    person = h.people["plain"]
    card = await h.request_card("plain", "revoke", "phished via fake login page")
    request_id = card["metadata"]["event_payload"]["request_id"]
    assert card["metadata"]["event_type"] == "idops_approval"
    shown = text_of(card)
    assert person["display_name"] in shown and person["email"] in shown
    assert f"*{person['risk_score']}* {person['risk_level']}" in shown
    assert field_of(card, "Action") == "Revoke sessions"
    assert field_of(card, "Requested by") == f"<@{REQUESTER}>"
    assert field_of(card, "Reason") == "> phished via fake login page"  # quoted: free text
    assert field_of(card, "Expires").startswith("<!date^")
    assert field_of(card, "Approvals") == "0 of 1"
    assert buttons(card) == [("approval:approve", request_id), ("approval:deny", request_id)]
    approve = card["blocks"][3]["elements"][0]
    assert approve["confirm"]["confirm"]["text"] == "Approve"  # a confirm dialog guards it
    told = h.last_seen(REQUESTER)["text"]
    assert f"waiting for approval in <#{APPROVAL_CHANNEL}> (request {request_id})" in told
    assert h.actions() == []


async def test_only_responders_may_request(h):
    email = h.people["plain"]["email"]
    # an approver who is not a responder
    await h.command(APPROVER, f"revoke {email} phished")
    assert "Only responders can request actions" in h.last_seen(APPROVER)["text"]
    assert "[access] responders" in h.last_seen(APPROVER)["text"]
    # neither: not even the lookup
    await h.command(OUTSIDER, f"revoke {email} phished")
    assert "Only responders and approvers" in h.last_seen(OUTSIDER)["text"]
    assert h.cards() == []
    # a member of a responder user group may (and needs lookup rights through that too)
    await h.command(GROUP_RESPONDER, f"revoke {email} phished")
    assert len(h.cards()) == 1 and f"<@{GROUP_RESPONDER}>" in text_of(h.card())


async def test_with_no_responders_configured_every_request_is_refused_naming_the_key(tmp_path):
    async with harness(tmp_path, access={"responders": []}) as h:
        await h.command(REQUESTER, f"revoke {h.people['plain']['email']} phished")
        shown = h.last_seen(REQUESTER)["text"]
        assert "no responders are configured ([access] responders)" in shown
        assert h.cards() == []


async def test_a_second_request_for_the_same_action_points_at_the_first(h):
    await h.request_card("plain", "revoke", "phished")
    await h.command(REQUESTER, f"revoke {h.people['plain']['email']} again")
    shown = h.last_seen(REQUESTER)["text"]
    assert "is already waiting for approval" in shown and f"It is in <#{APPROVAL_CHANNEL}>" in shown
    assert len(h.cards()) == 1


async def test_disable_needs_a_reason_and_asks_for_it_in_a_modal(h):
    person = h.people["plain"]
    await h.command(REQUESTER, f"disable {person['email']}")
    (modal,) = h.slack.views(REQUESTER)
    assert modal["callback_id"] == "request:reason" and person["email"] in text_of(modal)
    assert h.cards() == []
    await h.submit(REQUESTER, modal, "account takeover confirmed")
    assert h.slack.views(REQUESTER) == []
    card = h.card()
    assert field_of(card, "Action") == "Disable account"
    assert field_of(card, "Reason") == "> account takeover confirmed"
    # the modal has no response_url: the requester is told in the channel the command came from
    (told,) = h.slack.ephemerals(REQUESTER)
    assert told["channel"] == COMMAND_CHANNEL and "Requested *Disable account*" in told["text"]


async def test_when_no_ephemeral_can_be_posted_there_the_answer_comes_by_dm(h):
    await h.command(REQUESTER, f"disable {h.people['plain']['email']}")
    (modal,) = h.slack.views(REQUESTER)
    h.slack.fail_next("chat.postEphemeral", error="channel_not_found")
    await h.submit(REQUESTER, modal, "account takeover confirmed")
    assert h.slack.ephemerals(REQUESTER) == []
    (dm,) = h.slack.messages("D" + REQUESTER[1:])
    assert "Requested *Disable account*" in dm["text"] and len(h.cards()) == 1


async def test_blank_reason_in_the_modal_is_refused_there(h):
    await h.command(REQUESTER, f"disable {h.people['plain']['email']}")
    (modal,) = h.slack.views(REQUESTER)
    reply = await h.submit(REQUESTER, modal, "   ")
    assert reply.json == {
        "response_action": "errors",
        "errors": {"reason": "Give a reason for the approvers."},
    }
    assert h.cards() == [] and len(h.slack.views(REQUESTER)) == 1


async def test_disable_with_a_reason_on_the_command_line_needs_no_modal(h):
    card = await h.request_card("plain", "disable", "confirmed takeover")
    assert field_of(card, "Reason") == "> confirmed takeover" and h.slack.views(REQUESTER) == []


async def test_request_buttons_on_the_identity_card(h):
    person = h.people["plain"]
    await h.command(REQUESTER, f"whois {person['email']}")
    lookup = h.last_seen(REQUESTER)
    await h.click(REQUESTER, lookup, "request:force_password_reset")
    card = h.card()
    assert field_of(card, "Action") == "Force password reset" and field_of(card, "Reason") == "-"
    assert "Requested *Force password reset*" in h.last_seen(REQUESTER)["text"]
    # Disable asks for the reason first
    await h.click(REQUESTER, lookup, "request:disable")
    (modal,) = h.slack.views(REQUESTER)
    await h.submit(REQUESTER, modal, "left the company")
    assert [field_of(c, "Action") for c in h.cards()] == ["Force password reset", "Disable account"]


async def test_several_matches_offer_request_buttons_to_choose(h):
    by_last = collections.Counter(h.sim.person(i).last for i in range(h.sim.size))
    last, count = by_last.most_common(1)[0]
    await h.command(REQUESTER, f"reset {last} leaked")
    listing = h.last_seen(REQUESTER)
    shown = buttons(listing)
    assert "choose who gets *Force password reset*" in listing["text"]
    assert len(shown) == min(count, 10) and {a for a, _ in shown} == {"request:force_password_reset"}
    assert h.cards() == []
    await h.click(REQUESTER, listing, "request:force_password_reset", shown[1][1])
    card = h.card()
    identity_id = shown[1][1].split(":", 1)[1]
    assert h.bot.service.get(card["metadata"]["event_payload"]["request_id"]).identity_id == identity_id


async def test_when_slack_refuses_the_card_the_requester_is_told(h):
    h.slack.fail_next("chat.postMessage", error="not_in_channel")
    await h.command(REQUESTER, f"revoke {h.people['plain']['email']} phished")
    shown = h.last_seen(REQUESTER)["text"]
    assert "is stored, but its approval card could not be posted in <#C0APPROVALS>" in shown
    assert (
        "(Slack said not_in_channel). Ask for the same action again to post it." in shown and h.cards() == []
    )
    # asking again posts the stored request's card instead of refusing it as already waiting
    await h.command(REQUESTER, f"revoke {h.people['plain']['email']} again")
    card = h.card()
    first = shown.split("Request ", 1)[1].split(" ", 1)[0]
    assert card["metadata"]["event_payload"]["request_id"] == first
    assert (
        f"waiting for approval in <#{APPROVAL_CHANNEL}> (request {first})" in h.last_seen(REQUESTER)["text"]
    )
    await h.command(REQUESTER, f"revoke {h.people['plain']['email']} once more")
    assert "is already waiting for approval" in h.last_seen(REQUESTER)["text"] and len(h.cards()) == 1
    await h.click(APPROVER, card, "approval:approve")
    assert len(h.actions()) == 1


async def test_a_card_slack_never_got_is_posted_when_the_request_is_made_again(h):
    await h.command(REQUESTER, "help")  # Bolt's first request checks the token with auth.test
    h.slack.down("drop")
    reply = await h.slack.command(h.events_url, REQUESTER, f"revoke {h.people['plain']['email']} phished")
    assert reply.status == 200
    await h.settle()
    h.slack.up()
    (request,) = await h.bot.service.pending()
    assert request.message_ts is None
    await h.command(REQUESTER, f"revoke {h.people['plain']['email']} phished")
    assert h.card()["metadata"]["event_payload"]["request_id"] == request.id


@pytest.mark.parametrize(
    "text",
    [
        "revoke nobody@nowhere.example phished",
        "reset nobody@nowhere.example",
        "disable nobody@nowhere.example x",
    ],
)
async def test_no_match_for_an_action_names_the_connectors_searched(h, text):
    await h.command(REQUESTER, text)
    assert (
        h.last_seen(REQUESTER)["text"]
        == "No identity matches *nobody@nowhere.example* in HomeBase (homebase)."
    )
    assert h.cards() == []


async def test_no_match_for_a_disable_asked_through_the_reason_form_names_the_connectors(h):
    await h.command(REQUESTER, "disable nobody@nowhere.example")
    (modal,) = h.slack.views(REQUESTER)
    await h.submit(REQUESTER, modal, "left the company")
    (told,) = h.slack.ephemerals(REQUESTER)
    assert told["text"] == "No identity matches *nobody@nowhere.example* in HomeBase (homebase)."
    assert h.cards() == []


# --- deciding ---------------------------------------------------------------------------------------


async def test_an_approval_runs_the_action_once_and_reports_in_the_thread(h):
    person = h.people["plain"]
    card = await h.request_card("plain", "revoke", "phished")
    await h.click(APPROVER, card, "approval:approve")
    card = h.card()
    assert status_of(card).startswith(":white_check_mark: Done")
    assert field_of(card, "Approvals") == f"1 of 1: <@{APPROVER}>"
    assert buttons(card) == []
    (reply,) = card["replies"]
    assert "Revoke sessions for *" in reply["text"] and "completed" in reply["text"]
    assert [(a["action"], a["identity_id"]) for a in h.actions()] == [("revoke_sessions", person["id"])]
    assert h.sim.sessions_revoked[person["id"]] == 1


async def test_nobody_approves_their_own_request(h):
    card = await h.request_card()
    await h.click(REQUESTER, card, "approval:approve")
    assert h.last_seen(REQUESTER)["text"] == ":no_entry: You can't approve your own request."
    assert status_of(h.card()).startswith(":hourglass_flowing_sand:") and len(buttons(h.card())) == 2
    assert h.actions() == []


async def test_only_approvers_decide(h):
    card = await h.request_card()
    await h.click(OUTSIDER, card, "approval:approve")
    shown = h.last_seen(OUTSIDER)["text"]
    assert "Only approvers can decide requests" in shown and "[access] approvers" in shown
    assert h.actions() == []


async def test_the_target_person_never_approves_an_action_on_themselves(h):
    card = await h.request_card("plain")  # TARGET's Slack email is this identity's
    await h.click(TARGET, card, "approval:approve")
    assert "against your own account" in h.last_seen(TARGET)["text"]
    assert h.actions() == []
    # the same approver may approve an action on someone else
    other = await h.request_card("plain2")
    await h.click(TARGET, other, "approval:approve")
    assert len(h.actions()) == 1


async def test_privileged_targets_need_two_distinct_approvers(h):
    card = await h.request_card("privileged", "reset", "leaked password")
    assert field_of(card, "Approvals") == "0 of 2" and ":crown: privileged" in text_of(card)
    await h.click(APPROVER, card, "approval:approve")
    assert "Your approval is recorded (1 of 2); 1 more approver needed." in h.last_seen(APPROVER)["text"]
    card = h.card()
    assert field_of(card, "Approvals") == f"1 of 2: <@{APPROVER}>" and len(buttons(card)) == 2
    await h.click(APPROVER, card, "approval:approve")
    assert "You already approved this request" in h.last_seen(APPROVER)["text"]
    assert h.actions() == []
    await h.click(APPROVER2, card, "approval:approve")
    card = h.card()
    assert status_of(card).startswith(":white_check_mark: Done")
    assert field_of(card, "Approvals") == f"2 of 2: <@{APPROVER}>, <@{APPROVER2}>"
    assert [a["action"] for a in h.actions()] == ["force_password_reset"]


async def test_deny_asks_why_in_a_modal_and_closes_the_card(h):
    card = await h.request_card()
    await h.click(APPROVER, card, "approval:deny")
    (modal,) = h.slack.views(APPROVER)
    assert modal["callback_id"] == "approval:deny"
    reply = await h.submit(APPROVER, modal, "  ")
    assert reply.json["errors"]["reason"] == "Denying a request needs a reason."
    reply = await h.submit(APPROVER, modal, "false positive <!channel>")
    assert reply.status == 200 and h.slack.views(APPROVER) == []
    card = h.card()
    assert status_of(card) == f":no_entry: Denied by <@{APPROVER}>: false positive &lt;!channel&gt;"
    assert buttons(card) == [] and h.actions() == []


async def test_a_deny_form_closes_at_once_and_a_refusal_on_submit_is_told_to_the_approver(h):
    card = await h.request_card()
    await h.click(APPROVER, card, "approval:deny")
    await h.click(APPROVER2, h.card(), "approval:deny")
    (first,) = h.slack.views(APPROVER)
    (second,) = h.slack.views(APPROVER2)
    reply = await h.submit(APPROVER, first, "false positive")
    assert reply.status == 200 and reply.json is None and h.slack.views(APPROVER) == []
    assert status_of(h.card()) == f":no_entry: Denied by <@{APPROVER}>: false positive"
    # decided after the ack: the form closes, and why nothing was recorded comes as an ephemeral
    reply = await h.submit(APPROVER2, second, "me too")
    assert reply.status == 200 and reply.json is None and h.slack.views(APPROVER2) == []
    (told,) = h.slack.ephemerals(APPROVER2)
    assert told["channel"] == APPROVAL_CHANNEL
    assert told["text"] == ":no_entry: This request is already denied."
    assert status_of(h.card()) == f":no_entry: Denied by <@{APPROVER}>: false positive"


async def test_a_request_that_expires_while_the_deny_form_is_open_is_refused_on_submit(h):
    card = await h.request_card()
    await h.click(APPROVER, card, "approval:deny")
    (modal,) = h.slack.views(APPROVER)
    h.clock.advance(minutes=31)
    reply = await h.submit(APPROVER, modal, "false positive")
    assert reply.status == 200 and reply.json is None and h.slack.views(APPROVER) == []
    shown = h.last_seen(APPROVER)["text"]
    assert shown.startswith(":no_entry: This request expired at ") and shown.endswith("can't be denied.")
    card = h.card()
    assert status_of(card).startswith(":alarm_clock: Expired") and buttons(card) == []


async def test_deny_opens_its_form_only_for_an_approver_who_may_deny(h):
    card = await h.request_card("plain")
    await h.click(OUTSIDER, card, "approval:deny")
    assert h.slack.views(OUTSIDER) == [] and h.slack.calls_to("views.open") == []
    assert h.last_seen(OUTSIDER)["text"] == (
        ":no_entry: Only approvers can decide requests, and you are not one ([access] approvers)."
    )
    await h.click(TARGET, h.card(), "approval:deny")
    assert h.slack.views(TARGET) == [] and h.slack.calls_to("views.open") == []
    assert h.last_seen(TARGET)["text"] == ":no_entry: You can't decide on an action against your own account."
    assert status_of(h.card()).startswith(":hourglass_flowing_sand:")
    # a requester who is an approver may withdraw their own request
    await h.click(REQUESTER, h.card(), "approval:deny")
    (modal,) = h.slack.views(REQUESTER)
    await h.submit(REQUESTER, modal, "asked by mistake")
    assert status_of(h.card()) == f":no_entry: Denied by <@{REQUESTER}>: asked by mistake"


async def test_deny_on_an_expired_request_opens_no_form_and_takes_the_buttons_off(h):
    card = await h.request_card()
    h.clock.advance(minutes=31)
    await h.click(APPROVER, card, "approval:deny")
    assert h.slack.views(APPROVER) == []
    shown = h.last_seen(APPROVER)["text"]
    assert shown.startswith(":no_entry: This request expired at ") and shown.endswith("can't be denied.")
    card = h.card()
    assert status_of(card).startswith(":alarm_clock: Expired") and buttons(card) == []


async def test_an_expired_request_cannot_be_approved_and_its_card_says_so(h):
    card = await h.request_card()
    h.clock.advance(minutes=31)
    await h.click(APPROVER, card, "approval:approve")
    assert "expired" in h.last_seen(APPROVER)["text"] and "can't be approved" in h.last_seen(APPROVER)["text"]
    card = h.card()
    assert status_of(card).startswith(":alarm_clock: Expired") and buttons(card) == []
    assert h.actions() == []


async def test_the_expiry_sweep_takes_the_buttons_off_overdue_cards(tmp_path):
    async with harness(tmp_path, expiry_seconds=0.05) as h:
        await h.request_card("plain")
        await h.request_card("plain2")
        h.clock.advance(minutes=31)
        await h.slack.wait_for(
            lambda: all(status_of(c).startswith(":alarm_clock:") for c in h.cards()), what="expired cards"
        )
        assert all(buttons(c) == [] for c in h.cards())
        assert [r.status.value for r in await h.bot.service.pending()] == []


async def test_concurrent_approvals_run_the_action_exactly_once(h):
    person = h.people["plain"]
    card = await h.request_card()
    url = h.events_url
    await asyncio.gather(
        h.slack.click(url, APPROVER, card, "approval:approve"),
        h.slack.click(url, APPROVER2, card, "approval:approve"),
        h.slack.click(url, APPROVER, card, "approval:approve"),
    )
    await h.settle()
    assert h.sim.sessions_revoked[person["id"]] == 1 and len(h.actions()) == 1
    card = h.card()
    assert status_of(card).startswith(":white_check_mark: Done") and len(card["replies"]) == 1
    refusals = [
        m["text"] for u in (APPROVER, APPROVER2) for m in h.seen(u) if m["text"].startswith(":no_entry:")
    ]
    assert len(refusals) == 2


async def test_a_failed_action_offers_a_retry_that_is_safe_to_repeat(h):
    person = h.people["plain"]
    card = await h.request_card()
    # refused by HomeBase (a 4xx): nothing was done, so Retry is offered
    await h.fault(kind="error", code="validation_error", path=f"/v1/identity/{person['id']}/revoke-sessions")
    await h.click(APPROVER, card, "approval:approve")
    card = h.card()
    assert status_of(card).startswith(":x: Failed") and buttons(card) == [
        ("approval:retry", card["metadata"]["event_payload"]["request_id"])
    ]
    (failure,) = card["replies"]
    assert "failed: HomeBase" in failure["text"] and "request id req_" in failure["text"]
    assert h.actions() == []
    url = h.events_url
    await asyncio.gather(
        h.slack.click(url, APPROVER, card, "approval:retry"),
        h.slack.click(url, APPROVER2, card, "approval:retry"),
    )
    await h.settle()
    assert h.sim.sessions_revoked[person["id"]] == 1
    card = h.card()
    assert status_of(card).startswith(":white_check_mark: Done") and buttons(card) == []
    assert len(card["replies"]) == 2 and ":white_check_mark:" in card["replies"][1]["text"]


async def test_an_action_timeout_is_an_unknown_outcome_with_the_wait_and_request_id(h):
    person = h.people["plain"]
    card = await h.request_card()
    await h.fault(kind="slow", delay=2.0, count=1, path=f"/v1/identity/{person['id']}/revoke-sessions")
    await h.click(APPROVER, card, "approval:approve")
    (failure,) = h.card()["replies"]
    assert "HomeBase did not answer in 1 s, so the outcome is unknown" in failure["text"]
    assert "(request id idops-" in failure["text"]
    assert status_of(h.card()).startswith(":warning: Outcome unknown")


async def test_when_slack_fails_a_policy_lookup_the_approver_is_told_and_nothing_runs(h):
    card = await h.request_card()
    h.slack.fail_next("usergroups.users.list", error="fatal_error")  # is the clicker an approver?
    await h.click(APPROVER, card, "approval:approve")
    assert h.last_seen(APPROVER)["text"] == (
        ":warning: Slack answered usergroups.users.list with fatal_error, so idops stopped there;"
        " try again in a minute."
    )
    assert h.actions() == [] and status_of(h.card()).startswith(":hourglass_flowing_sand:")
    await h.click(APPROVER, h.card(), "approval:approve")
    assert len(h.actions()) == 1


async def test_a_result_reply_slack_refuses_leaves_the_done_card_and_no_misleading_answer(h):
    card = await h.request_card()
    h.slack.fail_next("chat.postMessage", error="fatal_error")  # the thread reply
    await h.click(APPROVER, card, "approval:approve")
    assert status_of(h.card()).startswith(":white_check_mark: Done") and len(h.actions()) == 1
    assert not any("Slack answered" in m["text"] for m in h.seen(APPROVER))


async def test_retry_is_for_approvers_only(h):
    person = h.people["plain"]
    card = await h.request_card()
    await h.fault(kind="error", code="validation_error", path=f"/v1/identity/{person['id']}/revoke-sessions")
    await h.click(APPROVER, card, "approval:approve")
    await h.click(OUTSIDER, h.card(), "approval:retry")
    assert "Only approvers can decide requests" in h.last_seen(OUTSIDER)["text"]
    assert status_of(h.card()).startswith(":x: Failed") and h.actions() == []


# --- the target re-read at the last approval --------------------------------------------------------


async def test_a_target_now_privileged_keeps_the_card_waiting_for_a_second_approver(h):
    person = h.people["plain2"]
    card = await h.request_card("plain2")
    assert field_of(card, "Approvals") == "0 of 1" and ":crown:" not in text_of(card)
    await h.fault(
        kind="corrupt", field="privileged", value=True, count=2, path=f"/v1/identity/{person['id']}"
    )
    await h.click(APPROVER, card, "approval:approve")
    assert h.last_seen(APPROVER)["text"] == (
        ":warning: The target is now privileged: needs 2 approvals."
        " :ballot_box_with_check: Your approval is recorded (1 of 2); 1 more approver needed."
    )
    card = h.card()
    assert field_of(card, "Approvals") == f"1 of 2: <@{APPROVER}>" and ":crown: privileged" in text_of(card)
    assert len(buttons(card)) == 2 and h.actions() == []
    await h.click(APPROVER2, card, "approval:approve")
    assert status_of(h.card()).startswith(":white_check_mark: Done") and len(h.actions()) == 1


async def test_a_target_gone_at_the_last_approval_closes_the_card(h):
    person = h.people["plain2"]
    card = await h.request_card("plain2")
    await h.fault(
        kind="error", code="resource_not_found", count=1, method="GET", path=f"/v1/identity/{person['id']}"
    )
    await h.click(APPROVER, card, "approval:approve")
    shown = h.last_seen(APPROVER)["text"]
    assert shown.startswith(":no_entry: Not approved: HomeBase no longer has ")
    assert shown.endswith(f"({person['id']}), so the request is closed without running.")
    card = h.card()
    assert status_of(card).startswith(":x: Closed without running: HomeBase no longer has ")
    assert buttons(card) == [] and h.actions() == []


async def test_an_unreachable_provider_at_the_last_approval_leaves_the_card_waiting(h):
    card = await h.request_card("plain2")
    await h.fault(kind="error", code="internal_error", count=5, method="GET")
    await h.click(APPROVER, card, "approval:approve")
    shown = h.last_seen(APPROVER)["text"]
    assert shown.startswith(":no_entry: Not approved: idops checks the target again")
    assert "Injected internal_error" in shown and "still waiting" in shown
    card = h.card()
    assert status_of(card).startswith(":hourglass_flowing_sand:") and field_of(card, "Approvals") == "0 of 1"
    assert len(buttons(card)) == 2 and h.actions() == []

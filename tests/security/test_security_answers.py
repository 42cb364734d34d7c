"""An answer Slack would refuse is an answer lost: what idops sends fits Slack's limits, and when Slack
refuses an answer anyway (an expired response_url, a message it can't take) the person still gets it
and the log says why. Driven through signed requests into the real server; FakeSlack refuses what Slack
refuses."""

from __future__ import annotations

import logging
from datetime import timedelta

from support.bot import APPROVER, APPROVER2, REQUESTER, buttons, harness, status_of, text_of

from bot.approvals import Decision, Status
from connectors import Action
from standins.slack import block_problems

# what Slack answers on a response_url older than 30 minutes (standins.slack.web_api.RESPONSE_URL_TTL)
EXPIRED = 31 * 60


async def test_pending_with_many_requests_and_containments_fits_one_message(tmp_path):
    # 45 requests waiting and 15 time-boxed disables in force: 42 + 17 blocks were one message of 59,
    # which Slack refuses whole (invalid_blocks): `/idops pending` showed nothing at all
    async with harness(tmp_path, with_sailpoint=True) as h:
        service, sailpoint = h.bot.service, h.extra["sailpoint"]
        for index in range(45):
            await service.request(
                connector="homebase",
                identity_id=h.sim.identity_id(index),
                action=Action.REVOKE_SESSIONS,
                reason="phished",
                requested_by=REQUESTER,
            )
        for index in range(15):
            request = await service.request(
                connector="sailpoint",
                identity_id=sailpoint.identity_id(index),
                action=Action.DISABLE,
                reason="contain",
                requested_by=REQUESTER,
                duration=timedelta(hours=4),
            )
            for approver in (APPROVER, APPROVER2):
                request = await service.decide(request.id, user_id=approver, decision=Decision.APPROVE)
                if request.status is not Status.PENDING:
                    break
            assert (await service.execute(request.id)).status is Status.EXECUTED
        assert len(service.open_containments()) == 15

        await h.command(REQUESTER, "pending")
        shown = h.last_seen(REQUESTER)
        assert shown["text"].startswith("*Requests waiting for approval* (45)")
        assert block_problems(shown["blocks"]) == [] and len(shown["blocks"]) <= 50
        assert "*Active containments* (15)" in text_of(shown)
        assert "… and 20 more" in text_of(shown)  # the requests not listed are counted, not dropped silently


async def test_an_answer_slack_refuses_by_response_url_comes_by_dm_and_is_logged(h, logged):
    # the lookup answers after the command's response_url expired (a slow provider; Slack keeps them 30
    # minutes): Slack answers 404 expired_url, which its webhook client returns rather than raises
    await h.fault(kind="slow", delay=1.0, count=1, path="/v1/identity")
    person = h.people["plain"]
    reply = await h.slack.command(h.events_url, REQUESTER, f"whois {person['id']}")
    assert reply.status == 200 and reply.response_url
    h.slack._response_urls[reply.response_url.rsplit("/", 1)[-1]].created -= EXPIRED
    await h.settle()
    dms = [p for p in h.slack.calls_to("chat.postMessage") if p["channel"] == REQUESTER]
    assert len(dms) == 1 and person["email"] in text_of(dms[0])
    refusals = [r.getMessage() for r in logged.records if "refused the answer" in r.getMessage()]
    assert len(refusals) == 1, refusals
    assert refusals[0].startswith(f"Slack refused the answer to {REQUESTER} by response_url (HTTP 404: ")
    assert "expired_url" in refusals[0] and "/response/" not in refusals[0]  # the URL itself is a credential
    assert [r for r in logged.records if r.exc_info or r.levelno >= logging.ERROR] == []


async def test_an_unknown_outcome_on_someone_with_a_long_name_still_shows_on_the_card(h):
    # the Run again dialog names the identity: with a 250-character display name its text passed Slack's
    # 300 characters, the card could not be drawn at all, and neither the card nor its thread said that
    # the action's outcome was unknown
    person = h.people["plain"]
    long_name = "Maximilian " * 25
    read = {"kind": "corrupt", "field": "display_name", "value": long_name, "method": "GET"}
    await h.fault(**read, count=20, path=f"/v1/identity/{person['id']}")
    card = await h.request_card()
    await h.fault(kind="slow", delay=2.0, count=1, path=f"/v1/identity/{person['id']}/revoke-sessions")
    await h.click(APPROVER, card, "approval:approve")
    card = h.card()
    assert status_of(card).startswith(":warning: Outcome unknown")
    assert [action for action, _ in buttons(card)] == ["approval:check", "approval:rerun"]
    assert block_problems(card["blocks"]) == []
    (reply,) = card["replies"]
    assert "outcome unknown" in reply["text"] and "Maximilian" in reply["text"]
    assert not [m for m in h.seen(APPROVER) if "internal error" in m["text"]]


async def test_a_show_in_a_modal_whose_policy_check_slack_refuses_says_so_in_the_modal(h, logged):
    # Show on the App Home opens a loading modal and fills it in later: a Slack error in the policy check
    # (who is a responder) escaped that task, left a traceback and the modal on "Looking it up…" forever
    await h.slack.open_home(h.events_url, APPROVER)
    await h.settle()
    home = h.slack.home(APPROVER)
    h.bot.service.directory.ttl = 0  # ask Slack every time, as after the directory's minute
    h.slack.fail_next("usergroups.users.list", error="fatal_error", count=5)
    await h.click(APPROVER, home, "identity:show", buttons(home)[0][1])
    (modal,) = h.slack.views(APPROVER)
    assert "Looking it up" not in text_of(modal)
    assert "Slack answered usergroups.users.list with fatal_error" in text_of(modal)
    assert [r for r in logged.records if r.exc_info or r.levelno >= logging.ERROR] == []

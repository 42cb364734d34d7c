"""Nothing unsigned, stale or forged is acted on, and no provider or user string can ping, link or
format in Slack: checked on what the real server sent to FakeSlack."""

from __future__ import annotations

import json

import pytest
from support.bot import (
    APPROVAL_CHANNEL,
    APPROVER,
    OUTSIDER,
    REQUESTER,
    assert_inert,
    forged_click,
    harness,
    hostile_people,
    text_of,
)

from bot.slack_text import escape
from standins.seed import HOSTILE_NAMES
from standins.slack import block_problems

# --- signatures -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "signing",
    [
        {"secret": "not-the-signing-secret"},
        {"timestamp_offset": -600},  # a replay older than Slack's 5-minute window
        {"timestamp_offset": 600},
        {"sign": False},
    ],
)
async def test_badly_signed_or_stale_requests_get_401_and_nothing_happens(h, signing):
    person = h.people["plain"]
    reply = await h.command(REQUESTER, f"revoke {person['email']} phished", **signing)
    assert reply.status == 401
    card = await h.request_card()
    before = len(h.slack.calls)
    reply = await h.click(APPROVER, card, "approval:approve", **signing)
    assert reply.status == 401
    assert len(h.slack.calls) == before and h.actions() == []
    assert len(h.cards()) == 1  # only the properly signed request made a card
    reply = await h.slack.open_home(h.events_url, APPROVER, **signing)
    await h.settle()
    assert reply.status == 401 and h.slack.home(APPROVER) is None


async def test_a_signed_request_a_few_seconds_old_is_accepted(h):
    reply = await h.command(REQUESTER, "help", timestamp_offset=-20)
    assert reply.status == 200 and "whois" in h.last_seen(REQUESTER)["text"]


# --- forged payloads (validly signed, content made up) ------------------------------------------------


async def test_forged_buttons_are_checked_against_the_store_and_the_policy(h):
    person = h.people["plain"]
    # a request button from someone who may not request
    assert await forged_click(h, OUTSIDER, "request:revoke_sessions", f"homebase:{person['id']}") == 200
    assert "Only responders can request" in h.slack.ephemerals(OUTSIDER)[-1]["text"]
    # an approve button for a request that does not exist
    await forged_click(h, APPROVER, "approval:approve", "apr_doesnotexist")
    assert h.slack.ephemerals(APPROVER)[-1]["text"] == ":no_entry: No approval request 'apr_doesnotexist'."
    # values idops can't read
    await forged_click(h, REQUESTER, "request:revoke_sessions", "no-colon-here")
    await forged_click(h, REQUESTER, "request:shutdown_everything", f"homebase:{person['id']}")
    await forged_click(h, REQUESTER, "risky:page", '{"offset": -5}')
    await forged_click(h, REQUESTER, "risky:page", "not json")
    shown = [m["text"] for m in h.slack.ephemerals(REQUESTER)]
    assert shown == [":warning: That button carries something idops can't read; nothing was done."] * 4
    assert h.cards() == [] and h.actions() == []


async def test_an_approve_click_acts_on_the_stored_request_whatever_the_message_says(h):
    plain, other = h.people["plain"], h.people["plain2"]
    card = await h.request_card("plain", "revoke", "phished")
    request_id = card["metadata"]["event_payload"]["request_id"]
    # the forged click carries only the id; whatever else a payload claims plays no part
    await forged_click(h, APPROVER, "approval:approve", request_id)
    assert [(a["action"], a["identity_id"]) for a in h.actions()] == [("revoke_sessions", plain["id"])]
    assert h.sim.sessions_revoked[other["id"]] == 0
    # the same click delivered again changes nothing
    await forged_click(h, APPROVER, "approval:approve", request_id)
    assert len(h.actions()) == 1 and len(h.card()["replies"]) == 1
    assert h.slack.ephemerals(APPROVER)[-1]["text"] == ":no_entry: This request is already executed."


# --- hostile strings --------------------------------------------------------------------------------


async def test_hostile_display_names_from_the_provider_are_escaped_everywhere(h):
    hostile = hostile_people(h.sim)
    assert hostile, "the simulator should serve some hostile names"
    target = hostile[0]
    expected = escape(target["display_name"])
    await h.command(REQUESTER, f"whois {target['email']}")
    card = h.last_seen(REQUESTER)
    assert expected in text_of(card) and target["display_name"] not in text_of(card)
    assert_inert(card)
    # the approval card, its result reply, lists and the App Home
    # Slack escapes what the person typed: the reason arrives as entities and is decoded, then escaped
    typed = "&lt;https://evil.example/x|click here&gt; &lt;!here&gt; &amp;"
    await h.command(REQUESTER, f"revoke {target['email']} {typed}")
    await h.click(APPROVER, h.card(), "approval:approve")
    approval = h.card()
    assert expected in text_of(approval)
    request = h.bot.service.get(approval["metadata"]["event_payload"]["request_id"])
    assert request.reason == "<https://evil.example/x|click here> <!here> &"
    assert "&lt;https://evil.example/x|click here&gt; &lt;!here&gt; &amp;" in text_of(approval)
    for message in [approval, *approval["replies"]]:
        assert_inert(message)
    await h.command(REQUESTER, "risky low")
    await h.command(REQUESTER, f"audit {target['email']}")
    await h.slack.open_home(h.events_url, APPROVER)
    await h.settle()
    for message in h.seen(REQUESTER):
        assert_inert(message)
    assert_inert(h.slack.home(APPROVER))


async def test_every_hostile_name_is_inert_in_a_card(tmp_path):
    # every 50th seeded person carries the next hostile name: 400 people carry each once
    async with harness(tmp_path, identities=400) as h:
        hostile = hostile_people(h.sim)
        assert {r["display_name"] for r in hostile} == set(HOSTILE_NAMES)
        for record in hostile:
            await h.command(REQUESTER, f"whois {record['id']}")
            card = h.last_seen(REQUESTER)
            assert escape(record["display_name"]) in text_of(card)
            assert_inert(card)


async def test_hostile_command_text_is_escaped_when_echoed(h):
    await h.command(REQUESTER, "whois <!everyone>")
    assert h.last_seen(REQUESTER)["text"] == "No identity matches *&lt;!everyone&gt;* in HomeBase (homebase)."
    await h.command(REQUESTER, "<@U0BOB> please")
    shown = h.last_seen(REQUESTER)
    assert "Unknown subcommand *&lt;@U0BOB&gt;*" in shown["text"]
    assert_inert(shown)


async def test_every_message_and_view_idops_sent_is_valid_block_kit_with_a_fallback(h):
    await h.command(REQUESTER, "help")
    await h.command(REQUESTER, "risky")
    await h.command(REQUESTER, f"whois {h.people['privileged']['email']}")
    card = await h.request_card("privileged", "reset", "x" * 1000)  # the longest reason allowed
    await h.click(APPROVER, card, "approval:approve")
    await h.click(APPROVER, h.card(), "approval:deny")
    await h.command(REQUESTER, "pending")
    await h.slack.open_home(h.events_url, APPROVER)
    await h.settle()
    methods = ("chat.postMessage", "chat.update", "response_url")
    assert all(h.slack.calls_to(m) for m in methods)
    sent = [p for m in methods for p in h.slack.calls_to(m)]
    for params in sent:
        assert params.get("text"), f"no text fallback in {params}"
        blocks = params.get("blocks")
        if isinstance(blocks, str):
            blocks = json.loads(blocks)
        assert block_problems(blocks or []) == []
    assert h.slack.warnings == []
    for view_call in h.slack.calls_to("views.open") + h.slack.calls_to("views.publish"):
        assert view_call.get("view")


async def test_the_approval_channel_only_gets_cards_and_their_replies(h):
    await h.request_card()
    posts = h.slack.calls_to("chat.postMessage")
    assert [p["channel"] for p in posts] == [APPROVAL_CHANNEL]


async def test_slow_requests_are_acked_before_the_provider_answers(h):
    # the provider takes longer than Slack's 3 s would allow; the ack must not wait for it
    await h.fault(kind="slow", delay=0.8, count=1, path="/v1/identity")
    reply = await h.slack.command(h.events_url, REQUESTER, f"whois {h.people['plain']['id']}")
    assert reply.status == 200 and reply.body == ""
    assert h.seen(REQUESTER) == []  # nothing yet: the lookup is still running
    await h.settle()
    assert h.people["plain"]["email"] in text_of(h.last_seen(REQUESTER))

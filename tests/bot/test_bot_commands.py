"""`/idops` subcommands through the real server: signed slash commands from FakeSlack, answers read
back from what FakeSlack shows the user, the HomeBase simulator behind the connector."""

from __future__ import annotations

import collections
from datetime import datetime

import pytest
from support.bot import (
    APPROVAL_CHANNEL,
    APPROVER,
    OUTSIDER,
    REQUESTER,
    buttons,
    text_of,
)

from bot.listeners.commands import SUBCOMMANDS, parse, tokenize, unwrap

# --- parsing (pure) ---------------------------------------------------------------------------------


def test_unwrap_removes_slack_link_markup_and_decodes_entities():
    assert unwrap("whois <mailto:ada@x.example|ada@x.example>") == "whois ada@x.example"
    assert unwrap("risky high <http://tenant0.example|tenant0.example>") == "risky high tenant0.example"
    assert unwrap("whois a &amp; b &lt;c&gt;") == "whois a & b <c>"
    # mentions stay as typed: they match nothing and are escaped when echoed
    assert unwrap("whois <@U0BOB|bob>") == "whois <@U0BOB|bob>"


def test_tokenize_groups_double_quotes_and_keeps_apostrophes():
    assert tokenize('revoke "Ada Lovelace" stolen laptop') == ["revoke", "Ada Lovelace", "stolen", "laptop"]
    assert tokenize("whois O'Brien") == ["whois", "O'Brien"]
    assert tokenize("whois “Ada Lovelace”") == ["whois", "Ada Lovelace"]


def test_parse_is_case_insensitive_and_defaults_to_help():
    assert parse("").name == "help"
    assert parse("  WHOIS  x ").name == "whois"
    assert parse("whois x").args == ["x"]


# --- help and usage ---------------------------------------------------------------------------------


async def test_help_lists_every_subcommand_in_the_ack(h):
    reply = await h.command(OUTSIDER, "help")
    assert reply.status == 200
    shown = h.last_seen(OUTSIDER)["text"]
    for usage in SUBCOMMANDS.values():
        assert f"/idops {usage.replace('<', '&lt;').replace('>', '&gt;')}" in shown
    # empty text is help too
    await h.command(OUTSIDER, "")
    assert h.last_seen(OUTSIDER)["text"] == shown


@pytest.mark.parametrize(
    ("text", "problem", "usage"),
    [
        ("frobnicate now", "Unknown subcommand *frobnicate*", "/idops whois"),
        ("whois", "is missing", "/idops whois &lt;email|id|name&gt;"),
        ('whois ""', "is missing", "/idops whois &lt;email|id|name&gt;"),
        ('whois "   "', "is missing", "/idops whois &lt;email|id|name&gt;"),
        ("revoke", "is missing", "/idops revoke &lt;who&gt; [reason]"),
        ("reset", "is missing", "/idops reset &lt;who&gt; [reason]"),
        ("disable", "is missing", "/idops disable &lt;who&gt; &lt;reason&gt;"),
        ("audit", "is missing", "/idops audit &lt;who&gt;"),
        (
            "risky extreme",
            "*extreme* is not a risk level",
            "/idops risky [low|medium|high|critical] [tenant]",
        ),
        ("risky high t1 extra", "Too many arguments", "/idops risky"),
        ("pending now", "takes no arguments", "/idops pending"),
        ('whois "Ada', "double quote is not closed", "/idops"),
        ("whois " + "x" * 300, "longer than 256 characters", "/idops whois"),
    ],
)
async def test_bad_commands_get_a_problem_and_a_usage_line_in_the_ack(h, text, problem, usage):
    reply = await h.command(REQUESTER, text)
    assert reply.status == 200
    shown = h.last_seen(REQUESTER)["text"]
    assert problem in shown and usage in shown and "Usage" in shown
    assert "Traceback" not in shown
    assert h.slack.calls_to("chat.postMessage") == []


# --- whois ------------------------------------------------------------------------------------------


async def test_whois_by_email_shows_the_identity_card(h):
    person = h.people["privileged"]
    await h.command(REQUESTER, f"whois {person['email']}")
    card = h.last_seen(REQUESTER)
    shown = text_of(card)
    assert card["blocks"][0]["type"] == "header"
    for value in (
        person["email"],
        person["risk_level"],
        person["last_login_ip"],
        person["last_login_country"],
    ):
        assert value in shown
    assert f"*{person['risk_score']}* {person['risk_level']}" in shown
    assert "HomeBase (homebase)" in shown and person["tenant_id"] in shown
    assert ":crown: yes" in shown
    fields = dict(f["text"].split("\n", 1) for b in card["blocks"] for f in b.get("fields", []))
    assert fields["*Status*"] == person["status"]
    mfa = "enrolled" if person["mfa_enrolled"] else ":warning: not enrolled"
    assert fields["*MFA*"] == f"{mfa}: {', '.join(person['mfa_methods'])}"
    last_login = datetime.fromisoformat(person["last_login_at"].replace("Z", "+00:00"))
    assert fields["*Last login*"].startswith(f"<!date^{int(last_login.timestamp())}^")
    for role in person["roles"]:
        assert role in shown
    ref = f"homebase:{person['id']}"
    # one button per action HomeBase has (its capabilities), in the order of the action table
    assert buttons(card) == [
        ("request:revoke_sessions", ref),
        ("request:force_password_reset", ref),
        ("request:disable", ref),
    ]
    # the answer came after the ack, through response_url, only to the user
    assert card["source"] == "response_url" and h.slack.calls_to("chat.postMessage") == []


async def test_whois_accepts_an_id_and_slack_formatted_email(h):
    person = h.people["plain"]
    await h.command(REQUESTER, f"whois {person['id']}")
    assert person["email"] in text_of(h.last_seen(REQUESTER))
    await h.command(REQUESTER, f"whois <mailto:{person['email']}|{person['email']}>")
    shown = h.last_seen(REQUESTER)
    assert shown["blocks"][0]["type"] == "header" and person["id"] in text_of(shown)


async def test_whois_with_several_matches_lists_them_with_show_buttons(h):
    by_last = collections.Counter(h.sim.person(i).last for i in range(h.sim.size))
    last, count = by_last.most_common(1)[0]
    assert count > 1
    await h.command(REQUESTER, f"whois {last}")
    listing = h.last_seen(REQUESTER)
    shown = buttons(listing)
    assert f"identities match *{last}*" in listing["text"]
    assert len(shown) == min(count, 10) and {action for action, _ in shown} == {"identity:show"}
    # Show opens the card of that one
    _, value = shown[0]
    await h.click(REQUESTER, listing, "identity:show", value)
    card = h.last_seen(REQUESTER)
    assert card["blocks"][0]["type"] == "header" and value.split(":", 1)[1] in text_of(card)


async def test_whois_without_a_match_names_the_connectors_searched(h):
    await h.command(REQUESTER, "whois nobody@nowhere.example")
    assert h.last_seen(REQUESTER)["text"] == (
        "No identity matches *nobody@nowhere.example* in HomeBase (homebase)."
    )


async def test_lookups_are_for_responders_and_approvers_only(h):
    await h.command(OUTSIDER, f"whois {h.people['plain']['email']}")
    shown = h.last_seen(OUTSIDER)["text"]
    assert "Only responders and approvers can look up identities" in shown
    assert "[access] responders" in shown and h.people["plain"]["email"] not in shown
    # an approver who is not a responder may look
    await h.command(APPROVER, f"whois {h.people['plain']['email']}")
    assert h.people["plain"]["email"] in text_of(h.last_seen(APPROVER))


async def test_provider_fault_answers_with_the_error_and_request_id(h):
    # 500 on every attempt (the connector retries reads twice)
    await h.fault(kind="500", count=3, path="/v1/identity")
    await h.command(REQUESTER, f"whois {h.people['plain']['id']}")
    shown = h.last_seen(REQUESTER)["text"]
    assert shown.startswith(":warning: HomeBase")
    assert "request id req_" in shown


async def test_provider_timeout_says_how_long_it_waited(h):
    await h.fault(kind="slow", delay=2.0, count=3, path="/v1/identity")
    await h.command(REQUESTER, f"whois {h.people['plain']['id']}")
    shown = h.last_seen(REQUESTER)["text"]
    assert "HomeBase did not answer in 1 s (request id " in shown


# --- risky ------------------------------------------------------------------------------------------


def _expected_order(h, level=None, tenant=None):
    records = [h.sim.record(i) for i in range(h.sim.size)]
    records = [
        r
        for r in records
        if (level is None or r["risk_level"] == level) and (tenant is None or r["tenant_id"] == tenant)
    ]
    records.sort(key=lambda r: (-r["risk_score"], r["display_name"].lower(), r["id"]))
    return [f"homebase:{r['id']}" for r in records]


async def test_risky_lists_highest_scores_first_and_pages(h):
    expected = _expected_order(h)
    await h.command(REQUESTER, "risky")
    first = h.last_seen(REQUESTER)
    assert [value for action, value in buttons(first) if action == "identity:show"] == expected[:10]
    assert "Riskiest identities* (any level), 1-10" in first["text"]
    assert ("risky:page", '{"level": null, "tenant": null, "offset": 10}') in buttons(first)
    # Next page replaces the list with the next ten, in the same order
    await h.click(REQUESTER, first, "risky:page")
    second = h.last_seen(REQUESTER)
    assert second["ts"] == first["ts"]
    assert [value for action, value in buttons(second) if action == "identity:show"] == expected[10:20]
    assert "11-20" in second["text"]


async def test_risky_filters_by_level_and_tenant(h):
    tenant = h.people["plain"]["tenant_id"]
    expected = _expected_order(h, "medium", tenant)
    assert expected
    await h.command(REQUESTER, f"risky MEDIUM {tenant}")
    shown = h.last_seen(REQUESTER)
    assert [value for action, value in buttons(shown) if action == "identity:show"] == expected[:10]
    assert f"(medium, tenant {tenant})" in shown["text"]


async def test_risky_with_a_tenant_the_provider_refuses_shows_its_error(h):
    await h.command(REQUESTER, "risky critical ten_doesnotexist")
    shown = h.last_seen(REQUESTER)["text"]
    assert shown.startswith(":warning: HomeBase: This API key has no access to that tenant (request id req_")


# --- pending and audit ------------------------------------------------------------------------------


async def test_pending_lists_waiting_requests_with_where_their_card_is(h):
    await h.command(REQUESTER, "pending")
    assert h.last_seen(REQUESTER)["text"] == "No requests are waiting."
    await h.request_card("plain", "revoke", "phished")
    await h.request_card("privileged", "reset", "leaked password")
    await h.command(APPROVER, "pending")
    shown = h.last_seen(APPROVER)
    assert "Requests waiting for approval* (2)" in shown["text"]
    text = text_of(shown)
    assert h.people["plain"]["display_name"] in text and h.people["privileged"]["display_name"] in text
    assert "*Revoke sessions*" in text and "*Force password reset*" in text
    assert f"<#{APPROVAL_CHANNEL}>" in text and "0 of 2" in text and f"<@{REQUESTER}>" in text


async def test_audit_shows_the_trail_of_one_identity(h):
    person = h.people["plain"]
    card = await h.request_card("plain", "revoke", "phished")
    await h.click(APPROVER, card, "approval:approve")
    await h.command(REQUESTER, f"audit {person['email']}")
    shown = text_of(h.last_seen(REQUESTER))
    assert f"Audit trail of {person['display_name']}" in shown
    # newest first: executed, executing, approved, requested
    events = [e for e in ("*executed*", "*executing*", "*approved*", "*requested*") if e in shown]
    assert events == ["*executed*", "*executing*", "*approved*", "*requested*"]
    assert shown.index("*executed*") < shown.index("*requested*")
    assert f"<@{APPROVER}>" in shown and "reason: phished" in shown


async def test_audit_without_a_match_names_the_connectors_searched(h):
    await h.command(REQUESTER, "audit nobody@nowhere.example")
    assert (
        h.last_seen(REQUESTER)["text"]
        == "No identity matches *nobody@nowhere.example* in HomeBase (homebase)."
    )

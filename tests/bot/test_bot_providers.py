"""Two connectors at once (HomeBase and SailPoint simulators): lookups and lists span both, cards offer
only what each provider supports, and one provider's fault doesn't hide the other's answer."""

from __future__ import annotations

import pytest
from support.bot import APPROVER, APPROVER2, REQUESTER, buttons, harness, text_of


@pytest.fixture
async def h(tmp_path):
    async with harness(tmp_path, with_sailpoint=True) as built:
        yield built


def sp_person(h, index):
    return h.extra["sailpoint"].identity(index)


async def all_identities(h):
    """Every identity of both connectors, read through the connectors (the oracle for ordering)."""
    out = []
    for connector in h.bot.connectors.values():
        out += [i async for i in connector.list_identities()]
    return out


async def test_whois_finds_a_sailpoint_identity_and_offers_disable_and_enable(h):
    record = sp_person(h, 3)
    await h.command(REQUESTER, f"whois {record['id']}")
    card = h.last_seen(REQUESTER)
    assert "SailPoint (sailpoint)" in text_of(card) and record["name"] in text_of(card)
    ref = f"sailpoint:{record['id']}"
    assert buttons(card) == [("request:disable", ref), ("request:enable", ref)]


async def test_whois_without_a_match_names_both_connectors(h):
    await h.command(REQUESTER, "whois nobody@nowhere.example")
    assert h.last_seen(REQUESTER)["text"].endswith("in HomeBase (homebase), SailPoint (sailpoint).")


async def test_no_match_names_the_connector_searched_and_the_one_that_failed(h):
    await h.fault(kind="500", count=3, path="/v1/identity")
    await h.command(REQUESTER, "revoke nobody@nowhere.example phished")
    first, warning = h.last_seen(REQUESTER)["text"].split("\n")
    assert first == "No identity matches *nobody@nowhere.example* in SailPoint (sailpoint)."
    assert warning.startswith(":warning: HomeBase") and "request id req_" in warning
    assert h.cards() == []


async def test_risky_merges_both_connectors_highest_first(h):
    every = await all_identities(h)
    every.sort(key=lambda i: (-(i.risk_score or 0), i.name.lower(), i.connector, i.id))
    expected = [f"{i.connector}:{i.id}" for i in every]
    await h.command(REQUESTER, "risky")
    first = h.last_seen(REQUESTER)
    shown = [value for action, value in buttons(first) if action == "identity:show"]
    assert shown == expected[:10]
    await h.click(REQUESTER, first, "risky:page")
    shown = [value for action, value in buttons(h.last_seen(REQUESTER)) if action == "identity:show"]
    assert shown == expected[10:20]
    assert {v.split(":")[0] for v in expected[:20]} == {"homebase", "sailpoint"}


async def test_an_action_sailpoint_lacks_is_refused_naming_it(h):
    record = sp_person(h, 4)
    await h.command(REQUESTER, f"revoke {record['id']} phished")
    assert h.last_seen(REQUESTER)["text"] == ":no_entry: SailPoint has no 'Revoke sessions' action."
    assert h.cards() == []


async def test_disable_on_sailpoint_runs_once_and_reports_the_queued_task(h):
    record = sp_person(h, 5)
    await h.command(REQUESTER, f"disable {record['id']} token theft")
    request = h.bot.service.get(h.card()["metadata"]["event_payload"]["request_id"])
    for approver in (APPROVER, APPROVER2)[: request.approvals_needed]:
        await h.click(approver, h.card(), "approval:approve")
    card = h.card()
    (reply,) = card["replies"]
    assert "Disable account for *" in reply["text"] and "queued" in reply["text"]
    reference = reply["text"].split("Provider reference: ", 1)[1].strip()
    assert reference and set(reference.split(",")) <= set(h.extra["sailpoint"].tasks)
    assert h.extra["sailpoint"].disabled_accounts


async def test_one_provider_down_still_shows_the_other_with_a_warning(h):
    person = h.people["plain"]
    await h.fault(kind="500", count=3, path="/v1/identity")
    await h.command(REQUESTER, f"whois {sp_person(h, 6)['id']}")
    card = h.last_seen(REQUESTER)
    assert card["blocks"][0]["type"] == "header"
    assert ":warning: HomeBase" in text_of(card) and "request id req_" in text_of(card)
    assert person["email"] not in text_of(card)

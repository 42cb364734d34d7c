"""A destructive action names its target exactly (issue 15, item 7): an email, an id or a full name that
matches one identity. A fragment never posts an approval card, even when it matches one person: the
matches are listed to choose from, or nothing matched is said. Lookups (`whois`) stay fuzzy."""

from __future__ import annotations

import pytest
from support.bot import REQUESTER, buttons, harness, text_of


@pytest.fixture
async def h(tmp_path):
    async with harness(tmp_path) as built:
        yield built


def _unique_fragment(h, person: dict) -> str:
    """Three characters of `person`'s email found in nobody else's email or name."""
    others = [
        h.sim.record(i)
        for i in range(h.sim.size)
        if h.sim.record(i)["id"] != person["id"] and h.sim.record(i)["status"] == "active"
    ]
    email = person["email"]
    for start in range(len(email) - 3):
        piece = email[start : start + 3].casefold()
        if not any(piece in (o["email"] + " " + o["display_name"]).casefold() for o in others):
            return email[start : start + 3]
    raise AssertionError("no unique fragment in this seed")


@pytest.mark.parametrize("text", ["reset /", "reset &", 'reset "a b"', "revoke e", "disable @ x stolen"])
async def test_a_short_fragment_never_posts_a_card(h, text):
    await h.command(REQUESTER, text)
    assert h.cards() == []
    answer = text_of(h.last_seen(REQUESTER))
    assert "No identity matches" in answer or "is not an exact email, id or full name" in answer, answer


async def test_a_fragment_matching_one_person_lists_them_to_choose(h):
    person = h.people["plain"]
    fragment = _unique_fragment(h, person)
    await h.command(REQUESTER, f"reset {fragment} phished")
    assert h.cards() == []
    answer = h.last_seen(REQUESTER)
    assert "is not an exact email, id or full name, so nothing was requested" in answer["text"]
    assert buttons(answer) == [("request:force_password_reset", f"homebase:{person['id']}")]
    # whois stays fuzzy: the same fragment shows the card at once
    await h.command(REQUESTER, f"whois {fragment}")
    assert person["email"] in text_of(h.last_seen(REQUESTER))


async def test_an_exact_email_id_or_full_name_requests_at_once(h):
    person = h.people["plain"]
    await h.command(REQUESTER, f"revoke {person['email'].upper()} phished")
    await h.command(REQUESTER, f"reset {person['id']} phished")
    assert len(h.cards()) == 2
    names = [h.sim.record(i)["display_name"].casefold() for i in range(h.sim.size)]
    other = h.people["plain2"]
    if names.count(other["display_name"].casefold()) == 1 and " " in other["display_name"]:
        await h.command(REQUESTER, f'revoke "{other["display_name"]}" phished')
        assert len(h.cards()) == 3

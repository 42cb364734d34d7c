"""Never silent (issue 15, item 6): after a 429 with a long Retry-After, a person who asks gets an
answer within seconds: "HomeBase asked us to wait until 14:05; I'll answer then" and then the answer,
or a clear failure; an approval that meets the limit fails with a Retry, never sits on "approved".
Background work may wait; the follow-up's wait is a fake sleep here (no test waits for minutes)."""

from __future__ import annotations

import time

import pytest
from support.bot import APPROVER, REQUESTER, buttons, harness, status_of, text_of


@pytest.fixture
async def h(tmp_path):
    async with harness(tmp_path) as built:
        connector = built.bot.identities.connectors["homebase"]
        slept: list[float] = []

        async def later(seconds: float) -> None:
            """The wait HomeBase asked for, passed at once: its pauses end, as they would by then."""
            slept.append(seconds)
            for limiter in connector._limiters.values():
                limiter._blocked_until = 0.0

        built.bot.replies.sleep = later
        built.extra["slept"] = slept
        yield built


@pytest.mark.parametrize("retry_after", [120, 3600])
async def test_whois_after_a_long_429_says_when_then_answers(h, retry_after):
    person = h.people["plain"]
    await h.fault(kind="429", retry_after=retry_after, count=1, method="GET")
    started = time.monotonic()
    await h.command(REQUESTER, f"whois {person['email']}")
    assert time.monotonic() - started < 10  # nothing waited out the 120 s
    notice, answer = h.seen(REQUESTER)[-2:]
    assert notice["text"].startswith(":hourglass_flowing_sand: HomeBase asked us to wait until <!date^")
    assert notice["text"].endswith("; I'll answer then.")
    assert h.extra["slept"] == [pytest.approx(retry_after, abs=1)]
    assert person["email"] in text_of(answer)  # and then the answer


async def test_a_lookup_held_again_after_the_wait_is_a_clear_failure(h):
    person = h.people["plain"]
    await h.fault(kind="429", retry_after=200, count=2, method="GET")
    await h.command(REQUESTER, f"whois {person['email']}")
    assert h.seen(REQUESTER)[-1]["text"].startswith(":warning: HomeBase asked us to wait until")
    assert "again; please try later" in h.seen(REQUESTER)[-1]["text"]


async def test_an_approval_that_meets_a_long_429_fails_with_a_retry_at_once(h):
    person = h.people["plain"]
    card = await h.request_card()
    await h.fault(kind="429", retry_after=120, count=1, method="POST")
    started = time.monotonic()
    await h.click(APPROVER, card, "approval:approve")
    assert time.monotonic() - started < 10
    card = h.card()
    assert status_of(card).startswith(":x: Failed") and [b[0] for b in buttons(card)] == ["approval:retry"]
    assert "HomeBase" in card["replies"][0]["text"] and "(rate limit" in card["replies"][0]["text"].lower()
    assert h.sim.sessions_revoked[person["id"]] == 0

"""`idops demo` includes an Entra ID tenant: its simulator is one of the identity platforms the bot sweeps
(incrementally, from riskyUsers' riskLastUpdatedDateTime), the drift moves users' risk there, and a user
Identity Protection confirms compromised reaches Slack as a critical risk alert card."""

from __future__ import annotations

import re

import aiohttp
import pytest
from support.bot import text_of, until
from support.demo import PlatformDemo

from standins import entra_state

pytestmark = pytest.mark.asyncio(loop_scope="session")  # the demo is shared (tests/standins/conftest.py)


async def test_the_demo_alerts_on_entra_users(platform_demo: PlatformDemo) -> None:
    run = platform_demo.run
    assert run.entra is not None
    state = run.entra[entra_state.STATE]
    messages = run.slack.messages

    def summary() -> list[dict]:
        return [m for m in messages("C0ALERTS") if "First sweep of Microsoft Entra ID (entra)" in m["text"]]

    await run.slack.wait_for(summary, timeout=120, what="the Entra baseline")
    # an enabled user with a plain name and no risk record is confirmed compromised, as an analyst would
    index = next(
        i
        for i in range(state.users)
        if state.user(i)["accountEnabled"]
        and state.risk_of(i) is None
        and re.fullmatch(r"[A-Za-z ]+", state.user(i)["displayName"])
    )
    name = state.user(index)["displayName"]
    url = f"{run.entra_url}/_admin/users/{state.user_id(index)}/risk"
    body = {"riskLevel": "high", "riskState": "confirmedCompromised"}
    async with aiohttp.ClientSession() as session, session.post(url, json=body) as answer:
        assert answer.status == 200 and (await answer.json())["riskState"] == "confirmedCompromised"

    def card() -> list[dict]:
        return [
            m
            for m in messages("C0ALERTS")
            if m.get("text", "").startswith(f"Critical risk: {name}")
            and "Microsoft Entra ID (entra)" in text_of(m)
        ]

    await run.slack.wait_for(card, timeout=120, what=f"the alert card for {name}")
    assert len(summary()) == 1
    # the drift moves it too (each platform in turn, one change in five)
    await until(lambda: any(line.startswith("drift: Entra ID ") for line in platform_demo.lines), 60)

"""`idops demo` includes an Entra ID tenant: its simulator is one of the identity platforms the bot sweeps
(incrementally, from riskyUsers' riskLastUpdatedDateTime), the drift moves users' risk there, and a user
Identity Protection confirms compromised reaches Slack as a critical risk alert card."""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp
from support.bot import text_of

from standins import demo, entra_state


async def test_the_demo_alerts_on_entra_users(tmp_path: Path) -> None:
    lines: list[str] = []
    async with demo.running(
        tmp_path, slack_port=0, identities=40, drift_seconds=0.5, log=lines.append
    ) as run:
        assert run.entra is not None
        state = run.entra[entra_state.STATE]
        messages = run.slack.messages

        def summary() -> list[dict]:
            return [
                m for m in messages("C0ALERTS") if "First sweep of Microsoft Entra ID (entra)" in m["text"]
            ]

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
    assert any(line.startswith("drift: Entra ID ") for line in lines)  # the drift moves it too

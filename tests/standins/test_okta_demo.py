"""`idops demo` includes an Okta org: its simulator is an identity platform the bot sweeps, and the drift
changes users' ITP risk there (each change a System Log event), which reaches Slack as risk alerts."""

from __future__ import annotations

import pytest
from support.bot import text_of
from support.demo import PlatformDemo

from standins import okta

pytestmark = pytest.mark.asyncio(loop_scope="session")  # the demo is shared (tests/standins/conftest.py)


async def test_the_demo_alerts_on_okta_users(platform_demo: PlatformDemo) -> None:
    run = platform_demo.run
    assert run.okta is not None
    state = run.okta[okta.STATE]

    def okta_cards() -> list[dict]:
        return [
            m
            for m in run.slack.messages("C0ALERTS")
            if "Okta (okta)" in text_of(m) and "risk:" in m.get("text", "")
        ]

    await run.slack.wait_for(okta_cards, timeout=90, what="an Okta risk alert")
    card = okta_cards()[0]
    flagged = {
        event["target"][0]["displayName"]
        for event in state.events
        if event["eventType"] == "user.risk.detect"
    }
    assert any(name in card["text"] for name in flagged), card["text"]
    summaries = [m["text"] for m in run.slack.messages("C0ALERTS") if "First sweep of Okta" in m["text"]]
    assert len(summaries) == 1

"""`idops demo` includes a Google Workspace domain: its simulator is one of the identity platforms the
bot sweeps, the drift opens and closes Alert Center alerts there, and an alert raised for a Workspace
user reaches Slack as a risk alert card."""

from __future__ import annotations

import aiohttp
import pytest
from support.bot import until
from support.demo import PlatformDemo

from standins import google_workspace

pytestmark = pytest.mark.asyncio(loop_scope="session")  # the demo is shared (tests/standins/conftest.py)


async def test_the_demo_alerts_on_workspace_users(platform_demo: PlatformDemo) -> None:
    run = platform_demo.run
    assert run.workspace is not None
    state = run.workspace[google_workspace.STATE]
    assert state.domain == "acme.example"
    messages = run.slack.messages

    def summary() -> list[dict]:
        return [m for m in messages("C0ALERTS") if "First sweep of Google Workspace (workspace)" in m["text"]]

    await run.slack.wait_for(summary, timeout=120, what="the Workspace baseline")
    # a user the drift has not touched gets a leaked-password alert, as Alert Center would raise it
    index = next(
        i for i in range(state.identities) if state.risk_score(i) == 0 and not state.user(i)["suspended"]
    )
    name = state.user(index)["name"]["fullName"]
    url = f"{run.workspace_url}/_admin/identity/{state.user_id(index)}/risk"
    async with aiohttp.ClientSession() as session, session.post(url, json={"risk_score": 95}) as answer:
        assert answer.status == 200 and (await answer.json())["risk_score"] == 100

    def card() -> list[dict]:
        return [m for m in messages("C0ALERTS") if m.get("text", "").startswith(f"Critical risk: {name}")]

    await run.slack.wait_for(card, timeout=120, what=f"the alert card for {name}")
    assert len(summary()) == 1
    # the drift moves it too (each platform in turn, one change in five)
    await until(lambda: any(line.startswith("drift: Google Workspace ") for line in platform_demo.lines), 60)

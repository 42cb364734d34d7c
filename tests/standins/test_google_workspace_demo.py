"""`idops demo` includes a Google Workspace domain: its simulator is a third identity platform the bot
sweeps, and the drift opens and closes Alert Center alerts there, which reach Slack as risk alerts."""

from __future__ import annotations

from pathlib import Path

from support.bot import text_of

from standins import demo, google_workspace


async def test_the_demo_alerts_on_workspace_users(tmp_path: Path) -> None:
    async with demo.running(
        tmp_path, slack_port=0, identities=40, drift_seconds=0.3, log=lambda _: None
    ) as run:
        assert run.workspace is not None
        state = run.workspace[google_workspace.STATE]
        assert state.domain == "acme.example"

        def workspace_cards() -> list[dict]:
            return [
                m
                for m in run.slack.messages("C0ALERTS")
                if "Google Workspace (workspace)" in text_of(m) and "risk:" in m.get("text", "")
            ]

        await run.slack.wait_for(workspace_cards, timeout=60, what="a Workspace risk alert")
        card = workspace_cards()[0]
        alerted = {a["data"]["email"] for a in state.alerts}  # what the drift opened in Alert Center
        names = {
            state.user(i)["name"]["fullName"]
            for i in range(state.identities)
            if state.user(i)["primaryEmail"] in alerted
        }
        assert any(name in card["text"] for name in names), card["text"]
        summaries = [
            m["text"]
            for m in run.slack.messages("C0ALERTS")
            if "First sweep of Google Workspace" in m["text"]
        ]
        assert len(summaries) == 1

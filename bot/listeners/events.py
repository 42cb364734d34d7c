"""Events: `app_home_opened` publishes the Home tab (risk counts, riskiest identities, waiting approvals)."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncApp

from ..services import Bot


def register(app: AsyncApp, bot: Bot) -> None:
    replies, lookups = bot.replies, bot.lookups

    @app.event("app_home_opened")
    async def on_home_opened(event: dict[str, Any]) -> None:
        if event.get("tab", "home") != "home":
            return
        user = event["user"]
        replies.tasks.spawn(replies.publish_home(user, lookups.home(user)), "app home")

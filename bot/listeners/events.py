"""Events: `app_home_opened` publishes the Home tab (risk counts, riskiest identities, waiting approvals)."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncApp

from .. import blocks
from ..app import Bot
from ..blocks import esc, slack_date

NOT_A_MEMBER = (
    "idops shows identity risk to responders and approvers only. Ask an admin to add you to"
    " `[access] responders` or `[access] approvers`."
)


async def publish_home(bot: Bot, user: str) -> None:
    """Build and publish the viewer's Home tab."""
    if not await bot.may_look(user):
        view = blocks.home_notice(NOT_A_MEMBER)
    else:
        counts, found, swept = await bot.risk_counts()
        waiting = await bot.service.pending(for_user=user)
        lines = [
            f"{esc(bot.source(name), 200)}: as of its last risk sweep, {slack_date(at)}"
            for name, at in swept.items()
        ]
        lines += [f":warning: {esc(fault, 500)}" for fault in found.faults]
        note = "\n".join(lines)
        view = blocks.home_view(counts, bot.labelled(found.identities), waiting, note=note)
    await bot.client.views_publish(user_id=user, view=view)


def register(app: AsyncApp, bot: Bot) -> None:
    @app.event("app_home_opened")
    async def on_home_opened(event: dict[str, Any]) -> None:
        if event.get("tab", "home") != "home":
            return
        bot.tasks.spawn(publish_home(bot, event["user"]), "app home")

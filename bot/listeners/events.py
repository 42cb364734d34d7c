"""Events: `app_home_opened` publishes the Home tab (risk counts, riskiest identities, waiting approvals)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError

from .. import blocks
from ..app import Bot
from ..blocks import esc, slack_date
from ..slack_api import describe

log = logging.getLogger(__name__)

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


async def _publish(bot: Bot, user: str) -> None:
    """Publish the Home tab; a Slack failure is logged (the next visit tries again), never raised."""
    try:
        await publish_home(bot, user)
    except SlackApiError as exc:
        log.warning("App Home of %s not published: Slack said %s", user, describe(exc.response))
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        log.warning("App Home of %s not published: Slack unreachable (%s)", user, type(exc).__name__)


def register(app: AsyncApp, bot: Bot) -> None:
    @app.event("app_home_opened")
    async def on_home_opened(event: dict[str, Any]) -> None:
        if event.get("tab", "home") != "home":
            return
        bot.tasks.spawn(_publish(bot, event["user"]), "app home")

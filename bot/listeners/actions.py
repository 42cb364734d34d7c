"""Button clicks: request buttons on identity and alert cards, the approval card's buttons, paging.

Every handler acks first. Buttons carry ids only (see docs/architecture.md): the identity is re-read
from its provider and the request from the store, so a forged payload can't change what is acted on.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Optional, Union

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from connectors import Action, ConnectorError, RiskLevel

from .. import blocks
from ..app import Bot
from ..approvals import Decision, PolicyError
from ..blocks import Message, esc, text_message
from ..slack_api import describe
from . import commands

log = logging.getLogger(__name__)

BAD_BUTTON = text_message(":warning: That button carries something idops can't read; nothing was done.")


def split_ref(value: str) -> Optional[tuple[str, str]]:
    """`<connector>:<identity id>` from a request or show button; None when malformed."""
    connector, sep, identity_id = (value or "").partition(":")
    return (connector, identity_id) if sep and connector and identity_id else None


@dataclass(frozen=True)
class Click:
    """Who clicked, where, and how to answer them."""

    user: str
    channel: Optional[str]
    in_modal: bool
    trigger_id: str
    respond: Optional[AsyncRespond]

    @classmethod
    def of(cls, body: dict[str, Any], respond: AsyncRespond) -> Click:
        container = body.get("container") or {}
        return cls(
            user=body["user"]["id"],
            channel=(body.get("channel") or {}).get("id") or container.get("channel_id"),
            in_modal=(body.get("view") or {}).get("type") == "modal",
            trigger_id=body.get("trigger_id", ""),
            # App Home and modals have no response_url; answers go by ephemeral or DM then
            respond=respond if body.get("response_url") else None,
        )

    @property
    def reply_to(self) -> dict[str, Any]:
        """Keyword arguments for `Bot.run` and `Bot.tell`."""
        return {"user": self.user, "respond": self.respond, "channel": self.channel}


async def open_modal(bot: Bot, client: AsyncWebClient, click: Click, view: dict[str, Any]) -> Optional[str]:
    """Open `view` (stacked when the click came from a modal); its id, or None after telling the user."""
    try:
        if click.in_modal:
            response = await client.views_push(trigger_id=click.trigger_id, view=view)
        else:
            response = await client.views_open(trigger_id=click.trigger_id, view=view)
    except SlackApiError as exc:
        error = esc(describe(exc.response), 100)
        await bot.tell(
            reply=text_message(f":warning: Slack did not open the form ({error})."), **click.reply_to
        )
        return None
    return (response.get("view") or {}).get("id")


OnClick = Callable[[Click, dict[str, Any], AsyncWebClient], Awaitable[None]]


def on_click(app: AsyncApp, action_id: Union[str, re.Pattern[str]]) -> Callable[[OnClick], OnClick]:
    """Register `handler(click, action, client)` for a button: the listener acks first, then calls it."""

    def decorator(handler: OnClick) -> OnClick:
        @app.action(action_id)
        async def listener(
            ack: AsyncAck,
            body: dict[str, Any],
            action: dict[str, Any],
            respond: AsyncRespond,
            client: AsyncWebClient,
        ) -> None:
            await ack()
            await handler(Click.of(body, respond), action, client)

        return handler

    return decorator


def register(app: AsyncApp, bot: Bot) -> None:
    @on_click(app, re.compile(r"^request:"))
    async def on_request(click: Click, action: dict[str, Any], client: AsyncWebClient) -> None:
        ref = split_ref(action.get("value", ""))
        try:
            wanted = Action(action["action_id"].split(":", 1)[1])
        except ValueError:
            ref = None
        if ref is None:
            await bot.tell(reply=BAD_BUTTON, **click.reply_to)
            return
        connector, identity_id = ref
        if wanted is Action.DISABLE:
            metadata = {"action": wanted.value, "ref": f"{connector}:{identity_id}", "channel": click.channel}
            view = blocks.reason_modal(wanted, identity_id, json.dumps(metadata))
            await open_modal(bot, client, click, view)
            return
        work = bot.start_request(
            user=click.user, connector=connector, identity_id=identity_id, action=wanted, reason=""
        )
        bot.run(work, **click.reply_to, name="request button")

    @on_click(app, "identity:show")
    async def on_show(click: Click, action: dict[str, Any], client: AsyncWebClient) -> None:
        ref = split_ref(action.get("value", ""))
        if ref is None:
            await bot.tell(reply=BAD_BUTTON, **click.reply_to)
            return
        if click.respond is not None:
            bot.run(show(bot, click.user, *ref), **click.reply_to, name="show")
            return
        # No conversation to answer in (App Home): open a modal now, while the trigger_id is valid,
        # and fill it in when the provider has answered.
        loading = blocks.info_modal("Identity", text_message(":hourglass_flowing_sand: Looking it up…"))
        view_id = await open_modal(bot, client, click, loading)
        if view_id is not None:
            bot.tasks.spawn(_fill(bot, client, view_id, show(bot, click.user, *ref)), "show in modal")

    @on_click(app, "risky:page")
    async def on_page(click: Click, action: dict[str, Any], client: AsyncWebClient) -> None:
        try:
            query = json.loads(action.get("value") or "")
            level = RiskLevel.parse(query["level"]) if query.get("level") else None
            tenant = query.get("tenant")
            offset = int(query["offset"])
            if offset < 0 or (tenant is not None and not isinstance(tenant, str)):
                raise ValueError(offset)
        except (ValueError, TypeError, KeyError, AttributeError):
            await bot.tell(reply=BAD_BUTTON, **click.reply_to)
            return
        work = commands.risky(bot, click.user, level, tenant, offset)
        bot.run(work, **click.reply_to, replace=True, name="risky page")

    @on_click(app, "approval:approve")
    async def on_approve(click: Click, action: dict[str, Any], client: AsyncWebClient) -> None:
        bot.run(bot.approve(action.get("value") or "", click.user), **click.reply_to, name="approve")

    @on_click(app, "approval:retry")
    async def on_retry(click: Click, action: dict[str, Any], client: AsyncWebClient) -> None:
        bot.run(bot.retry(action.get("value") or "", click.user), **click.reply_to, name="retry")

    @on_click(app, "approval:deny")
    async def on_deny(click: Click, action: dict[str, Any], client: AsyncWebClient) -> None:
        bot.run(_deny_form(bot, client, click, action.get("value") or ""), **click.reply_to, name="deny")


async def _deny_form(bot: Bot, client: AsyncWebClient, click: Click, request_id: str) -> Optional[Message]:
    """Open the reason form only for someone who may deny the request now (the submit checks again)."""
    try:
        request = await bot.service.check_decision(request_id, user_id=click.user, decision=Decision.DENY)
    except PolicyError as exc:
        return await bot.refused(exc)
    await open_modal(bot, client, click, blocks.deny_modal(request))
    return None


async def _fill(bot: Bot, client: AsyncWebClient, view_id: str, work: Any) -> None:
    """Replace a loading modal with what `work` returns (or the error it raised)."""
    try:
        content = await work
    except (ConnectorError, PolicyError) as exc:
        content = text_message(f":warning: {esc(exc, 2000)}")
    try:
        await client.views_update(view_id=view_id, view=blocks.info_modal("Identity", content))
    except SlackApiError as exc:
        # the person may have closed the modal already
        log.info("modal %s not updated: %s", view_id, describe(exc.response))


async def show(bot: Bot, user: str, connector: str, identity_id: str) -> Message:
    """The identity card for a `Show` button."""
    if not await bot.may_look(user):
        return commands.LOOKUP_REFUSED
    provider = bot.connectors.get(connector)
    if provider is None:
        return BAD_BUTTON
    return bot.card(await provider.get_identity(identity_id))

"""Button clicks: request buttons on identity and alert cards, the approval card's buttons, paging.

Every handler acks first. Buttons carry ids only (see docs/architecture.md): the identity is re-read
from its provider and the request from the store, so a forged payload can't change what is acted on.
"""

from __future__ import annotations

import json
import re
from typing import Any, Optional

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from connectors import Action, RiskLevel

from .. import blocks
from ..app import Bot
from ..approvals import PolicyError, Status
from ..blocks import Message, esc, text_message
from . import commands

BAD_BUTTON = text_message(":warning: That button carries something idops can't read; nothing was done.")


def split_ref(value: str) -> Optional[tuple[str, str]]:
    """`<connector>:<identity id>` from a request or show button; None when malformed."""
    connector, sep, identity_id = (value or "").partition(":")
    return (connector, identity_id) if sep and connector and identity_id else None


def _where(body: dict[str, Any]) -> tuple[str, Optional[str], bool]:
    """The clicking user, the channel the click came from (if any), and whether it was inside a modal."""
    user = body["user"]["id"]
    channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id")
    in_modal = (body.get("view") or {}).get("type") == "modal"
    return user, channel, in_modal


def register(app: AsyncApp, bot: Bot) -> None:
    async def reply_kwargs(body: dict[str, Any], respond: AsyncRespond) -> dict[str, Any]:
        user, channel, _ = _where(body)
        return {"user": user, "respond": respond if body.get("response_url") else None, "channel": channel}

    @app.action(re.compile(r"^request:"))
    async def on_request(
        ack: AsyncAck,
        body: dict[str, Any],
        action: dict[str, Any],
        respond: AsyncRespond,
        client: AsyncWebClient,
    ) -> None:
        await ack()
        user, channel, in_modal = _where(body)
        where = await reply_kwargs(body, respond)
        ref = split_ref(action.get("value", ""))
        try:
            wanted = Action(action["action_id"].split(":", 1)[1])
        except ValueError:
            ref = None
        if ref is None:
            await bot.tell(**where, reply=BAD_BUTTON)
            return
        connector, identity_id = ref
        if wanted is Action.DISABLE:
            metadata = json.dumps(
                {"action": wanted.value, "ref": f"{connector}:{identity_id}", "channel": channel}
            )
            view = blocks.reason_modal(wanted, identity_id, metadata)
            try:
                if in_modal:
                    await client.views_push(trigger_id=body["trigger_id"], view=view)
                else:
                    await client.views_open(trigger_id=body["trigger_id"], view=view)
            except SlackApiError as exc:
                error = esc(exc.response.get("error"), 100)
                await bot.tell(
                    **where, reply=text_message(f":warning: Slack did not open the reason form ({error}).")
                )
            return
        bot.run(
            bot.start_request(
                user=user, connector=connector, identity_id=identity_id, action=wanted, reason=""
            ),
            **where,
            name="request button",
        )

    @app.action("identity:show")
    async def on_show(
        ack: AsyncAck,
        body: dict[str, Any],
        action: dict[str, Any],
        respond: AsyncRespond,
        client: AsyncWebClient,
    ) -> None:
        await ack()
        user, _, in_modal = _where(body)
        where = await reply_kwargs(body, respond)
        ref = split_ref(action.get("value", ""))
        if ref is None:
            await bot.tell(**where, reply=BAD_BUTTON)
            return
        if body.get("response_url") is None:
            # App Home or a modal has no conversation to answer in: show the card in a modal,
            # opened now because the trigger_id only lives 3 s
            identity = None
            try:
                if await bot.may_look(user):
                    identity = (
                        await bot.connectors[ref[0]].get_identity(ref[1])
                        if ref[0] in bot.connectors
                        else None
                    )
            except Exception as exc:  # provider faults are shown in the modal instead of the card
                reply = text_message(f":warning: {esc(exc, 2000)}")
            else:
                reply = bot.card(identity) if identity else commands.LOOKUP_REFUSED
            view = {
                "type": "modal",
                "title": {"type": "plain_text", "text": "Identity"},
                "blocks": reply.get("blocks", []),
            }
            opener = client.views_push if in_modal else client.views_open
            try:
                await opener(trigger_id=body["trigger_id"], view=view)
            except SlackApiError as exc:
                await bot.tell(
                    **where, reply=text_message(f":warning: {esc(exc.response.get('error'), 100)}")
                )
            return
        bot.run(show(bot, user, *ref), **where, name="show")

    @app.action("risky:page")
    async def on_page(
        ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], respond: AsyncRespond
    ) -> None:
        await ack()
        where = await reply_kwargs(body, respond)
        try:
            query = json.loads(action.get("value") or "")
            level = RiskLevel.parse(query["level"]) if query.get("level") else None
            tenant = query.get("tenant")
            offset = int(query["offset"])
            if offset < 0 or (tenant is not None and not isinstance(tenant, str)):
                raise ValueError(offset)
        except (ValueError, TypeError, KeyError):
            await bot.tell(**where, reply=BAD_BUTTON)
            return
        bot.run(
            commands.risky(bot, where["user"], level, tenant, offset),
            **where,
            replace=True,
            name="risky page",
        )

    @app.action("approval:approve")
    async def on_approve(
        ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], respond: AsyncRespond
    ) -> None:
        await ack()
        where = await reply_kwargs(body, respond)
        bot.run(bot.approve(action.get("value") or "", where["user"]), **where, name="approve")

    @app.action("approval:retry")
    async def on_retry(
        ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], respond: AsyncRespond
    ) -> None:
        await ack()
        where = await reply_kwargs(body, respond)
        bot.run(bot.retry(action.get("value") or "", where["user"]), **where, name="retry")

    @app.action("approval:deny")
    async def on_deny(
        ack: AsyncAck,
        body: dict[str, Any],
        action: dict[str, Any],
        respond: AsyncRespond,
        client: AsyncWebClient,
    ) -> None:
        await ack()
        where = await reply_kwargs(body, respond)
        try:
            request = bot.service.get(action.get("value") or "")
        except PolicyError as exc:
            await bot.tell(**where, reply=text_message(f":no_entry: {esc(exc.message, 2000)}"))
            return
        if request.status is not Status.PENDING:
            bot.run(_already(bot, request.id), **where, name="deny")
            return
        try:
            await client.views_open(trigger_id=body["trigger_id"], view=blocks.deny_modal(request))
        except SlackApiError as exc:
            error = esc(exc.response.get("error"), 100)
            await bot.tell(
                **where, reply=text_message(f":warning: Slack did not open the deny form ({error}).")
            )


async def _already(bot: Bot, request_id: str) -> Message:
    request = await bot.refresh_card(request_id)
    return text_message(f":no_entry: This request is already {request.status.value}.")


async def show(bot: Bot, user: str, connector: str, identity_id: str) -> Message:
    """The identity card for a `Show` button."""
    if not await bot.may_look(user):
        return commands.LOOKUP_REFUSED
    provider = bot.connectors.get(connector)
    if provider is None:
        return BAD_BUTTON
    return bot.card(await provider.get_identity(identity_id))

"""Button clicks: request buttons on identity and alert cards, the approval card's buttons, paging.

Every handler acks first, parses the button's value and hands off to a service. Buttons carry ids only
(see docs/architecture.md): the identity is re-read from its provider and the request from the store,
so a forged payload can't change what is acted on.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Optional, Union

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond

from connectors import Action, RiskLevel

from .. import blocks
from ..action_names import needs_reason
from ..approval_cards import EXTENSIONS
from ..blocks import split_ref, text_message
from ..lookups import BAD_BUTTON
from ..replies import Respond
from ..services import Bot

#: the attempt a *Run again* button carries (ASCII digits, and short: int() refuses 4,300 digits)
_ATTEMPT = re.compile(r"[0-9]{1,9}")


@dataclass(frozen=True)
class Click:
    """Who clicked, where, and how to answer them."""

    user: str
    channel: Optional[str]
    in_modal: bool
    trigger_id: str
    respond: Optional[Respond]

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
        """Keyword arguments for `Replies.run` and `Replies.tell`."""
        return {"user": self.user, "respond": self.respond, "channel": self.channel}

    @property
    def modal(self) -> dict[str, Any]:
        """Keyword arguments for `Replies.open_view`: stacked when the click came from a modal."""
        return {"trigger_id": self.trigger_id, "stacked": self.in_modal, **self.reply_to}


OnClick = Callable[[Click, dict[str, Any]], Awaitable[None]]


def on_click(app: AsyncApp, action_id: Union[str, re.Pattern[str]]) -> Callable[[OnClick], OnClick]:
    """Register `handler(click, action)` for a button: the listener acks first, then calls it."""

    def decorator(handler: OnClick) -> OnClick:
        @app.action(action_id)
        async def listener(
            ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], respond: AsyncRespond
        ) -> None:
            await ack()
            await handler(Click.of(body, respond), action)

        return handler

    return decorator


def register(app: AsyncApp, bot: Bot) -> None:
    replies, lookups, flow = bot.replies, bot.lookups, bot.flow

    @on_click(app, re.compile(r"^request:"))
    async def on_request(click: Click, action: dict[str, Any]) -> None:
        ref = split_ref(action.get("value", ""))
        try:
            wanted = Action(action["action_id"].split(":", 1)[1])
        except ValueError:
            ref = None
        if ref is None:
            await replies.tell(reply=BAD_BUTTON, **click.reply_to)
            return
        connector, identity_id = ref
        if needs_reason(wanted):
            metadata = {"action": wanted.value, "ref": f"{connector}:{identity_id}", "channel": click.channel}
            provider = bot.connectors.get(connector)
            durations = provider is not None and provider.can_undo(wanted)
            await replies.open_view(
                blocks.reason_modal(wanted, identity_id, json.dumps(metadata), durations=durations),
                **click.modal,
            )
            return
        work = flow.start_request(
            user=click.user, connector=connector, identity_id=identity_id, action=wanted, reason=""
        )
        replies.run(work, **click.reply_to, name="request button")

    @on_click(app, "identity:show")
    async def on_show(click: Click, action: dict[str, Any]) -> None:
        ref = split_ref(action.get("value", ""))
        if ref is None:
            await replies.tell(reply=BAD_BUTTON, **click.reply_to)
            return
        if click.respond is not None:
            replies.run(lookups.show(click.user, *ref), **click.reply_to, name="show")
            return
        # No conversation to answer in (App Home): open a modal now, while the trigger_id is valid,
        # and fill it in when the provider has answered.
        loading = blocks.info_modal("Identity", text_message(":hourglass_flowing_sand: Looking it up…"))
        view_id = await replies.open_view(loading, **click.modal)
        if view_id is not None:
            filled = replies.fill_view(view_id, "Identity", lookups.show(click.user, *ref))
            replies.tasks.spawn(filled, "show in modal")

    @on_click(app, "risky:page")
    async def on_page(click: Click, action: dict[str, Any]) -> None:
        try:
            query = json.loads(action.get("value") or "")
            level = RiskLevel.parse(query["level"]) if query.get("level") else None
            tenant = query.get("tenant")
            offset = int(query["offset"])
            if offset < 0 or (tenant is not None and not isinstance(tenant, str)):
                raise ValueError(offset)
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError):  # OverflowError: 1e400
            await replies.tell(reply=BAD_BUTTON, **click.reply_to)
            return
        work = lookups.risky(click.user, level, tenant, offset)
        replies.run(work, **click.reply_to, replace=True, name="risky page")

    @on_click(app, "approval:approve")
    async def on_approve(click: Click, action: dict[str, Any]) -> None:
        replies.run(flow.approve(action.get("value") or "", click.user), **click.reply_to, name="approve")

    @on_click(app, "approval:retry")
    async def on_retry(click: Click, action: dict[str, Any]) -> None:
        replies.run(flow.retry(action.get("value") or "", click.user), **click.reply_to, name="retry")

    @on_click(app, "approval:rerun")
    async def on_rerun(click: Click, action: dict[str, Any]) -> None:
        # value "<request id>:<attempt shown>": a redelivered click for an attempt already re-run does nothing
        request_id, _, attempt = (action.get("value") or "").partition(":")
        if not _ATTEMPT.fullmatch(attempt):  # not str.isdigit: "²" is a digit int() refuses
            await replies.tell(reply=BAD_BUTTON, **click.reply_to)
            return
        work = flow.rerun(request_id, click.user, int(attempt))
        replies.run(work, **click.reply_to, name="run again")

    @on_click(app, "containment:revert")
    async def on_revert_now(click: Click, action: dict[str, Any]) -> None:
        work = bot.containment.revert_now(action.get("value") or "", click.user)
        replies.run(work, **click.reply_to, name="revert now")

    @on_click(app, "containment:permanent")
    async def on_make_permanent(click: Click, action: dict[str, Any]) -> None:
        work = bot.containment.make_permanent(action.get("value") or "", click.user)
        replies.run(work, **click.reply_to, name="make permanent")

    @on_click(app, "containment:extend")
    async def on_extend(click: Click, action: dict[str, Any]) -> None:
        # value "<request id>:<1h|4h|24h>": only the lengths the card offers
        request_id, _, length = (action.get("value") or "").partition(":")
        if length not in EXTENSIONS:
            await replies.tell(reply=BAD_BUTTON, **click.reply_to)
            return
        replies.run(bot.containment.extend(request_id, click.user, length), **click.reply_to, name="extend")

    @on_click(app, "approval:check")
    async def on_check(click: Click, action: dict[str, Any]) -> None:
        work = flow.check_outcome(action.get("value") or "", click.user)
        replies.run(work, **click.reply_to, name="check again")

    @on_click(app, "approval:deny")
    async def on_deny(click: Click, action: dict[str, Any]) -> None:
        work = flow.deny_form(action.get("value") or "", **click.modal)
        replies.run(work, **click.reply_to, name="deny")

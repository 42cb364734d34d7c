"""Time-boxed containment as Slack sees it: the due sweep's cards, reminders and thread replies, and
the Extend / Make permanent / Revert now buttons (the rules are enforced by the service on every click).

The rules and the store are in `bot.approvals` (timebox.py, containment.py); this module calls them
and keeps the original approval card and its thread in step: each state change is told in the thread
once (`ApprovalService.take_report`, then the reply claimed as every approval thread reply is:
bot/thread_replies.py), and the card is always redrawn from the stored state. Reminders keep their own
state in the containment row (`reminder_state`): one cut off is posted again with a "may repeat" note.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Optional

import aiohttp
from slack_sdk.errors import SlackApiError

from . import approval_cards
from .approval_flow import ApprovalFlow
from .approvals import ApprovalRequest, PolicyError
from .blocks import Message

log = logging.getLogger(__name__)


class ContainmentFlow:
    """Reverts due containments and tells the approval card's thread."""

    def __init__(self, flow: ApprovalFlow) -> None:
        self.flow = flow
        self.service = flow.service
        self.client = flow.client

    async def sweep(self) -> list[str]:
        """The periodic job (with the expiry sweep): revert or hold what is due, settle finished
        reverts, and update those cards and threads. Returns the original request ids it touched."""
        changed = await self.service.revert_due()
        for request_id in changed:
            await self.report(request_id)
        reminded = self.service.remind_due()
        for request_id in reminded:
            request, item = self.service.get(request_id), self.service.containment(request_id)
            posted = item is not None and await self._thread(request, approval_cards.reminder(request, item))
            # a reminder Slack did not take is posted again by the next sweep (once)
            self.service.reminder_sent(request_id, posted)
        return changed + reminded

    async def _thread(self, request: ApprovalRequest, reply: Message) -> bool:
        """Post `reply` in the thread of the request's card; False (logged, not raised) when Slack fails.
        A card that never reached Slack has no thread: nothing to post, True."""
        if not (request.message_channel and request.message_ts):
            return True
        try:
            await self.client.chat_postMessage(
                channel=request.message_channel, thread_ts=request.message_ts, **reply
            )
        except (SlackApiError, aiohttp.ClientError, asyncio.TimeoutError) as exc:
            # the card shows the state; a lost thread reply must not stop the sweep
            log.warning("a containment reply for %s was not posted in its thread: %s", request.id, exc)
            return False
        return True

    async def revert_now(self, request_id: str, user: str) -> Optional[Message]:
        """*Revert now*: the requester or a responder; the outcome goes to the card and its thread."""
        try:
            await self.service.revert_now(request_id, user_id=user)
        except PolicyError as exc:
            return await self.flow.refused(exc)
        await self.report(request_id)
        return None

    async def extend(self, request_id: str, user: str, length: str) -> Optional[Message]:
        """*Extend 1 h / 4 h / 24 h*: four eyes; at once, told in the thread."""
        try:
            item = await self.service.extend(request_id, user_id=user, by=approval_cards.EXTENSIONS[length])
        except PolicyError as exc:
            return await self.flow.refused(exc)
        request = await self.flow.refresh_card(request_id)
        await self._once(
            f"extended:{request_id}:{item.version}",
            request,
            approval_cards.decision_reply(request, item, user, length),
        )
        return None

    async def make_permanent(self, request_id: str, user: str) -> Optional[Message]:
        """*Make permanent*: four eyes; at once, told in the thread."""
        try:
            await self.service.make_permanent(request_id, user_id=user)
        except PolicyError as exc:
            return await self.flow.refused(exc)
        await self.report(request_id)
        return None

    async def report(self, request_id: str) -> None:
        """Redraw the card, and tell the thread about a state not yet told there."""
        request = await self.flow.refresh_card(request_id)
        item = self.service.take_report(request_id)
        if item is not None:
            revert = self.service.get(item.revert_id) if item.revert_id else None
            await self._once(
                f"containment:{request_id}:{item.status.value}:{item.version}",
                request,
                approval_cards.containment_reply(request, item, revert),
            )

    async def _once(self, key: str, request: ApprovalRequest, reply: Message) -> None:
        """Post `reply` in the card's thread once across replicas (a refused one: again at the next sweep)."""
        if request.message_channel and request.message_ts:
            await self.flow.threads.post(key, request.message_channel, request.message_ts, reply)

"""Time-boxed containment as Slack sees it: the due sweep's cards and thread replies.

The rules and the store are in `bot.approvals` (timebox.py, containment.py); this module calls them
and keeps the original approval card and its thread in step: each state change is told in the thread
at most once (`ApprovalService.take_report`), and the card is always redrawn from the stored state.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp
from slack_sdk.errors import SlackApiError

from . import approval_cards
from .approval_flow import ApprovalFlow

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
        return changed

    async def report(self, request_id: str) -> None:
        """Redraw the card, and tell the thread about a state not yet told there."""
        request = await self.flow.refresh_card(request_id)
        item = self.service.take_report(request_id)
        if item is None or not (request.message_channel and request.message_ts):
            return
        revert = self.service.get(item.revert_id) if item.revert_id else None
        try:
            await self.client.chat_postMessage(
                channel=request.message_channel,
                thread_ts=request.message_ts,
                **approval_cards.containment_reply(request, item, revert),
            )
        except (SlackApiError, aiohttp.ClientError, asyncio.TimeoutError) as exc:
            # the card shows the state; a lost thread reply must not stop the sweep
            log.warning("the containment of %s was not told in its thread: %s", request_id, exc)

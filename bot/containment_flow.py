"""Time-boxed containment as Slack sees it: the due sweep's cards, reminders and thread replies, and
the Extend / Make permanent / Revert now buttons (the rules are enforced by the service on every click).

The rules and the store are in `bot.approvals` (timebox.py, containment.py); this module calls them
and keeps the original approval card and its thread in step: each state change is told in the thread
once (`ApprovalService.take_report`, then the reply claimed as every approval thread reply is:
bot/thread_replies.py), and the card is always redrawn from the stored state. A reminder is a thread reply
too (key `reminder:<request>:<end>`), claimed in the transaction that marks the containment reminded
(`remind_due`), so it is posted exactly once: one cut off is looked for in the thread before it is posted
again, one Slack refused is sent again by the next sweep, once. A reminder an earlier idops may have
posted (its own claim cut off, during a rolling upgrade) is looked for by how it starts
(`approval_cards.reminder_head`).
"""

from __future__ import annotations

from typing import Optional

from . import approval_cards, thread_replies
from .approval_flow import CATCH_UP, ApprovalFlow
from .approvals import ApprovalRequest, Containment, PolicyError
from .blocks import Message
from .thread_replies import Claim, Legacy


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
        # and states a stopped process changed but never told (take_report makes each told once)
        since = self.service.clock() - CATCH_UP
        missed = [request_id for request_id in self.service.unreported(since) if request_id not in changed]
        for request_id in changed + missed:
            await self.report(request_id)
        claimed: list[Claim] = []

        def claim_reminder(item: Containment, earlier: bool) -> None:
            # inside remind_due's transaction: the reply's row is written with the reminded mark
            request = self.service.get(item.request_id)
            if not (request.message_channel and request.message_ts):
                return  # a card that never reached Slack has no thread
            legacy = Legacy(approval_cards.reminder_head(request, item)) if earlier else None
            claim = self.flow.threads.claim(
                thread_replies.reminder_key(request.id, item.due_at.timestamp()),
                request.message_channel,
                request.message_ts,
                approval_cards.reminder(request, item),
                legacy=legacy,
            )
            if claim is not None:
                claimed.append(claim)

        reminded = self.service.remind_due(claim_reminder)
        for claim in claimed:
            # one Slack did not take is sent again by the next sweep (once); one cut off is looked for
            await self.flow.threads.deliver(claim)
        return changed + missed + reminded

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
        # the reply is claimed right after the extension is stored (no await between them), so a stop
        # while the card is redrawn leaves it to the sweep rather than losing it
        request = self.service.get(request_id)
        claim = (
            self.flow.threads.claim(
                f"extended:{request_id}:{item.version}",
                request.message_channel,
                request.message_ts,
                approval_cards.decision_reply(request, item, user, length),
            )
            if request.message_channel and request.message_ts
            else None
        )
        await self.flow.refresh_card(request_id)
        if claim is not None:
            await self.flow.threads.deliver(claim)
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

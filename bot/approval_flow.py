"""The approval steps as Slack sees them: create a request and post its card, record approvals and
denials, run the action, redraw the card and report the outcome in its thread.

The rules live in `bot.approvals.ApprovalService`; this module only calls it and keeps the cards in
step with the stored state: one lock per request, so card updates go out in order and the last one
shows the newest state. Thread replies (each attempt's outcome, each escalation step) go through
`bot.thread_replies`: claimed in the store before they are posted, so each is posted once across
replicas, and one Slack refused is sent again by the next sweep, once. The card itself goes through
`bot.card_posts`: claimed in the store before it is posted, so posted once across replicas; one a stopped
replica left unrecorded is looked for in the channel before it is posted again.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import weakref
from datetime import datetime, timedelta
from typing import Optional

import aiohttp
from slack_sdk.errors import SlackApiError

from connectors import Action

from . import approval_cards, audit, blocks, thread_replies
from .approvals import ApprovalRequest, ApprovalService, Decision, PolicyError, Status, duration_text
from .approvals.rules import escalation_reason
from .blocks import Message, esc, text_message
from .card_posts import CardPosts
from .claims import DEFAULT_TTL
from .replies import Replies, Respond
from .slack_api import describe
from .thread_replies import Legacy, ThreadReplies

log = logging.getLogger(__name__)

_CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{2,}$")
#: how far back the sweep looks for outcomes whose thread reply was never claimed
CATCH_UP = timedelta(days=1)
#: an outcome recorded this recently is left to whoever recorded it (it claims, or an earlier idops
#: posts, its reply right after): the sweep reports it only once its request was this long quiet
QUIET = timedelta(minutes=2)
#: missed outcomes the sweep takes at most (each costs a thread lookup, conversations.replies: Tier 3)
MISSED_PER_SWEEP = 5
#: seconds an earlier idops' reply may seem to precede its attempt's start (Slack's clock against ours)
SKEW = 2.0


def channel_ref(channel: str) -> str:
    """A channel link for a channel id, or the escaped name for anything else."""
    return f"<#{channel}>" if _CHANNEL_ID.match(channel) else esc(channel, 100)


class ApprovalFlow:
    """Approval requests and their cards in the approval channel."""

    def __init__(self, service: ApprovalService, replies: Replies, *, channel: str) -> None:
        self.service = service
        self.replies = replies
        self.client = replies.client
        self.channel = channel
        self._card_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        lease = service.claims.ttl if service.claims is not None else DEFAULT_TTL
        self.threads = ThreadReplies(service.db, thread_replies.client_for(self.client, lease), lease=lease)
        self.cards = CardPosts(service.db, self.threads.client, lease=lease)

    async def start_request(
        self,
        *,
        user: str,
        connector: str,
        identity_id: str,
        action: Action,
        reason: str,
        duration: Optional[timedelta] = None,
        trigger_id: Optional[str] = None,
    ) -> Message:
        """Create a request (time-boxed with `duration`), post its approval card, and say where it waits.
        `trigger_id`: the slash command asking; a request it made already is answered for, never made
        again (see `ApprovalService.request`)."""
        try:
            request = await self.service.request(
                connector=connector,
                identity_id=identity_id,
                action=action,
                reason=reason,
                requested_by=user,
                duration=duration,
                trigger_id=trigger_id,
            )
        except PolicyError as exc:
            waiting = exc.request
            if waiting is None or waiting.status is not Status.PENDING or waiting.message_ts:
                text = f":no_entry: {esc(exc.message, 1500)}"
                if waiting is not None and waiting.message_channel:
                    text += f" It is in {channel_ref(waiting.message_channel)}."
                return text_message(text)
            # the same request is pending but its card never reached Slack: post it now, or nobody
            # could approve it and nobody could ask again until it expires
            request = waiting
        return await self.requested(request)

    async def requested(self, request: ApprovalRequest) -> Message:
        """The answer to the command that made `request`: where it waits (its card posted first when it
        is not in Slack yet), or what became of it since."""
        name = esc(request.target.get("name") or request.identity_id, 200)
        if request.status is not Status.PENDING:
            where = f" in {channel_ref(request.message_channel)}" if request.message_channel else ""
            return text_message(
                f":information_source: Requested *{request.action.label}* for *{name}*"
                f" (request {request.id}{where}); it is {request.status.value} now."
            )
        try:
            await self.post_approval(request)
        except (SlackApiError, aiohttp.ClientError, asyncio.TimeoutError) as exc:
            said = (
                f"Slack said {esc(exc.response.get('error'), 100)}"
                if isinstance(exc, SlackApiError)
                else f"Slack could not be reached: {type(exc).__name__}"
            )
            return text_message(
                f":warning: Request {request.id} is stored, but its approval card could not be posted in"
                f" {channel_ref(self.channel)} ({said}). Ask for the same action again to post it."
            )
        boxed = f" for {duration_text(request.duration_seconds)}" if request.duration_seconds else ""
        return text_message(
            f":hourglass_flowing_sand: Requested *{request.action.label}*{boxed} for *{name}*;"
            f" waiting for approval in {channel_ref(self.channel)} (request {request.id})."
        )

    def _card_lock(self, request_id: str) -> asyncio.Lock:
        lock = self._card_locks.get(request_id)
        if lock is None:
            lock = self._card_locks[request_id] = asyncio.Lock()
        return lock

    async def post_approval(self, request: ApprovalRequest) -> None:
        """Post the approval card unless it is in Slack already, and remember where it is (also the SOAR
        API's `on_created`): once across replicas (bot/card_posts.py: claimed in the store first; a post
        cut off or refused earlier is looked for in the channel before it is posted again)."""
        async with self._card_lock(request.id):
            if self.service.get(request.id).message_ts:
                return
            # an old request without a claimed post: an earlier idops may have posted it, then stopped
            old = self.service.clock() - request.created_at > timedelta(seconds=self.cards.lease)
            claim = self.cards.claim(request.id, self.channel, uncertain=old)
            if claim is None:
                return  # in Slack already, or another replica is posting it now (the sweep if it stops)
            await self.cards.deliver(claim, approval_cards.approval_card(request), self.service.set_message)

    async def post_cut_off(self) -> int:
        """Post the cards a stopped replica claimed and never recorded (looked for in the channel first)."""
        cut_off = self.cards.cut_off()
        for request_id in cut_off:
            try:
                await self.post_approval(self.service.get(request_id))
            except (SlackApiError, aiohttp.ClientError, asyncio.TimeoutError) as exc:
                log.warning("the card of %s could not be posted: %s", request_id, type(exc).__name__)
        return len(cut_off)

    async def refresh_card(self, request_id: str) -> ApprovalRequest:
        """Redraw the approval card from the stored state (never from a possibly stale copy)."""
        async with self._card_lock(request_id):
            request = self.service.get(request_id)
            if request.message_channel and request.message_ts:
                try:
                    await self.client.chat_update(
                        channel=request.message_channel,
                        ts=request.message_ts,
                        **approval_cards.approval_card(request, self.service.containment(request.id)),
                    )
                except SlackApiError as exc:
                    log.warning("could not update the card of %s: %s", request_id, describe(exc.response))
            return request

    async def report(self, request: ApprovalRequest, *, earlier_after: Optional[float] = None) -> None:
        """After execution: redraw the card and post the outcome in its thread, once per attempt and
        outcome across replicas (an unknown outcome, then the same attempt found done, are two replies).
        With `earlier_after` (epoch seconds), the thread is looked up first for the reply an earlier idops
        may have posted after that time (bot/thread_replies.py `Legacy`)."""
        current = await self.refresh_card(request.id)
        if current.status not in (Status.EXECUTED, Status.FAILED, Status.UNKNOWN):
            return
        if current.message_channel and current.message_ts:
            # a lost reply must not read as "nothing happened": the card shows the outcome, and the
            # next sweep sends a refused reply again
            await self.threads.post(
                thread_replies.result_key(current.id, current.attempts, current.status.value),
                current.message_channel,
                current.message_ts,
                approval_cards.result_reply(current),
                legacy=(
                    None
                    if earlier_after is None
                    else Legacy(approval_cards.result_head(current), earlier_after)
                ),
            )

    async def report_missed(self) -> int:
        """Report the outcomes whose thread reply nobody claimed: recorded by a replica that stopped before
        claiming its reply, or by an earlier idops that posted replies without claiming them (a rolling
        upgrade). Executions started in the last `CATCH_UP` whose request has been quiet (no audit row)
        for `QUIET`, `MISSED_PER_SWEEP` at a time, each looked for in the thread first (an earlier
        idops' reply by how it starts, posted after the attempt started): found, it is recorded; else
        posted. What was told before thread replies were claimed counts as told (revision 0004).
        Claimed as every reply, so a live replica reporting it at the same time makes it one reply."""
        now = self.service.clock()
        rows = self.service.db.query(
            "SELECT a.id, a.executing_since FROM approvals AS a"
            " WHERE a.status IN ('executed', 'failed', 'unknown') AND a.message_ts IS NOT NULL"
            " AND a.executing_since >= ? AND NOT EXISTS (SELECT 1 FROM thread_replies AS t"
            " WHERE t.key = 'result:' || a.id || ':' || CAST(a.attempts AS TEXT) || ':' || a.status)"
            " AND NOT EXISTS (SELECT 1 FROM audit AS u WHERE u.connector = a.connector"
            " AND u.identity_id = a.identity_id AND u.request_id = a.id AND u.at > ?)"
            " ORDER BY a.executing_since LIMIT ?",
            [audit.iso(now - CATCH_UP), audit.iso(now - QUIET), MISSED_PER_SWEEP],
        )
        missed = [(row["id"], datetime.fromisoformat(row["executing_since"])) for row in rows]
        for request_id, started in missed:
            log.info("the outcome of %s has no thread reply recorded: looking for it first", request_id)
            await self.report(self.service.get(request_id), earlier_after=started.timestamp() - SKEW)
        return len(missed)

    async def refused(self, exc: PolicyError) -> Message:
        """The answer to a refused click: why, after redrawing the card when the refusal changed it
        (e.g. expired it)."""
        if exc.request is not None:
            await self.refresh_card(exc.request.id)
        return text_message(f":no_entry: {esc(exc.message, 2000)}")

    async def approve(self, request_id: str, user: str) -> Optional[Message]:
        """One Approve click: record it, and run the action when it was the last approval needed."""
        try:
            before = self.service.get(request_id)
            request = await self.service.decide(request_id, user_id=user, decision=Decision.APPROVE)
        except PolicyError as exc:
            return await self.refused(exc)
        await self.refresh_card(request.id)
        if request.status is Status.APPROVED:
            await self.report(await self.service.execute(request.id))
            return None
        missing = request.approvals_needed - len(request.approvers)
        text = (
            f":ballot_box_with_check: Your approval is recorded ({len(request.approvers)} of"
            f" {request.approvals_needed}); {missing} more approver{'s' if missing != 1 else ''} needed."
        )
        if request.approvals_needed > before.approvals_needed:
            why = escalation_reason(self.service.rule_of(request))
            text = f":warning: {why.capitalize()}: needs {request.approvals_needed} approvals. " + text
        return text_message(text)

    async def deny_form(
        self,
        request_id: str,
        *,
        user: str,
        trigger_id: str,
        stacked: bool = False,
        respond: Optional[Respond] = None,
        channel: Optional[str] = None,
    ) -> Optional[Message]:
        """Open the reason form only for someone who may deny the request now (the submit checks again)."""
        try:
            request = await self.service.check_decision(request_id, user_id=user, decision=Decision.DENY)
        except PolicyError as exc:
            return await self.refused(exc)
        await self.replies.open_view(
            blocks.deny_modal(request),
            trigger_id=trigger_id,
            stacked=stacked,
            user=user,
            respond=respond,
            channel=channel,
        )
        return None

    async def deny(self, request_id: str, user: str, reason: str) -> Optional[Message]:
        """A submitted Deny form: record the denial and redraw the card, or say why it was refused."""
        try:
            request = await self.service.decide(
                request_id, user_id=user, decision=Decision.DENY, reason=reason
            )
        except PolicyError as exc:
            return await self.refused(exc)
        await self.refresh_card(request.id)
        return None

    async def retry(self, request_id: str, user: str) -> Optional[Message]:
        """Retry a failed action; a repeated click runs nothing twice."""
        try:
            request = await self.service.retry(request_id, user_id=user)
        except PolicyError as exc:
            return await self.refused(exc)
        await self.report(request)
        return None

    async def rerun(self, request_id: str, user: str, attempt: Optional[int]) -> Optional[Message]:
        """A confirmed *Run again* after an unknown outcome (for the attempt the card showed)."""
        try:
            request = await self.service.rerun(request_id, user_id=user, attempt=attempt)
        except PolicyError as exc:
            return await self.refused(exc)
        await self.report(request)
        return None

    async def check_outcome(self, request_id: str, user: str) -> Optional[Message]:
        """*Check again* on an unknown outcome: read the provider (never act) and redraw the card."""
        if not await self.service.is_approver(user) and not await self.service.is_responder(user):
            return text_message(":no_entry: Only responders and approvers can check a request.")
        before = self.service.get(request_id)
        request = await self.service.reconcile(request_id)
        if (request.status, request.attempts) != (before.status, before.attempts):
            await self.report(request)
        else:  # nothing new to tell in the thread (an earlier idops may have told this outcome)
            await self.refresh_card(request_id)
        if request.status is Status.UNKNOWN:
            return text_message(
                f":warning: Still unknown: {esc(request.outcome_check or 'nothing could be read', 500)}"
            )
        return None

    async def escalate_due(self) -> list[ApprovalRequest]:
        """Mention whoever each due escalation step names in the card's thread, once per step: the
        mention is read first, then the step and its thread reply are claimed in one transaction (no stop
        comes between them), then the reply is posted (bot/thread_replies.py: exactly once)."""
        claimed: list[ApprovalRequest] = []
        for request, step in self.service.escalations_due():
            if not (request.message_channel and request.message_ts):
                continue  # only requests whose card is in Slack escalate
            rule = self.service.rule_of(request)
            mention = await self._escalation_mention(rule.escalate_to, rule.escalate_oncall)
            replies: list[thread_replies.Claim] = []
            claim_reply = functools.partial(self._claim_escalation_reply, mention, replies)
            current = self.service.claim_escalation(request, step, claim_reply)
            if current is None:
                continue  # decided meanwhile, or the step was claimed elsewhere
            claimed.append(current)
            for reply in replies:
                await self.threads.deliver(reply)  # one Slack refuses is sent again by the next sweep, once
            await self.refresh_card(current.id)  # the card says it was escalated
        return claimed

    def _claim_escalation_reply(
        self, mention: str, into: list[thread_replies.Claim], current: ApprovalRequest
    ) -> None:
        """Claim the thread reply of `current`'s escalation step (inside the step's transaction)."""
        reply = self.threads.claim(
            thread_replies.escalation_key(current.id, current.escalation_step),
            str(current.message_channel),
            str(current.message_ts),
            approval_cards.escalation_reply(current, mention),
        )
        if reply is not None:
            into.append(reply)

    async def _escalation_mention(self, group: Optional[str], oncall: Optional[str]) -> str:
        """`<!subteam^…>` for an escalation group; for an on-call rotation group, its current members
        as `<@U…>` (the group itself when it is empty or can't be read)."""
        if oncall:
            try:
                members = sorted(await self.service.directory.group_members(oncall))
            except (SlackApiError, aiohttp.ClientError, asyncio.TimeoutError) as exc:
                log.warning("the on-call group %s could not be read: %s", oncall, exc)
                members = []
            if members:
                return " ".join(f"<@{member}>" for member in members[:10])
            return f"<!subteam^{oncall}>"
        return f"<!subteam^{group}>"

    async def expire_due(self) -> list[ApprovalRequest]:
        """The periodic sweep: mention due escalations, send again thread replies Slack refused or a
        stopped replica left half-sent (and approval cards, `post_cut_off`), expire overdue requests
        (buttons off their cards), and give up executions a stopped process cut off: outcome unknown,
        read back from the provider where it can be (the card and its thread say which)."""
        try:  # first, so that a reply refused during this sweep is sent again by the next one
            await self.threads.sweep()
            await self.report_missed()
            await self.post_cut_off()
        except Exception:  # a store or Slack fault must not stop expiry; the replies wait for the next sweep
            log.exception("sending thread replies again failed")
        try:
            await self.escalate_due()
        except Exception:  # a store or Slack fault must not stop expiry; due steps wait for the next sweep
            log.exception("escalating undecided requests failed")
        changed = self.service.expire_due()
        for request in changed:
            if request.status is Status.UNKNOWN:
                request = await self.service.reconcile(request.id)
            await self.report(request)
        for request_id in self.service.stranded():  # approved on a replica that stopped before running it
            ran = await self.service.execute(request_id)
            await self.report(ran)
            changed.append(ran)
        return changed

    async def recover(self) -> list[ApprovalRequest]:
        """At start-up: settle what a stopped process left running (`ApprovalService.recover`) and
        redraw those cards, within seconds rather than at the next sweep's time limit."""
        changed = await self.service.recover()
        for request in changed:
            await self.report(request)
        return changed

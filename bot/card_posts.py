"""Approval cards posted exactly once across replicas (table `approval_cards`, revision 0007).

A request's card is posted when the request is made, and again when it never reached Slack and the
request is asked for once more (a slash command Slack sent again, a SOAR request retried after its 409).
Before anything reaches Slack the post is claimed in the store: a row keyed by the request id, inserted
(`INSERT ... ON CONFLICT (request_id) DO NOTHING`) or taken over in one write transaction, and only the
replica whose claim landed posts it. Every card carries the request id in its metadata (`idops_approval`),
so a post whose fate is unknown is looked for in the channel (conversations.history, at most
`HISTORY_PAGES` pages, newest first) before it is posted again:

- posted: the row is `sent` with the card's ts, and the request's `message_channel`/`message_ts` are
  written in the same transaction, only by the attempt that claimed it (`attempt_id`);
- Slack refused it, or could not be reached: the row is `failed` and the caller says so (the requester
  is told to ask again); the next ask takes it over, looks in the channel first, then posts;
- another replica claimed it less than a lease ago (`[replicas] lease_seconds`): it is posting it now;
  this call posts nothing;
- the replica stopped between the claim and the `sent` write (before or after Slack took the card): the
  row stays `sending`; once it is a lease old the next ask, or the sweep (`cut_off`), takes it over, looks
  in the channel, and records the card found there or posts it;
- a request made by an earlier idops (no row) asked for again: claimed as above, and looked for in the
  channel first when the request is older than a lease (that idops may have posted it and stopped).

No post starts with less of the claim left than the client's timeout, and a take-over changes the row's
attempt id inside its transaction, so a stalled replica that wakes after a take-over posts nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Optional

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from .slack_api import describe

log = logging.getLogger(__name__)

EVENT_TYPE = "idops_approval"
HISTORY_PAGES = 5  # how far (x200 top-level messages) the channel is looked through for an uncertain card
#: a replica's stale claims the sweep takes over at most per round (each costs a history lookup: Tier 3)
CUT_OFF_PER_SWEEP = 5

#: records where a card is (`ApprovalService.set_message`), inside the transaction that marks it sent
Record = Callable[[str, str, str], None]


@dataclass(frozen=True)
class CardClaim:
    """A card post this attempt claimed: `CardPosts.deliver` looks for it first when `uncertain`."""

    request_id: str
    channel: str
    attempt: str
    claimed_at: float
    uncertain: bool
    look_in: str  # the channel an earlier attempt posted in


class CardPosts:
    """Claim, post (or find) and record approval cards."""

    def __init__(
        self,
        db: Any,
        client: AsyncWebClient,
        *,
        lease: float,
        clock: Callable[[], float] = time.time,
        hook: Optional[Callable[[str, str], Any]] = None,
    ) -> None:
        self.db = db
        self.client = client
        self.lease = float(lease)
        self.clock = clock
        # called with ("claimed" | "posted", request id) before the next step: where the kill tests strike
        self.hook = hook or (lambda point, key: None)

    def claim(self, request_id: str, channel: str, *, uncertain: bool = False) -> Optional[CardClaim]:
        """Claim the post of `request_id`'s card in `channel`, or None: it is posted (or another replica
        is posting it). A row a stopped or refused attempt left is taken over, its card looked for."""
        attempt = uuid.uuid4().hex
        now = self.clock()
        with self.db.transaction():
            inserted = self.db.execute(
                "INSERT INTO approval_cards (request_id, channel, status, attempts, attempt_id, claimed_at,"
                " created_at) VALUES (?, ?, 'sending', 1, ?, ?, ?) ON CONFLICT (request_id) DO NOTHING",
                [request_id, channel, attempt, now, now],
            ).rowcount
            if inserted == 1:
                return CardClaim(request_id, channel, attempt, now, uncertain, channel)
            row = next(self.db.query("SELECT * FROM approval_cards WHERE request_id = ?", [request_id]))
            if row["status"] == "sent" or (
                row["status"] == "sending" and row["claimed_at"] >= now - self.lease
            ):
                log.debug("the card of %s is %s: not posted here", request_id, row["status"])
                return None
            # inside the write transaction: nobody changes the row between the read and this write
            self.db.execute(
                "UPDATE approval_cards SET status = 'sending', attempts = attempts + 1, attempt_id = ?,"
                " claimed_at = ?, channel = ?, error = NULL WHERE request_id = ?",
                [attempt, now, channel, request_id],
            )
        if row["status"] == "sending":
            log.info("the card of %s was cut off before it was recorded: looking for it first", request_id)
        return CardClaim(request_id, channel, attempt, now, True, str(row["channel"]))

    async def deliver(self, claim: CardClaim, message: Mapping[str, Any], record: Record) -> bool:
        """Post the claimed card (after looking for it in the channel when uncertain) and record it; True
        when posted or found. Slack's refusal or silence is raised after the row is marked failed."""
        request_id, attempt = claim.request_id, claim.attempt
        self.hook("claimed", request_id)
        try:
            found = await self._find(claim) if claim.uncertain else None
            if found is None:
                self._enough_lease(claim)
                response = await self.client.chat_postMessage(
                    channel=claim.channel,
                    metadata={"event_type": EVENT_TYPE, "event_payload": {"request_id": request_id}},
                    **message,
                )
                channel, ts = str(response["channel"]), str(response["ts"])
                self.hook("posted", request_id)
            else:
                channel, ts = found
                log.info(
                    "the card of %s was found in %s (%s): recorded, not posted again", request_id, *found
                )
        except _Abandoned:
            log.info("the card of %s: too little of its claim left; it is left to the next ask", request_id)
            return False
        except (SlackApiError, aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            said = describe(exc.response) if isinstance(exc, SlackApiError) else type(exc).__name__
            self.db.execute(
                "UPDATE approval_cards SET status = 'failed', error = ?"
                " WHERE request_id = ? AND attempt_id = ?",
                [said[:500], request_id, attempt],
            )
            raise
        with self.db.transaction():
            held = self.db.execute(
                "UPDATE approval_cards SET status = 'sent', channel = ?, ts = ?, error = NULL"
                " WHERE request_id = ? AND attempt_id = ?",
                [channel, ts, request_id, attempt],
            ).rowcount
            if held == 1:
                record(request_id, channel, ts)
        if held != 1:
            log.warning(
                "the card of %s was taken over while it was posted; the take-over records it", request_id
            )
        return True

    def cut_off(self) -> list[str]:
        """Requests still pending without a card whose post a stopped replica left claimed for over a
        lease (at most `CUT_OFF_PER_SWEEP`), for the sweep to post again."""
        rows = self.db.query(
            "SELECT c.request_id FROM approval_cards AS c JOIN approvals AS a ON a.id = c.request_id"
            " WHERE c.status = 'sending' AND c.claimed_at < ? AND a.status = 'pending'"
            " AND a.message_ts IS NULL ORDER BY c.claimed_at LIMIT ?",
            [self.clock() - self.lease, CUT_OFF_PER_SWEEP],
        )
        return [row["request_id"] for row in rows]

    def _enough_lease(self, claim: CardClaim) -> None:
        """_Abandoned unless this attempt still holds the row and its claim outlasts a call started now."""
        if claim.claimed_at + self.lease - self.clock() <= float(self.client.timeout):
            raise _Abandoned(claim.request_id)
        held = self.db.execute(
            "SELECT 1 FROM approval_cards WHERE request_id = ? AND attempt_id = ? AND status = 'sending'",
            [claim.request_id, claim.attempt],
        ).fetchone()
        if held is None:
            raise _Abandoned(claim.request_id)

    async def _find(self, claim: CardClaim) -> Optional[tuple[str, str]]:
        """(channel, ts) of the card an earlier attempt posted, found by its request-id metadata, or None."""
        cursor: Optional[str] = None
        for _ in range(HISTORY_PAGES):
            self._enough_lease(claim)
            response = await self.client.conversations_history(
                channel=claim.look_in, include_all_metadata=True, limit=200, cursor=cursor
            )
            for message in response.get("messages") or ():
                metadata = message.get("metadata") or {}
                if (
                    metadata.get("event_type") == EVENT_TYPE
                    and (metadata.get("event_payload") or {}).get("request_id") == claim.request_id
                ):
                    return claim.look_in, str(message["ts"])
            cursor = (response.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                return None
        return None


class _Abandoned(Exception):
    """This attempt no longer holds the post (taken over, or too little lease left): post nothing."""

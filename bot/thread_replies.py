"""Replies in an approval card's thread, each posted exactly once across replicas (table `thread_replies`).

Every reply has a key naming what it says: `result:<request>:<attempt>:<status>` (the outcome of one
attempt), `escalation:<request>:<step>`, `reminder:<request>:<end>` (a containment's reminder before the
end time `end`, epoch seconds), `containment:...`, `extended:...`. Before anything reaches Slack the
reply is claimed in the store by inserting its row (`INSERT ... ON CONFLICT (key) DO NOTHING`): only the
replica whose insert landed posts it, so two replicas reporting the same outcome (one that stalled past
its lease during an execution, one that read the outcome back) post it once. `claim` can run inside the
caller's write transaction, so the row is written with the state change it tells (an escalation step,
a reminder), and `deliver` posts it after the commit; `post` does both. The row keeps the message, so a
reply can be sent again without being drawn again:

- posted: the row is `sent` with the reply's ts, written only by the attempt that claimed it
  (`attempt_id`);
- Slack refused it, or could not be reached: the row is `failed`; the next sweep (the `expiry` holder's
  loop, `sweep`) sends it again, once (`RETRIES`);
- the replica stopped between the claim and the `sent` write: the row stays `sending`; once its claim is
  a lease old (`[replicas] lease_seconds`) the sweep takes it over;
- the replica stopped after recording an outcome but before claiming its reply: there is no row; the
  same sweep finds the outcome without its `result:` key and reports it
  (bot/approval_flow.py `report_missed`).

A row claimed before (attempts > 1) may already be in the thread: cut off after Slack posted it, or a
timeout after Slack acted. Before posting it again the thread is looked up (conversations.replies) for
the metadata every reply carries (`idops_reply`, the key), as the alert outbox does; a reply found there
is recorded, not posted. A reply an earlier idops may have posted (one that posted without claiming, so
without metadata: during a rolling upgrade, or before this table) is claimed with a `Legacy` description
(the start of its text, and the time after which it was posted; revision 0005): its first delivery looks
in the thread too, for our metadata or for a bot's message without it that matches. No post starts with
less of the row's lease left than the client's timeout (a third of a lease, at most 30 s), and a
take-over checks the row's attempt id in its compare-and-set, so a stalled replica that wakes after a
take-over posts nothing. Slack calls stay bounded: a lookup happens only for a row claimed again or
claimed with `Legacy`, and reads at most `HISTORY_PAGES` pages.
"""

from __future__ import annotations

import asyncio
import json
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

EVENT_TYPE = "idops_reply"
RETRIES = 1  # a reply Slack refused is sent again by the next sweep, once
HISTORY_PAGES = 5  # how far (x200 replies) a thread is looked through for an uncertain reply
KEEP = 30 * 24 * 3600.0  # sent rows are kept this long (for inspection and de-duplication), then pruned
PRUNE_EVERY = 3600.0  # by a sweep, at most this often


def client_for(client: AsyncWebClient, lease: float) -> AsyncWebClient:
    """A client for thread replies: no call outlasts a third of a lease (at most 30 s), and no
    client-side retries (an uncertain post is looked up here before it is repeated)."""
    return AsyncWebClient(
        token=client.token,
        base_url=client.base_url,
        retry_handlers=[],
        timeout=int(min(30.0, max(1.0, lease // 3))),
    )


@dataclass(frozen=True)
class Legacy:
    """How a reply an earlier idops posted without claiming it reads (it has no `idops_reply` metadata):
    a bot's message in the thread whose text starts with `head`, posted after `after` (epoch seconds)."""

    head: str
    after: float = 0.0

    def matches(self, message: Mapping[str, Any]) -> bool:
        if not message.get("bot_id") or (message.get("metadata") or {}).get("event_type") == EVENT_TYPE:
            return False
        try:
            ts = float(message.get("ts") or 0)
        except (TypeError, ValueError):  # not a Slack ts: not a message we posted
            return False
        return ts > self.after and str(message.get("text") or "").startswith(self.head)


@dataclass(frozen=True)
class Claim:
    """A reply this attempt claimed (its row inserted): `ThreadReplies.deliver` posts it."""

    key: str
    channel: str
    thread_ts: str
    message: Mapping[str, Any]
    attempt: str
    claimed_at: float
    legacy: Optional[Legacy] = None


class ThreadReplies:
    """Claim, post and record thread replies; `sweep` sends again what a refusal or a stop left."""

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
        # called with ("claimed" | "posted", key) before the next step: where the kill tests strike
        self.hook = hook or (lambda point, key: None)
        self._pruned_at = 0.0

    async def post(
        self,
        key: str,
        channel: str,
        thread_ts: str,
        message: Mapping[str, Any],
        *,
        legacy: Optional[Legacy] = None,
    ) -> bool:
        """Post `message` in the thread unless a reply with `key` was claimed before (by any replica);
        True when this call posted it (or, with `legacy`, found an earlier idops' reply)."""
        claim = self.claim(key, channel, thread_ts, message, legacy=legacy)
        return claim is not None and await self.deliver(claim)

    def claim(
        self,
        key: str,
        channel: str,
        thread_ts: str,
        message: Mapping[str, Any],
        *,
        legacy: Optional[Legacy] = None,
    ) -> Optional[Claim]:
        """Insert the reply's row unless one with `key` exists; the claim to `deliver`, or None. One
        statement, no await: it may run inside the caller's write transaction (deliver after the commit)."""
        attempt = uuid.uuid4().hex
        now = self.clock()
        claimed = self.db.execute(
            "INSERT INTO thread_replies (key, channel, thread_ts, message, status, attempts, attempt_id,"
            " claimed_at, created_at, legacy_head, legacy_after)"
            " VALUES (?, ?, ?, ?, 'sending', 1, ?, ?, ?, ?, ?) ON CONFLICT (key) DO NOTHING",
            [
                key,
                channel,
                thread_ts,
                json.dumps(dict(message)),
                attempt,
                now,
                now,
                legacy.head if legacy else None,
                legacy.after if legacy else None,
            ],
        ).rowcount
        if claimed != 1:
            log.debug("thread reply %s was claimed before: not posted again", key)
            return None
        return Claim(key, channel, thread_ts, message, attempt, now, legacy)

    async def deliver(self, claim: Claim) -> bool:
        """Post a reply `claim` returned (after its transaction committed); with a `Legacy` description,
        look for an earlier idops' reply in the thread first. True when posted or found there."""
        return await self._deliver(claim, uncertain=claim.legacy is not None)

    async def sweep(self) -> int:
        """Send again the replies Slack refused (once) and those a stopped replica left claimed for over
        a lease (looked up in the thread first). Returns how many were posted or found posted."""
        now = self.clock()
        if now - self._pruned_at > PRUNE_EVERY:
            self.db.execute(
                "DELETE FROM thread_replies WHERE status = 'sent' AND created_at < ?", [now - KEEP]
            )
            self._pruned_at = now
        rows = list(
            self.db.query(
                "SELECT * FROM thread_replies WHERE (status = 'failed' AND attempts <= ?)"
                " OR (status = 'sending' AND claimed_at < ?) ORDER BY created_at",
                [RETRIES, now - self.lease],
            )
        )
        done = 0
        for row in rows:
            attempt = uuid.uuid4().hex
            taken = self.db.execute(
                "UPDATE thread_replies SET status = 'sending', attempts = attempts + 1, attempt_id = ?,"
                " claimed_at = ? WHERE key = ? AND status = ? AND attempt_id = ?",
                [attempt, now, row["key"], row["status"], row["attempt_id"]],
            ).rowcount
            if taken != 1:
                continue  # another replica's sweep (or the live attempt) got there first
            if row["status"] == "sending":
                log.info(
                    "thread reply %s was cut off before it was recorded: checking the thread", row["key"]
                )
            legacy = (
                Legacy(row["legacy_head"], float(row["legacy_after"] or 0.0)) if row["legacy_head"] else None
            )
            claim = Claim(
                row["key"], row["channel"], row["thread_ts"], json.loads(row["message"]), attempt, now, legacy
            )
            if await self._deliver(claim, uncertain=True):
                done += 1
        return done

    async def _deliver(self, claim: Claim, *, uncertain: bool) -> bool:
        key, attempt = claim.key, claim.attempt
        self.hook("claimed", key)
        try:
            ts = await self._find(claim) if uncertain else None
            if ts is None:
                self._enough_lease(key, attempt, claim.claimed_at)
                response = await self.client.chat_postMessage(
                    channel=claim.channel,
                    thread_ts=claim.thread_ts,
                    metadata={"event_type": EVENT_TYPE, "event_payload": {"key": key}},
                    unfurl_links=False,
                    unfurl_media=False,
                    **claim.message,
                )
                ts = str(response["ts"])
                self.hook("posted", key)
            else:
                log.info("thread reply %s was found in its thread (%s): recorded, not posted again", key, ts)
        except _Abandoned:
            log.info("thread reply %s: too little of its claim left; the next sweep takes it", key)
            return False
        except (SlackApiError, aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            said = (
                describe(exc.response)
                if isinstance(exc, SlackApiError)
                else f"unreachable: {type(exc).__name__}"
            )
            self.db.execute(
                "UPDATE thread_replies SET status = 'failed', error = ? WHERE key = ? AND attempt_id = ?",
                [said[:500], key, attempt],
            )
            log.warning(
                "a thread reply (%s) was not posted: %s; the next sweep sends it again, once", key, said
            )
            return False
        self.db.execute(
            "UPDATE thread_replies SET status = 'sent', ts = ?, error = NULL"
            " WHERE key = ? AND attempt_id = ?",
            [ts, key, attempt],
        )
        return True

    def _enough_lease(self, key: str, attempt: str, claimed_at: float) -> None:
        """_Abandoned unless this attempt still holds the row and its claim outlasts a call started now."""
        left = claimed_at + self.lease - self.clock()
        if left <= float(self.client.timeout):
            raise _Abandoned(key)
        held = self.db.execute(
            "SELECT 1 FROM thread_replies WHERE key = ? AND attempt_id = ? AND status = 'sending'",
            [key, attempt],
        ).fetchone()
        if held is None:
            raise _Abandoned(key)

    async def _find(self, claim: Claim) -> Optional[str]:
        """The ts of the reply in the thread already (an earlier attempt's, with our metadata and key, or
        an earlier idops' matching `claim.legacy`), or None."""
        cursor: Optional[str] = None
        for _ in range(HISTORY_PAGES):
            self._enough_lease(claim.key, claim.attempt, claim.claimed_at)
            response = await self.client.conversations_replies(
                channel=claim.channel, ts=claim.thread_ts, include_all_metadata=True, limit=200, cursor=cursor
            )
            for message in response.get("messages") or ():
                metadata = message.get("metadata") or {}
                if (
                    metadata.get("event_type") == EVENT_TYPE
                    and (metadata.get("event_payload") or {}).get("key") == claim.key
                ) or (claim.legacy is not None and claim.legacy.matches(message)):
                    return str(message["ts"])
            cursor = (response.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                return None
        return None


class _Abandoned(Exception):
    """This attempt no longer holds the reply (taken over, or too little lease left): post nothing."""


def result_key(request_id: str, attempt: int, status: str) -> str:
    return f"result:{request_id}:{attempt}:{status}"


def escalation_key(request_id: str, step: int) -> str:
    return f"escalation:{request_id}:{step}"


def reminder_key(request_id: str, due_at: float) -> str:
    """The key of a containment's reminder before the end time `due_at` (an extension moves the end, and
    the next reminder is another reply)."""
    return f"reminder:{request_id}:{int(due_at)}"

"""Deliver the alert outbox to Slack: in order per channel, paced, retried, and never posted twice.

A row is claimed (`pending` → `sending`, attempts + 1) before its first Slack call and marked `sent`
with the message ts after its last, in the same transaction that records the card's ts on the alert.
A row claimed before (attempts > 0) may already be in Slack: killed process, timeout after Slack
acted, 5xx. Before posting such a row again the sender looks for it in the channel (or thread) by the
metadata every post carries: `idops_alert` with the alert id, the part ("card", "reply", "notice")
and the outbox row id. Updates (chat.update) are idempotent and simply run again.

Storms: when more than `fold_after` cards wait for one channel, they are folded into digests
(bot/alerts/digests.py) before the next row is taken; a digest row is delivered like a notice, and a
quiet change to a folded alert redraws its digest (absorbing the digest's other waiting redraws).

Replicas: with `claims`, each channel's rows are delivered by the one replica holding the claim
`outbox:<channel>` (so per-channel order holds across replicas), taken when rows wait there and
released once none do (the replica that queues the next row, woken in-process, takes it at once;
the others look every `poll` seconds). On PostgreSQL every sender also listens (`bot.store_notify`)
on the channel `queue` notifies when its transaction commits, so a row queued on a replica that does
not hold its channel wakes the holder at once instead of at its next poll (the poll stays as the
fallback: a listener whose connection is lost listens again after `relisten` seconds; SQLite polls).
A worker that drained its channel wakes its own sender after releasing the claim, for a row queued
on another replica between its last look and the release. A worker starts only under that claim;
before it starts, `sending` rows of its channel are taken back (only a holder's worker sends, and none
runs: a dead or cut-off holder left them, and their attempts count makes them uncertain). Every row
claim and every `sent` write checks the fence in its transaction, and no Slack call starts with less of
the lease left than the client's timeout, so a replica that lost the channel never posts or records
after another took over. Without claims (one process) every `sending` row is taken back at start-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Optional

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from connectors.http import SlidingWindowLimiter

from .. import audit, claims, store_notify, tasks
from ..claims import Claims, LostClaim
from ..slack_api import slack_error
from ..store import Store
from . import cards, digests
from .base import OUTBOX_NOTIFY

log = logging.getLogger(__name__)

EVENT_TYPE = "idops_alert"
# Slack errors that no retry will cure: the row is kept as `failed` with the error, for a person to see
# (and sent after all if it is one of CHANNEL_ERRORS and the channel works again).
PERMANENT_ERRORS = frozenset(
    {
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "invalid_blocks",
        "invalid_blocks_format",
        "msg_too_long",
        "no_text",
        "invalid_metadata_format",
        "invalid_metadata_schema",
        "metadata_too_large",
        "restricted_action",
        "cant_update_message",
        "invalid_arguments",
    }
)
# What an operator can do about the commonest permanent refusals (said once, in the log line).
HINTS = {
    "channel_not_found": "check the channel id in the config",
    "not_in_channel": "invite the bot to the channel",
    "is_archived": "unarchive the channel or route elsewhere",
}
# Refusals about the channel, not the message: once the channel takes a delivery again, the rows they
# failed are queued again (in their order) and sent after all.
CHANNEL_ERRORS = ("channel_not_found", "not_in_channel", "is_archived")
HISTORY_PAGES = 5  # how far back (x200 messages) an uncertain post is looked for
KEEP_SENT = 30 * 24 * 3600.0  # delivered rows are kept this long (for inspection), then pruned


class _Retry(Exception):
    def __init__(self, reason: str, delay: Optional[float] = None) -> None:
        super().__init__(reason)
        self.delay = delay


class _Permanent(Exception):
    pass


class _CardGone(Exception):
    """chat.update found no message: someone deleted the card, so a new one is posted."""


def _header(headers: Mapping[str, Any], name: str) -> Optional[str]:
    for key, value in (headers or {}).items():
        if key.lower() == name.lower():
            return value[0] if isinstance(value, list) else str(value)
    return None


class Sender:
    """Runs beside the bot: `start()` once, `notify()` when rows were queued, `stop()` at shutdown."""

    def __init__(
        self,
        db: Store,
        client: AsyncWebClient,
        *,
        interval: float = 1.0,
        backoff: float = 1.0,
        backoff_cap: float = 60.0,
        poll: float = 5.0,
        fold_after: int = 0,
        hook: Optional[Callable[[str, Mapping[str, Any]], None]] = None,
        claims: Optional[Claims] = None,
    ) -> None:
        self.db = db
        self.claims = claims
        self.client = client
        self.interval = interval
        self.backoff = backoff
        self.backoff_cap = backoff_cap
        self.poll = poll
        self.fold_after = fold_after
        # called at "claimed" and "posted" (before the ts is recorded): where the kill tests strike
        self.hook = hook or (lambda point, row: None)
        self._wake = asyncio.Event()
        #: set while this sender listens for rows queued on other replicas (PostgreSQL only)
        self.listening = asyncio.Event()
        self.relisten = min(poll, 5.0)
        self._listener: Optional[asyncio.Task[None]] = None
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._limiters: dict[str, SlidingWindowLimiter] = {}
        self._task: Optional[asyncio.Task[None]] = None
        # channel -> the failures logged since its last delivery, so each is logged once, not per retry
        self._failing: dict[str, set[str]] = {}

    # --- lifecycle ----------------------------------------------------------------------------

    def recover(self) -> int:
        """Take back rows a previous process left mid-delivery; their attempts count makes them uncertain."""
        return self.db.execute("UPDATE alert_outbox SET status = 'pending' WHERE status = 'sending'").rowcount

    def start(self) -> None:
        self.db.execute(
            "DELETE FROM alert_outbox WHERE (status = 'sent' AND sent_at < ?) OR (status = 'folded'"
            " AND created_at < ?)",
            [time.time() - KEEP_SENT] * 2,
        )
        taken = self.recover() if self.claims is None else 0  # replicas: per channel, under its claim
        if taken:
            log.info("alert sender: %d deliveries were interrupted; checking Slack before resending", taken)
        self._task = asyncio.create_task(self._run(), name="idops-alert-sender")
        if self.db.backend == "postgresql":
            self._listener = asyncio.create_task(self._listen(), name="idops-alert-listener")

    def notify(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        await tasks.stop(self._task, self._listener, *self._workers.values())
        self._task = self._listener = None
        channels = list(self._workers)
        self._workers.clear()
        if self.claims is None:
            # a row interrupted here is retaken (and checked for) by the next start
            self.recover()
            return
        for channel in channels:  # retaken (and checked for) by whichever replica takes the channel next
            if self.claims.holds(_claim(channel)):
                self._retake(channel)
            self.claims.release(_claim(channel))

    async def wait_idle(self, timeout: float = 10.0) -> None:
        """Wait until nothing is pending or in flight (tests, shutdown); TimeoutError after `timeout`."""
        deadline = time.monotonic() + timeout
        while self.db.execute(
            "SELECT count(*) FROM alert_outbox WHERE status IN ('pending', 'sending')"
        ).fetchone()[0]:
            if time.monotonic() > deadline:
                raise TimeoutError(f"alert outbox still busy after {timeout} s")
            self.notify()
            await asyncio.sleep(0.02)

    # --- scheduling ---------------------------------------------------------------------------

    async def _listen(self) -> None:
        """Wake on every row queued on any replica (PostgreSQL's notifications), until stopped."""
        said = False
        while True:
            try:
                await store_notify.listen(
                    self.db, OUTBOX_NOTIFY, lambda _channel: self.notify(), self.listening
                )
                problem = "the connection closed"
            except Exception as exc:  # connection refused or lost: the poll still delivers; listen again
                problem = type(exc).__name__
            if self.listening.is_set():  # it listened, then lost the connection: say so once more
                said = False
                self.listening.clear()
                self.notify()  # a row queued while the connection was going is looked for now
            if not said:
                log.warning(
                    "alert sender: not listening for rows queued on other replicas (%s); polling every %s s"
                    " and listening again",
                    problem,
                    self.poll,
                )
                said = True
            await asyncio.sleep(self.relisten)

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                waiting = self.db.execute(
                    "SELECT DISTINCT channel FROM alert_outbox WHERE status IN ('pending', 'sending')"
                ).fetchall()
            except Exception as exc:  # the store does not answer: the claims keeper says so; wait
                log.debug("alert sender: the outbox can't be read (%s)", type(exc).__name__)
                waiting = []
            for (channel,) in waiting:
                worker = self._workers.get(channel)
                if worker is None or worker.done():
                    self._start_worker(channel)
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancel that races the wake-up
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll):
                    await self._wake.wait()

    def _start_worker(self, channel: str) -> None:
        """Start delivering `channel`: alone, or under its claim (skipped while another replica holds it)."""
        if self.claims is None:
            if self.db.execute(
                "SELECT 1 FROM alert_outbox WHERE status = 'pending' AND channel = ? LIMIT 1", [channel]
            ).fetchone():
                self._workers[channel] = asyncio.create_task(self._drain(channel))
            return
        if self.claims.take(_claim(channel)) is None:
            return
        try:
            retaken = self._retake(channel)
        except LostClaim:
            return
        if retaken:
            log.info(
                "alert sender: %d deliveries to %s were cut off; checking Slack before resending",
                retaken,
                channel,
            )
        task = asyncio.create_task(self._drain_claimed(channel), name=f"idops-alerts {channel}")
        self._workers[channel] = task
        self.claims.attach(_claim(channel), task)

    def _retake(self, channel: str) -> int:
        """Under the channel's claim, with no worker of ours running: its `sending` rows were cut off."""
        assert self.claims is not None
        with claims.working_under(self.claims, _claim(channel)), audit.transaction(self.db):
            claims.check(self.db)
            return int(
                self.db.execute(
                    "UPDATE alert_outbox SET status = 'pending' WHERE status = 'sending' AND channel = ?",
                    [channel],
                ).rowcount
            )

    async def _drain_claimed(self, channel: str) -> None:
        assert self.claims is not None
        try:
            with claims.working_under(self.claims, _claim(channel)):
                await self._drain(channel)
        except LostClaim:
            log.info("alert deliveries to %s stop here: another replica took the channel over", channel)
            return
        # drained: let the channel go, so whichever replica queues its next row delivers it at once; a
        # row another replica queued after our last look, while we still held the channel, is seen now
        self.claims.release(_claim(channel))
        self.notify()

    def _enough_lease(self, channel: str) -> None:
        """LostClaim unless the channel's lease outlasts a Slack call started now (its timeout)."""
        if self.claims is not None and self.claims.remaining(_claim(channel)) <= self.client.timeout:
            raise LostClaim(_claim(channel))

    async def _drain(self, channel: str) -> None:
        """Deliver one channel's rows strictly in order: an update never overtakes its card."""
        limiter = self._limiters.setdefault(channel, SlidingWindowLimiter(1, self.interval))
        while True:
            if self.fold_after:
                folded = digests.fold(self.db, channel, self.fold_after)
                folded += digests.fold_escalations(self.db, channel, self.fold_after)
                if folded:
                    log.info("alert storm: %d deliveries waiting for %s folded into digests", folded, channel)
            row = next(
                self.db.query(
                    "SELECT * FROM alert_outbox WHERE status = 'pending' AND channel = ? ORDER BY id LIMIT 1",
                    [channel],
                ),
                None,
            )
            if row is None:
                return
            wait = row["not_before"] - time.time()
            if wait > 0:
                await asyncio.sleep(min(wait, self.poll))
                continue
            attempt = uuid.uuid4().hex
            with audit.transaction(self.db):
                claims.check(self.db)  # a replica that lost the channel claims no row
                claimed = self.db.execute(
                    "UPDATE alert_outbox SET status = 'sending', attempts = attempts + 1, attempt_id = ?"
                    " WHERE id = ? AND status = 'pending'",
                    [attempt, row["id"]],
                ).rowcount
            if not claimed:
                continue
            self.hook("claimed", row)
            try:
                await self._deliver(row, limiter)
            except _Retry as retry:
                delay = retry.delay if retry.delay is not None else self._backoff(row["attempts"] + 1)
                self._release(row, attempt, "pending", f"{retry} (retrying in {delay:.0f} s)", delay)
                self._failed(channel, row, str(retry), permanent=False)
            except _Permanent as exc:
                self._release(row, attempt, "failed", str(exc), 0)
                self._failed(channel, row, str(exc), permanent=True)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("alert delivery %s to %s hit a bug; retrying later", row["id"], channel)
                self._release(row, attempt, "pending", "internal error", self.backoff_cap)
            else:
                self._recovered(channel)

    def _failed(self, channel: str, row: Mapping[str, Any], problem: str, permanent: bool) -> None:
        """Log a channel's failure once per kind (retrying, or each error that drops rows) until a
        delivery there works again; /healthz counts the rows meanwhile."""
        logged = self._failing.setdefault(channel, set())
        kind = problem if permanent else "retrying"
        if kind in logged:
            log.debug("alert delivery %s to %s: %s", row["id"], channel, problem)
            return
        logged.add(kind)
        if permanent:
            hint = next((f"; {h}" for error, h in HINTS.items() if problem.endswith(f": {error}")), "")
            log.error(
                "alert deliveries to %s fail for good: %s%s (kept as failed; logged once until one works)",
                channel,
                problem,
                hint,
            )
        else:
            log.warning(
                "alert deliveries to %s: %s; retrying (logged once until one works)", channel, problem
            )

    def _recovered(self, channel: str) -> None:
        """A delivery to `channel` worked: re-queue what failed there only because of the channel.

        Those rows never reached Slack; and as their attempts count makes them uncertain, each is looked
        for in the channel before it is posted, so nothing is posted twice.
        """
        with self.db.transaction():
            failed = self.db.execute(
                "SELECT id, error FROM alert_outbox WHERE status = 'failed' AND channel = ?", [channel]
            ).fetchall()
            # the error is "<what>: <Slack's error code>"
            ids = [row_id for row_id, error in failed if (error or "").partition(": ")[2] in CHANNEL_ERRORS]
            requeued = 0
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                requeued += self.db.execute(
                    f"UPDATE alert_outbox SET status = 'pending', not_before = 0 WHERE id IN ({marks})"  # noqa: S608
                    " AND status = 'failed'",
                    chunk,
                ).rowcount
        if self._failing.pop(channel, None) is not None or requeued:
            again = f"; sending the {requeued} that failed there before" if requeued else ""
            log.info("alert deliveries to %s work again%s", channel, again)

    def health(self, now: float, stuck_after: float) -> dict[str, Any]:
        """Deliveries not getting through: rows unsent for over `stuck_after` s, rows failed for good
        since their channel last took one, and each such channel's last error; `ok` when none."""
        rows = list(
            self.db.query(
                "SELECT channel, created_at, status, error FROM alert_outbox AS f"
                " WHERE (status IN ('pending', 'sending') AND created_at <= ?)"
                " OR (status = 'failed' AND NOT EXISTS (SELECT 1 FROM alert_outbox AS s"
                "   WHERE s.channel = f.channel AND s.status = 'sent' AND s.id > f.id)) ORDER BY id",
                [now - stuck_after],
            )
        )

        def summary(failed: bool) -> dict[str, Any]:
            created = [row["created_at"] for row in rows if (row["status"] == "failed") is failed]
            return {"count": len(created), "oldest_age_s": round(now - min(created), 1) if created else None}

        return {
            "ok": not rows,
            "stuck": summary(failed=False),
            "failed": summary(failed=True),
            "channels": {row["channel"]: row["error"] for row in rows if row["error"]},
        }

    def _backoff(self, attempts: int) -> float:
        return float(min(self.backoff_cap, self.backoff * 2 ** max(0, attempts - 1)))

    def _release(self, row: Mapping[str, Any], attempt: str, status: str, error: str, delay: float) -> None:
        with audit.transaction(self.db):
            claims.check(self.db)
            self.db.execute(
                "UPDATE alert_outbox SET status = ?, error = ?, not_before = ?"
                " WHERE id = ? AND attempt_id = ?",
                [status, error, time.time() + delay, row["id"], attempt],
            )

    # --- delivery -----------------------------------------------------------------------------

    async def _deliver(self, row: Mapping[str, Any], limiter: SlidingWindowLimiter) -> None:
        channel, payload = row["channel"], json.loads(row["payload"])
        uncertain = row["attempts"] > 0
        if row["kind"] == "digest":
            _, alerts = digests.members(self.db, row["id"])
            ts = await self._find(channel, digests.key(row["id"])) if uncertain else None
            if ts is None:
                message = digests.digest_message(row["id"], alerts)
                ts = await self._post(limiter, row, message, digests.key(row["id"]))
            self._sent(row, ts)
            return
        if row["kind"] == "escalations":
            await self._escalations(row, payload, limiter, uncertain)
            return
        if row["kind"] == "notice":
            key = {"alert_id": f"notice-{row['id']}", "part": "notice", "delivery": str(row["id"])}
            ts = await self._find(channel, key) if uncertain else None
            if ts is None:
                ts = await self._post(limiter, row, payload["message"], key)
            self._sent(row, ts)
            return
        alert = self._alert(row["alert_id"])
        if alert["ts"] is None and alert["digest"] is not None and row["kind"] in digests.REDRAWN:
            ts, up_to = await self._redraw(row, alert["digest"], limiter)
            reply_ts = await self._digest_reply(row, alert, payload, ts, limiter, uncertain)
            with self.db.atomic():
                digests.absorb(self.db, alert["digest"], channel, up_to, ts, time.time())
                self._sent(row, reply_ts or ts)
            return
        card = cards.alert_card(alert)
        card_key = {"alert_id": alert["id"], "part": "card"}
        ts = alert["ts"]
        if ts is not None and row["kind"] != "alert":
            try:
                metadata = {"event_type": EVENT_TYPE, "event_payload": card_key}
                await self._call(
                    limiter, "chat_update", channel=alert["channel"], ts=ts, metadata=metadata, **card
                )
            except _CardGone:
                ts = None
        if ts is None:
            ts = await self._find(alert["channel"], card_key) if uncertain else None
            if ts is None:
                ts = await self._post(limiter, row, card, card_key)
            if row["kind"] == "alert":
                self._sent(row, ts, alert_id=alert["id"])
                return
            self._card_ts(alert["id"], ts)
        if row["kind"] == "alert":
            self._sent(row, ts)
            return
        reply = payload.get("reply")
        if reply is None:
            self._sent(row, ts)
            return
        key = {"alert_id": alert["id"], "part": "reply", "delivery": str(row["id"])}
        reply_ts = await self._find(alert["channel"], key, thread_ts=ts) if uncertain else None
        if reply_ts is None:
            reply_ts = await self._post(
                limiter, row, reply, key, thread_ts=ts, reply_broadcast=bool(payload.get("broadcast"))
            )
        self._sent(row, reply_ts)

    async def _digest_reply(
        self,
        row: Mapping[str, Any],
        alert: Mapping[str, Any],
        payload: Mapping[str, Any],
        ts: Optional[str],
        limiter: SlidingWindowLimiter,
        uncertain: bool,
    ) -> Optional[str]:
        """A folded alert's reply flagged `folded_reply` (auto-containment's outcome) goes to its digest's
        thread, naming the identity (the channel itself if the digest is not in Slack); its ts, None
        without one."""
        reply = payload.get("reply")
        if reply is None or not payload.get("folded_reply"):
            return None  # a quiet change's reply (e.g. resolved): the redrawn digest says it
        key = {"alert_id": alert["id"], "part": "reply", "delivery": str(row["id"])}
        thread = {"thread_ts": ts} if ts else {}
        found = await self._find(row["channel"], key, **thread) if uncertain else None
        if found is not None:
            return found
        message = digests.member_reply(alert, reply)
        return await self._post(
            limiter, row, message, key, reply_broadcast=bool(payload.get("broadcast")) and bool(ts), **thread
        )

    async def _escalations(
        self,
        row: Mapping[str, Any],
        payload: Mapping[str, Any],
        limiter: SlidingWindowLimiter,
        uncertain: bool,
    ) -> None:
        """Escalations folded per digest: redraw the digest, and one broadcast reply in its thread."""
        digest_id = payload["digest"]
        ts, up_to = await self._redraw(row, digest_id, limiter)
        _, alerts = digests.members(self.db, digest_id)
        key = {"alert_id": f"digest-{digest_id}", "part": "reply", "delivery": str(row["id"])}
        thread = {"thread_ts": ts} if ts else {}
        reply_ts = await self._find(row["channel"], key, **thread) if uncertain else None
        if reply_ts is None:
            reply = digests.escalations_reply(payload, alerts)
            reply_ts = await self._post(limiter, row, reply, key, reply_broadcast=bool(ts), **thread)
        with self.db.atomic():
            digests.absorb(self.db, digest_id, row["channel"], up_to, ts, time.time())
            self._sent(row, reply_ts)

    async def _redraw(
        self, row: Mapping[str, Any], digest_id: int, limiter: SlidingWindowLimiter
    ) -> tuple[Optional[str], int]:
        """Draw a digest again from its alerts' state; its ts (None: not in Slack, so it will show the
        current state when posted) and the last outbox row that state covers."""
        up_to = self.db.execute("SELECT max(id) FROM alert_outbox").fetchone()[0]
        digest = next(self.db.query("SELECT * FROM alert_outbox WHERE id = ?", [digest_id]), None)
        if digest is None or digest["status"] != "sent" or not digest["ts"]:
            return None, up_to
        _, alerts = digests.members(self.db, digest_id)
        message, key = digests.digest_message(digest_id, alerts), digests.key(digest_id)
        ts = digest["ts"]
        try:
            metadata = {"event_type": EVENT_TYPE, "event_payload": key}
            await self._call(
                limiter, "chat_update", channel=row["channel"], ts=ts, metadata=metadata, **message
            )
        except _CardGone:
            # someone deleted the digest: post it again (looked for first, as this row may be a retry)
            ts = await self._find(row["channel"], key) if row["attempts"] > 0 else None
            ts = ts or await self._post(limiter, row, message, key)
        self.db.execute("UPDATE alert_outbox SET ts = ? WHERE id = ?", [ts, digest_id])
        return ts, up_to

    def _alert(self, alert_id: str) -> dict[str, Any]:
        return next(self.db.query("SELECT * FROM alerts WHERE id = ?", [alert_id]))

    def _card_ts(self, alert_id: str, ts: str) -> None:
        self.db.execute("UPDATE alerts SET ts = ? WHERE id = ?", [ts, alert_id])

    def _sent(self, row: Mapping[str, Any], ts: Optional[str], *, alert_id: Optional[str] = None) -> None:
        with audit.transaction(self.db):
            claims.check(self.db)  # a replica that lost the channel records nothing
            if alert_id is not None and ts is not None:
                self._card_ts(alert_id, ts)
            self.db.execute(
                "UPDATE alert_outbox SET status = 'sent', ts = ?, sent_at = ?, error = NULL WHERE id = ?",
                [ts, time.time(), row["id"]],
            )

    async def _post(
        self,
        limiter: SlidingWindowLimiter,
        row: Mapping[str, Any],
        message: Mapping[str, Any],
        key: Mapping[str, str],
        **extra: Any,
    ) -> str:
        response = await self._call(
            limiter,
            "chat_postMessage",
            channel=row["channel"],
            metadata={"event_type": EVENT_TYPE, "event_payload": dict(key)},
            unfurl_links=False,
            unfurl_media=False,
            **message,
            **extra,
        )
        ts = str(response["ts"])
        self.hook("posted", row)
        return ts

    async def _call(self, limiter: SlidingWindowLimiter, method: str, **kwargs: Any) -> Any:
        await limiter.acquire()
        self._enough_lease(kwargs["channel"])
        try:
            return await getattr(self.client, method)(**kwargs)
        except SlackApiError as exc:
            response = exc.response
            error = slack_error(response) or "unknown_error"
            if response.status_code == 429 or error == "ratelimited":
                delay = float(_header(response.headers, "Retry-After") or self.backoff)
                limiter.pause(delay)
                raise _Retry("Slack rate limited", delay) from None
            if response.status_code >= 500:
                raise _Retry(f"Slack answered HTTP {response.status_code}") from None
            if method == "chat_update" and error == "message_not_found":
                raise _CardGone(error) from None
            if error in PERMANENT_ERRORS:
                raise _Permanent(f"Slack refused {method}: {error}") from None
            raise _Retry(f"Slack refused {method}: {error}") from None
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise _Retry(f"Slack unreachable ({type(exc).__name__})") from None

    async def _find(
        self, channel: str, key: Mapping[str, str], *, thread_ts: Optional[str] = None
    ) -> Optional[str]:
        """The ts of an earlier post carrying `key` in its metadata, looked up in recent history."""
        cursor: Optional[str] = None
        for _ in range(HISTORY_PAGES):
            self._enough_lease(channel)
            try:
                if thread_ts is None:
                    response = await self.client.conversations_history(
                        channel=channel, include_all_metadata=True, limit=200, cursor=cursor
                    )
                else:
                    response = await self.client.conversations_replies(
                        channel=channel, ts=thread_ts, include_all_metadata=True, limit=200, cursor=cursor
                    )
            except SlackApiError as exc:
                said = slack_error(exc.response) or f"HTTP {exc.response.status_code}"
                raise _Retry(f"cannot read Slack history: {said}") from None
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                raise _Retry(f"Slack unreachable ({type(exc).__name__})") from None
            for message in response.get("messages") or ():
                metadata = message.get("metadata") or {}
                found = metadata.get("event_payload") or {}
                if metadata.get("event_type") == EVENT_TYPE and all(
                    found.get(k) == v for k, v in key.items()
                ):
                    return str(message["ts"])
            cursor = (response.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                break
        return None


def _claim(channel: str) -> str:
    return f"outbox:{channel}"

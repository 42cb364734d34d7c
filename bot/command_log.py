"""Slash commands answered exactly once across replicas, even when a replica stops between its ack and
its answer or Slack sends a command again (table `slash_commands`, revision 0006).

The rules:

- Recorded before the ack. A command answered after its ack (everything but help and a usage error,
  which the ack itself answers) is inserted, keyed by Slack's `trigger_id`, with what answering it again
  takes: its response_url, who, channel, command and text (never the payload's verification token).
  `INSERT ... ON CONFLICT (trigger_id) DO NOTHING`: the delivery whose insert landed runs the command.
  Any other delivery of it (Slack sent it again after a lost ack, Socket Mode's `retry_attempt`, to any
  replica, at any delay while the row is kept) is acked and does nothing more: the replica running it,
  or the sweep below, answers. A re-sent envelope carries the same payload: the same trigger_id and
  response_url.
- Held while it runs. The row names its holder (the replica) and attempt, with a lease (`until`: `lease`
  seconds, at most `LEASE`) renewed every third of a lease while the command runs. A row found taken
  over at a renewal cancels its work on this replica.
- Answered once. The first post to the response_url is preceded by a compare-and-set `running` →
  `sending` on this attempt, and followed by `answered`, or `failed` when Slack refused it or could not
  be reached (never sent again: it may have arrived). A later post of the same run (the answer a
  provider's wait held back, see `Replies.run`) goes out as it is. A row left `sending` (its replica
  stopped in the middle of the post) is never sent again: it may have arrived. A store that does not
  answer at that compare-and-set means no post here: the sweep answers once it is back.
- Answered when its replica stops. Every replica's sweep (`run`, every third of a lease) takes over rows
  left `running` past their lease (a compare-and-set on the attempt: new holder and attempt id,
  attempts + 1) and runs the command again from the row (`rerun`, set by the listener): lookups read
  again (read-only), and an action command finds the request its first run made by the trigger_id stored
  with it (`approvals.trigger_id`, unique), never making another. A replica that stalled past its lease
  and wakes up posts nothing: its compare-and-set finds the row taken. A row whose run ended without an
  answer is released at once for the sweep. A command run `MAX_ATTEMPTS` times without an answer, or
  older than `ANSWER_WITHIN` (a response_url works for 30 minutes, 5 posts), is given up (`expired`,
  logged).
- Rows are pruned `KEEP` after they were made, by a sweep, at most every `PRUNE_EVERY`.
- The store not answering when a command comes: the command runs unrecorded (answered, but not run again
  if this replica stops; an action's request still carries its trigger_id).
- Logs name a command by the first part of its trigger_id (`#1234…`), never the whole trigger_id (it
  opens a form for 3 s) nor its response_url (it answers the person for 30 minutes).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Optional

log = logging.getLogger(__name__)

#: the longest lease a running command holds (capped by `[replicas] lease_seconds`)
LEASE = 10.0
#: runs of one command (the first and the sweep's) after which it is given up
MAX_ATTEMPTS = 3
#: a response_url works for 30 minutes: a command older than this is given up, not run again
ANSWER_WITHIN = 25 * 60.0
#: rows are kept this long (a delivery Slack sends again finds its command), then pruned
KEEP = 24 * 3600.0
PRUNE_EVERY = 3600.0

Respond = Callable[..., Awaitable[Any]]

_COLUMNS = "trigger_id, response_url, user_id, channel_id, command, text"


@dataclass(frozen=True)
class Command:
    """What a command's answer needs, as stored (Slack's payload minus everything else)."""

    trigger_id: str
    response_url: str
    user_id: str
    channel_id: str
    command: str
    text: str

    @classmethod
    def of(cls, payload: Mapping[str, Any]) -> Optional[Command]:
        """The command in a slash command payload; None without a trigger_id or response_url."""
        fields = {name: str(payload.get(name) or "") for name in _COLUMNS.split(", ")}
        if not fields["trigger_id"] or not fields["response_url"]:
            return None
        return cls(**fields)


class Ticket:
    """One run of a command on this replica: `running`, then `sending` and `answered`, or `lost` (taken
    over by another replica, or cut off here)."""

    def __init__(self, command: Command, attempt_id: str, *, recorded: bool, attempts: int = 1) -> None:
        self.command = command
        self.attempt_id = attempt_id
        self.recorded = recorded
        self.attempts = attempts
        self.state = "running"
        self.task: Optional[asyncio.Task[Any]] = None


class CommandLog:
    """This replica's side of `slash_commands`: accept, answer once, renew, and the sweep."""

    def __init__(
        self, db: Any, *, holder: str, lease: float = LEASE, clock: Callable[[], float] = time.time
    ) -> None:
        self.db = db
        self.holder = holder
        self.lease = min(LEASE, float(lease))
        self.clock = clock
        #: runs a taken-over command again under its ticket (the listener sets it)
        self.rerun: Optional[Callable[[Ticket], None]] = None
        self._held: dict[str, Ticket] = {}
        self._pruned_at = 0.0

    def accept(self, command: Command) -> Optional[Ticket]:
        """Record `command` before its ack; its ticket, or None when a delivery of it was recorded before
        (then this one does nothing)."""
        attempt, now = uuid.uuid4().hex, self.clock()
        try:
            inserted = self.db.execute(
                f"INSERT INTO slash_commands ({_COLUMNS}, status, holder, attempt_id, attempts, until,"  # noqa: S608
                " created_at) VALUES (?, ?, ?, ?, ?, ?, 'running', ?, ?, 1, ?, ?)"
                " ON CONFLICT (trigger_id) DO NOTHING",
                [*_values(command), self.holder, attempt, now + self.lease, now],
            ).rowcount
        except Exception as exc:  # the store does not answer: answer the command all the same
            log.warning("command not recorded (%s): answered, but not again if this replica stops", exc)
            return Ticket(command, attempt, recorded=False)
        if inserted != 1:
            log.info("command %s came again: answered by the delivery that came first", _ref(command))
            return None
        return self._hold(Ticket(command, attempt, recorded=True))

    def _hold(self, ticket: Ticket) -> Ticket:
        self._held[ticket.command.trigger_id] = ticket
        return ticket

    def attach(self, ticket: Ticket, task: asyncio.Task[Any]) -> None:
        """`task` runs the command: cancelled when the row is taken over; its end releases the row."""
        ticket.task = task
        task.add_done_callback(lambda _: self.end(ticket))

    def guard(self, ticket: Ticket, respond: Respond) -> Respond:
        """`respond`, posting the command's answer once across replicas (see the module's rules)."""

        async def answer(**message: Any) -> Any:
            if ticket.state == "answered" or not ticket.recorded:
                ticket.state = "answered"
                return await respond(**message)  # a later post of this run, or no row to keep
            try:
                held = ticket.state == "running" and self._cas(ticket, "running", "sending")
            except Exception as exc:  # the store does not answer: the sweep answers once it does
                log.warning(
                    "command %s: not answered here, the store does not answer (%s)", _ref(ticket), exc
                )
                ticket.state = "lost"
                return None
            if not held:
                ticket.state = "lost"
                log.info("command %s: taken over by another replica, not answered here", _ref(ticket))
                return None
            ticket.state = "sending"
            try:
                sent = await respond(**message)
            except BaseException as exc:
                self._finished(ticket, "failed", type(exc).__name__)
                raise
            status = int(getattr(sent, "status_code", 200) or 200)
            said = None if status < 300 else f"HTTP {status}: {str(getattr(sent, 'body', ''))[:200]}"
            self._finished(ticket, "answered" if said is None else "failed", said)
            return sent

        return answer

    def done(self, ticket: Ticket) -> bool:
        """The command was answered without a post (a form opened); False when taken over meanwhile."""
        if not ticket.recorded:
            ticket.state = "answered"
            return True
        try:
            answered = (
                ticket.state == "running"
                and self.db.execute(
                    "UPDATE slash_commands SET status = 'answered', answered_at = ? WHERE trigger_id = ?"
                    " AND attempt_id = ? AND status = 'running'",
                    [self.clock(), _tid(ticket), ticket.attempt_id],
                ).rowcount
                == 1
            )
        except Exception as exc:  # the store does not answer: the sweep tells the person once it does
            log.warning(
                "command %s: not recorded answered, the store does not answer (%s)", _ref(ticket), exc
            )
            answered = False
        ticket.state = "answered" if answered else "lost"
        return answered

    def _cas(self, ticket: Ticket, before: str, after: str) -> bool:
        return bool(
            self.db.execute(
                "UPDATE slash_commands SET status = ? WHERE trigger_id = ? AND attempt_id = ? AND status = ?",
                [after, _tid(ticket), ticket.attempt_id, before],
            ).rowcount
            == 1
        )

    def _finished(self, ticket: Ticket, status: str, error: Optional[str]) -> None:
        ticket.state = "answered"  # a failed post is not sent again either
        try:
            self.db.execute(
                "UPDATE slash_commands SET status = ?, answered_at = ?, error = ? WHERE trigger_id = ?"
                " AND attempt_id = ?",
                [status, self.clock(), error, _tid(ticket), ticket.attempt_id],
            )
        except Exception:  # the row stays `sending`, which is never sent again: nothing is lost or doubled
            log.exception("command %s: its answer went out but could not be recorded", _ref(ticket))
        if error:
            log.warning("command %s: Slack did not take its answer (%s)", _ref(ticket), error)

    def end(self, ticket: Ticket) -> None:
        """The run is over: stop renewing it; still `running` (no answer), it goes to the sweep now."""
        if self._held.get(_tid(ticket)) is ticket:
            del self._held[_tid(ticket)]
        if not ticket.recorded or ticket.state != "running":
            return
        ticket.state = "lost"
        try:
            self.db.execute(
                "UPDATE slash_commands SET until = 0 WHERE trigger_id = ? AND attempt_id = ?"
                " AND status = 'running'",
                [_tid(ticket), ticket.attempt_id],
            )
        except Exception:  # the lease then simply runs out
            log.exception("command %s: could not release it", _ref(ticket))

    def renew(self) -> None:
        """Push on the lease of every command running here; cancel those taken over."""
        until = self.clock() + self.lease
        for trigger_id, ticket in list(self._held.items()):
            if ticket.state != "running":  # answered (or lost) meanwhile: nothing more to hold
                del self._held[trigger_id]
                continue
            renewed = self.db.execute(
                "UPDATE slash_commands SET until = ? WHERE trigger_id = ? AND attempt_id = ?"
                " AND status = 'running'",
                [until, trigger_id, ticket.attempt_id],
            ).rowcount
            if renewed != 1 and ticket.state == "running":
                log.warning("command %s was taken over by another replica; its run here stops", _ref(ticket))
                ticket.state = "lost"
                del self._held[trigger_id]
                if ticket.task is not None:
                    ticket.task.cancel()

    def sweep(self) -> int:
        """Take over the commands left unanswered past their lease and run them again (`rerun`); give up
        those too old or run too often; prune old rows. Returns how many were taken over."""
        now = self.clock()
        if now - self._pruned_at > PRUNE_EVERY:
            self.db.execute("DELETE FROM slash_commands WHERE created_at < ?", [now - KEEP])
            self._pruned_at = now
        if self.rerun is None:
            return 0
        rows = list(
            self.db.query(
                "SELECT * FROM slash_commands WHERE status = 'running' AND until < ? ORDER BY created_at",
                [now],
            )
        )
        taken = 0
        for row in rows:
            old = (row["trigger_id"], row["attempt_id"])
            if row["attempts"] >= MAX_ATTEMPTS or row["created_at"] < now - ANSWER_WITHIN:
                why = "too old to answer" if row["attempts"] < MAX_ATTEMPTS else f"{row['attempts']} runs"
                gave_up = self.db.execute(
                    "UPDATE slash_commands SET status = 'expired', error = ? WHERE trigger_id = ?"
                    " AND attempt_id = ? AND status = 'running'",
                    [why, *old],
                ).rowcount
                if gave_up == 1:
                    log.warning("command %s given up unanswered (%s)", _ref(old[0]), why)
                continue
            attempt = uuid.uuid4().hex
            took = self.db.execute(
                "UPDATE slash_commands SET holder = ?, attempt_id = ?, attempts = attempts + 1, until = ?"
                " WHERE trigger_id = ? AND attempt_id = ? AND status = 'running'",
                [self.holder, attempt, now + self.lease, *old],
            ).rowcount
            if took != 1:
                continue  # another replica's sweep got there first
            log.info(
                "command %s was left unanswered (by %s): running it again here", _ref(old[0]), row["holder"]
            )
            command = Command(**{name: row[name] for name in _COLUMNS.split(", ")})
            self.rerun(self._hold(Ticket(command, attempt, recorded=True, attempts=row["attempts"] + 1)))
            taken += 1
        return taken

    async def run(self) -> None:
        """Every third of a lease, until cancelled: renew what runs here, then sweep."""
        failing = False
        while True:
            await asyncio.sleep(self.lease / 3)
            try:
                self.renew()
                self.sweep()
            except Exception as exc:  # a store fault: the next round tries again (leases run out meanwhile)
                if not failing:
                    log.warning(
                        "slash commands: the store does not answer (%s); trying each round",
                        exc,
                        exc_info=True,
                    )
                failing = True
                continue
            if failing:
                log.info("slash commands: the store answers again")
            failing = False


def _tid(ticket: Ticket) -> str:
    return ticket.command.trigger_id


def _ref(of: Any) -> str:
    """A command in the log: the first part of its trigger_id (a number), not the whole trigger."""
    trigger_id = of if isinstance(of, str) else of.trigger_id if isinstance(of, Command) else _tid(of)
    return f"#{trigger_id.split('.', 1)[0][:20]}"


def _values(command: Command) -> list[str]:
    return [getattr(command, name) for name in _COLUMNS.split(", ")]

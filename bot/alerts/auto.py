"""Auto-containment: a `[[auto_containment]]` rule runs one action by itself when an identity *enters*
critical risk, and a responder can undo it with one click where the provider has an undo.

Rules (checked at start-up by `rules_from_config`, each refusal one ConfigError line naming the key):

- One rule per connector; the action must be one the connector has, and one that contains
  (`AUTOMATIC`: revoke sessions, force a password reset, disable, confirm compromised). Off unless
  configured; it needs `[alerts]` on with `critical` among its levels.
- Entering critical (a sweep or a webhook re-check that moves an open or new alert to critical from
  below) writes, in the detector's own transaction, one `auto_actions` row keyed by (connector,
  identity, the stored observation the identity left) with `ON CONFLICT DO NOTHING`, and beside it an
  approval request created APPROVED (source `auto`, actor `auto-containment:<rule>`), audited
  `auto_containment`. A second sweep, a second replica or a restart that sees the same entry writes
  nothing, and the approvals' execution runs the request exactly once (`recover` runs one a stop cut
  off). Leaving critical and entering it again is a new entry.
- `run` executes what is approved, reads back an unknown outcome once (the approvals' `recover` reads
  them again at each start-up), and tells each new outcome once on the alert card and in its thread
  (compare-and-set on the row's version).
- **Undo** (only where the provider can undo the action) takes one click from a responder who is not
  the target: the automatic action had no human approval, so reverting it needs no second person. The
  click claims the row (compare-and-set: `undo_id` still empty), creates the undo request APPROVED
  (requested and approved by the responder, audited `auto_undo`) and runs it, exactly once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Optional

from connectors import Action, Connector, Identity, RiskLevel

from .. import audit
from ..action_names import named_action
from ..approvals import ApprovalService, Status, auto_actor
from ..approvals.records import snapshot
from ..blocks import Message, esc, text_message, user_ref
from ..config import Config
from ..store import Store
from .base import queue
from .transitions import State

log = logging.getLogger(__name__)

#: the actions a rule may run: each contains; none gives access back
AUTOMATIC = (Action.REVOKE_SESSIONS, Action.FORCE_PASSWORD_RESET, Action.DISABLE, Action.CONFIRM_COMPROMISED)
#: outcomes told on the card and in the thread (APPROVED and EXECUTING are on their way)
TOLD = (Status.EXECUTED, Status.FAILED, Status.UNKNOWN)
NOT_ALLOWED = text_message(":no_entry: Only responders can undo an automatic action ([access] responders).")


@dataclass(frozen=True)
class Rule:
    name: str
    connector: str
    action: Action
    undo: Optional[Action]  # the provider's undo of `action`, when it has one


def rules_from_config(config: Config, connectors: Mapping[str, Connector]) -> dict[str, Rule]:
    """The rules by connector name; ConfigError naming the key of the first that can't run."""
    rules: dict[str, Rule] = {}
    for n, entry in enumerate(config.auto_containment):
        key = f"auto_containment[{n}]"
        connector = connectors.get(entry.connector)
        if connector is None:
            known = ", ".join(sorted(connectors)) or "none configured"
            raise config.error(f"{key}.connector", f"names no configured connector (known: {known})")
        action = named_action(entry.action)
        if action not in AUTOMATIC:
            allowed = ", ".join(a.value for a in AUTOMATIC)
            raise config.error(f"{key}.action", f"is not an action a rule may run (one of: {allowed})")
        if not connector.supports(action):
            raise config.error(
                f"{key}.action", f"{connector.label} ({connector.name}) has no '{action.label}' action"
            )
        if connector.name in rules:
            raise config.error(
                f"{key}.connector",
                f"a second rule for '{connector.name}': one automatic action per connector",
            )
        undo = action.undo if connector.can_undo(action) else None
        rules[connector.name] = Rule(
            entry.name or f"{connector.name}-{action.value}", connector.name, action, undo
        )
    if rules and not config.alerts.enabled:
        raise config.error(
            "auto_containment", "needs [alerts] enabled: a rule runs when a sweep sees critical risk"
        )
    if rules and RiskLevel.CRITICAL not in config.alerts.levels:
        raise config.error("auto_containment", "needs critical among [alerts] levels")
    return rules


def _at(now: float) -> datetime:
    return datetime.fromtimestamp(now, timezone.utc)


class AutoContainment:
    """The rules of one server over its store, its approval service and the alerts' outbox."""

    def __init__(
        self,
        db: Store,
        service: ApprovalService,
        rules: Mapping[str, Rule],
        *,
        clock: Callable[[], float],
        on_outbox: Callable[[], None],
    ) -> None:
        self.db = db
        self.service = service
        self.rules = rules
        self.clock = clock
        self.on_outbox = on_outbox
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    # --- entering critical (inside the detector's transaction) ----------------------------------

    def entered(
        self, connector: Connector, identity: Identity, previous: Optional[State], alert_id: str, now: float
    ) -> bool:
        """The identity entered critical: write its entry row and approved request (once per entry)."""
        rule = self.rules.get(connector.name)
        if rule is None:
            return False
        # the stored observation it left: the same for every process that sees this entry
        entry = (
            "new" if previous is None else f"{previous.observed_at!r}:{previous.level.value}:{previous.score}"
        )
        request_id = "apr_" + secrets.token_hex(8)
        at = audit.iso(_at(now))
        written = self.db.execute(
            "INSERT INTO auto_actions (connector, identity_id, entry, rule, alert_id, request_id, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            [connector.name, identity.id, entry, rule.name, alert_id, request_id, at],
        ).rowcount
        if not written:
            return False
        actor = auto_actor(rule.name)
        score = "?" if identity.risk_score is None else identity.risk_score
        _approved(
            self.db,
            request_id,
            connector=connector.name,
            identity_id=identity.id,
            action=rule.action,
            reason=f"entered critical risk ({score}): auto-containment rule {rule.name}",
            by=actor,
            source="auto",
            target=snapshot(identity, connector.label),
            at=at,
        )
        audit.append(
            self.db,
            at=_at(now),
            actor=actor,
            event="auto_containment",
            request_id=request_id,
            connector=connector.name,
            identity_id=identity.id,
            action=rule.action.value,
            detail={
                "rule": rule.name,
                "alert_id": alert_id,
                "risk_score": identity.risk_score,
                "from_level": previous.level.value if previous else None,
            },
        )
        self._card(
            alert_id,
            {
                "rule": rule.name,
                "action": rule.action.value,
                "request_id": request_id,
                "status": Status.APPROVED.value,
                "undo": rule.undo.value if rule.undo else None,
            },
        )
        return True

    def _card(self, alert_id: Optional[str], info: Mapping[str, Any]) -> None:
        if alert_id is not None:
            self.db.execute("UPDATE alerts SET auto = ? WHERE id = ?", [json.dumps(dict(info)), alert_id])

    def kick(self) -> None:
        """Run what was just approved, in the background (the periodic job catches anything missed)."""
        task = asyncio.get_running_loop().create_task(self.run(), name="auto-containment")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # --- running and telling --------------------------------------------------------------------

    async def run(self) -> None:
        """Execute approved automatic actions and undos, read back unknown ones, tell new outcomes."""
        async with self._lock:
            rows = list(
                self.db.query(
                    "SELECT * FROM auto_actions WHERE reported IS NULL OR reported NOT LIKE 'done:%'"
                )
            )
            for row in rows:
                told = (row["reported"] or "").removeprefix("done:").split("/")
                try:
                    for part, request_id in enumerate((row["request_id"], row["undo_id"])):
                        if request_id is None:
                            continue
                        status = self.service.get(request_id).status
                        if status is Status.APPROVED:
                            await self.service.execute(request_id)
                        elif status is Status.UNKNOWN and told[part : part + 1] != [status.value]:
                            # read back once when it turns unknown (and at each start-up, by the
                            # approvals' recover), not at every run: each read is audited
                            await self.service.reconcile(request_id)
                    self._tell(row["request_id"])
                except Exception:  # one row's bug must not stop the others; the next run tries again
                    log.exception("auto-containment %s could not be settled", row["request_id"])

    def _tell(self, request_id: str) -> None:
        """Put the newest outcome on the card, and in its thread when it is one not told yet (once:
        compare-and-set on the row's version)."""
        row = next(self.db.query("SELECT * FROM auto_actions WHERE request_id = ?", [request_id]))
        request = self.service.get(request_id)
        undo = self.service.get(row["undo_id"]) if row["undo_id"] else None
        settled = request.status in (Status.EXECUTED, Status.FAILED) and (
            undo is None or undo.status in (Status.EXECUTED, Status.FAILED)
        )
        told = ("done:" if settled else "") + f"{request.status.value}/{undo.status.value if undo else '-'}"
        if row["reported"] == told:
            return
        before = (row["reported"] or "").removeprefix("done:").split("/")
        now = self.clock()
        with audit.transaction(self.db):
            claimed = self.db.execute(
                "UPDATE auto_actions SET reported = ?, version = version + 1"
                " WHERE request_id = ? AND version = ?",
                [told, request_id, row["version"]],
            ).rowcount
            alert = next(
                self.db.query("SELECT id, channel, auto FROM alerts WHERE id = ?", [row["alert_id"]]), None
            )
            if not claimed or alert is None:
                return
            info = json.loads(alert["auto"] or "{}")
            info.update(status=request.status.value, message=_outcome(request))
            if undo is not None:
                info.update(
                    undo_id=undo.id,
                    undo_status=undo.status.value,
                    undo_by=undo.requested_by,
                    undo_message=_outcome(undo),
                )
            self._card(alert["id"], info)
            payload: dict[str, Any] = {}
            if undo is not None and undo.status in TOLD and before[1:] != [undo.status.value]:
                payload["reply"] = undo_reply(info)
            elif request.status in TOLD and before[:1] != [request.status.value]:
                payload["reply"] = result_reply(info)
            if "reply" in payload:  # an action ran: said in the digest's thread if the alert was folded
                payload["folded_reply"] = True
            queue(self.db, "refresh", alert["channel"], alert["id"], payload, now)
        self.on_outbox()

    # --- Undo -------------------------------------------------------------------------------------

    async def undo(self, user: str, request_id: str) -> Optional[Message]:
        """One responder's click: revert the automatic action (exactly once); None when the card says it."""
        row = next(self.db.query("SELECT * FROM auto_actions WHERE request_id = ?", [request_id]), None)
        if row is None:
            return text_message(":warning: idops has no such automatic action; nothing was done.")
        request = self.service.get(request_id)
        if not await self.service.is_responder(user):
            self._refused(request_id, user, "not_responders")
            return NOT_ALLOWED
        email = request.target.get("email")
        if email and await self.service.directory.user_id_for_email(str(email)) == user:
            self._refused(request_id, user, "target")
            return text_message(":no_entry: You can't undo an action on your own account.")
        rule = self.rules.get(request.connector)
        undo_action = request.action.undo
        connector = self.service.connectors.get(request.connector)
        if undo_action is None or connector is None or not connector.can_undo(request.action):
            return text_message(f":no_entry: There is no undo of *{request.action.label}* here.")
        if request.status is not Status.EXECUTED:
            return text_message(
                f":no_entry: Nothing to undo: the automatic *{request.action.label}*"
                f" is {request.status.value}."
            )
        now = self.clock()
        undo_id = "apr_" + secrets.token_hex(8)
        at = audit.iso(_at(now))
        with audit.transaction(self.db):
            claimed = self.db.execute(
                # no longer settled: `run` looks at it again until the undo's outcome is told
                "UPDATE auto_actions SET undo_id = ?, version = version + 1, reported ="
                " CASE WHEN reported LIKE 'done:%' THEN substr(reported, 6) ELSE reported END"
                " WHERE request_id = ? AND undo_id IS NULL",
                [undo_id, request_id],
            ).rowcount
            if claimed:
                _approved(
                    self.db,
                    undo_id,
                    connector=request.connector,
                    identity_id=request.identity_id,
                    action=undo_action,
                    reason=f"undo of the automatic {request.action.label} ({request_id})",
                    by=user,
                    source="auto_undo",
                    target=request.target,
                    at=at,
                )
                audit.append(
                    self.db,
                    at=_at(now),
                    actor=user,
                    event="auto_undo",
                    detail={"undo_id": undo_id, "rule": rule.name if rule else None},
                    **request.audit_fields(),
                )
        if not claimed:
            current = next(
                self.db.query("SELECT undo_id FROM auto_actions WHERE request_id = ?", [request_id])
            )
            by = self.service.get(current["undo_id"]).requested_by
            return text_message(f"Already undone by {user_ref(by)}; nothing more was done.")
        await self.service.execute(undo_id)
        await self.run()
        return None

    def _refused(self, request_id: str, user: str, rule: str) -> None:
        request = self.service.get(request_id)
        with audit.transaction(self.db):
            audit.append(
                self.db,
                at=_at(self.clock()),
                actor=user,
                event="refused",
                detail={"attempted": "auto_undo", "rule": rule},
                **request.audit_fields(),
            )


def _approved(
    db: Store,
    request_id: str,
    *,
    connector: str,
    identity_id: str,
    action: Action,
    reason: str,
    by: str,
    source: str,
    target: Mapping[str, Any],
    at: str,
) -> None:
    """Insert an approval request created APPROVED by `by` (a rule's actor, or the responder who
    clicked Undo): the approvals' execution then runs it exactly once."""
    human = not by.startswith("auto-containment:")
    db.insert(
        "approvals",
        {
            "id": request_id,
            "connector": connector,
            "identity_id": identity_id,
            "action": action.value,
            "reason": reason,
            "requested_by": by,
            "source": source,
            "status": Status.APPROVED.value,
            "created_at": at,
            "expires_at": at,
            "target": json.dumps(dict(target)),
            "approvals_needed": 1 if human else 0,
            "approvers": json.dumps([by] if human else []),
            "decided_by": by,
            "decided_at": at,
        },
    )


def _outcome(request: Any) -> str:
    """The provider's answer, or why there is none, as plain text (escaped where it is shown)."""
    if request.status is Status.EXECUTED and request.result:
        return str(request.result.get("message") or "done")
    if request.status in (Status.FAILED, Status.UNKNOWN):
        return str(request.error or request.status.value)
    return ""


def result_reply(info: Mapping[str, Any]) -> Message:
    """The thread reply with the automatic action's outcome."""
    label = Action(info["action"]).label
    rule = esc(info["rule"], 64)
    said = esc(info.get("message") or "", 500)
    status = info.get("status")
    if status == Status.EXECUTED.value:
        text = f":shield: Auto-containment (rule `{rule}`) ran *{label}* on entering critical: {said}"
        if info.get("undo"):
            text += " A responder can undo it from the card."
    elif status == Status.FAILED.value:
        text = f":x: Auto-containment (rule `{rule}`): *{label}* failed: {said}"
    else:
        text = (
            f":warning: Auto-containment (rule `{rule}`): *{label}* was sent but its outcome is unknown"
            f" ({said}). idops never sends it again by itself (it reads it back at start-up): check at"
            " the provider whether it was done."
        )
    return text_message(text)


def undo_reply(info: Mapping[str, Any]) -> Message:
    label = Action(info["action"]).label
    said = esc(info.get("undo_message") or "", 500)
    who = user_ref(info["undo_by"])
    status = info.get("undo_status")
    if status == Status.EXECUTED.value:
        return text_message(f":leftwards_arrow_with_hook: {who} undid the automatic *{label}*: {said}")
    if status == Status.FAILED.value:
        return text_message(f":x: {who}'s undo of the automatic *{label}* failed: {said}")
    return text_message(
        f":warning: {who}'s undo of the automatic *{label}* was sent but its outcome is unknown ({said})."
    )

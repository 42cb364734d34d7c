"""Sweeps and re-checks: compare identities with their stored state and queue what Slack must be told.

A full sweep lists every identity of its scope; a connector with a change feed (`incremental`) is
listed in full at start-up and every `[alerts] full_sweep_every` sweeps, and in between asked only
what changed since the cursor stored for the scope (taken before the last full listing, so a change
made during a listing is read again rather than missed). A cursor the provider refuses as too old
means a full sweep at once. Only a full sweep tells who was deleted.

Each provider page is one SQLite transaction: the state rows it changes and the outbox rows those
changes cause commit together or not at all, so a sweep that dies mid-way leaves the identities it
did not reach untouched and never loses an alert it decided on. Only one page of identities (and
their stored rows) is in memory at a time. No `await` happens inside a transaction.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Optional

from connectors import Connector, ConnectorError, Identity, NotFoundError, RiskLevel, ValidationError

from .. import claims
from . import cards
from .scope import CHANGES, FULL, Scope, SweepResult, pick_channel
from .stored import StoredViews
from .transitions import Change, State, Transition, transition
from .triage import Triage

__all__ = ["Detector", "Scope", "SweepResult", "pick_channel"]

log = logging.getLogger(__name__)

_STATE_COLUMNS = (
    "connector, identity_id, tenant_id, level, score, name, email, observed_at, alert_id, resolved_at,"
    " snoozed_until"
)
_UPSERT_STATE = (
    f"INSERT INTO alert_identities ({_STATE_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)"  # noqa: S608
    " ON CONFLICT (connector, identity_id) DO UPDATE SET tenant_id = excluded.tenant_id,"
    " level = excluded.level, score = excluded.score, name = excluded.name, email = excluded.email,"
    " observed_at = excluded.observed_at, alert_id = excluded.alert_id,"
    " resolved_at = excluded.resolved_at, snoozed_until = excluded.snoozed_until"
)
_SELECT_PAGE = (
    "SELECT identity_id, level, score, observed_at, alert_id, resolved_at, snoozed_until"
    " FROM alert_identities WHERE connector = ? AND identity_id IN ({marks})"
)
# appended, not stamped on the stored rows: ids arrive in no useful order, and rewriting their rows
# would dirty every database page on every page of every sweep
_SEEN = "INSERT INTO alert_seen (scope, identity_id) VALUES (?, ?)"
CHANGES_CHUNK = 500  # changed identities compared and written per transaction


def _entered_critical(step: Transition, state: State) -> bool:
    """The observation moved an identity with an alert card (new or open) into critical from below."""
    was = step.previous.level if step.previous is not None else None
    return (
        step.change in (Change.OPEN, Change.ESCALATE, Change.UPDATE)
        and state.level is RiskLevel.CRITICAL
        and was is not RiskLevel.CRITICAL
        and state.alert_id is not None
    )


class Detector(Triage, StoredViews):
    """Turns observations of identities into stored state and outbox rows."""

    async def sweep(self, scope: Scope) -> SweepResult:
        """Record what changed in `scope`: only the changes when its connector reports them and a full
        listing is not due, else every identity page by page. Failures are reported in Slack once per
        outage, never raised."""
        connector = self.connectors[scope.connector]
        row = self._sweep_row(scope)
        if (
            connector.incremental
            and row["baseline_done"]
            and row["cursor"] is not None
            and scope.key in self.listed
            and row["since_full"] + 1 < self.settings.full_sweep_every
        ):
            result = await self._changes_sweep(scope, connector, row["cursor"])
            if result is not None:
                return result
        return await self._full_sweep(scope, connector, baseline=not row["baseline_done"])

    async def _changes_sweep(self, scope: Scope, connector: Connector, cursor: str) -> Optional[SweepResult]:
        """Ask the provider what changed since `cursor` and record it; None when it refuses the cursor
        (too old: the caller lists in full)."""
        self.db.execute(
            "UPDATE alert_sweeps SET last_started_at = ? WHERE scope = ?", [self.clock(), scope.key]
        )
        asked_at = self.clock()
        changes: dict[str, int] = {}
        try:
            found = await connector.changes_since(cursor, tenant_id=scope.tenant_id)
        except ValidationError as exc:
            log.info("risk sweep of %s: the change cursor was refused (%s); listing in full", scope.key, exc)
            return None
        except ConnectorError as exc:
            return self._failed(scope, connector, str(exc), 0, changes, False, mode=CHANGES)
        except Exception as exc:
            # a bug or an unexpected answer: keep the scheduler alive and say so once in Slack
            log.exception("alert sweep of %s failed", scope.key)
            error = f"unexpected error ({type(exc).__name__})"
            return self._failed(scope, connector, error, 0, changes, False, mode=CHANGES)
        # an identity that changed twice is recorded once, as it is now (the last one reported)
        latest = list({identity.id: identity for identity in found.identities}.values())
        for start in range(0, len(latest), CHANGES_CHUNK):
            chunk = latest[start : start + CHANGES_CHUNK]
            for change in self._apply(connector, chunk, asked_at=asked_at, baseline=False, scope=None):
                changes[change.value] = changes.get(change.value, 0) + 1
        # the cursor moves on only once every change it covers is stored: a crash before reads them again
        self._succeeded(scope, connector, False, unrated=False, cursor=found.cursor, full=False)
        return SweepResult(scope, len(latest), changes, False, mode=CHANGES)

    async def _full_sweep(self, scope: Scope, connector: Connector, *, baseline: bool) -> SweepResult:
        """Read every identity in `scope` page by page and record what changed."""
        cursor = await self._fresh_cursor(scope, connector)
        with self.db.atomic():
            claims.check(self.db)
            self.db.execute(
                "UPDATE alert_sweeps SET last_started_at = ? WHERE scope = ?", [self.clock(), scope.key]
            )
            self.db.execute("DELETE FROM alert_seen WHERE scope = ?", [scope.key])
        seen = rated = 0
        changes: dict[str, int] = {}
        try:
            pages = connector.iter_pages(tenant_id=scope.tenant_id)
            while True:
                asked_at = self.clock()
                try:
                    page = await pages.__anext__()
                except StopAsyncIteration:
                    break
                seen += len(page)
                rated += sum(identity.risk_level is not None for identity in page)
                for change in self._apply(connector, page, asked_at=asked_at, baseline=baseline, scope=scope):
                    changes[change.value] = changes.get(change.value, 0) + 1
        except ConnectorError as exc:
            return self._failed(scope, connector, str(exc), seen, changes, baseline)
        except Exception as exc:
            # a bug or an unexpected answer: keep the scheduler alive and say so once in Slack
            log.exception("alert sweep of %s failed", scope.key)
            return self._failed(
                scope, connector, f"unexpected error ({type(exc).__name__})", seen, changes, baseline
            )
        # only a complete sweep tells who is gone; an empty answer is more likely a fault than a purge
        gone = self._gone(scope, connector) if seen else 0
        if gone:
            changes["gone"] = gone
        self._succeeded(scope, connector, baseline, unrated=seen > 0 and rated == 0, cursor=cursor, full=True)
        self.listed.add(scope.key)
        return SweepResult(scope, seen, changes, baseline)

    async def _fresh_cursor(self, scope: Scope, connector: Connector) -> Optional[str]:
        """The change feed's "now", taken before a full listing; None without a feed (or when it fails:
        the next sweep then lists in full again)."""
        if not connector.incremental:
            return None
        try:
            return (await connector.changes_since(None, tenant_id=scope.tenant_id)).cursor
        except Exception as exc:
            # the listing still runs; only the changes-only sweeps wait for a cursor that works
            log.warning(
                "risk sweep of %s: no change cursor (%s); the next sweep lists in full too", scope.key, exc
            )
            return None

    async def recheck(self, connector_name: str, identity_id: str) -> Optional[Change]:
        """Fetch one identity now (a webhook said it changed) and record it; None if it is gone."""
        connector = self.connectors[connector_name]
        asked_at = self.clock()
        try:
            identity = await connector.get_identity(identity_id)
        except NotFoundError:
            return None
        scope = self._scope_for(connector, identity.tenant_id)
        baseline = not self._sweep_row(scope)["baseline_done"]
        # seen, for a sweep of its scope running now that listed it before this write
        applied = self._apply(connector, [identity], asked_at=asked_at, baseline=baseline, scope=scope)
        return applied[0] if applied else Change.NONE

    # --- state --------------------------------------------------------------------------------

    def _scope_for(self, connector: Connector, tenant_id: Optional[str]) -> Scope:
        scopes = self._scopes_of(connector.name)
        for scope in scopes:
            if scope.tenant_id is not None and scope.tenant_id == tenant_id:
                return scope
        return scopes[0]

    def _sweep_row(self, scope: Scope) -> dict[str, Any]:
        self.db.execute(
            "INSERT INTO alert_sweeps (scope, connector, tenant_id) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
            [scope.key, scope.connector, scope.tenant_id],
        )
        return next(self.db.query("SELECT * FROM alert_sweeps WHERE scope = ?", [scope.key]))

    def _apply(
        self,
        connector: Connector,
        page: Sequence[Identity],
        *,
        asked_at: float,
        baseline: bool,
        scope: Optional[Scope],
    ) -> list[Change]:
        """Compare one page with its stored rows and write the changes and their outbox rows at once,
        and note its ids as seen by the full sweep of `scope` (None: a changes-only sweep)."""
        if not page:
            return []
        now = self.clock()
        ids = [identity.id for identity in page]
        queued = contained = False
        out: list[Change] = []
        marks = ",".join("?" * len(ids))
        with self.db.atomic():
            claims.check(self.db)  # a sweep whose replica lost the scope writes nothing
            stored = {
                row[0]: State(
                    level=RiskLevel(row[1]),
                    score=row[2],
                    observed_at=row[3],
                    alert_id=row[4],
                    resolved_at=row[5],
                    snoozed_until=row[6],
                )
                for row in self.db.execute(_SELECT_PAGE.format(marks=marks), [connector.name, *ids])
            }
            if scope is not None:
                self.db.executemany(_SEEN, [(scope.key, identity_id) for identity_id in ids])
            writes = []
            for identity in page:
                step = transition(
                    stored.get(identity.id),
                    identity.risk_level,
                    identity.risk_score,
                    rules=self.rules,
                    now=now,
                    observed_at=asked_at,
                    baseline=baseline,
                )
                if step is None or not step.writes:
                    continue
                state = self._queue(connector, identity, step, now)
                queued = queued or step.change is not Change.NONE
                if self.on_critical is not None and _entered_critical(step, state):
                    assert state.alert_id is not None
                    hook = self.on_critical.entered(connector, identity, step.previous, state.alert_id, now)
                    contained = hook or contained
                out.append(step.change)
                writes.append(
                    (
                        connector.name,
                        identity.id,
                        identity.tenant_id,
                        state.level.value,
                        state.score,
                        identity.display_name,
                        identity.email,
                        state.observed_at,
                        state.alert_id,
                        state.resolved_at,
                        state.snoozed_until,
                    )
                )
            if writes:
                self.db.executemany(_UPSERT_STATE, writes)
        if queued:
            self.on_outbox()
        if contained and self.on_critical is not None:
            self.on_critical.kick()
        return out

    def _queue(self, connector: Connector, identity: Identity, step: Transition, now: float) -> State:
        """Write the alert row and outbox row `step` calls for; returns the state to store."""
        state, previous = step.state, step.previous
        if step.change is Change.NONE:
            return state
        if step.change is Change.OPEN:
            alert_id = uuid.uuid4().hex[:16]
            channel = pick_channel(
                self.settings,
                self.alert_channel,
                connector=connector.name,
                kind=connector.kind,
                tenant_id=identity.tenant_id,
                provider=identity.provider,
                level=state.level,
            )
            self.db.execute(
                "INSERT INTO alerts (id, connector, connector_label, identity_id, tenant_id, channel, status,"
                " from_level, from_score, level, score, identity, actions, mention, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, 'open', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    alert_id,
                    connector.name,
                    connector.label,
                    identity.id,
                    identity.tenant_id,
                    channel,
                    previous.level.value if previous else None,
                    previous.score if previous else None,
                    state.level.value,
                    state.score,
                    json.dumps(identity.to_dict()),
                    json.dumps(sorted(action.value for action in connector.capabilities)),
                    self._mention(identity, state.level),
                    now,
                    now,
                ],
            )
            self._outbox("alert", channel, alert_id, {}, now)
            return replace(state, alert_id=alert_id, snoozed_until=None)
        assert previous is not None and previous.alert_id is not None, "only OPEN starts without a card"
        open_id = previous.alert_id
        alert = next(self.db.query("SELECT * FROM alerts WHERE id = ?", [open_id]))
        resolved = step.change is Change.RESOLVE
        self.db.execute(
            "UPDATE alerts SET level = ?, score = ?, identity = ?, updated_at = ?, status = ?,"
            " resolved_at = ? WHERE id = ?",
            [
                state.level.value,
                state.score,
                json.dumps(identity.to_dict()),
                now,
                "resolved" if resolved else "open",
                now if resolved else None,
                open_id,
            ],
        )
        if resolved:
            # a resolved card reads "82 → 15, critical → low": from where the alert last stood
            self.db.execute(
                "UPDATE alerts SET from_level = ?, from_score = ? WHERE id = ?",
                [previous.level.value, previous.score, open_id],
            )
        change = cards.change_text(previous.score, previous.level.value, state.score, state.level.value)
        payload: dict[str, Any] = {}
        if step.change is Change.ESCALATE:
            mention = self._mention(identity, state.level)
            payload["reply"] = cards.escalation_reply(change, mention)
            payload["broadcast"] = True
            # for a digest's one reply naming many escalations at once (bot/alerts/digests.py)
            payload["change"], payload["mention"] = change, mention
        elif resolved:
            payload["reply"] = cards.resolve_reply(change)
        kind = {Change.ESCALATE: "escalate", Change.RESOLVE: "resolve"}.get(step.change, "refresh")
        self._outbox(kind, alert["channel"], open_id, payload, now)
        return state

    def _gone(self, scope: Scope, connector: Connector) -> int:
        """After a complete sweep: forget the identities of `scope` it did not see (the provider deleted
        them), resolving their open alerts as gone in the same transaction. Returns how many."""
        where = "connector = ? AND identity_id NOT IN (SELECT identity_id FROM alert_seen WHERE scope = ?)"
        params: list[Any] = [scope.connector, scope.key]
        if scope.tenant_id is not None:
            where += " AND tenant_id = ?"
            params.append(scope.tenant_id)
        now = self.clock()
        reply = cards.gone_reply(self.source(connector))
        with self.db.atomic():
            claims.check(self.db)
            open_ids = self.db.execute(
                f"SELECT alert_id FROM alert_identities WHERE {where} AND alert_id IS NOT NULL",  # noqa: S608
                params,
            ).fetchall()
            for (alert_id,) in open_ids:
                self.db.execute(
                    "UPDATE alerts SET status = 'resolved', gone = 1, resolved_at = ?, updated_at = ?"
                    " WHERE id = ?",
                    [now, now, alert_id],
                )
                channel = self.db.execute("SELECT channel FROM alerts WHERE id = ?", [alert_id]).fetchone()[0]
                self._outbox("resolve", channel, alert_id, {"reply": reply}, now)
            gone = self.db.execute(f"DELETE FROM alert_identities WHERE {where}", params).rowcount  # noqa: S608
            self.db.execute("DELETE FROM alert_seen WHERE scope = ?", [scope.key])
        if gone:
            log.info("risk sweep of %s: %d identities no longer reported, forgotten", scope.key, gone)
        if open_ids:
            self.on_outbox()
        return gone

    def _mention(self, identity: Identity, level: RiskLevel) -> Optional[str]:
        if self.settings.mention and level is RiskLevel.CRITICAL and identity.privileged:
            return self.settings.mention
        return None

    def _failed(
        self,
        scope: Scope,
        connector: Connector,
        error: str,
        seen: int,
        changes: dict[str, int],
        baseline: bool,
        *,
        mode: str = FULL,
    ) -> SweepResult:
        now = self.clock()
        with self.db.atomic():
            claims.check(self.db)
            if mode == FULL:
                self.db.execute("DELETE FROM alert_seen WHERE scope = ?", [scope.key])  # tells nothing now
            claimed = self.db.execute(
                "UPDATE alert_sweeps SET failing = 1, last_error = ? WHERE scope = ? AND failing = 0",
                [error, scope.key],
            ).rowcount
            if claimed:
                notice = cards.outage_notice(self.source(connector, scope.tenant_id), error)
                self._outbox("notice", self._notice_channel(connector, scope), None, {"message": notice}, now)
        log.warning("alert sweep of %s failed: %s", scope.key, error)
        if claimed:
            self.on_outbox()
        return SweepResult(scope, seen, changes, baseline, error, mode)

    def _succeeded(
        self,
        scope: Scope,
        connector: Connector,
        baseline: bool,
        *,
        unrated: bool,
        cursor: Optional[str] = None,
        full: bool = True,
    ) -> None:
        now = self.clock()
        notify = False
        with self.db.atomic():
            claims.check(self.db)
            recovered = self.db.execute(
                "UPDATE alert_sweeps SET failing = 0, last_error = NULL WHERE scope = ? AND failing = 1",
                [scope.key],
            ).rowcount
            if recovered:
                notice = cards.recovery_notice(self.source(connector, scope.tenant_id))
                self._outbox("notice", self._notice_channel(connector, scope), None, {"message": notice}, now)
                notify = True
            if baseline:
                count, _ = self.summary_scope_rows(scope, 0)
                source = self.source(connector, scope.tenant_id)
                summary = (
                    cards.unrated_notice(source)
                    if unrated
                    else cards.baseline_summary(source, count, self.settings.levels, scope.key)
                )
                self._outbox(
                    "notice", self._notice_channel(connector, scope), None, {"message": summary}, now
                )
                notify = True
            self.db.execute(
                "UPDATE alert_sweeps SET baseline_done = 1, last_success_at = ?, cursor = ?,"
                " since_full = CASE WHEN ? = 1 THEN 0 ELSE since_full + 1 END WHERE scope = ?",
                [now, cursor, int(full), scope.key],
            )
        if notify:
            self.on_outbox()

"""Incremental sweeps: a connector with a change feed is listed in full at start-up and every
`full_sweep_every` sweeps, and asked only for changes in between; a refused cursor means a full sweep.

The feed is HomeBase's signed webhooks (tests/support/feed.py: HomeBase has nothing to pull), changed
through the simulator's admin API, which signs and POSTs them over loopback. Requests are counted where
they leave the connector, i.e. as the simulator receives them.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Optional

import aiohttp
from support.alerts import ALERTS, API_KEY, running
from support.feed import WebhookFedHomeBase, counting_session, receiving

import connectors
from bot.alerts.detector import Detector, Scope
from bot.alerts.scope import CHANGES, FULL
from bot.config import AlertSettings
from bot.store import open_db
from connectors import ProviderUnavailableError
from connectors.models import Changes
from standins import entra, entra_state, homebase, serving

SECRET = "whsec-incremental"
# a score in the middle of each band, and where each level moves to: always a different level
MOVE_TO = {"low": 60, "medium": 90, "high": 10, "critical": 35}


class Feed:
    """The simulator (signing webhooks to the feed), the feed connector, a detector over them."""

    def __init__(
        self, a: Any, connector: WebhookFedHomeBase, sent: list[str], settings: AlertSettings
    ) -> None:
        self.a = a
        self.connector = connector
        self.sent = sent
        self.settings = settings
        self.detector = self.new_detector()

    def new_detector(self) -> Detector:
        """A detector as a restarted process would make it: same store, nothing in memory."""
        return Detector(
            self.a.db,
            {"hld": self.connector},
            self.settings,
            ALERTS,
            clock=self.a.clock,
            on_outbox=self.a.sender.notify,
        )

    async def sweep(self) -> tuple[Any, int]:
        """One sweep; its result and the requests it sent HomeBase."""
        before = len(self.sent)
        result = await self.detector.sweep(Scope("hld"))
        await self.a.sender.wait_idle(timeout=10)
        return result, len(self.sent) - before

    async def move(self, count: int, start: int = 0) -> dict[str, int]:
        """Move `count` identities to another level through the admin API (which signs and POSTs the
        webhook); their ids and new scores."""
        moved: dict[str, int] = {}
        async with aiohttp.ClientSession() as http:
            for index in range(start, start + count):
                identity_id = self.a.sim.identity_id(index)
                score = MOVE_TO[homebase.risk_level(self.a.sim.risk_score(index))]
                async with http.post(
                    f"{self.a.sim_url}/_admin/identity/{identity_id}/risk", json={"risk_score": score}
                ) as answer:
                    assert answer.status == 200
                moved[identity_id] = score
        return moved

    def stored(self) -> dict[str, int]:
        return dict(self.a.db.execute("SELECT identity_id, score FROM alert_identities").fetchall())


@contextlib.asynccontextmanager
async def feeding(
    tmp_path: Path,
    *,
    identities: int,
    retain: int = 1_000_000,
    full_every: int = 4,
    cls: type[WebhookFedHomeBase] = WebhookFedHomeBase,
) -> AsyncIterator[Feed]:
    app = homebase.create_app(
        identities=identities, rate_limits=False, api_keys=(API_KEY,), webhook_secret=SECRET
    )
    settings = AlertSettings(full_sweep_every=full_every)
    async with running(tmp_path, sim_app=app, identities=identities) as a:
        session, sent = counting_session()
        connector = cls(
            "hld",
            api_key=API_KEY,
            base_url=f"{a.sim_url}/v1",
            page_size=100,
            pacing=False,
            session=session,
            secret=SECRET,
            retain=retain,
        )
        async with session, receiving(connector.receive) as hook_url:
            a.sim.webhook_url = hook_url
            yield Feed(a, connector, sent, settings)
        assert connector.refused == 0


async def test_changes_sweeps_between_full_listings_cost_a_fraction_and_find_every_change(
    tmp_path: Path,
) -> None:
    async with feeding(tmp_path, identities=5000, full_every=3) as f:
        baseline, listing = await f.sweep()
        assert baseline.mode == FULL and baseline.seen == 5000 and listing == 50  # 100 a page
        for sweep in (2, 3):
            moved = await f.move(50, start=sweep * 100)  # 1% changed
            result, requests = await f.sweep()
            assert result.mode == CHANGES and result.seen == 50
            assert requests <= 0.05 * listing, requests
            assert sum(result.changes.values()) == 50  # every change recorded (a score or a level)
            assert {k: f.stored()[k] for k in moved} == moved
        opened = [r for r in f.a.outbox() if r["kind"] == "alert"]
        assert opened and len(f.a.cards()) == len(opened)  # the changes' alerts reached Slack
        # the third sweep since the last full one lists in full again
        result, requests = await f.sweep()
        assert result.mode == FULL and requests == listing and result.changes == {}


async def test_a_restart_lists_in_full_first_and_a_stale_cursor_lists_in_full(tmp_path: Path) -> None:
    async with feeding(tmp_path, identities=600, retain=20, full_every=100) as f:
        await f.sweep()
        moved = await f.move(5)
        result, _ = await f.sweep()
        assert result.mode == CHANGES and result.seen == 5

        f.detector = f.new_detector()  # a restarted process: its first sweep lists in full
        moved = await f.move(5, start=10)
        result, requests = await f.sweep()
        assert result.mode == FULL and requests == 6 and sum(result.changes.values()) == 5
        assert {k: f.stored()[k] for k in moved} == moved

        # more changes than the feed keeps: the stored cursor is refused as too old
        moved = await f.move(25, start=20)
        result, requests = await f.sweep()
        assert result.mode == FULL and requests == 6 and sum(result.changes.values()) == 25
        assert {k: f.stored()[k] for k in moved} == moved
        result, _ = await f.sweep()
        assert result.mode == CHANGES and result.changes == {}


class Failing(WebhookFedHomeBase):
    failures = 0

    async def changes_since(self, cursor: Optional[str], *, tenant_id: Optional[str] = None) -> Changes:
        if cursor is not None and self.failures:
            self.failures -= 1
            raise ProviderUnavailableError("HomeBase answered HTTP 503")
        return await super().changes_since(cursor, tenant_id=tenant_id)


async def test_a_failing_feed_is_an_outage_and_its_changes_are_read_after_it(tmp_path: Path) -> None:
    async with feeding(tmp_path, identities=300, cls=Failing) as f:
        await f.sweep()
        moved = await f.move(4)
        Failing.failures = 1
        result, _ = await f.sweep()
        assert result.mode == CHANGES and result.error and "503" in result.error
        assert any("is failing" in m["text"] for m in f.a.notices())
        result, _ = await f.sweep()  # the cursor did not move: the same changes are read now
        assert result.mode == CHANGES and result.error is None and result.seen == 4
        assert {k: f.stored()[k] for k in moved} == moved
        assert any("answers again" in m["text"] for m in f.a.notices())


async def test_the_entra_feed_drives_changes_sweeps_unchanged(tmp_path: Path) -> None:
    """The same detector over the Entra connector's own `changes_since` (riskLastUpdatedDateTime) and its
    Graph simulator: 1% of 3,000 users change risk, and the changes sweep reads only those. (What a feed
    costs is the connector's: Entra's reads 15 changed users a request, a listing 999 a page.)"""
    app = entra.create_app(users=3000)
    state = app[entra_state.STATE]
    async with serving(app) as url:
        config = {
            "tenant_id": state.tenant_id,
            "client_id": state.client_id,
            "client_secret": "sim-secret",
            "authority_url": url,
            "graph_url": url,
        }
        connector = connectors.build("entra", "entra", config)
        db = open_db(str(tmp_path / "idops.db"))
        try:
            detector = Detector(db, {"entra": connector}, AlertSettings(full_sweep_every=5), ALERTS)
            await connector.check()  # the token, outside the counts
            state.log.clear()
            baseline = await detector.sweep(Scope("entra"))
            listing = len(state.log)
            assert baseline.mode == FULL and baseline.error is None and baseline.seen == 3000
            levels = dict(db.execute("SELECT identity_id, level FROM alert_identities").fetchall())
            picked = [i for i in range(3000) if levels.get(state.user_id(i)) not in (None, "critical")][:30]
            for index in picked:
                state.set_risk(index, "high", "confirmedCompromised")
            state.log.clear()
            result = await detector.sweep(Scope("entra"))
            assert result.mode == CHANGES and result.error is None
            levels = dict(db.execute("SELECT identity_id, level FROM alert_identities").fetchall())
            assert all(levels[state.user_id(index)] == "critical" for index in picked)
            assert result.changes.get("open", 0) + result.changes.get("escalate", 0) == 30
            # nothing listed: the feed (riskyUsers) and its batched reads of the changed users only
            assert len(state.log) < listing
            assert all("riskyUsers" in r.path or r.path == "/v1.0/$batch" for r in state.log)
        finally:
            await connector.close()
            db.close()

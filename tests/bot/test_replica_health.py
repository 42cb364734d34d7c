"""A replica whose store stops answering: /healthz says so (the store, and that it claims nothing), it
drops what it held, and the log says it once, through the real server."""

from __future__ import annotations

import collections
import logging
from typing import Any

import pytest
from support.bot import BotHarness, harness, until


async def healthz(h: BotHarness) -> dict[str, Any]:
    """The details (the API token's bearer); checks the public answer says the same "ok", nothing more."""
    async with h.http.get(h.url + "/healthz", headers={"Authorization": "Bearer test-api-token"}) as response:
        assert response.status == 200  # it still serves: ok false says what is wrong
        body = dict(await response.json())
    async with h.http.get(h.url + "/healthz") as response:
        assert response.status == 200 and await response.json() == {"ok": body["ok"]}
    return body


class Watched:
    """The store as the claims see it, counting each method they reach for (`tries`): the keeper's
    check is `execute`, a wake-up's take of a claim a `transaction`."""

    def __init__(self, db: Any) -> None:
        self.db = db
        self.tries: collections.Counter[str] = collections.Counter()

    def __getattr__(self, name: str) -> Any:
        self.tries[name] += 1
        return getattr(self.db, name)


async def test_a_replica_that_loses_its_store_stops_claiming_and_says_so(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async with harness(tmp_path, with_alerts=True, replicas={"lease_seconds": 3}) as h:
        claims = h.bot.service.claims
        assert claims is not None
        await until(lambda: "sweep:homebase" in claims.names(), 60)  # the start-up sweep took the scope
        body = await healthz(h)
        assert body["ok"] and body["store"] == {"ok": True, "backend": "sqlite"}
        assert {"expiry", "sweep:homebase"} <= set(body["replica"]["claims"])
        assert body["alerts"]["scopes"] == ["homebase"]

        caplog.set_level(logging.INFO, logger="bot.claims")
        store = claims.db = Watched(claims.db)
        h.bot.service.db.conn.close()  # the store goes away under the running server
        await until(lambda: not claims.store_ok, 60, "the keeper's next renew (every second) to find out")
        # more keeper rounds (each tries the store) and wake-ups (each tries to take a claim): said once
        store.tries.clear()
        await until(lambda: store.tries["execute"] >= 3 and store.tries["transaction"] >= 3, 60)
        body = await healthz(h)
        assert body["ok"] is False
        assert body["store"]["ok"] is False and body["store"]["backend"] == "sqlite"
        assert body["replica"]["ok"] is False and body["replica"]["claiming"] is False
        assert body["replica"]["claims"] == [] and body["alerts"]["scopes"] == []
        said = [
            r.getMessage() for r in caplog.records if r.name == "bot.claims" and r.levelno >= logging.ERROR
        ]
        assert len(said) == 1 and "stops claiming work" in said[0], said

"""A replica whose store stops answering: /healthz says so (the store, and that it claims nothing), it
drops what it held, and the log says it once, through the real server."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest
from support.bot import BotHarness, harness


async def healthz(h: BotHarness) -> dict[str, Any]:
    async with h.http.get(h.url + "/healthz") as response:
        assert response.status == 200  # it still serves: ok false says what is wrong
        return dict(await response.json())


async def test_a_replica_that_loses_its_store_stops_claiming_and_says_so(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async with harness(tmp_path, with_alerts=True, replicas={"lease_seconds": 3}) as h:
        claims = h.bot.service.claims
        assert claims is not None
        deadline = time.monotonic() + 60  # generous: a loaded machine
        while "sweep:homebase" not in claims.names():  # the start-up sweep took the scope
            assert time.monotonic() < deadline, claims.names()
            await asyncio.sleep(0.05)
        body = await healthz(h)
        assert body["ok"] and body["store"] == {"ok": True, "backend": "sqlite"}
        assert {"expiry", "sweep:homebase"} <= set(body["replica"]["claims"])
        assert body["alerts"]["scopes"] == ["homebase"]

        caplog.set_level(logging.INFO, logger="bot.claims")
        h.bot.service.db.conn.close()  # the store goes away under the running server
        deadline = time.monotonic() + 60
        while claims.store_ok:  # the keeper's next renew (every second) finds out
            assert time.monotonic() < deadline, "the keeper never noticed"
            await asyncio.sleep(0.05)
        await asyncio.sleep(2.5)  # more keeper rounds and wake-ups: said once, not each time
        body = await healthz(h)
        assert body["ok"] is False
        assert body["store"]["ok"] is False and body["store"]["backend"] == "sqlite"
        assert body["replica"]["ok"] is False and body["replica"]["claiming"] is False
        assert body["replica"]["claims"] == [] and body["alerts"]["scopes"] == []
        said = [
            r.getMessage() for r in caplog.records if r.name == "bot.claims" and r.levelno >= logging.ERROR
        ]
        assert len(said) == 1 and "stops claiming work" in said[0], said

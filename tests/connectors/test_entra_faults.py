"""Entra faults not covered by test_entra_connector's table: a read that answers too late (retried, then
reported as no answer), and tokens the simulator expires through its admin fault API."""

from __future__ import annotations

import aiohttp
import pytest
from support.sims import entra_connector

from connectors import ProviderUnavailableError
from standins.common import Fault

SLEPT: list[float] = []


async def no_sleep(seconds: float) -> None:
    SLEPT.append(seconds)


async def test_a_slow_read_is_retried_then_reported_as_no_answer() -> None:
    async with entra_connector(50, timeout=0.3) as (state, connector):
        connector._http._sleep = no_sleep  # type: ignore[assignment]  # waits recorded, not slept
        await connector.get_identity(state.user_id(1))
        state.faults.append(Fault("slow", 1, delay=0.6, path="/v1.0/users"))
        assert (await connector.get_identity(state.user_id(1))).id == state.user_id(1)  # asked again
        assert SLEPT  # after a backoff
        state.faults.append(Fault("slow", 20, delay=0.6, path="/v1.0/users"))
        with pytest.raises(ProviderUnavailableError, match=r"did not answer in 0\.3 s"):
            await connector.get_identity(state.user_id(1))
        state.faults.clear()


async def test_tokens_expired_through_the_fault_api_are_fetched_again_once() -> None:
    async with entra_connector(50) as (state, connector):
        await connector.get_identity(state.user_id(1))
        async with aiohttp.ClientSession() as session:
            faults = f"{connector.graph_url}/_admin/faults"
            async with session.post(faults, json={"kind": "expire_token"}) as answer:
                assert answer.status in (200, 201, 204), await answer.text()
        got = await connector.get_identity(state.user_id(2))
        assert got.id == state.user_id(2) and connector.tokens_fetched == 2
        assert [r.status for r in state.log].count(401) == 1

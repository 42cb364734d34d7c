"""Escalation steps claimed in the store: several sweeps on one store (each its own connection, running
at once in threads, as replicas would) claim each step once, and a missed step is skipped; on SQLite
and on PostgreSQL."""

from __future__ import annotations

import asyncio
import json

from support.approvals import REQUESTER, harness

from bot.approvals import ApprovalRequest, ApprovalService
from bot.config import ApprovalSettings
from bot.store import open_store
from connectors import Action

SETTINGS = ApprovalSettings(expire_minutes=60, escalate_after_minutes=5, escalate_to="S0LEADS")


async def test_sweeps_racing_on_one_store_claim_each_step_once(tmp_path, store_url: str) -> None:
    async with harness(tmp_path) as h:
        sweeps = [
            ApprovalService(
                open_store(store_url),
                connectors={"homebase": h.connector},
                access=h.service.access,
                approvals=SETTINGS,
                directory=h.directory,
                clock=h.clock,
            )
            for _ in range(4)
        ]
        ids = []
        for index in range(12):
            record = h.sim.record(index)
            if record["status"] != "active":
                continue
            request = await sweeps[0].request(
                connector="homebase",
                identity_id=record["id"],
                action=Action.REVOKE_SESSIONS,
                reason="phished",
                requested_by=REQUESTER,
            )
            sweeps[0].set_message(request.id, "C0APPROVALS", f"1700000000.{index:06d}")
            ids.append(request.id)
        told: list[tuple[str, int]] = []  # what each claim's transaction was given to say

        def tell(request: ApprovalRequest) -> None:
            told.append((request.id, request.escalation_step))

        assert sweeps[1].escalate_due(tell) == [] and told == []  # not due yet
        for step in (1, 2):
            h.clock.advance(minutes=5)
            batches = await asyncio.gather(*(asyncio.to_thread(sweep.escalate_due, tell) for sweep in sweeps))
            claimed = [request.id for batch in batches for request in batch]
            assert sorted(claimed) == sorted(ids)  # every request once, by whichever sweep got it
            assert {request.escalation_step for batch in batches for request in batch} == {step}
        h.clock.advance(minutes=12)  # steps 3 and 4 missed (a bot that was down): only step 4 is said
        assert sorted(request.id for request in sweeps[2].escalate_due(tell)) == sorted(ids)
        assert sorted(told) == sorted((request_id, step) for request_id in ids for step in (1, 2, 4))
        rows = list(
            sweeps[0].db.query("SELECT request_id, detail FROM audit WHERE event = 'escalation' ORDER BY id")
        )
        steps: dict[str, list[int]] = {}
        for row in rows:
            steps.setdefault(row["request_id"], []).append(json.loads(row["detail"])["step"])
        assert steps == {request_id: [1, 2, 4] for request_id in ids}
        for sweep in sweeps:
            sweep.db.close()

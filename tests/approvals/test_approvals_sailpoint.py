"""Approvals across two providers: SailPoint (disable only, queued tasks) next to HomeBase."""

from __future__ import annotations

import pytest
from support.approvals import (
    APPROVERS,
    REQUESTER,
    Clock,
    MemoryDirectory,
    connector_for,
    make_service,
    open_store,
)

import connectors
from bot.approvals import Decision, InvalidRequest, Status
from connectors import Action
from standins import homebase, sailpoint, serving


@pytest.fixture
async def service(tmp_path):
    hb_app = homebase.create_app(identities=40, rate_limits=False)
    sp_app = sailpoint.create_app(identities=40, rate_limit=False)
    async with serving(hb_app) as hb_url, serving(sp_app) as sp_url:
        sp = connectors.build(
            "sailpoint", "sp", {"base_url": sp_url, "client_id": "sim-client", "client_secret": "sim-secret"}
        )
        async with connector_for(hb_url) as hb, sp:
            db = open_store(str(tmp_path / "idops.db"))
            built = make_service(db, {"homebase": hb, "sp": sp}, MemoryDirectory({}), Clock())
            built.sim = sp_app[sailpoint.STATE]  # type: ignore[attr-defined]
            yield built
            db.close()


@pytest.mark.parametrize("action", [Action.FORCE_PASSWORD_RESET, Action.REVOKE_SESSIONS])
async def test_an_action_the_provider_lacks_is_refused_naming_it(service, action):
    with pytest.raises(InvalidRequest, match=f"SailPoint has no '{action.label}' action") as caught:
        await service.request(
            connector="sp",
            identity_id=service.sim.identity_id(3),
            action=action,
            reason="",
            requested_by=REQUESTER,
        )
    assert caught.value.field == "action"
    assert service.db.count("approvals") == 0


async def test_disable_on_sailpoint_runs_once_and_keeps_the_queued_tasks(service):
    identity_id = service.sim.identity_id(5)
    request = await service.request(
        connector="sp",
        identity_id=identity_id,
        action=Action.DISABLE,
        reason="token theft",
        requested_by=REQUESTER,
    )
    assert request.target["provider_label"] == "SailPoint"
    for approver in APPROVERS[: request.approvals_needed]:
        decided = await service.decide(request.id, user_id=approver, decision=Decision.APPROVE)
    assert decided.status is Status.APPROVED
    done = await service.execute(request.id)
    assert done.status is Status.EXECUTED and done.result is not None
    assert done.result["status"] == "queued" and done.result["reference"]
    assert set(done.result["reference"].split(",")) <= set(service.sim.tasks)
    assert service.history("sp", identity_id)[0]["event"] == "executed"
    assert service.history("homebase", identity_id) == []

"""Execution exactly once, whatever the clicks: concurrent tasks, threads with their own SQLite
connections, separate processes; failures, retries and timeouts. The HomeBase simulator's action log
is the witness of how many times an action really ran."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from pathlib import Path

import pytest
from support.approvals import (
    APPROVERS,
    OUTSIDER,
    REQUESTER,
    TARGET_USER,
    Clock,
    MemoryDirectory,
    connector_for,
    harness,
    make_service,
    open_store,
)

from bot import audit
from bot.approvals import INTERRUPTED, Decision, PolicyError, Status
from connectors import Action

A, B, C = APPROVERS
TESTS = Path(__file__).resolve().parents[1]


async def _request(h, who="plain", action=Action.REVOKE_SESSIONS, reason="phished"):
    return await h.service.request(
        connector="homebase",
        identity_id=h.people[who]["id"],
        action=action,
        reason=reason,
        requested_by=REQUESTER,
    )


async def _approve(h, request_id, user=A):
    return await h.service.decide(request_id, user_id=user, decision=Decision.APPROVE)


async def _click(service, request_id, user):
    """What the Slack handler does for an Approve click: decide, then execute if that approved it."""
    try:
        decided = await service.decide(request_id, user_id=user, decision=Decision.APPROVE)
    except PolicyError:
        return None
    if decided.status is Status.APPROVED:
        return await service.execute(request_id)
    return decided


async def test_approved_request_executes_and_stores_the_result(h):
    request = await _request(h)
    await _approve(h, request.id)
    done = await h.service.execute(request.id)
    assert done.status is Status.EXECUTED and done.attempts == 1 and done.error is None
    assert done.result is not None
    assert done.result["status"] == "completed" and done.result["action"] == "revoke_sessions"
    assert done.result["identity_id"] == request.identity_id and done.result["reference"]
    actions = await h.actions()
    assert [(a["action"], a["identity_id"]) for a in actions] == [("revoke_sessions", request.identity_id)]
    assert h.sim.sessions_revoked[request.identity_id] == 1
    assert h.audit_events(request.id) == ["requested", "approved", "executing", "executed"]
    executed = h.service.history("homebase", request.identity_id)[0]
    assert (
        executed["event"] == "executed"
        and executed["detail"]["result"]["reference"] == done.result["reference"]
    )


async def test_disable_passes_the_reason_to_the_provider(h):
    request = await _request(h, action=Action.DISABLE, reason="<!channel> stolen laptop")
    await _approve(h, request.id)
    assert (await h.service.execute(request.id)).status is Status.EXECUTED
    assert [a["reason"] for a in await h.actions()] == ["<!channel> stolen laptop"]


async def test_execute_twice_runs_once(h):
    request = await _request(h)
    await _approve(h, request.id)
    first = await h.service.execute(request.id)
    again = await h.service.execute(request.id)
    assert first.status is again.status is Status.EXECUTED and again.attempts == 1
    assert len(await h.actions()) == 1


async def test_execute_does_nothing_unless_approved(h):
    request = await _request(h)
    assert (await h.service.execute(request.id)).status is Status.PENDING
    await h.service.decide(request.id, user_id=A, decision=Decision.DENY, reason="no")
    assert (await h.service.execute(request.id)).status is Status.DENIED
    assert await h.actions() == []


async def test_many_concurrent_clicks_execute_once(h):
    request = await _request(h)
    users = [APPROVERS[i % 3] for i in range(60)]
    outcomes = await asyncio.wait_for(
        asyncio.gather(*(_click(h.service, request.id, user) for user in users)), timeout=30
    )
    assert len(await h.actions()) == 1
    assert h.service.get(request.id).status is Status.EXECUTED
    assert sum(1 for o in outcomes if o is not None and o.status is Status.EXECUTED) >= 1
    events = h.audit_events(request.id)
    assert events.count("approved") == 1 and events.count("executing") == 1 and events.count("executed") == 1
    assert events.count("refused") == 59
    assert audit.verify(h.db)[0] is True


async def test_concurrent_execute_calls_run_once(h):
    request = await _request(h)
    await _approve(h, request.id)
    outcomes = await asyncio.wait_for(
        asyncio.gather(*(h.service.execute(request.id) for _ in range(30))), timeout=30
    )
    assert {o.status for o in outcomes} == {Status.EXECUTING, Status.EXECUTED}
    assert len(await h.actions()) == 1
    assert h.service.get(request.id).attempts == 1


async def test_concurrent_clicks_on_a_privileged_target_need_two_and_run_once(h):
    request = await _request(h, who="privileged")
    users = [APPROVERS[i % 3] for i in range(30)]
    await asyncio.wait_for(asyncio.gather(*(_click(h.service, request.id, u) for u in users)), timeout=30)
    done = h.service.get(request.id)
    assert done.status is Status.EXECUTED and len(done.approvers) == 2 and len(set(done.approvers)) == 2
    assert len(await h.actions()) == 1


def _thread_clicks(db_path, sim_url, request_id, user, barrier, outcomes):
    """A second "server": its own SQLite connection, connector and event loop."""

    async def run():
        connector = connector_for(sim_url, timeout=5)
        async with connector:
            db = open_store(db_path)
            service = make_service(db, {"homebase": connector}, MemoryDirectory({}), Clock())
            barrier.wait(timeout=10)
            for _ in range(5):  # each "server" redelivers the click a few times
                outcomes.append(await _click(service, request_id, user))
                outcomes.append(await service.execute(request_id))
            db.close()

    asyncio.run(run())


async def test_separate_connections_in_threads_execute_once(h):
    request = await _request(h)
    barrier = threading.Barrier(4)
    outcomes: list = []
    threads = [
        threading.Thread(
            target=_thread_clicks, args=(h.db_path, h.sim_url, request.id, user, barrier, outcomes)
        )
        for user in (A, B, C, A)
    ]
    for thread in threads:
        thread.start()
    await asyncio.wait_for(asyncio.gather(*(asyncio.to_thread(t.join, 30) for t in threads)), timeout=40)
    assert not any(t.is_alive() for t in threads)
    assert len(outcomes) == 40
    assert len(await h.actions()) == 1
    assert h.service.get(request.id).status is Status.EXECUTED
    assert h.audit_events(request.id).count("executing") == 1
    assert audit.verify(h.db)[0] is True


async def _spawn_executor(h, request_id):
    """Another process on the same store and simulator that executes `request_id` when told "go"."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "support.approvals",
        h.db_path,
        h.sim_url,
        request_id,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(TESTS.parent)])},
    )


async def test_separate_processes_execute_once(h):
    request = await _request(h)
    await _approve(h, request.id)
    procs = [await _spawn_executor(h, request.id) for _ in range(3)]
    try:
        for proc in procs:  # everyone loaded and connected before the start signal
            assert proc.stdout is not None
            assert await asyncio.wait_for(proc.stdout.readline(), timeout=30) == b"ready\n"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
        results = await asyncio.wait_for(asyncio.gather(*(p.communicate() for p in procs)), timeout=30)
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
    statuses = sorted(out.decode().strip() for out, _ in results)
    assert all(p.returncode == 0 for p in procs)
    # the winner saw it executed; anyone still racing saw it executing or already executed
    assert "executed" in statuses and set(statuses) <= {"executed", "executing"}
    assert len(await h.actions()) == 1
    assert h.service.get(request.id).status is Status.EXECUTED


# --- failures and retry -----------------------------------------------------------------------------


async def _fail_next_action(h, identity_id, action="revoke-sessions", **fault):
    """The provider refuses the next action (a 4xx: nothing was done, so a Retry is safe)."""
    await h.fault(
        kind="error",
        code="validation_error",
        method="POST",
        path=f"/v1/identity/{identity_id}/{action}",
        **fault,
    )


async def test_provider_error_fails_the_request_then_retry_succeeds(h):
    request = await _request(h)
    await _approve(h, request.id)
    await _fail_next_action(h, request.identity_id)
    failed = await h.service.execute(request.id)
    assert failed.status is Status.FAILED and failed.result is None
    assert failed.error is not None and "HomeBase" in failed.error and "request id req_" in failed.error
    assert await h.actions() == []  # a refusal is not retried by the connector
    retried = await h.service.retry(request.id, user_id=B)
    assert retried.status is Status.EXECUTED and retried.error is None and retried.attempts == 2
    assert len(await h.actions()) == 1
    assert h.audit_events(request.id) == [
        "requested",
        "approved",
        "executing",
        "failed",
        "retried",
        "executing",
        "executed",
    ]
    failed_row = h.service.history("homebase", request.identity_id)[3]
    assert failed_row["event"] == "failed" and failed_row["detail"]["error"] == failed.error


async def test_concurrent_retries_run_once(h):
    request = await _request(h)
    await _approve(h, request.id)
    await _fail_next_action(h, request.identity_id)
    assert (await h.service.execute(request.id)).status is Status.FAILED
    outcomes = await asyncio.wait_for(
        asyncio.gather(*(h.service.retry(request.id, user_id=APPROVERS[i % 3]) for i in range(20))),
        timeout=30,
    )
    assert {o.status for o in outcomes} <= {Status.EXECUTING, Status.EXECUTED}
    assert len(await h.actions()) == 1
    assert h.audit_events(request.id).count("retried") == 1
    # a late retry on the executed request is harmless
    assert (await h.service.retry(request.id, user_id=A)).status is Status.EXECUTED
    assert len(await h.actions()) == 1


async def test_retry_that_fails_again_stays_retryable(h):
    request = await _request(h)
    await _approve(h, request.id)
    await _fail_next_action(h, request.identity_id, count=2)
    assert (await h.service.execute(request.id)).status is Status.FAILED
    again = await h.service.retry(request.id, user_id=A)
    assert again.status is Status.FAILED and again.attempts == 2
    assert (await h.service.retry(request.id, user_id=A)).status is Status.EXECUTED


async def test_retry_policy(h):
    request = await _request(h)
    with pytest.raises(PolicyError, match="Only a failed request can be retried; this one is pending"):
        await h.service.retry(request.id, user_id=A)
    await _approve(h, request.id)
    await _fail_next_action(h, request.identity_id)
    await h.service.execute(request.id)
    with pytest.raises(PolicyError, match="Only approvers"):
        await h.service.retry(request.id, user_id=OUTSIDER)
    with pytest.raises(PolicyError, match="against your own account"):
        await h.service.retry(request.id, user_id=TARGET_USER)
    assert h.service.get(request.id).status is Status.FAILED
    assert await h.actions() == []


async def test_an_action_slower_than_the_limit_has_an_unknown_outcome(tmp_path):
    async with harness(tmp_path, action_timeout=0.3) as h:
        request = await _request(h)
        await _approve(h, request.id)
        await h.fault(kind="slow", delay=1.0, method="POST")
        unknown = await h.service.execute(request.id)
        assert unknown.status is Status.UNKNOWN and not unknown.retryable
        assert unknown.error == (
            "HomeBase did not finish the action within 0.3 s, so the outcome is unknown: it may or may"
            " not have been done"
        )


async def test_provider_conflict_is_a_failure_with_the_providers_words(h):
    first = await _request(h, action=Action.DISABLE, reason="compromised")
    await _approve(h, first.id)
    assert (await h.service.execute(first.id)).status is Status.EXECUTED
    second = await _request(h, action=Action.DISABLE, reason="still compromised")
    await _approve(h, second.id)
    failed = await h.service.execute(second.id)
    assert failed.status is Status.FAILED and "already disabled" in (failed.error or "")
    assert len(await h.actions()) == 1


async def test_a_connector_removed_from_the_config_fails_the_request(h):
    request = await _request(h)
    await _approve(h, request.id)
    without = make_service(h.db, {}, h.directory, h.clock)
    failed = await without.execute(request.id)
    assert failed.status is Status.FAILED and failed.error == "connector 'homebase' is no longer configured"
    assert await h.actions() == []


async def _until(h, check):
    for _ in range(500):  # bounded: 5 s
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("never happened")


async def _wait_for_status(h, request_id, status):
    for _ in range(500):  # bounded: 5 s
        if h.service.get(request_id).status is status:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{request_id} never became {status.value}")


async def test_cancelled_mid_action_is_unknown_and_runs_again_only_when_asked(h):
    request = await _request(h)
    await _approve(h, request.id)
    await h.fault(kind="slow", delay=0.5, method="POST")
    running = asyncio.create_task(h.service.execute(request.id))
    await _wait_for_status(h, request.id, Status.EXECUTING)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    unknown = h.service.get(request.id)
    assert unknown.status is Status.UNKNOWN and unknown.error == INTERRUPTED
    with pytest.raises(PolicyError, match="outcome is unknown"):
        await h.service.retry(request.id, user_id=B)
    # the provider did it after all (the slow answer): the re-run carries the same key, so no second run
    await _until(h, lambda: h.sim.sessions_revoked[request.identity_id] == 1)
    again = await h.service.rerun(request.id, user_id=B, attempt=unknown.attempts)
    assert again.status is Status.EXECUTED and h.sim.sessions_revoked[request.identity_id] == 1


async def test_the_sweep_gives_up_an_execution_whose_process_died_as_unknown(h):
    request = await _request(h)
    await _approve(h, request.id)
    await h.fault(kind="slow", delay=1.0, method="POST")
    proc = await _spawn_executor(h, request.id)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        assert await asyncio.wait_for(proc.stdout.readline(), timeout=30) == b"ready\n"
        proc.stdin.write(b"go\n")
        await _wait_for_status(h, request.id, Status.EXECUTING)
    finally:
        proc.kill()  # a crash: nothing gets to write FAILED
        await asyncio.wait_for(proc.wait(), timeout=10)
    assert h.service.expire_due() == []  # still within the action's time limit: maybe running
    assert h.service.get(request.id).status is Status.EXECUTING
    h.clock.advance(seconds=10 + 60)
    swept = h.service.expire_due()
    assert [(r.id, r.status, r.error) for r in swept] == [(request.id, Status.UNKNOWN, INTERRUPTED)]
    with pytest.raises(PolicyError, match="outcome is unknown"):
        await h.service.retry(request.id, user_id=B)
    assert h.audit_events(request.id)[-3:] == ["executing", "outcome_unknown", "refused"]

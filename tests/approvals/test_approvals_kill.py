"""Kill -9 in the middle of an action, then restart (issue 15, item 3): a real subprocess executes
approved requests against the HomeBase simulator and is killed with SIGKILL while HomeBase is still
working on them (HomeBase carries them out anyway); a restarted bot on the same SQLite file settles them
within seconds, not at the sweep's time limit: the readable one (disable) is Done without a second
call, the other one (revoke sessions) is an unknown outcome with *Run again*, never a plain *Retry*.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import pytest
from support.approvals import API_KEY
from support.bot import APPROVER, buttons, harness, slack_secrets, status_of, until

from bot.approvals import Decision, Status
from bot.server import build_web_app
from standins import serving

TESTS = Path(__file__).resolve().parents[1]


@pytest.fixture
async def h(tmp_path):
    async with harness(tmp_path) as built:
        yield built


async def _executor(db_path: str, sim_url: str, request_id: str) -> asyncio.subprocess.Process:
    """A separate process on the bot's store, ready to execute `request_id` when told "go"."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "support.approvals",
        db_path,
        sim_url,
        request_id,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(TESTS.parent)])},
    )
    assert proc.stdout is not None and proc.stdin is not None
    # a Python start-up and its imports: slow on a loaded machine
    assert await asyncio.wait_for(proc.stdout.readline(), timeout=120) == b"ready\n"
    return proc


async def test_killed_mid_action_then_restarted_settles_in_seconds(h, tmp_path):
    service = h.bot.flow.service
    disable = await h.request_card(action="disable", reason="stolen laptop")
    revoke = await h.request_card(who="plain2", action="revoke")
    ids = [card["metadata"]["event_payload"]["request_id"] for card in (disable, revoke)]
    for request_id in ids:  # approved here; executed by the process that will die
        assert (await service.decide(request_id, user_id=APPROVER, decision=Decision.APPROVE)).status is (
            Status.APPROVED
        )
        await h.bot.flow.refresh_card(request_id)
    await h.fault(kind="slow", delay=6.0, count=2, method="POST")
    procs = [await _executor(str(tmp_path / "idops.db"), h.sim_url, request_id) for request_id in ids]
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
    try:
        await until(lambda: all(service.get(i).status is Status.EXECUTING for i in ids))
        # both requests reached HomeBase (claimed is not yet sent): the kill comes while it works on them
        await until(lambda: len(h.sim.requests_to("/v1/identity", "POST")) == 2, 60)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGKILL)  # a crash: nothing gets to write an outcome
            await asyncio.wait_for(proc.wait(), timeout=10)
    assert [p.returncode for p in procs] == [-signal.SIGKILL] * 2
    await until(lambda: len(h.actions()) == 2)  # HomeBase did both, after the process died
    assert all(status_of(card).startswith(":white_check_mark: Approved, running now") for card in h.cards())

    # restart: a new bot process on the same store and Slack; its start-up settles the two requests
    restarted = build_web_app(
        h.config, slack_secrets(h.slack), environ={"TEST_HLD_KEY": API_KEY}, extensions=[]
    )
    started = time.monotonic()
    async with serving(restarted):
        await until(lambda: all(service.get(i).status in (Status.EXECUTED, Status.UNKNOWN) for i in ids))
        await until(lambda: len([c for c in h.cards() if len(c["replies"]) >= 1]) == 2)
    assert time.monotonic() - started < 60  # seconds (loaded machine), not the ~180 s of the time limit
    done, unknown = (service.get(i) for i in ids)
    assert done.status is Status.EXECUTED and "not sent again" in (done.result or {})["message"]
    assert unknown.status is Status.UNKNOWN and "idops stopped while the action was running" in (
        unknown.error or ""
    )
    disable_card, revoke_card = h.cards()
    assert status_of(disable_card).startswith(":white_check_mark: Done") and buttons(disable_card) == []
    assert status_of(revoke_card).startswith(":warning: Outcome unknown")
    assert [b[0] for b in buttons(revoke_card)] == ["approval:check", "approval:rerun"]
    assert len(h.sim.requests_to("/v1/identity", "POST")) == 2  # nothing was sent a second time

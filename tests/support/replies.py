"""A replica that dies while posting a thread reply (bot/thread_replies.py), for the kill tests. Run as

- `python -m support.replies STORE_URL API_URL TOKEN KEY CHANNEL THREAD_TS TEXT POINT`: it claims the
  reply `KEY` in the store and posts TEXT;
- `python -m support.replies sweep STORE_URL API_URL TOKEN NOW POINT`: it runs the escalation and
  containment sweeps (bot/approval_flow.py `escalate_due`, bot/containment_flow.py) at NOW (ISO 8601),
  which claim the escalation steps and reminders due with their replies, and post them;

and prints POINT when it gets there ("claimed": before the post; "posted": after Slack took it, before
the store records it) and waits there to be killed with SIGKILL."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path

from slack_sdk.web.async_client import AsyncWebClient

from bot.approval_flow import ApprovalFlow
from bot.blocks import text_message
from bot.containment_flow import ContainmentFlow
from bot.replies import Replies
from bot.store import open_store
from bot.thread_replies import ThreadReplies, client_for
from support.approvals import Clock, MemoryDirectory, make_service

TESTS = Path(__file__).resolve().parents[1]


async def killed_at(
    point: str, *argv: str, environ: Mapping[str, str], module: str = "support.replies"
) -> None:
    """Run `python -m MODULE ARGV...` (this module by default), wait until it prints `point`, SIGKILL it."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(TESTS.parent)]), **environ},
    )
    assert proc.stdout is not None
    try:
        assert await asyncio.wait_for(proc.stdout.readline(), timeout=30) == f"{point}\n".encode()
    finally:
        proc.send_signal(signal.SIGKILL)
        await asyncio.wait_for(proc.wait(), timeout=10)
    assert proc.returncode == -signal.SIGKILL


def stop_at(at: str) -> Callable[[str, str], None]:
    def hook(point: str, _key: str) -> None:
        if point == at:
            print(point, flush=True)
            sys.stdin.readline()  # blocks the loop: the test kills the process here

    return hook


async def _post_until_killed(
    url: str, api_url: str, token: str, key: str, channel: str, ts: str, text: str, at: str
) -> None:
    db = open_store(url)
    client = client_for(AsyncWebClient(token=token, base_url=api_url), 30)
    replies = ThreadReplies(db, client, lease=30, hook=stop_at(at))
    await replies.post(key, channel, ts, text_message(text))
    print("finished", flush=True)  # not reached when killed


async def _sweep_until_killed(url: str, api_url: str, token: str, now: str, at: str) -> None:
    service = make_service(open_store(url), {}, MemoryDirectory({}), Clock(datetime.fromisoformat(now)))
    client = AsyncWebClient(token=token, base_url=api_url)
    flow = ApprovalFlow(service, Replies(client), channel="C0APPROVALS")
    flow.threads.hook = stop_at(at)
    await flow.escalate_due()
    await ContainmentFlow(flow).sweep()
    print("finished", flush=True)  # not reached when killed


if __name__ == "__main__":
    if sys.argv[1] == "sweep":
        asyncio.run(_sweep_until_killed(*sys.argv[2:7]))
    else:
        asyncio.run(_post_until_killed(*sys.argv[1:9]))

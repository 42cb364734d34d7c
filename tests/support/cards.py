"""A replica that dies while posting an approval card (bot/card_posts.py), for the kill tests. Run as
`python -m support.cards STORE_URL API_URL TOKEN REQUEST_ID NOW POINT`: it posts the card of the pending
request REQUEST_ID (as a re-post does, `ApprovalFlow.post_approval`, its clock at NOW, ISO 8601), prints
POINT when it gets there ("claimed": before the post; "posted": after Slack took it, before the store
records it) and waits there to be killed with SIGKILL (`support.replies.killed_at`, module
"support.cards")."""

from __future__ import annotations

import asyncio
import sys
from datetime import datetime

from slack_sdk.web.async_client import AsyncWebClient

from bot.approval_flow import ApprovalFlow
from bot.replies import Replies
from bot.store import open_store
from support.approvals import Clock, MemoryDirectory, make_service
from support.replies import stop_at


async def _post_until_killed(url: str, api_url: str, token: str, request_id: str, now: str, at: str) -> None:
    service = make_service(open_store(url), {}, MemoryDirectory({}), Clock(datetime.fromisoformat(now)))
    flow = ApprovalFlow(
        service, Replies(AsyncWebClient(token=token, base_url=api_url)), channel="C0APPROVALS"
    )
    flow.cards.hook = stop_at(at)
    await flow.post_approval(service.get(request_id))
    print("finished", flush=True)  # not reached when killed


if __name__ == "__main__":
    asyncio.run(_post_until_killed(*sys.argv[1:7]))

"""A replica that dies while posting a thread reply (bot/thread_replies.py), for the kill tests: run as
`python -m support.replies STORE_URL API_URL TOKEN KEY CHANNEL THREAD_TS TEXT POINT`, it claims the reply
in the store, prints POINT when it gets there ("claimed": before the post; "posted": after Slack took it,
before the store records it) and waits there to be killed with SIGKILL."""

from __future__ import annotations

import asyncio
import sys

from slack_sdk.web.async_client import AsyncWebClient

from bot.blocks import text_message
from bot.store import open_store
from bot.thread_replies import ThreadReplies, client_for


async def _post_until_killed(
    url: str, api_url: str, token: str, key: str, channel: str, ts: str, text: str, at: str
) -> None:
    db = open_store(url)

    def hook(point: str, _key: str) -> None:
        if point == at:
            print(point, flush=True)
            sys.stdin.readline()  # blocks the loop: the test kills the process here

    client = client_for(AsyncWebClient(token=token, base_url=api_url), 30)
    replies = ThreadReplies(db, client, lease=30, hook=hook)
    await replies.post(key, channel, ts, text_message(text))
    print("finished", flush=True)  # not reached when killed


if __name__ == "__main__":
    asyncio.run(_post_until_killed(*sys.argv[1:9]))

"""Slack failures are described safely even when the answer is not Slack's JSON (a proxy's error page)."""

from __future__ import annotations

import pytest
from aiohttp import web
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack_api import describe, slack_error
from standins import serving


async def _failure(status: int, body: str, content_type: str) -> SlackApiError:
    app = web.Application()

    async def answer(request: web.Request) -> web.Response:
        return web.Response(status=status, text=body, content_type=content_type)

    app.router.add_post("/api/chat.postMessage", answer)
    async with serving(app) as url:
        client = AsyncWebClient(token="xoxb-test", base_url=url + "/api/", retry_handlers=[])
        with pytest.raises(SlackApiError) as caught:
            await client.chat_postMessage(channel="C1", text="hi")
    return caught.value


async def test_html_error_page_is_described_by_its_status() -> None:
    error = await _failure(503, "<html>Service Unavailable</html>", "text/html")
    assert slack_error(error.response) is None
    assert describe(error.response) == "HTTP 503"


async def test_slack_json_error_is_described_by_its_code() -> None:
    error = await _failure(200, '{"ok": false, "error": "channel_not_found"}', "application/json")
    assert slack_error(error.response) == "channel_not_found"
    assert describe(error.response) == "channel_not_found"

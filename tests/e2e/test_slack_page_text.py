"""The Slack stand-in's page shows text as Slack does, in headless Chromium: entities decoded in
plain_text as in mrkdwn, emoji shortcodes drawn from the shipped Twemoji images (so they show on a
machine without an emoji font), and nothing in a message ever becoming an element."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, Page, expect
from slack_sdk.web.async_client import AsyncWebClient
from support.browser import screenshot

from bot.slack_text import escape
from standins.slack import FakeSlack
from standins.slack.page import PEOPLE, RESPONDER, SlackUI, demo_workspace

HOSTILE = "<img src=x onerror=\"document.title='pwned'\"> & <b>bold?</b>"
# per image: drawn pixels (alpha > 0) out of 36x36, and how many are clearly red (the siren's body)
DRAWN = """async (img) => {
  await img.decode();
  const canvas = document.createElement("canvas");
  canvas.width = canvas.height = 36;
  const context = canvas.getContext("2d");
  context.drawImage(img, 0, 0, 36, 36);
  const data = context.getImageData(0, 0, 36, 36).data;
  let drawn = 0, red = 0;
  for (let i = 0; i < data.length; i += 4) {
    if (data[i + 3] > 0) drawn++;
    if (data[i + 3] > 200 && data[i] > 150 && data[i + 1] < 80 && data[i + 2] < 100) red++;
  }
  return { drawn, red, src: img.getAttribute("src"), alt: img.alt, title: img.title };
}"""


@pytest.fixture
async def page_slack() -> AsyncIterator[FakeSlack]:
    """The demo workspace with its page, served on loopback (no bot behind it)."""
    slack = demo_workspace()
    SlackUI(slack, "", PEOPLE).attach()
    async with slack.serve():
        yield slack


async def open_alerts(browser: Browser, slack: FakeSlack) -> Page:
    page = await browser.new_page(viewport={"width": 1100, "height": 700})
    await page.goto(f"{slack.base_url}/?user={RESPONDER}")
    await expect(page.locator("#pane-title")).to_have_text("# idops-alerts")
    return page


@pytest.mark.browser
async def test_plain_text_and_mrkdwn_show_decoded_text_and_emoji_images(
    browser: Browser, page_slack: FakeSlack
) -> None:
    client = AsyncWebClient(token=page_slack.bot_token, base_url=page_slack.api_url)
    title = f":rotating_light: Critical risk: {escape(HOSTILE)}"
    await client.chat_postMessage(
        channel="C0ALERTS",
        text="Critical risk",
        blocks=[
            {"type": "header", "text": {"type": "plain_text", "text": title, "emoji": True}},
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": f":warning: *{escape(HOSTILE)}* :no_such_emoji: :00:"},
                "fields": [{"type": "mrkdwn", "text": "*Risk*\n:large_green_circle: 12 low"}],
            },
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "action_id": "approve",
                        "text": {"type": "plain_text", "text": ":white_check_mark: Approve &amp; go"},
                    },
                    {
                        "type": "button",
                        "action_id": "raw",
                        "text": {"type": "plain_text", "text": ":x: kept as typed", "emoji": False},
                    },
                ],
            },
        ],
    )
    page = await open_alerts(browser, page_slack)
    message = page.locator(".msg").filter(has=page.locator(".block-header"))
    await expect(message).to_be_visible()

    # entities decoded in the plain_text header, as in mrkdwn; the markup stays text
    header = message.locator(".block-header")
    await expect(header).to_have_text(f"Critical risk: {HOSTILE}")
    await expect(message.locator("strong").first).to_have_text(HOSTILE)
    await expect(message).to_contain_text(":no_such_emoji: :00:")
    await expect(message).not_to_contain_text("&lt;")
    await expect(message).not_to_contain_text("&amp;")
    await expect(message.get_by_role("button", name="✅ Approve & go")).to_be_visible()
    await expect(message.get_by_role("button", name=":x: kept as typed")).to_be_visible()
    injected = "#pane img:not(.emoji), #pane img:not([src^='/ui/emoji/']), #pane b, #pane script"
    assert await page.locator(injected).count() == 0
    assert await page.title() != "pwned"

    # every shortcode the page knows is an image it serves itself, drawn whatever fonts exist
    images = message.locator("img.emoji")
    await expect(images).to_have_count(4)
    shown = [await images.nth(i).evaluate(DRAWN) for i in range(4)]
    assert [(s["title"], s["src"], s["alt"]) for s in shown] == [
        (":rotating_light:", "/ui/emoji/1f6a8.svg", "🚨"),
        (":warning:", "/ui/emoji/26a0.svg", "⚠"),
        (":large_green_circle:", "/ui/emoji/1f7e2.svg", "🟢"),
        (":white_check_mark:", "/ui/emoji/2705.svg", "✅"),
    ]
    assert all(s["drawn"] > 300 for s in shown), shown
    assert shown[0]["red"] > 100, shown[0]  # the siren is red, not a box or a blank
    box = await header.locator("img.emoji").bounding_box()
    assert box is not None and 12 <= box["height"] <= 40
    await screenshot(page, "slack-page-text")

"""The demo end to end in headless Chromium: alert, lookup, request, refused self-approval, approval, result.

Everything runs for real on loopback: the simulators, the idops server and the Slack stand-in's page;
every click in the browser reaches the bot as a signed Slack request.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect
from slack_sdk.web.async_client import AsyncWebClient
from support.browser import screenshot

from bot.slack_text import escape
from standins import demo, homebase
from standins.slack.page import APPROVER_1, APPROVER_2, RESPONDER

WAIT_MS = 30_000


async def shot(page: Page, name: str) -> None:
    await screenshot(page, f"demo-{name}")


async def confirm_dialog(page: Page, button: str) -> None:
    """Press `button` in the Block Kit confirm dialog the page shows before sending a click."""
    dialog = page.locator("#overlay .dialog.confirm")
    await expect(dialog).to_be_visible()
    await dialog.get_by_role("button", name=button, exact=True).click()


@pytest.mark.browser
async def test_alert_to_approved_revocation_in_the_browser(browser: Browser, tmp_path: Path) -> None:
    events: list[str] = []
    started = time.monotonic()

    def log(line: str) -> None:
        events.append(f"{time.monotonic() - started:6.1f} {line}")

    async with demo.running(tmp_path, slack_port=0, drift_seconds=3.0, log=log) as running:
        page = await browser.new_page(viewport={"width": 1280, "height": 900})
        spot = running.spotlight
        await page.goto(f"{running.slack_url}/?user={RESPONDER}")

        # a critical alert for the spotlight identity appears in #idops-alerts
        alert = page.locator(".msg").filter(
            has=page.locator(".block-header", has_text=f"Critical risk: {spot.name}")
        )
        await expect(alert).to_be_visible(timeout=WAIT_MS)
        await expect(alert).to_contain_text("low → critical")
        await shot(page, "1-alert")

        # the responder looks the identity up and requests "Revoke sessions" from the lookup card
        await page.fill("#command", f"/idops whois {spot.email}")
        await page.press("#command", "Enter")
        lookup = page.locator(".msg.ephemeral").filter(has_text=spot.email)
        await expect(lookup).to_be_visible(timeout=WAIT_MS)
        await expect(lookup).to_contain_text("Only visible to you")
        await shot(page, "2-lookup")
        await lookup.get_by_role("button", name="Revoke sessions").click()

        # the approval card appears in #idops-approvals; the requester's own Approve is refused
        await page.locator("#channel-list button", has_text="idops-approvals").click()
        card = page.locator(".msg:not(.ephemeral)").filter(
            has=page.locator(".block-header", has_text="Revoke sessions request")
        )
        await expect(card).to_be_visible(timeout=WAIT_MS)
        await expect(card).to_contain_text(spot.name)
        await card.get_by_role("button", name="Approve").click()
        await confirm_dialog(page, "Approve")
        refusal = page.locator(".msg.ephemeral").filter(has_text="can't approve your own request")
        await expect(refusal).to_be_visible(timeout=WAIT_MS)
        await expect(card).to_contain_text("Waiting for approval")
        await shot(page, "3-own-approval-refused")

        # an approver approves; the card shows the outcome and the thread the provider's answer
        await page.select_option("#user-select", APPROVER_1)
        await expect(refusal).to_have_count(0)  # Alice's ephemeral is not Bob's to see
        await card.get_by_role("button", name="Approve").click()
        await confirm_dialog(page, "Approve")
        await expect(card).to_contain_text("Done", timeout=WAIT_MS)
        await expect(card.get_by_role("button", name="Approve")).to_have_count(0)
        await expect(card).to_contain_text("(edited)")
        result = page.locator(".thread .msg").filter(has_text=f"Revoke sessions for {spot.name}")
        await expect(result).to_be_visible(timeout=WAIT_MS)
        await expect(result.locator("blockquote")).to_contain_text("done in HomeBase")
        await shot(page, "4-approved")

        # a second request, denied through the modal with a text input
        await page.select_option("#user-select", RESPONDER)
        await page.locator("#channel-list button", has_text="idops-alerts").click()
        await lookup.get_by_role("button", name="Force password reset").click()
        await page.locator("#channel-list button", has_text="idops-approvals").click()
        second = page.locator(".msg:not(.ephemeral)").filter(
            has=page.locator(".block-header", has_text="Force password reset request")
        )
        await expect(second).to_contain_text("Waiting for approval", timeout=WAIT_MS)
        await page.select_option("#user-select", APPROVER_2)
        await second.get_by_role("button", name="Deny").click()
        modal = page.locator("#overlay form.dialog")
        await expect(modal).to_contain_text("Deny request", timeout=WAIT_MS)
        await modal.locator("textarea, input").first.fill("travelling <@U0ALICE>, not an attacker")
        await shot(page, "5-deny-modal")
        await modal.get_by_role("button", name="Deny").click()
        await expect(modal).to_have_count(0, timeout=WAIT_MS)
        await expect(second).to_contain_text("Denied by @carol", timeout=WAIT_MS)
        await expect(second).to_contain_text("travelling <@U0ALICE>, not an attacker")

        # the App Home tab is published for whoever opens it
        await page.locator("#home-tab").click()
        await expect(page.locator("#pane .block").first).to_be_visible(timeout=WAIT_MS)
        await shot(page, "6-home")

        # back in the alert channel for the picture in README
        await page.locator("#channel-list button", has_text="idops-alerts").click()
        await shot(page, "7-alerts")

        # markup in message text stays text: nothing a provider or user writes becomes an element
        hostile = "<img src=x onerror=\"document.title='pwned'\"> <b>bold?</b> <script>alert(1)</script>"
        client = AsyncWebClient(token=running.slack.bot_token, base_url=running.slack.api_url)
        await client.chat_postMessage(
            channel="C0ALERTS", text=escape(hostile) + " <https://example.com/x|a link>"
        )
        await expect(page.locator(".msg", has_text=hostile)).to_be_visible(timeout=WAIT_MS)
        # (the only images are the page's own emoji)
        injected = "#pane img:not(.emoji), #pane img:not([src^='/ui/emoji/']), #pane script, #pane b"
        assert await page.locator(injected).count() == 0
        assert await page.title() != "pwned"
        await expect(page.locator("#pane a", has_text="a link")).to_have_attribute(
            "href", "https://example.com/x"
        )

        state = running.homebase[homebase.STATE]
        assert state.sessions_revoked[spot.identity_id] == 1
        revocations = [
            a
            for a in state.actions
            if a["identity_id"] == spot.identity_id and a["action"] == "revoke_sessions"
        ]
        assert len(revocations) == 1
    print("\n".join(events))
    assert any("clicked 'Approve'" in line for line in events)

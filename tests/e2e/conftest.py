"""Shared set-up of the browser tests: Debian's Chromium, headless, through Playwright."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, async_playwright
from support.browser import CHROMIUM_ARGS, chromium_path


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Headless Chromium for one test, closed after it."""
    chromium = chromium_path()
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()

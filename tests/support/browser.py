"""Headless Chromium for the browser tests: Debian's own (`make test` installs it through
scripts/system-deps), never a downloaded one; screenshots go to tests/artifacts/."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import Page

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


def chromium_path() -> str:
    """Debian's Chromium; its absence fails the test (never skips it, never downloads a browser)."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's Chromium (apt-get install -y chromium)")
    return str(CHROMIUM)


async def screenshot(page: Page, name: str) -> Path:
    """Save what the page shows now as tests/artifacts/<name>.png."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path))
    return path

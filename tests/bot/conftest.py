"""Shared set-up of the bot tests (the harness itself is in tests/support/bot.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from support.bot import BotHarness, harness


@pytest.fixture
async def h(tmp_path) -> AsyncIterator[BotHarness]:
    """The bot's real server on loopback with FakeSlack, the HomeBase simulator and a SQLite file; a
    module that needs other settings defines its own `h`."""
    async with harness(tmp_path) as built:
        yield built

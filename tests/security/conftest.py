"""Set-up of the adversarial tests: the bot's real server (`support.bot.harness`) on loopback with
FakeSlack and the HomeBase simulator, and a log capture at DEBUG."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest
from support.bot import BotHarness, harness


@pytest.fixture
async def h(tmp_path) -> AsyncIterator[BotHarness]:
    async with harness(tmp_path) as built:
        yield built


@pytest.fixture
def logged(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Every log record, DEBUG and up."""
    caplog.set_level(logging.DEBUG)
    return caplog

"""Shared set-up of the alert tests (the harnesses themselves are in tests/support/alerts.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from support.alerts import Served, served


@pytest.fixture
async def s(tmp_path) -> AsyncIterator[Served]:
    """The idops server with its default settings over the HomeBase and SailPoint simulators, FakeSlack
    and a SQLite file; a test that needs other settings opens its own `served(tmp_path, ...)`."""
    async with served(tmp_path) as built:
        yield built

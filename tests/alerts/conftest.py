"""Shared set-up of the alert tests (the harnesses themselves are in tests/support/alerts.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from support import alerts
from support.alerts import Served, served


@pytest.fixture
async def s(tmp_path) -> AsyncIterator[Served]:
    """The idops server with its default settings over the HomeBase and SailPoint simulators, FakeSlack
    and a SQLite file; a test that needs other settings opens its own `served(tmp_path, ...)`."""
    async with served(tmp_path) as built:
        yield built


@pytest.fixture(autouse=True)
def _store_for_running(request: pytest.FixtureRequest) -> Iterator[None]:
    """In a module marked `pytest.mark.usefixtures("store_url")`, `running(...)` opens that store (each
    test then runs on SQLite and on PostgreSQL); elsewhere a SQLite file in tmp_path."""
    alerts.STORE_URL = request.getfixturevalue("store_url") if "store_url" in request.fixturenames else None
    yield
    alerts.STORE_URL = None

"""Shared set-up of the approval tests (the harness itself is in tests/support/approvals.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from support.approvals import Harness, harness


@pytest.fixture
async def h(tmp_path, store_url) -> AsyncIterator[Harness]:
    """The approval service over the HomeBase simulator and the store (once a SQLite file, once a
    PostgreSQL database), with a fake clock; a test that needs other settings opens its own
    `harness(tmp_path, ...)`."""
    async with harness(tmp_path, store_url=store_url) as built:
        yield built

"""Set-up shared by every area of the tests. Area fixtures live in each folder's conftest.py and the
harnesses behind them in tests/support/."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from support.sims import HomeBaseSim

from standins import homebase, serving


@pytest.fixture
async def homebase_sim(request: pytest.FixtureRequest) -> AsyncIterator[HomeBaseSim]:
    """The HomeBase simulator on loopback, rate limits off, 60 identities, the test key
    (`HomeBaseSim.api_key`). `@pytest.mark.homebase(identities=20, ...)` on a test or module passes
    other arguments to `standins.homebase.create_app`."""
    marker = request.node.get_closest_marker("homebase")
    app = homebase.create_app(**{"identities": 60, "rate_limits": False, **(marker.kwargs if marker else {})})
    async with serving(app) as url:
        yield HomeBaseSim(url, app[homebase.STATE])

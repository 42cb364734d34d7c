"""Fixtures of the stand-ins' tests: one running `idops demo` shared by the tests of the platforms it
includes (`platform_demo`): what each checks (its platform's first sweep said once, a risk change there
reaching Slack as a card) holds in a demo that has run a while as well as in a fresh one."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from support.demo import PlatformDemo

from standins import demo


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def platform_demo(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PlatformDemo]:
    """`idops demo` with 40 identities a platform, started once for the session; its tests run on the
    session's event loop (`pytest.mark.asyncio(loop_scope="session")`). A risk change every 2 s: the
    sender posts one message a second to a channel (Slack's pace), and a drift faster than the alerts it
    makes can be posted fills the outbox until alerts are folded into digests, where a test looking
    for an alert's own card waits in vain (seen with 0.5 s once the demo had run half a minute)."""
    lines: list[str] = []
    async with demo.running(
        tmp_path_factory.mktemp("demo"), slack_port=0, identities=40, drift_seconds=2, log=lines.append
    ) as run:
        yield PlatformDemo(run, lines)

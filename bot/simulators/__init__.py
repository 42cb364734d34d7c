"""Local stand-ins for HomeBase, SailPoint and Slack: tests, benchmarks and the demo run against these.

Never bundled into the SOAR packages (they live outside `connectors/`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from aiohttp import web


@contextlib.asynccontextmanager
async def serving(app: web.Application, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Serve `app` on loopback for the duration of the block; yields its base URL (port 0 = any free)."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    server = site._server
    assert server is not None
    bound = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    try:
        yield f"http://{host}:{bound}"
    finally:
        await runner.cleanup()

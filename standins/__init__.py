"""Local stand-ins for HomeBase, SailPoint and Slack: tests, benchmarks and the demo run against these.

Never bundled into the SOAR packages (they live outside `connectors/`).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator
from typing import Callable

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


def run_until_stopped(
    app: web.Application, host: str, port: int, *, prog: str, announce: Callable[[str], None]
) -> int:
    """`idops sim X`: serve `app`, call `announce(base_url)`, run until Ctrl-C or SIGTERM; a port that
    can't be bound is one line naming it (exit status 2)."""

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        async with serving(app, host, port) as url:
            announce(url)
            await stop.wait()

    try:
        asyncio.run(serve())
    except OSError as exc:
        print(f"{prog}: cannot listen on {host}:{port} ({exc.strerror})", file=sys.stderr)
        return 2
    return 0

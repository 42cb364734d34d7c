"""Local stand-ins for HomeBase, SailPoint and Slack: tests, benchmarks and the demo run against these.

Never bundled into the SOAR packages (they live outside `connectors/`). Every `idops sim X` prints
where it listens and the credentials it made up with `print_env`, as lines a user pastes into a shell.
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import signal
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Callable, Optional, TextIO

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
    app: web.Application,
    host: str,
    port: int,
    *,
    prog: str,
    announce: Callable[[str], None],
    serve: Optional[Callable[[], AbstractAsyncContextManager[str]]] = None,
) -> int:
    """`idops sim X`: serve `app` (or enter `serve()`, which serves on host:port and gives the base
    URL), call `announce(base_url)`, run until Ctrl-C or SIGTERM (exit status 0); a port that can't be
    bound is one line naming it (exit status 2)."""

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        async with serve() if serve else serving(app, host, port) as url:
            announce(url)
            await stop.wait()

    try:
        asyncio.run(run())
    except OSError as exc:
        print(f"{prog}: cannot listen on {host}:{port} ({exc.strerror})", file=sys.stderr)
        return 2
    return 0


def print_env(what: str, variables: Mapping[str, str], file: Optional[TextIO] = None) -> None:
    """How every simulator says where it listens and which credentials it made up: `# what`, one
    `NAME=value` line per variable (shell-quoted), then `export NAME …`, so the block pasted into a
    shell sets them for the `idops` started there. `what` is a comment for people: no secrets."""
    wrong = [name for name in variables if not name.isidentifier() or not name.isascii()]
    if wrong:
        raise ValueError(f"not shell variable names: {', '.join(wrong)}")
    comment = [f"# {line}".rstrip() for line in what.splitlines() or [""]]
    assigned = [f"{name}={shlex.quote(value)}" for name, value in variables.items()]
    exported = [f"export {' '.join(variables)}"] if variables else []
    print("\n".join([*comment, *assigned, *exported]), file=file or sys.stdout, flush=True)

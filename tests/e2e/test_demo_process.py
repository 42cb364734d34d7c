"""`idops demo` as `make demo` runs it: a process that serves the page, shows events as they happen, and
stops cleanly on Ctrl-C (SIGINT): exit 0, no traceback or leaked-resource warning, its ports released.

The demo picks its own free port (`--port 0`, read back from the line it prints), so no other process can
take the port between a probe and the demo's bind. Its start-up (five simulators, the bot, a first sweep)
takes seconds alone and much longer on a loaded machine: each wait is for a line, with a generous ceiling
and the output so far in the failure."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[2]


OPEN = re.compile(r"Open http://127\.0\.0\.1:(\d+)/ in a browser")


async def _read_until(stream: asyncio.StreamReader, wanted: str, seen: list[str], timeout: float) -> str:
    """The first line matching the regex `wanted`; fails naming it, with the output so far, when the demo
    ends or `timeout` seconds pass first."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                line = (await stream.readline()).decode()
                if not line:
                    raise AssertionError(f"the demo ended before printing {wanted!r}:\n{''.join(seen)}")
                seen.append(line)
                if re.search(wanted, line):
                    return line
    except TimeoutError:
        raise AssertionError(f"no {wanted!r} from the demo in {timeout:g} s:\n{''.join(seen)}") from None


async def test_the_demo_process_runs_and_stops_cleanly_on_ctrl_c() -> None:
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "bot.cli", "demo", "--port", "0", "--identities", "40"),
        *("--drift-seconds", "1"),
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    seen: list[str] = []
    assert process.stdout is not None
    try:
        opened = OPEN.search(await _read_until(process.stdout, OPEN.pattern, seen, 180))
        assert opened is not None
        port = int(opened[1])
        await _read_until(process.stdout, "First sweep of", seen, 120)  # the bot swept and posted
        async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/") as page:
            assert page.status == 200 and "text/html" in page.content_type
        process.send_signal(signal.SIGINT)
        try:
            async with asyncio.timeout(60):
                rest = (await process.stdout.read()).decode()
                await process.wait()
        except TimeoutError:
            raise AssertionError(f"the demo did not stop in 60 s after Ctrl-C:\n{''.join(seen)}") from None
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    output = "".join(seen) + rest
    assert process.returncode == 0, output
    assert output.rstrip().endswith("idops demo stopped")
    for trouble in ("Traceback", "ERROR", "Unclosed", "Task was destroyed", "never awaited"):
        assert trouble not in output, output
    with socket.socket() as again:
        again.bind(("127.0.0.1", port))  # released

"""`idops demo` as `make demo` runs it: a process that serves the page, shows events as they happen, and
stops cleanly on Ctrl-C (SIGINT): exit 0, no traceback or leaked-resource warning, its ports released."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def _read_until(stream: asyncio.StreamReader, wanted: str, seen: list[str], timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while True:
            line = (await stream.readline()).decode()
            if not line:
                raise AssertionError(f"the demo ended before printing {wanted!r}:\n{''.join(seen)}")
            seen.append(line)
            if wanted in line:
                return


async def test_the_demo_process_runs_and_stops_cleanly_on_ctrl_c() -> None:
    port = _free_port()
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "bot.cli", "demo", "--port", str(port), "--identities", "40"),
        *("--drift-seconds", "1"),
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    seen: list[str] = []
    assert process.stdout is not None
    try:
        await _read_until(process.stdout, f"Open http://127.0.0.1:{port}/ in a browser", seen, 30)
        await _read_until(process.stdout, "First sweep of", seen, 30)  # the bot swept and posted
        async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/") as page:
            assert page.status == 200 and "text/html" in page.content_type
        process.send_signal(signal.SIGINT)
        async with asyncio.timeout(20):
            rest = (await process.stdout.read()).decode()
            await process.wait()
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

"""What the benchmarks share: a simulator in a process of its own, standing in for a remote provider, so
it never shares the measured client's event loop or core."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# the first URL a simulator prints: its `HOMEBASE_BASE_URL=http://…/v1` or `SAILPOINT_BASE_URL=http://…` line
_URL = re.compile(r"http://[^\s\"]+")


@contextlib.contextmanager
def simulator_process(
    kind: str, *args: str, env: Mapping[str, str], start_timeout: float = 60.0
) -> Iterator[str]:
    """`idops sim <kind> --port 0 <args>` with `env` added to the environment; yields the API base URL
    it prints, and stops it at the end of the block."""
    command = [sys.executable, "-m", "bot.cli", "sim", kind, "--port", "0", *args]
    process = subprocess.Popen(
        command, cwd=REPO, env={**os.environ, **env}, stdout=subprocess.PIPE, text=True
    )
    try:
        yield _announced_url(kind, process, start_timeout)
    finally:
        process.terminate()
        process.wait(timeout=10)


def _announced_url(kind: str, process: subprocess.Popen, timeout: float) -> str:
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        # keeps draining stdout for the whole run, so a chatty simulator never blocks on a full pipe
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)
        lines.put("")

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    while True:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            line = ""
        found = _URL.search(line)
        if found:
            return found.group(0)
        if not line:
            raise SystemExit(f"the {kind} simulator did not start: {''.join(seen).strip()!r}")
        seen.append(line)

"""Simulators for the tests: in this process on loopback (`HomeBaseSim`, what the `homebase_sim`
fixture yields), or `idops sim X` as a real process, its output read line by line with deadlines and
the block every simulator prints at start (`standins.print_env`: `# comment`, `NAME=value` lines,
`export …`) parsed as a shell reads it."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import connectors
from connectors.entra import EntraConnector
from standins import homebase, serving
from standins.entra import create_app as create_entra
from standins.entra_state import STATE as ENTRA_STATE
from standins.entra_state import EntraState

ROOT = Path(__file__).resolve().parents[2]
ASSIGNMENT = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)")
# a ceiling on a process's start-up line (Python and its imports: seconds alone, many more on a loaded
# 2-core machine, where 15 s was tight); a line that comes sooner returns at once
START_SECONDS = 60.0


@dataclass
class HomeBaseSim:
    """A HomeBase simulator served on loopback: its root `url` (the API is `api_url`) and its state."""

    url: str
    state: homebase.HomeBaseState
    api_key: str = "hld_test_simulator"  # the simulator's default key

    @property
    def api_url(self) -> str:
        return self.url + "/v1"


def parse_env(lines: Iterable[str]) -> dict[str, str]:
    """The `NAME=value` lines of a simulator's start-up block, up to its `export` line, unquoted."""
    found: dict[str, str] = {}
    for line in lines:
        line = line.rstrip("\n")
        if line.startswith("export "):
            break
        assigned = ASSIGNMENT.fullmatch(line)
        if assigned:
            words = shlex.split(assigned.group(2))
            assert len(words) <= 1, f"{line!r} is not one shell word"
            found[assigned.group(1)] = words[0] if words else ""
    return found


@dataclass
class SimProcess:
    process: subprocess.Popen
    url: str = ""

    def __post_init__(self) -> None:
        self.lines: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        # a thread reads stdout so waiting for a line can have a deadline
        self._reader = threading.Thread(target=self._pump, daemon=True)
        self._reader.start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._queue.put(line)
        self._queue.put("")

    def read_until(self, pattern: str, timeout: float = START_SECONDS) -> re.Match:
        """Read stdout lines until one matches `pattern` (bounded by `timeout`: a ceiling, not a pace)."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.lines:
                found = re.search(pattern, line)
                if found:
                    return found
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                line = ""
            if not line:
                raise AssertionError(f"no line matching {pattern!r} in {self.lines}")
            self.lines.append(line)

    def env(self, timeout: float = START_SECONDS) -> dict[str, str]:
        """The variables the simulator printed at start (waits for its `export` line)."""
        try:
            self.read_until(r"^export ", timeout)
        except AssertionError as exc:
            raise AssertionError(f"no start-up block: print it with standins.print_env ({exc})") from None
        return parse_env(self.lines)

    def block(self) -> str:
        """The start-up block as printed: what a user copies into a shell."""
        self.env()
        end = next(i for i, line in enumerate(self.lines) if line.startswith("export "))
        return "".join(self.lines[: end + 1])

    def close(self) -> None:
        """SIGTERM (as a service manager stops it), then its reader and output pipe closed."""
        if self.process.poll() is None:
            self.process.terminate()
        self.process.wait(timeout=15)
        self._reader.join(timeout=5)
        assert self.process.stdout is not None
        self.process.stdout.close()

    def stop(self) -> str:
        """Ctrl-C, as a person would; exit code, then the rest of its output."""
        self.process.send_signal(signal.SIGINT)
        self.process.wait(timeout=15)
        rest = []
        while (line := self._queue.get(timeout=5)) != "":
            rest.append(line)
        return "".join(rest)


@contextlib.contextmanager
def sim_process(
    kind: str, *args: str, env: Mapping[str, str] = {}, drop: tuple[str, ...] = ()
) -> Iterator[SimProcess]:
    """`idops sim <kind> --port 0 <args>` in its own process, with the variables starting with one of
    `drop` left out of its environment and `env` added; killed at the end of the block."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(drop)} if drop else dict(os.environ)
    process = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "sim", kind, "--port", "0", *args],
        cwd=ROOT,
        env={**environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    sim = SimProcess(process)
    try:
        yield sim
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=15)
        sim._reader.join(timeout=5)
        assert process.stdout is not None
        process.stdout.close()


@contextlib.asynccontextmanager
async def entra_connector(
    users: int, state_type: type[EntraState] = EntraState, **settings: Any
) -> AsyncIterator[tuple[EntraState, EntraConnector]]:
    """The Entra simulator with `users` users on loopback (its state a `state_type`, a test's subclass
    of EntraState), and a connector signed in to it with a secret (`settings` added to its configuration)."""
    app = create_entra(users=users)
    state = app[ENTRA_STATE]
    if state_type is not EntraState:
        state = app[ENTRA_STATE] = state_type(
            **{f.name: getattr(state, f.name) for f in fields(state) if f.init}
        )
    async with serving(app) as url:
        config = {
            "tenant_id": state.tenant_id,
            "client_id": state.client_id,
            "client_secret": state.client_secret,
            "authority_url": url,
            "graph_url": url,
            **settings,
        }
        built = connectors.build("entra", "entra", config)
        assert isinstance(built, EntraConnector)
        async with built as connector:
            yield state, connector

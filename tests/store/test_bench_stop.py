"""bench/replicas.py stopped with SIGTERM (what a CI timeout or `kill` sends) removes what it started, as
Ctrl-C does: the PostgreSQL cluster (its server process and its directory), the Okta simulator and the
replicas. Run for real: the bench starts its throwaway cluster in a temporary directory of its own
(TMPDIR), and every process it starts inherits a marker variable this test looks for afterwards."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import tempfile
from pathlib import Path

from support.bot import until

ROOT = Path(__file__).resolve().parents[2]
MARKER = "IDOPS_BENCH_STOP_TEST"


def marked(value: str) -> dict[int, str]:
    """Live processes whose environment holds MARKER=value, by pid, with their command lines (the bench's
    children inherit it; the cluster's server too, through pg_ctl and runuser)."""
    found = {}
    needle = f"{MARKER}={value}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
                found[int(entry.name)] = command.decode(errors="replace")
        except OSError:  # gone meanwhile, or not ours to read: not one of the bench's
            continue
    return found


def replicas(found: dict[int, str]) -> list[int]:
    """The `idops serve` processes among `found`."""
    return [pid for pid, command in found.items() if "bot.cli serve" in command]


async def test_sigterm_stops_the_cluster_and_removes_its_directory() -> None:
    with tempfile.TemporaryDirectory(prefix="idops-bench-stop-") as scratch:
        os.chmod(scratch, 0o755)  # noqa: S103 - as root, the cluster's own user (postgres) works in here
        # the smallest run: its take-over part starts (the cluster, the Okta simulator, two replicas), and
        # is stopped there; the measured rounds never start
        process = await asyncio.create_subprocess_exec(
            *(sys.executable, "bench/replicas.py", "--requests", "1", "--rounds", "1", "--kills", "1"),
            cwd=ROOT,
            env={**os.environ, "TMPDIR": scratch, MARKER: scratch},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        assert process.stdout is not None
        seen: list[str] = []
        try:
            # every wait below is for an event (a line, a process seen or gone); the ceilings are for a
            # loaded machine only
            async with asyncio.timeout(300):  # a simulator and a cluster started on a loaded machine
                while not any(line.startswith("Take-over:") for line in seen):
                    line = (await process.stdout.readline()).decode()
                    assert line, f"the bench ended before its take-over part:\n{''.join(seen)}"
                    seen.append(line)
            # everything it starts is up: the cluster's server (its directory in TMPDIR) and both replicas
            await until(lambda: len(replicas(marked(scratch))) == 2, 120, "the take-over's two replicas")
            assert any("postgres" in command and scratch in command for command in marked(scratch).values())
            assert any(name.startswith("idops-pg-") for name in os.listdir(scratch))
            process.send_signal(signal.SIGTERM)
            # its exit (wait() would also wait for the output pipe, which a child left running holds)
            await until(lambda: process.returncode is not None, 180, "the bench's exit after SIGTERM")
            try:  # a child left running would hold the output pipe open: read what came, then judge
                rest = (await asyncio.wait_for(process.stdout.read(), 10)).decode()
            except TimeoutError:
                rest = "(the output stayed open: a process the bench started is still running)"
            output = "".join(seen) + rest
            assert process.returncode == 130, output
            assert output.rstrip().endswith("the cluster, the simulator and the replicas are gone"), output
            assert "Traceback" not in output, output
            assert marked(scratch) == {}, "left running"  # no server, simulator or replica
            assert os.listdir(scratch) == []  # the cluster's directory and the bench's scratch are gone
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
            for pid, command in marked(scratch).items():  # what a failure left: this test started it
                os.kill(pid, signal.SIGQUIT if "postgres" in command else signal.SIGKILL)

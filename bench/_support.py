"""What the benchmarks share: a simulator in a process of its own, standing in for a remote provider, so
it never shares the measured client's event loop or core; timed passes (rate and client CPU), their
medians and the table rows and ratio printed for them; the client's resident memory; and the requests
a connector gets served in a window against a rate-limited simulator. `compare` is the throughput
comparison the benches print: both clients' passes, each side's row of rates, the medians and the ratio.

Each bench keeps what it measures (its sweeps, its peer, its targets); only the harness lives here."""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import re
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import aiohttp

REPO = Path(__file__).resolve().parents[1]
# the first URL a simulator prints: its `HOMEBASE_BASE_URL=http://…/v1` or `SAILPOINT_BASE_URL=http://…` line
_URL = re.compile(r"http://[^\s\"]+")
_PAGE = os.sysconf("SC_PAGE_SIZE")


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


class Pass(NamedTuple):
    """One timed pass: items/s (wall time) and this process's CPU seconds (the client's own work)."""

    rate: float
    cpu: float


def timed(run: Callable[[], int], expected: int, noun: str) -> Pass:
    """Runs `run` (it returns how many `noun` it listed) and times it; exits if the count is off."""
    start, cpu = time.perf_counter(), time.process_time()
    count = run()
    elapsed, used = time.perf_counter() - start, time.process_time() - cpu
    if count != expected:
        raise SystemExit(f"listed {count} {noun}, expected {expected}")
    return Pass(expected / elapsed, used)


def alternate(
    repeats: int, ours: Callable[[], Pass], peer: Callable[[], Pass]
) -> tuple[list[Pass], list[Pass]]:
    """`repeats` rounds of one pass of ours then one of the peer, against the same warm simulator."""
    mine, theirs = [], []
    for _ in range(repeats):
        mine.append(ours())
        theirs.append(peer())
    return mine, theirs


def median_rate(passes: Iterable[Pass]) -> float:
    return statistics.median(p.rate for p in passes)


def compare(
    ours: Callable[[], Pass],
    peer: Callable[[], Pass],
    repeats: int,
    unit: str,
    *,
    peer_name: str = "SDK",
    peer_unit: str = "",
    peer_repeats: int = 0,
    target: str = "",
) -> tuple[float, float]:
    """Ours against the peer: `repeats` rounds of one pass of ours then one of the peer's (`alternate`);
    or, given `peer_repeats` (a slow peer), ours `repeats` times, its row shown at once, then the peer's
    `peer_repeats`. Prints each side's rates as a row (`peer_unit` for the peer's, if it differs), then
    the medians and their ratio (`print_ratio`); returns the medians (ours, the peer's)."""
    if peer_repeats:
        mine = [ours() for _ in range(repeats)]
        print_rates("connector", [p.rate for p in mine], unit)
        sys.stdout.flush()
        theirs = [peer() for _ in range(peer_repeats)]
    else:
        mine, theirs = alternate(repeats, ours, peer)
        print_rates("connector", [p.rate for p in mine], unit)
    print_rates(peer_name, [p.rate for p in theirs], peer_unit or unit)
    medians = median_rate(mine), median_rate(theirs)
    print_ratio(*medians, peer_name, target)
    return medians


def print_rates(label: str, rates: Iterable[float], unit: str) -> None:
    """One table row: `  connector :     12,345     12,400  users/s`."""
    print(f"  {label:<10}: {' '.join(f'{r:9,.0f}' for r in rates)}  {unit}")


def print_ratio(ours: float, peer: float, peer_name: str = "SDK", target: str = "") -> None:
    """The medians and their ratio; `target` (e.g. ">= 5x") is quoted after it."""
    goal = f" (target {target})" if target else ""
    print(f"  median    : connector {ours:,.0f}/s, {peer_name} {peer:,.0f}/s, ratio {ours / peer:.1f}x{goal}")


def rss_mib() -> float:
    """This process's resident memory now (Linux /proc), in MiB."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * _PAGE / 2**20


def high_water_mib(reset: bool = False) -> float:
    """This process's peak resident memory (the kernel's VmHWM), in MiB; `reset` first sets the mark to
    the resident memory now (Linux's /proc/self/clear_refs), so the next reading is the peak since."""
    if reset:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def print_memory(
    totals: Iterable[int], noun: str, measure: Callable[[int], tuple[float, float, float]]
) -> None:
    """The connector's resident memory listing each of `totals`; `measure(total)` gives
    (MiB before, peak MiB while listing, items/s), e.g. from `peak_memory`."""
    print("Connector RSS while listing, peak by the kernel's high-water mark (cold simulator):")
    for total in totals:
        before, peak, rate = measure(total)
        print(f"  {total:>9,} {noun}: {before:6.1f} MiB before, {peak:6.1f} MiB peak ({rate:,.0f}/s)")


def peak_memory(
    simulator: contextlib.AbstractContextManager[str],
    sweep: Callable[[str, list[float]], Coroutine[Any, Any, int]],
    expected: int,
    noun: str,
) -> tuple[float, float, float]:
    """(resident MiB before, peak resident MiB while listing, items/s): `sweep(url, peak)` lists
    everything from the simulator, raising `peak[0]` to the highest `rss_mib()` it sees at each page; the
    peak is the higher of that and the kernel's high-water mark over the sweep, which also catches what
    is built and freed between two samples (e.g. before the first page)."""
    with simulator as url:
        before = rss_mib()
        peak = [high_water_mib(reset=True)]
        rate = timed(lambda: asyncio.run(sweep(url, peak)), expected, noun).rate
        peak[0] = max(peak[0], high_water_mib())
    return before, peak[0], rate


async def drain(connector: Any, *, again: bool = False) -> None:
    """Pages through `connector.iter_pages()` (over and over with `again`, until cancelled), then
    closes the connector."""
    try:
        while True:
            async for _ in connector.iter_pages():
                pass
            if not again:
                return
    finally:
        await connector.close()


async def statuses_in_window(
    counts: Callable[[str], bool],
    sweep: Callable[[aiohttp.ClientSession], Awaitable[None]],
    seconds: float,
    start_timeout: float = 30.0,
) -> list[int]:
    """HTTP statuses of the requests whose path `counts`, answered within `seconds` of the first one.

    `sweep(session)` sends requests through `session` until it is cancelled (and closes what it opens).
    """
    stamps: list[tuple[float, int]] = []
    started = asyncio.Event()

    async def on_end(session, context, params) -> None:  # type: ignore[no-untyped-def]
        if counts(params.url.path):
            stamps.append((time.monotonic(), params.response.status))
            started.set()

    trace = aiohttp.TraceConfig()
    trace.on_request_end.append(on_end)
    async with aiohttp.ClientSession(trace_configs=[trace]) as session:
        task = asyncio.ensure_future(sweep(session))
        await asyncio.wait_for(started.wait(), start_timeout)
        start = stamps[0][0]
        await asyncio.sleep(max(0.0, start + seconds - time.monotonic()))
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return [status for at, status in stamps if at < start + seconds]


def print_share(
    served: int, refused: str, ceiling: float, what: str = "requests", target: str = ">= 90%"
) -> None:
    """`  120 pages served, 3 refused (429); ceiling 120` and the share of the ceiling served."""
    print(f"  {served} {what} served, {refused}; ceiling {ceiling:.0f}")
    goal = f" (target {target})" if target else ""
    print(f"  share of the ceiling: {served / ceiling:.0%}{goal}")

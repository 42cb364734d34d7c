"""Risk-alert sweep benchmark: 100,000 HomeBase identities, 1% of them changing level between sweeps.

Prints, in one run: the baseline sweep (first sweep: every identity stored), the timed sweeps after
each 1% change (wall time, identities/s, changes recorded; median of interleaved repeats), the same
100,000 listed by the bare connector with no comparison or storage, timed in the same repeats (the
peer: their ratio is what comparing and storing costs), the peak memory of the sweep against the
bare listing (tracemalloc, in passes of their own so tracing does not slow the timed ones; and the
process's peak RSS), and the SQLite file size.

The simulator runs as a subprocess (`idops sim homebase --no-rate-limit`): it stands in for a remote
provider, so it does not share the sweep's event loop. The 1% change goes through its admin API.

    .venv/bin/python bench/alerts.py [--identities 100000] [--change 0.01] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import resource
import statistics
import tempfile
import time
import tracemalloc
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, Callable

import aiohttp
from _support import simulator_process

from bot.alerts.detector import Detector, Scope, SweepResult
from bot.config import AlertSettings
from bot.store import open_db
from connectors.homebase import HomeBaseConnector
from standins.homebase import HomeBaseState

API_KEY = "hld_test_bench"
TARGET_SECONDS = 60.0
# a score in the middle of each band, and where each level moves to: always a different level
MOVE_TO = {"low": 60, "medium": 90, "high": 10, "critical": 35}


def simulator(identities: int) -> contextlib.AbstractContextManager[str]:
    """`idops sim homebase` in its own process, rate limits off; gives its /v1 base URL."""
    args = ["--no-rate-limit", "--identities", str(identities)]
    return simulator_process("homebase", *args, env={"HOMEBASE_API_KEY": API_KEY})


def connector(base_url: str) -> HomeBaseConnector:
    return HomeBaseConnector("hld", api_key=API_KEY, base_url=base_url, pacing=False, timeout=30)


async def bare_listing(base_url: str) -> int:
    """The peer: every identity through the same connector, nothing compared or stored."""
    count = 0
    async with connector(base_url) as hb:
        async for page in hb.iter_pages():
            count += len(page)
    return count


async def change_levels(base_url: str, identities: int, share: float, seed: int) -> int:
    """Move `share` of the identities to another level through the simulator's admin API."""
    admin = base_url.rsplit("/v1", 1)[0] + "/_admin/identity"
    ids = HomeBaseState(identities=identities)  # ids only: the same seed as the simulator's
    picked = random.Random(seed).sample(range(identities), int(identities * share))
    semaphore = asyncio.Semaphore(16)
    async with connector(base_url) as hb, aiohttp.ClientSession() as http:

        async def move(index: int) -> None:
            async with semaphore:
                identity = await hb.get_identity(ids.identity_id(index))
                assert identity.risk_level is not None
                score = MOVE_TO[identity.risk_level.value]
                async with http.post(f"{admin}/{identity.id}/risk", json={"risk_score": score}) as answer:
                    assert answer.status == 200, await answer.text()

        await asyncio.gather(*(move(index) for index in picked))
    return len(picked)


async def timed(work: Callable[[], Awaitable[Any]]) -> tuple[Any, float]:
    started = time.perf_counter()
    result = await work()
    return result, time.perf_counter() - started


async def traced_peak(work: Callable[[], Awaitable[Any]]) -> int:
    tracemalloc.start()
    try:
        await work()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def db_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


async def run(identities: int, share: float, repeats: int) -> None:
    with simulator(identities) as base_url, tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "idops.db"
        db = open_db(str(path))
        async with connector(base_url) as hb:
            detector = Detector(db, {"hld": hb}, AlertSettings(), "C0ALERTS")

            def sweep() -> Awaitable[SweepResult]:
                return detector.sweep(Scope("hld"))

            # warm the simulator's caches so every pass reads from the same warm server
            await bare_listing(base_url)
            baseline, baseline_s = await timed(sweep)
            assert baseline.error is None and baseline.seen == identities, baseline
            # interleaved repeats, medians reported: the machine is shared, single runs are noisy
            sweeps: list[float] = []
            bares: list[float] = []
            for repeat in range(repeats):
                moved = await change_levels(base_url, identities, share, seed=repeat + 1)
                second, seconds = await timed(sweep)
                assert second.error is None and second.seen == identities, second
                sweeps.append(seconds)
                listed, seconds = await timed(lambda: bare_listing(base_url))
                assert listed == identities
                bares.append(seconds)
            second_s, bare_s = statistics.median(sweeps), statistics.median(bares)

            # memory, in passes of their own: another change so the traced sweep does real work
            await change_levels(base_url, identities, share, seed=repeats + 1)
            sweep_peak = await traced_peak(sweep)
            bare_peak = await traced_peak(lambda: bare_listing(base_url))

        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        queued = db.execute("SELECT count(*) FROM alert_outbox").fetchone()[0]
        size = db_bytes(path)
        db.close()

    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rate = "{:>10,.0f} identities/s".format
    row("identities", f"{identities:,}")
    row("baseline sweep (stores every one)", f"{baseline_s:.1f} s", rate(identities / baseline_s))
    row("levels changed between sweeps", f"{moved:,}", f"({share:.0%})")
    row(f"second sweep (median of {repeats})", f"{second_s:.1f} s", rate(identities / second_s))
    row("  changes recorded (last repeat)", f"{sum(second.changes.values()):,}", f"{second.changes}")
    row("  outbox rows (all sweeps)", f"{queued:,}")
    row(f"bare connector listing (median of {repeats})", f"{bare_s:.1f} s", rate(identities / bare_s))
    row("second sweep / bare listing", f"{second_s / bare_s:.2f}x")
    row("peak traced memory, sweep", f"{sweep_peak / 2**20:.1f} MiB")
    row(
        "peak traced memory, bare listing",
        f"{bare_peak / 2**20:.1f} MiB",
        f"sweep/bare {sweep_peak / bare_peak:.2f}x",
    )
    row("process peak RSS", f"{rss_mib:.1f} MiB")
    row("SQLite size after checkpoint", f"{size / 2**20:.1f} MiB", f"{size / identities:.0f} bytes/identity")
    verdict = "met" if second_s < TARGET_SECONDS else "MISSED"
    row(f"target: second sweep < {TARGET_SECONDS:.0f} s", verdict)


def row(label: str, value: str, note: str = "") -> None:
    print(f"{label:<36}{value:>12}  {note}".rstrip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--identities", type=int, default=100_000)
    parser.add_argument("--change", type=float, default=0.01, help="share of identities changing level")
    parser.add_argument("--repeats", type=int, default=3, help="timed sweep + bare listing pairs")
    args = parser.parse_args()
    asyncio.run(run(args.identities, args.change, max(1, args.repeats)))


if __name__ == "__main__":
    main()

"""Sweep benchmark: list every SailPoint identity with our connector and with the official SDK.

Prints identities/s medians for both and their ratio (no rate limit), the share of SailPoint's
100-requests-per-10-s ceiling the connector reaches with the limit on, and the connector's peak
memory (RSS) listing 50,000 against 1,000,000 identities.

The simulator runs as a subprocess: it stands in for a remote tenant, so it must not share the
client's event loop or its core. One warm-up pass fills the simulator's page cache first, so both
clients are timed against the same warm server and the figures measure the clients.

    .venv/bin/python bench/sweep.py [--identities 50000] [--repeats 3] [--rate-seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import time

import aiohttp
from _support import simulator_process
from sailpoint import ApiClient, Configuration, ConfigurationParams, Paginator
from sailpoint.identities import IdentitiesApi

import connectors
from connectors.sailpoint import SailPointConnector

CLIENT_ID, CLIENT_SECRET = "bench-client", "bench-secret"
CEILING, PERIOD = 100, 10.0  # SailPoint's limit per client id
PAGE = os.sysconf("SC_PAGE_SIZE")


def simulator(identities: int, *, rate_limit: bool) -> contextlib.AbstractContextManager[str]:
    """`idops sim sailpoint` in its own process; gives its base URL."""
    args = ["--identities", str(identities), *([] if rate_limit else ["--no-rate-limit"])]
    env = {"SAILPOINT_CLIENT_ID": CLIENT_ID, "SAILPOINT_CLIENT_SECRET": CLIENT_SECRET}
    return simulator_process("sailpoint", *args, env=env)


def settings(url: str) -> dict:
    return {"base_url": url, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}


async def connector_sweep(url: str, concurrency: int, peak: list[float] | None = None) -> int:
    """List every identity with the connector, its own pacing off like the simulator's; returns how many.

    With `peak`, its one item is raised to the highest resident memory seen (sampled once a page).
    """
    count = 0
    connector = SailPointConnector("bench", **settings(url), concurrency=concurrency, pacing=False)
    async with connector:
        async for identity in connector.list_identities():
            count += bool(identity.id and identity.email)
            if peak is not None and count % 250 == 0:
                peak[0] = max(peak[0], rss_mib())
    return count


def rss_mib() -> float:
    """This process's resident memory now (Linux /proc), in MiB."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE / 2**20


def sdk_sweep(url: str, total: int) -> int:
    """List every identity with the SDK's Paginator (its streaming form, so it holds one page)."""
    params = ConfigurationParams()
    params.base_url, params.client_id, params.client_secret = url, CLIENT_ID, CLIENT_SECRET
    with ApiClient(Configuration(params)) as client:
        api = IdentitiesApi(client)
        return sum(
            bool(i.id and i.email_address)
            for i in Paginator.paginate_stream(api.list_identities_v1, total, limit=250)
        )


def timed(run, expected: int) -> float:
    start = time.perf_counter()
    count = run()
    elapsed = time.perf_counter() - start
    if count != expected:
        raise SystemExit(f"listed {count} identities, expected {expected}")
    return expected / elapsed


def throughput(identities: int, repeats: int, concurrency: int) -> tuple[float, float]:
    with simulator(identities, rate_limit=False) as url:
        asyncio.run(connector_sweep(url, concurrency))  # warm-up: fills the simulator's cache
        ours, sdk = [], []
        for _ in range(repeats):
            ours.append(timed(lambda: asyncio.run(connector_sweep(url, concurrency)), identities))
            sdk.append(timed(lambda: sdk_sweep(url, identities), identities))
    print(f"  connector : {' '.join(f'{r:9,.0f}' for r in ours)}  identities/s")
    print(f"  SDK       : {' '.join(f'{r:9,.0f}' for r in sdk)}  identities/s")
    return statistics.median(ours), statistics.median(sdk)


async def paced_requests(url: str, seconds: float) -> tuple[int, int]:
    """Requests the connector completes in `seconds` against the rate-limited simulator (200s, 429s)."""
    stamps: list[tuple[float, int]] = []
    started = asyncio.Event()

    async def on_end(session, context, params) -> None:  # type: ignore[no-untyped-def]
        if params.url.path != "/oauth/token":
            stamps.append((time.monotonic(), params.response.status))
            started.set()

    trace = aiohttp.TraceConfig()
    trace.on_request_end.append(on_end)
    async with aiohttp.ClientSession(trace_configs=[trace]) as session:
        connector = connectors.build("sailpoint", "bench", settings(url), session=session)

        async def sweep() -> None:
            async for _ in connector.iter_pages():
                pass

        task = asyncio.ensure_future(sweep())
        await asyncio.wait_for(started.wait(), 30)
        start = stamps[0][0]
        await asyncio.sleep(max(0.0, start + seconds - time.monotonic()))
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await connector.close()
    window = [status for at, status in stamps if at < start + seconds]
    return window.count(200), window.count(429)


def peak_memory(identities: int, concurrency: int) -> tuple[float, float, float]:
    """(resident MiB before, peak resident MiB while listing, identities/s) for the connector."""
    with simulator(identities, rate_limit=False) as url:
        before = rss_mib()
        peak = [before]
        rate = timed(lambda: asyncio.run(connector_sweep(url, concurrency, peak)), identities)
    return before, peak[0], rate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--identities", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--rate-seconds", type=float, default=29.9, help="paced run length (a bit under 3 windows)"
    )
    parser.add_argument(
        "--million", type=int, default=1_000_000, help="identities for the memory run (0 skips)"
    )
    args = parser.parse_args()

    if args.million:
        # first, so the SDK's allocations do not hide the connector's in the figures
        print("Connector resident memory (RSS) while listing, sampled every page (cold simulator):")
        for total in (args.identities, args.million):
            before, peak, rate = peak_memory(total, args.concurrency)
            print(f"  {total:>9,} identities: {before:6.1f} MiB before, {peak:6.1f} MiB peak ({rate:,.0f}/s)")

    print(
        f"\nListing {args.identities:,} identities, no rate limit, warm simulator, median of {args.repeats}:"
    )
    ours, sdk = throughput(args.identities, args.repeats, args.concurrency)
    print(f"  median    : connector {ours:,.0f}/s, SDK {sdk:,.0f}/s, ratio {ours / sdk:.1f}x (target >= 5x)")

    seconds = args.rate_seconds
    print(f"\nRate limit on ({CEILING} requests per {PERIOD:g} s per client), {seconds:g} s of requests:")
    with simulator(200_000, rate_limit=True) as url:
        served, refused = asyncio.run(paced_requests(url, seconds))
    ceiling = CEILING * -(-seconds // PERIOD)  # the window admits a full burst per period begun
    print(f"  {served} pages served, {refused} refused (429); ceiling {ceiling:.0f}")
    print(f"  share of the ceiling: {served / ceiling:.0%} (target >= 90%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

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
import sys
from collections.abc import Awaitable

import aiohttp
from _support import (
    Pass,
    compare,
    drain,
    peak_memory,
    print_memory,
    print_share,
    rss_mib,
    simulator_process,
    statuses_in_window,
    timed,
)
from sailpoint import ApiClient, Configuration, ConfigurationParams, Paginator
from sailpoint.identities import IdentitiesApi

import connectors
from connectors.sailpoint import SailPointConnector

CLIENT_ID, CLIENT_SECRET = "bench-client", "bench-secret"
CEILING, PERIOD = 100, 10.0  # SailPoint's limit per client id


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


def throughput(identities: int, repeats: int, concurrency: int) -> None:
    with simulator(identities, rate_limit=False) as url:
        asyncio.run(connector_sweep(url, concurrency))  # warm-up: fills the simulator's cache

        def ours() -> Pass:
            return timed(lambda: asyncio.run(connector_sweep(url, concurrency)), identities, "identities")

        def sdk() -> Pass:
            return timed(lambda: sdk_sweep(url, identities), identities, "identities")

        compare(ours, sdk, repeats, "identities/s", target=">= 5x")


async def paced_requests(url: str, seconds: float) -> tuple[int, int]:
    """Requests the connector completes in `seconds` against the rate-limited simulator (200s, 429s)."""

    def sweep(session: aiohttp.ClientSession) -> Awaitable[None]:
        return drain(connectors.build("sailpoint", "bench", settings(url), session=session))

    window = await statuses_in_window(lambda path: path != "/oauth/token", sweep, seconds)
    return window.count(200), window.count(429)


def memory(identities: int, concurrency: int) -> tuple[float, float, float]:
    """(resident MiB before, peak resident MiB while listing, identities/s) for the connector."""
    return peak_memory(
        simulator(identities, rate_limit=False),
        lambda url, peak: connector_sweep(url, concurrency, peak),
        identities,
        "identities",
    )


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
        print_memory((args.identities, args.million), "identities", lambda n: memory(n, args.concurrency))

    print(
        f"\nListing {args.identities:,} identities, no rate limit, warm simulator, median of {args.repeats}:"
    )
    throughput(args.identities, args.repeats, args.concurrency)

    seconds = args.rate_seconds
    print(f"\nRate limit on ({CEILING} requests per {PERIOD:g} s per client), {seconds:g} s of requests:")
    with simulator(200_000, rate_limit=True) as url:
        served, refused = asyncio.run(paced_requests(url, seconds))
    ceiling = CEILING * -(-seconds // PERIOD)  # the window admits a full burst per period begun
    print_share(served, f"{refused} refused (429)", ceiling, "pages")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Okta benchmark: list every user with our connector and with the official `okta` SDK in the same run.

Prints users/s medians for both and their ratio (no rate limit), the share of the users bucket's ceiling
the connector reaches with the simulator's rate limit on (and how many 429s it drew), the connector's
peak resident memory listing 50,000 against 1,000,000 users, and the incremental sweep: after a full
listing of 100,000 users, 1% of them move to HIGH risk (the case that needs privilege to tell high from
critical), and `changes_since` must find every one with the right band; its requests, counted at the
simulator, are set against the full listing's (target: at most 5%).

The simulator runs as a subprocess (`idops sim okta`): it stands in for a remote org, so it never shares
the client's event loop or core. One warm-up pass fills its page cache first, so both clients meet the
same warm server. Okta's cursor paging is sequential: the SDK follows one cursor (as its own paging
helper does), the connector runs `concurrency` disjoint `created`-time `search` partitions, each on its own
cursor. Both ask for 200 users a page.

    .venv/bin/python bench/okta_sweep.py [--identities 50000] [--repeats 5] [--million 1000000]
        [--incremental 100000] [--change 0.01]

(Not bench/okta.py: run as a script, that name would shadow the `okta` SDK package.)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
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
from okta.client import Client as OktaClient
from okta.pagination import PaginationHelper

import connectors
from connectors.models import RiskLevel
from connectors.okta import OktaConnector

TOKEN = "00bench-okta-api-token-0123456789"  # noqa: S105 - the simulator's made-up token
CEILING, PERIOD = 100, 10.0  # the simulator's users bucket in the paced run: 100 requests per 10 s window


def simulator(identities: int, *, rate_limit: bool) -> contextlib.AbstractContextManager[str]:
    limits = (
        ["--rate-limit", str(CEILING), "--rate-window", str(PERIOD)] if rate_limit else ["--no-rate-limit"]
    )
    env = {"OKTA_API_TOKEN": TOKEN}
    return simulator_process("okta", "--identities", str(identities), *limits, env=env)


async def connector_sweep(url: str, concurrency: int, peak: list[float] | None = None) -> int:
    """Every user with the connector (its pacing off, like the simulator's limits); returns how many."""
    count = 0
    connector = OktaConnector("bench", base_url=url, api_token=TOKEN, concurrency=concurrency, pacing=False)
    async with connector:
        async for page in connector.iter_pages():
            count += sum(bool(identity.id and identity.email) for identity in page)
            if peak is not None:
                peak[0] = max(peak[0], rss_mib())
    return count


async def sdk_sweep(url: str) -> int:
    """Every user with the official SDK, one cursor, 200 a page."""
    count = 0
    async with OktaClient({"orgUrl": url, "token": TOKEN}) as client:
        users, resp, err = await client.list_users(limit=200)
        while True:
            if err is not None:
                raise SystemExit(f"the SDK failed: {err}")
            count += sum(bool(user.id and user.profile.email) for user in users)
            cursor = PaginationHelper.extract_next_cursor(resp.headers)
            if cursor is None:
                return count
            users, resp, err = await client.list_users(limit=200, after=cursor)


def throughput(identities: int, repeats: int, concurrency: int) -> None:
    with simulator(identities, rate_limit=False) as url:
        asyncio.run(connector_sweep(url, concurrency))  # warm-up: fills the page cache

        def ours() -> Pass:
            return timed(lambda: asyncio.run(connector_sweep(url, concurrency)), identities, "users")

        def sdk() -> Pass:
            return timed(lambda: asyncio.run(sdk_sweep(url)), identities, "users")

        compare(ours, sdk, repeats, "users/s", target=">= 2x")


async def paced_requests(url: str, seconds: float, concurrency: int) -> tuple[int, int]:
    """User-list requests the connector completes in `seconds` with the rate limit on (200s, 429s)."""

    def sweep(session: aiohttp.ClientSession) -> Awaitable[None]:
        # pages of 50: the ceiling counts requests, and the cold simulator should not be what limits them
        settings = {"base_url": url, "api_token": TOKEN, "concurrency": concurrency, "page_size": 50}
        # again and again: 200,000 users is 1,000 pages, more than the window lets through
        return drain(connectors.build("okta", "bench", settings, session=session), again=True)

    window = await statuses_in_window(lambda path: path == "/api/v1/users", sweep, seconds, start_timeout=60)
    return window.count(200), window.count(429)


async def served_requests(http: aiohttp.ClientSession, url: str) -> int:
    async with http.get(f"{url}/_admin/stats") as answer:
        return int((await answer.json())["requests"])


async def incremental(url: str, identities: int, share: float, concurrency: int) -> tuple[int, int, int]:
    """(full listing's requests, changes sweep's requests, users changed); raises if a change is missed
    or a band is wrong."""
    connector = OktaConnector("bench", base_url=url, api_token=TOKEN, concurrency=concurrency, pacing=False)
    async with connector, aiohttp.ClientSession() as http:
        cursor = (await connector.changes_since(None)).cursor  # taken before the listing, as sweeps do
        before = await served_requests(http, url)
        listed = {identity.id: identity async for identity in connector.list_identities()}
        full = await served_requests(http, url) - before
        assert len(listed) == identities, len(listed)
        moved = [i for i in listed if listed[i].risk_level not in (RiskLevel.HIGH, RiskLevel.CRITICAL)]
        picked = random.Random(1).sample(sorted(moved), int(identities * share))
        semaphore = asyncio.Semaphore(16)

        async def move(user_id: str) -> None:
            async with (
                semaphore,
                http.post(f"{url}/_admin/users/{user_id}/risk", json={"riskLevel": "HIGH"}) as answer,
            ):
                assert answer.status == 200, await answer.text()

        await asyncio.gather(*(move(user_id) for user_id in picked))
        before = await served_requests(http, url)
        changes = await connector.changes_since(cursor)
        spent = await served_requests(http, url) - before
    found = {identity.id: identity for identity in changes.identities}
    assert set(found) == set(picked), f"found {len(set(found) & set(picked))} of {len(picked)} changes"
    for user_id, identity in found.items():
        band = RiskLevel.CRITICAL if listed[user_id].privileged else RiskLevel.HIGH
        assert identity.risk_level is band and identity.privileged is listed[user_id].privileged, user_id
    return full, spent, len(picked)


def memory(identities: int, concurrency: int) -> tuple[float, float, float]:
    return peak_memory(
        simulator(identities, rate_limit=False),
        lambda url, peak: connector_sweep(url, concurrency, peak),
        identities,
        "users",
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--identities", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--rate-seconds", type=float, default=29.9, help="paced run length (under 3 windows)")
    parser.add_argument("--million", type=int, default=1_000_000, help="users for the memory run (0 skips)")
    parser.add_argument("--incremental", type=int, default=100_000, help="users for the change run (0 skips)")
    parser.add_argument("--change", type=float, default=0.01, help="share of them moved to HIGH")
    args = parser.parse_args()
    # the SDK refuses a plain-http org URL (the local simulator) unless its testing switch is on
    os.environ["OKTA_TESTING_TESTINGDISABLEHTTPSCHECK"] = "true"

    if args.million:
        print_memory((args.identities, args.million), "users", lambda n: memory(n, args.concurrency))

    print(f"\nListing {args.identities:,} users, no rate limit, warm simulator, median of {args.repeats}:")
    throughput(args.identities, args.repeats, args.concurrency)

    seconds = args.rate_seconds
    print(
        f"\nRate limit on ({CEILING} requests per {PERIOD:g} s window a bucket), {seconds:g} s of requests:"
    )
    with simulator(200_000, rate_limit=True) as url:
        served, refused = asyncio.run(paced_requests(url, seconds, args.concurrency))
    ceiling = CEILING * -(-seconds // PERIOD)  # a fixed window admits a full burst per window begun
    print_share(served, f"{refused} refused (429)", ceiling, "user-list pages")

    if args.incremental:
        users = args.incremental
        print(f"\nIncremental sweep: {users:,} users, {args.change:.0%} moved to HIGH after a full listing:")
        with simulator(users, rate_limit=False) as url:
            full, spent, changed = asyncio.run(incremental(url, users, args.change, args.concurrency))
        print(f"  full listing: {full} requests; changes sweep: {spent}, found all {changed} changes")
        print(f"  changes sweep / full listing: {spent / full:.1%} (target <= 5%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

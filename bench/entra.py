"""Entra ID benchmark: list users with our connector and with Microsoft's msgraph-sdk in the same run.

Prints users/s for the connector (idops Identities with directory roles and Identity Protection risk)
and for msgraph-sdk 1.65 (azure-identity ClientSecretCredential through MSAL, `users.get` with
`$select` and `$top=999`, then msgraph-core's PageIterator) and their ratio, both with the simulator's
throttling off; the share of the simulator's throttling ceiling the connector reaches with it on; the
requests an incremental sweep (changes_since) costs after 1% of the users' risk changed, against a
full listing; and the connector's resident memory listing 50,000 and 1,000,000 users.

msgraph-sdk parses each user through kiota (15-70 ms a user on this shared machine: every call of
`Entity.get_field_deserializers` runs its hundreds of function-level imports), so its pass over the
50,000 users takes 15-60 minutes; it prints its progress every page of 999. `--sdk-identities N` stops it
after N users (whole pages) for a quick look; the ratio then compares rates.

The simulator runs as a subprocess (it stands in for Graph, so it must not share the client's event
loop or core). A warm-up pass fills its cache first; the SDK's first page (its imports) is untimed.

    .venv/bin/python bench/entra.py [--identities 50000] [--repeats 3] [--sdk-identities 50000]
        [--parts memory,throughput,incremental,throttling]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from collections.abc import Awaitable
from typing import Any
from urllib.parse import urlsplit

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
from azure.core.pipeline.transport import RequestsTransport
from azure.identity import ClientSecretCredential
from kiota_abstractions.base_request_configuration import RequestConfiguration
from kiota_authentication_azure.azure_identity_authentication_provider import (
    AzureIdentityAuthenticationProvider,
)
from msgraph import GraphRequestAdapter, GraphServiceClient
from msgraph.generated.users.users_request_builder import UsersRequestBuilder
from msgraph_core.tasks.page_iterator import PageIterator

import connectors
from connectors.entra import EntraConnector
from standins.entra_state import EntraState

TENANT = "8f3b2a10-0c55-4d6e-9a7b-1c2d3e4f5a6b"
CLIENT_ID, CLIENT_SECRET = "00000000-0000-0000-0000-0000000be4c4", "bench-secret"
AUTHORITY = "login.microsoftonline.com"
PERIOD = 10.0  # the simulator's throttling window
PARTS = ("memory", "throughput", "incremental", "throttling")
IDS = EntraState(users=0, seed=0, tenant_id=TENANT, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
ENV = {"ENTRA_TENANT_ID": TENANT, "ENTRA_CLIENT_ID": CLIENT_ID, "ENTRA_CLIENT_SECRET": CLIENT_SECRET}


def simulator(identities: int, throttle: int = 0) -> contextlib.AbstractContextManager[str]:
    """`idops sim entra` in its own process (throttle: requests per 10 s, 0 = off); gives its URL."""
    return simulator_process("entra", "--identities", str(identities), "--throttle", str(throttle), env=ENV)


def settings(url: str) -> dict:
    return {
        "tenant_id": TENANT,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "authority_url": url,
        "graph_url": url,
    }


async def connector_sweep(url: str, peak: list[float] | None = None) -> int:
    count = 0
    async with connectors.build("entra", "bench", settings(url)) as connector:
        async for page in connector.iter_pages():
            count += sum(bool(identity.id and identity.email) for identity in page)
            if peak is not None:
                peak[0] = max(peak[0], rss_mib())
    return count


class LoopbackTransport(RequestsTransport):
    """Carries the credential's https requests for login.microsoftonline.com to the simulator."""

    def __init__(self, target: str) -> None:
        super().__init__()
        self.target = target

    def send(self, request: Any, **kwargs: Any) -> Any:
        parts = urlsplit(request.url)
        if parts.hostname != AUTHORITY:
            raise RuntimeError(f"refusing to send to {parts.hostname}")
        request.headers["X-Forwarded-Host"], request.headers["X-Forwarded-Proto"] = AUTHORITY, "https"
        request.url = self.target + parts.path + (f"?{parts.query}" if parts.query else "")
        return super().send(request, **kwargs)


def sdk_client(url: str) -> tuple[GraphServiceClient, GraphRequestAdapter]:
    credential = ClientSecretCredential(
        TENANT, CLIENT_ID, CLIENT_SECRET, authority=f"https://{AUTHORITY}", transport=LoopbackTransport(url)
    )
    auth = AzureIdentityAuthenticationProvider(
        credential, scopes=["https://graph.microsoft.com/.default"], allowed_hosts=["127.0.0.1"]
    )
    adapter = GraphRequestAdapter(auth)
    adapter.base_url = f"{url}/v1.0"
    return GraphServiceClient(request_adapter=adapter), adapter


async def sdk_sweep(client: GraphServiceClient, adapter: GraphRequestAdapter, limit: int) -> int:
    """Users through PageIterator, stopping after `limit` (whole pages of 999)."""
    query = UsersRequestBuilder.UsersRequestBuilderGetQueryParameters(
        select=["id", "displayName", "mail", "userPrincipalName", "accountEnabled"], top=999
    )
    start = time.perf_counter()
    first = await client.users.get(request_configuration=RequestConfiguration(query_parameters=query))
    seen = [0]

    def each(user: Any) -> bool:
        seen[0] += bool(user.id and (user.mail or user.user_principal_name))
        if limit > 999 and seen[0] % 999 == 0:  # a long pass shows its progress, page by page
            elapsed = time.perf_counter() - start
            print(f"    SDK: {seen[0]:,} users in {elapsed:,.0f} s ({seen[0] / elapsed:.1f}/s)", flush=True)
        return seen[0] < limit

    await PageIterator(first, adapter).iterate(each)
    return seen[0]


async def sdk_pass(url: str, limit: int) -> Pass:
    """One timed SDK pass over `limit` users (its first page untimed: token, imports, the first parse);
    one loop, as its httpx client is bound to it."""
    client, adapter = sdk_client(url)
    await sdk_sweep(client, adapter, 1)
    start, cpu = time.perf_counter(), time.process_time()
    count = await sdk_sweep(client, adapter, limit)
    elapsed, used = time.perf_counter() - start, time.process_time() - cpu
    if count != limit:
        raise SystemExit(f"the SDK listed {count} users, expected {limit}")
    return Pass(count / elapsed, used)


def throughput(identities: int, repeats: int, sdk_identities: int) -> None:
    """The connector `repeats` times, then the SDK once over `sdk_identities` users (its pass is long)."""
    listed = min(identities, sdk_identities)
    with simulator(identities) as url:
        asyncio.run(connector_sweep(url))  # warm-up: fills the simulator's cache
        compare(
            lambda: timed(lambda: asyncio.run(connector_sweep(url)), identities, "users"),
            lambda: asyncio.run(sdk_pass(url, listed)),
            repeats,
            f"users/s ({identities:,} each)",
            peer_unit=f"users/s ({listed:,} users)",
            peer_repeats=1,
            target=">= 3x",
        )


async def throttled_requests(url: str, seconds: float) -> tuple[int, int]:
    """Graph requests the connector completes in `seconds` with throttling on (200s, 429s)."""

    def sweep(session: aiohttp.ClientSession) -> Awaitable[None]:
        return drain(connectors.build("entra", "bench", settings(url), session=session))

    window = await statuses_in_window(lambda path: path.startswith("/v1.0/"), sweep, seconds)
    return window.count(200), window.count(429)


async def incremental(url: str, identities: int) -> tuple[int, int, int]:
    """(requests of a full listing, requests of changes_since after 1% changed, changes seen)."""
    counted = [0]

    async def on_end(session, context, params) -> None:  # type: ignore[no-untyped-def]
        counted[0] += params.url.path.startswith("/v1.0/")

    trace = aiohttp.TraceConfig()
    trace.on_request_end.append(on_end)
    async with aiohttp.ClientSession(trace_configs=[trace]) as session:
        connector = connectors.build("entra", "bench", settings(url), session=session)
        assert isinstance(connector, EntraConnector)
        cursor = (await connector.changes_since(None)).cursor
        async for _ in connector.iter_pages():
            pass
        full = counted[0]
        changed = identities // 100
        levels = ("low", "medium", "high")
        for n in range(changed):
            index = (n * 97) % identities
            user = f"{url}/_admin/users/{_user_id(index)}/risk"
            async with session.post(user, json={"riskLevel": levels[n % 3]}) as answer:
                answer.raise_for_status()
        counted[0] = 0
        found = await connector.changes_since(cursor)
        await connector.close()
    return full, counted[0], len({identity.id for identity in found.identities})


def _user_id(index: int) -> str:
    """The simulator's id for user `index` (its own scheme: a benchmark may import the stand-in)."""
    return IDS.user_id(index)


def memory(identities: int) -> tuple[float, float, float]:
    return peak_memory(simulator(identities), connector_sweep, identities, "users")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--identities", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sdk-identities", type=int, default=50_000, help="users the SDK lists (999 a page)")
    parser.add_argument("--throttle", type=int, default=40, help="simulator ceiling: requests per 10 s")
    parser.add_argument("--throttle-seconds", type=float, default=29.9)
    parser.add_argument("--million", type=int, default=1_000_000, help="users for the memory run (0 skips)")
    parser.add_argument(
        "--parts",
        default=",".join(PARTS),
        help=f"comma-separated parts to run, of {', '.join(PARTS)} (default: all)",
    )
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    if not parts <= set(PARTS):
        parser.error(f"--parts takes {', '.join(PARTS)}")

    if args.million and "memory" in parts:
        print_memory((args.identities, args.million), "users", memory)

    if "throughput" in parts:
        print(
            f"\nListing {args.identities:,} users, throttling off, warm simulator, median of {args.repeats}:"
        )
        throughput(args.identities, args.repeats, args.sdk_identities)

    if "incremental" in parts:
        print(f"\nIncremental sweep of {args.identities:,} users after 1% changed risk:")
        with simulator(args.identities) as url:
            full, changes, seen = asyncio.run(incremental(url, args.identities))
        print(f"  full listing {full} requests; changes_since {changes} requests for {seen} changed users")
        print(f"  share: {changes / full:.0%} of a full listing (target <= 5%)")

    if "throttling" not in parts:
        return 0
    seconds = args.throttle_seconds
    print(f"\nThrottling on ({args.throttle} requests per {PERIOD:g} s per app), {seconds:g} s of requests:")
    with simulator(1_000_000, throttle=args.throttle) as url:
        served, refused = asyncio.run(throttled_requests(url, seconds))
    ceiling = args.throttle * -(-seconds // PERIOD)
    print_share(served, f"{refused} throttled (429)", ceiling)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Google Workspace benchmark: list every user with our connector and with Google's own client.

Prints users/s medians for the connector (idops Identities, risk from Alert Center included) and for
google-api-python-client (static admin directory_v1 discovery, google-auth service-account
credentials with domain-wide delegation, `list` + `list_next` at maxResults 500, as Google's samples
page) and their ratio, both with the simulator's quota off; then the share of the per-user quota
ceiling the connector reaches with the quota on, and how many requests the simulator refused.

The simulator runs as a subprocess (it stands in for Google, so it must not share the client's event
loop or core) and trusts a key made for the run. One warm-up pass fills its page cache first, so both
clients are timed against the same warm server and the figures measure the clients.

    .venv/bin/python bench/google_workspace.py [--identities 50000] [--repeats 3] [--quota-seconds 59.9]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
from collections.abc import Awaitable
from typing import Any

import aiohttp
from _support import (
    Pass,
    alternate,
    drain,
    median_rate,
    print_rates,
    print_ratio,
    print_share,
    simulator_process,
    statuses_in_window,
    timed,
)
from google.oauth2 import service_account
from googleapiclient.discovery import build

from connectors.google_workspace import GoogleWorkspaceConnector
from connectors.google_workspace_api import DIRECTORY_SCOPES, ServiceAccountKey
from standins.google_workspace import generate_key

KEY = generate_key()
ADMIN = "secops-bot@acme.example"


def simulator(identities: int, quota: int | None) -> contextlib.AbstractContextManager[str]:
    """`idops sim google_workspace` in its own process, trusting KEY; gives its base URL."""
    args = ["--identities", str(identities)]
    args += ["--no-quota"] if quota is None else ["--quota-per-minute", str(quota)]
    return simulator_process("google_workspace", *args, env={"GOOGLE_SERVICE_ACCOUNT_JSON": json.dumps(KEY)})


def connector(url: str, **extra: Any) -> GoogleWorkspaceConnector:
    return GoogleWorkspaceConnector(
        "bench",
        key=ServiceAccountKey.parse(json.dumps(KEY)),
        admin_email=ADMIN,
        token_url=f"{url}/token",
        base_url=url,
        alert_center_url=url,
        **extra,
    )


async def connector_sweep(url: str) -> int:
    """Every user as an Identity, client-side quota pacing off like the simulator's quota."""
    count = 0
    async with connector(url, pacing=False) as workspace:
        async for identity in workspace.list_identities():
            count += bool(identity.id and identity.email and identity.risk_level is not None)
    return count


def sdk_sweep(url: str) -> int:
    """Every user through google-api-python-client, paging with list_next."""
    credentials = service_account.Credentials.from_service_account_info(
        {**KEY, "token_uri": f"{url}/token"}, scopes=list(DIRECTORY_SCOPES)
    ).with_subject(ADMIN)
    service = build(
        "admin",
        "directory_v1",
        credentials=credentials,
        static_discovery=True,
        client_options={"api_endpoint": url},
    )
    count = 0
    request: Any = service.users().list(customer="my_customer", maxResults=500)
    while request is not None:
        page = request.execute()
        count += sum(bool(user["id"] and user["primaryEmail"]) for user in page.get("users", []))
        request = service.users().list_next(request, page)
    return count


def throughput(identities: int, repeats: int) -> tuple[float, float, float, float]:
    """Medians of (connector users/s, Google's users/s, connector CPU s, Google's CPU s): the CPU figure
    is the client's own work, which holds steady on a busy machine where wall time does not (the
    simulator is another process)."""
    with simulator(identities, quota=None) as url:
        asyncio.run(connector_sweep(url))  # warm-up: fills the simulator's cache

        def ours() -> Pass:
            return timed(lambda: asyncio.run(connector_sweep(url)), identities, "users")

        def google() -> Pass:
            return timed(lambda: sdk_sweep(url), identities, "users")

        mine, theirs = alternate(repeats, ours, google)
    print_rates("connector", [p.rate for p in mine], "users/s")
    print_rates("Google", [p.rate for p in theirs], "users/s")
    print(f"  CPU s     : connector {' '.join(f'{p.cpu:9.2f}' for p in mine)}")
    print(f"  CPU s     : Google    {' '.join(f'{p.cpu:9.2f}' for p in theirs)}")
    return (
        median_rate(mine),
        median_rate(theirs),
        statistics.median(p.cpu for p in mine),
        statistics.median(p.cpu for p in theirs),
    )


async def paced_requests(url: str, quota: int, seconds: float) -> tuple[int, int]:
    """Directory requests the connector completes in `seconds` of back-to-back sweeps (small pages)
    against the simulator's quota, its own pacing on at the same quota: (served, refused)."""

    def sweeps(session: aiohttp.ClientSession) -> Awaitable[None]:
        return drain(connector(url, page_size=50, quota_per_minute=quota, session=session), again=True)

    window = await statuses_in_window(lambda path: path.startswith("/admin/directory/"), sweeps, seconds)
    return window.count(200), len(window) - window.count(200)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--identities", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quota", type=int, default=600, help="per-minute quota for the paced run")
    parser.add_argument("--quota-seconds", type=float, default=59.9, help="paced run length (one window)")
    args = parser.parse_args()

    print(f"Listing {args.identities:,} users, quota off, warm simulator, median of {args.repeats}:")
    ours, sdk, our_cpu, sdk_cpu = throughput(args.identities, args.repeats)
    print_ratio(ours, sdk, "Google's client")
    cpu_ratio = sdk_cpu / our_cpu
    print(f"  client CPU: connector {our_cpu:.2f} s, Google's client {sdk_cpu:.2f} s, ratio {cpu_ratio:.1f}x")

    print(f"\nQuota on ({args.quota} queries per minute per user), {args.quota_seconds:g} s of sweeps:")
    with simulator(20_000, quota=args.quota) as url:
        served, refused = asyncio.run(paced_requests(url, args.quota, args.quota_seconds))
    print_share(served, f"{refused} refused (403 userRateLimitExceeded)", args.quota, target="")
    return 0


if __name__ == "__main__":
    sys.exit(main())

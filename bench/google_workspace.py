"""Google Workspace benchmark: list every user with our connector and with Google's own client.

Prints users/s medians for the connector in both listing modes (idops Identities, risk from Alert
Center included) and for google-api-python-client (static admin directory_v1 discovery, google-auth
service-account credentials with domain-wide delegation, `list` + `list_next` at maxResults 500, as
Google's samples page) and the ratios, with the simulator's quota off, twice: with the simulator
answering at once (the clients' and the simulator's CPU is all there is to measure) and answering each
request after each `--latency` (a remote API's round trip; Google publishes no figure, so it is a
setting: 100 and 250 ms by default).
Then the share of the per-user quota ceiling the connector reaches with the quota on (partitioned
sweeps, pacing at the same quota), and how many requests the simulator refused.

Both clients get what Google would send them: the simulator answers indented (Google's default,
`prettyPrint=true`) unless asked `prettyPrint=false`, which the connector asks on every request and
google-api-python-client never does (38% more bytes in a page of full users for it to read).

The sequential listing is one `nextPageToken` chain with the next page asked for while this one is
converted; the partitioned one pages `--concurrency` email-prefix searches at once (its plain listing,
which it is checked against, is made in the untimed warm-up, as a running `idops serve` has one; the
bench stops if a timed pass fell back to the plain listing).

The simulator runs as a subprocess (it stands in for Google, so it must not share the client's event
loop or core) and trusts a key made for the run. Warm-up passes fill its caches for both clients' forms
(the connector's compact partial users, Google's client's indented full ones) and its address index
first, so all are timed against the same warm server.

Last run (2026-12-02, `--repeats 5`, 2 shared cores at load average 5.6-9.3; medians, users/s, in the
same run): at 0 ms sequential 16,019, partitioned 16,644, Google's client 12,565 (1.3x: the target of 3x
is not met there, both clients being CPU-bound; the README says why); at 100 ms 4,003 / 12,742 / 3,695
(3.4x, partitioned); at 250 ms 1,814 / 8,396 / 1,796 (4.7x, partitioned); quota on: 596 requests in the
59.9 s window of 600, none refused (99%).

    .venv/bin/python bench/google_workspace.py [--identities 50000] [--repeats 5] [--latency 0.1 0.25]
        [--concurrency 8] [--quota 600] [--quota-seconds 59.9]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import glob
import json
import os
import statistics
import sys
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

import aiohttp
from _support import (
    Pass,
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


def simulator(
    identities: int, quota: int | None, latency: float = 0.0
) -> contextlib.AbstractContextManager[str]:
    """`idops sim google_workspace` in its own process, trusting KEY; gives its base URL."""
    args = ["--identities", str(identities), "--latency", str(latency)]
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


async def connector_sweep(workspace: GoogleWorkspaceConnector) -> int:
    """Every user as an Identity (risk from Alert Center included)."""
    count = 0
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


def simulator_cpu() -> float:
    """CPU seconds (user and system) used so far by this process's children: the simulator, which
    runs alone (Linux /proc)."""
    tick, total = os.sysconf("SC_CLK_TCK"), 0
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat) as file:
                fields = file.read().rsplit(")", 1)[1].split()
        except OSError:  # a process that ended meanwhile
            continue
        if int(fields[1]) == os.getpid():
            total += int(fields[11]) + int(fields[12])
    return total / tick


class Figures(NamedTuple):
    """Medians of one setting: users/s (sequential connector, partitioned connector, Google's client)
    and client CPU seconds a listing (the same three)."""

    rates: tuple[float, float, float]
    cpu: tuple[float, float, float]


def throughput(identities: int, repeats: int, latency: float, concurrency: int) -> Figures:
    """Both listing modes of the connector and Google's client, round after round, against one warm
    simulator. Each mode keeps one connector, as `idops serve` does: the partitioned one has made its
    plain listing (its check) before the timed rounds, so they are partitioned."""
    loop = asyncio.new_event_loop()
    with simulator(identities, quota=None, latency=latency) as url:
        sequential = connector(url, pacing=False)
        partitioned = connector(url, pacing=False, listing="partitioned", listing_concurrency=concurrency)
        # warm-up, untimed: fills the simulator's caches (both field masks, the address index) and
        # gives the partitioned connector its plain listing
        for warm in (sequential, partitioned, partitioned):
            loop.run_until_complete(connector_sweep(warm))
        sdk_sweep(url)
        checked_at = partitioned._baseline_at  # when its last plain listing ended (bench-only peek)

        def run(workspace: GoogleWorkspaceConnector) -> Callable[[], Pass]:
            return lambda: timed(
                lambda: loop.run_until_complete(connector_sweep(workspace)), identities, "users"
            )

        passes: list[list[Pass]] = [[], [], []]
        served: list[list[float]] = [[], [], []]  # the simulator's CPU seconds in each pass
        for _ in range(repeats):
            for found, spent, measure in zip(
                passes,
                served,
                (
                    run(sequential),
                    run(partitioned),
                    lambda: timed(lambda: sdk_sweep(url), identities, "users"),
                ),
            ):
                before = simulator_cpu()
                found.append(measure())
                spent.append(simulator_cpu() - before)
        if partitioned._baseline_at != checked_at:
            raise SystemExit(
                "the partitioned listing fell back to the plain one: its figures are not partitioned"
            )
        for workspace in (sequential, partitioned):
            loop.run_until_complete(workspace.close())
    loop.close()
    for label, found in zip(("sequential", "partitioned", "Google"), passes):
        print_rates(label, [p.rate for p in found], "users/s")
    for label, found in zip(("sequential", "partitioned", "Google"), passes):
        print(f"  CPU s     : {label:<11} {' '.join(f'{p.cpu:9.2f}' for p in found)}")
    for label, spent in zip(("sequential", "partitioned", "Google"), served):
        print(f"  simulator : {label:<11} {' '.join(f'{s:9.2f}' for s in spent)}  CPU s serving it")
    rates = tuple(median_rate(found) for found in passes)
    cpu = tuple(statistics.median(p.cpu for p in found) for found in passes)
    return Figures(rates, cpu)  # type: ignore[arg-type]


async def paced_requests(url: str, quota: int, seconds: float, concurrency: int) -> tuple[int, int]:
    """Directory requests the connector completes in `seconds` of back-to-back partitioned sweeps (small
    pages; the first sweep is the plain one) against the simulator's quota, its own pacing on at the
    same quota: (served, refused)."""

    def sweeps(session: aiohttp.ClientSession) -> Awaitable[None]:
        workspace = connector(
            url,
            page_size=50,
            quota_per_minute=quota,
            session=session,
            listing="partitioned",
            listing_concurrency=concurrency,
        )
        return drain(workspace, again=True)

    window = await statuses_in_window(lambda path: path.startswith("/admin/directory/"), sweeps, seconds)
    return window.count(200), len(window) - window.count(200)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--identities", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=8, help="partitions paged at once")
    parser.add_argument(
        "--latency",
        type=float,
        nargs="+",
        default=[0.1, 0.25],
        help="seconds the simulator takes per request, one setting each (after the one at 0)",
    )
    parser.add_argument("--quota", type=int, default=600, help="per-minute quota for the paced run")
    parser.add_argument("--quota-seconds", type=float, default=59.9, help="paced run length (one window)")
    args = parser.parse_args()

    for latency in (0.0, *args.latency):
        print(
            f"Listing {args.identities:,} users, quota off, warm simulator answering after"
            f" {latency * 1000:g} ms, median of {args.repeats} (load average {os.getloadavg()[0]:.1f}):"
        )
        figures = throughput(args.identities, args.repeats, latency, args.concurrency)
        sequential, partitioned, sdk = figures.rates
        print_ratio(sequential, sdk, "Google's client")
        print(
            f"  partitioned: {partitioned:,.0f}/s, ratio {partitioned / sdk:.1f}x to Google's client"
            " (target 3x)"
        )
        print(
            "  client CPU: sequential {:.2f} s, partitioned {:.2f} s, Google's client {:.2f} s".format(
                *figures.cpu
            )
            + " ({:.1f}, {:.1f}, {:.1f} µs a user; load average now {:.1f})\n".format(
                *(seconds / args.identities * 1e6 for seconds in figures.cpu), os.getloadavg()[0]
            )
        )

    print(
        f"Quota on ({args.quota} queries per minute per user),"
        f" {args.quota_seconds:g} s of partitioned sweeps:"
    )
    with simulator(20_000, quota=args.quota) as url:
        served, refused = asyncio.run(paced_requests(url, args.quota, args.quota_seconds, args.concurrency))
    print_share(served, f"{refused} refused (403 userRateLimitExceeded)", args.quota, target="")
    return 0


if __name__ == "__main__":
    sys.exit(main())

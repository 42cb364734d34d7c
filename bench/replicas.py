"""Replicas benchmark: `idops serve` on one SQLite file against 1, 2 and 3 replicas on one PostgreSQL
database, in the same run, with the same load.

For each setup, in rounds (setups interleaved, a fresh store each time):

- slash-command ack: `--requests` `/idops revoke <user> …` commands, `--concurrency` at a time, sent
  round-robin to the replicas (what a load balancer does), each timed from the signed POST until the
  ack comes back (through the Slack stand-in's own driver: signing and a connection per request
  included); the p99 over the round. Each command is recorded in the store before its ack
  (bot/command_log.py) and makes an approval request after it (an Okta read, a store write, the card
  posted), so the replicas are busy while later acks are timed.
- approvals per second: every card's Approve clicked (round-robin, `--concurrency` at a time) until
  the store holds every request executed (Okta's session revocation done); requests / elapsed.

Medians over the rounds, and each PostgreSQL setup's ratio against the one SQLite replica. The
PostgreSQL server is a throwaway cluster (tests/support/postgres.py: Debian's postgresql package, as
`make test` installs it); the Okta simulator runs in its own process, rate limits off; the Slack
stand-in (`FakeSlack`) serves the replicas' Web API calls in this process. Everything shares the
machine's cores, so more replicas add no CPU here: the figures show what the shared store costs and
what running several processes does on one box, not a cluster's capacity.

    .venv/bin/python bench/replicas.py [--requests 200] [--concurrency 16] [--rounds 3]

Stopped early (Ctrl-C, or SIGTERM, which unwinds the same way), it removes what it started: the
replicas, the Okta simulator, and the cluster with its directory.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import aiohttp
from _support import REPO, simulator_process

from bot.store import Store, connect, postgresql_url, sqlite_url
from standins.okta_data import OktaState
from standins.slack import FakeSlack, SlackUser
from tests.support.postgres import PostgresCluster, running_cluster

OKTA_TOKEN = "00okta-bench-replicas-token"  # noqa: S105 - the simulator's made-up token
PASSWORD_ENV = "IDOPS_BENCH_DB_PASSWORD"  # noqa: S105 - a variable name
REQUESTER, APPROVER = "U0ALICE", "U0BOB"
APPROVALS, ALERTS, COMMANDS = "C0APPROVALS", "C0ALERTS", "C0SECOPS"
START_SECONDS = 60.0
DONE_SECONDS = 300.0


@dataclass(frozen=True)
class Setup:
    backend: str  # "sqlite" | "postgresql"
    replicas: int

    @property
    def label(self) -> str:
        return f"{'SQLite' if self.backend == 'sqlite' else 'PostgreSQL'} x{self.replicas}"


SETUPS = (Setup("sqlite", 1), Setup("postgresql", 1), Setup("postgresql", 2), Setup("postgresql", 3))


@dataclass
class Figures:
    ack_p99: float  # seconds
    ack_median: float
    approvals_per_second: float


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def targets(identities: int, count: int) -> list[str]:
    """Ids of ordinary active Okta users (one approval each, no privileged second approver); by id,
    so the bot reads each with one GET rather than a search."""
    state = OktaState(identities=identities)  # the simulator's seeded people, same seed
    found = [
        state.user_id(i)
        for i in range(4, state.total)
        if state.status(i) == "ACTIVE" and not state.role_types(i)
    ]
    if len(found) < count:
        raise SystemExit(f"only {len(found)} plain active users among {identities}: raise --identities")
    return found[:count]


def config_text(store: str, okta_url: str, alerts: str = "[alerts]\nenabled = false") -> str:
    """The replicas' idops.toml: one Okta connector, the store given, alerts off (no sweeps) unless
    `alerts` says otherwise."""
    return f"""
[slack]
alert_channel = "{ALERTS}"
approval_channel = "{APPROVALS}"

[access]
responders = ["{REQUESTER}"]
approvers = ["{APPROVER}"]

[approvals]
expire_minutes = 60
privileged_approvals = 2

{alerts}

{store}

[[connectors]]
name = "okta"
kind = "okta"
base_url = "{okta_url}"
api_token_env = "OKTA_API_TOKEN"
"""


@contextlib.asynccontextmanager
async def replicas(count: int, config: Path, env: dict[str, str]) -> AsyncIterator[list[str]]:
    """`count` `idops serve` processes on `config` (logs beside it); yields their base URLs once each
    answers /healthz."""
    async with replica_processes(count, config, env) as procs:
        yield [proc.url for proc in procs]


@contextlib.asynccontextmanager
async def replica_processes(count: int, config: Path, env: dict[str, str]) -> AsyncIterator[list[Any]]:
    """`count` `idops serve` processes on `config` (logs beside it), each with its `url`, once each
    answers /healthz; stopped (SIGTERM, then SIGKILL) at the end."""
    ports = [free_port() for _ in range(count)]
    logs = [config.with_suffix(f".{port}.log") for port in ports]
    procs = []
    for port, log in zip(ports, logs):
        with log.open("wb") as sink:  # a file, never a pipe nobody drains
            procs.append(
                await asyncio.create_subprocess_exec(
                    *(sys.executable, "-m", "bot.cli", "serve", "--config", str(config), "--port", str(port)),
                    cwd=REPO,
                    env={**os.environ, **env},
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=sink,
                )
            )
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    for proc, url in zip(procs, urls):
        proc.url = url  # type: ignore[attr-defined]
    try:
        await _healthy(urls, procs, logs)
        yield procs
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):  # one the take-over bench killed
                proc.terminate()
        for proc in procs:
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def _healthy(urls: list[str], procs: list[asyncio.subprocess.Process], logs: list[Path]) -> None:
    deadline = time.monotonic() + START_SECONDS
    async with aiohttp.ClientSession() as http:
        for url, proc, log in zip(urls, procs, logs):
            while True:
                if proc.returncode is not None:
                    said = log.read_text(errors="replace").strip()[-2000:]
                    raise SystemExit(f"idops serve stopped at start-up: {said}")
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(url + "/healthz") as answer:
                        if answer.status == 200:
                            break
                if time.monotonic() > deadline:
                    raise SystemExit(
                        f"idops serve at {url} did not answer /healthz within {START_SECONDS:g} s"
                    )
                await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def slack_standin() -> AsyncIterator[FakeSlack]:
    slack = FakeSlack(
        users=[
            SlackUser(id=REQUESTER, name="alice", email="alice@secops.example"),
            SlackUser(id=APPROVER, name="bob", email="bob@secops.example"),
        ],
        channels={APPROVALS: "approvals", ALERTS: "alerts", COMMANDS: "secops"},
        ack_timeout=60.0,
    )
    async with slack.serve():
        yield slack


def replica_env(slack: FakeSlack, store_env: dict[str, str]) -> dict[str, str]:
    """What each `idops serve` gets in its environment: the Slack stand-in's secrets, Okta's token, and
    the store's password variable when it has one."""
    return {
        "SLACK_BOT_TOKEN": slack.bot_token,
        "SLACK_SIGNING_SECRET": slack.signing_secret,
        "SLACK_API_URL": slack.api_url,
        "OKTA_API_TOKEN": OKTA_TOKEN,
        **store_env,
    }


async def until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DONE_SECONDS
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {DONE_SECONDS:g} s waiting for {what}")
        await asyncio.sleep(0.05)


def count(store: Store, where: str) -> int:
    return int(store.execute(f"SELECT count(*) FROM approvals WHERE {where}").scalar())  # noqa: S608


async def measure(
    slack: FakeSlack, urls: list[str], store: Store, users: list[str], concurrency: int
) -> Figures:
    """One round on running replicas: the commands (acks timed), then every Approve (throughput)."""
    slots = asyncio.Semaphore(concurrency)
    acks: list[float] = []
    before = len(slack.messages(APPROVALS))

    async def command(n: int, user: str) -> None:
        async with slots:
            start = time.perf_counter()
            reply = await slack.command(
                urls[n % len(urls)] + "/slack/events", REQUESTER, f"revoke {user} bench", channel_id=COMMANDS
            )
            acks.append(time.perf_counter() - start)
            if reply.status != 200:
                raise SystemExit(f"a slash command got HTTP {reply.status}: {reply.body[:200]}")

    await asyncio.gather(*(command(n, user) for n, user in enumerate(users)))
    await until(lambda: len(slack.messages(APPROVALS)) - before >= len(users), "every approval card")
    await until(
        lambda: count(store, "status = 'pending' AND message_ts IS NOT NULL") == len(users), "cards stored"
    )
    cards = slack.messages(APPROVALS)[before:]

    async def approve(n: int, card: dict) -> None:
        async with slots:
            reply = await slack.click(
                urls[n % len(urls)] + "/slack/events", APPROVER, card, "approval:approve"
            )
            if reply.status != 200:
                raise SystemExit(f"an Approve click got HTTP {reply.status}: {reply.body[:200]}")

    start = time.perf_counter()
    await asyncio.gather(*(approve(n, card) for n, card in enumerate(cards)))
    await until(lambda: count(store, "status = 'executed'") == len(users), "every request executed")
    elapsed = time.perf_counter() - start
    failed = count(store, "status NOT IN ('executed')")
    if failed:
        raise SystemExit(f"{failed} requests did not execute")
    ordered = sorted(acks)
    return Figures(
        ack_p99=ordered[max(0, round(0.99 * len(ordered)) - 1)],
        ack_median=statistics.median(ordered),
        approvals_per_second=len(users) / elapsed,
    )


@contextlib.contextmanager
def store_for(
    setup: Setup, cluster: PostgresCluster, scratch: Path, n: int
) -> Iterator[tuple[str, str, dict[str, str]]]:
    """(the config's [store] table, a URL the bench reads the store with, the replicas' extra env)."""
    if setup.backend == "sqlite":
        path = scratch / f"round{n}-{setup.replicas}.db"
        yield f'[store]\npath = "{path}"', str(sqlite_url(path)), {}
        return
    with cluster.database() as database:
        yield (
            f'[store]\nurl = "{database.config_url}"\npassword_env = "{PASSWORD_ENV}"',
            postgresql_url(database.config_url, database.password).render_as_string(hide_password=False),
            {PASSWORD_ENV: database.password},
        )


async def one_round(
    setup: Setup,
    n: int,
    cluster: PostgresCluster,
    scratch: Path,
    okta_url: str,
    users: list[str],
    concurrency: int,
) -> Figures:
    with store_for(setup, cluster, scratch, n) as (store_toml, store_url, store_env):
        config = scratch / f"round{n}-{setup.backend}-{setup.replicas}.toml"
        config.write_text(config_text(store_toml, okta_url))
        async with slack_standin() as slack:
            async with replicas(setup.replicas, config, replica_env(slack, store_env)) as urls:
                store = connect(store_url)
                try:
                    return await measure(slack, urls, store, users, concurrency)
                finally:
                    store.close()


# --- take-over of a dead replica's sweeps ---------------------------------------------------------

LEASE_SECONDS = 3  # the shortest [replicas] lease_seconds idops takes: a take-over comes fastest
POLL_SECONDS = 2  # [alerts] poll_seconds: a sweep of the Okta org every 2 s


def sweep_holder(store: Store) -> Optional[tuple[str, float]]:
    """(holder, lease end) of the Okta scope's sweep claim, when someone holds it."""
    row = store.execute("SELECT holder, until FROM claims WHERE name LIKE 'sweep:%' ORDER BY name").fetchone()
    return (str(row[0]), float(row[1])) if row else None


def last_sweep_started(store: Store) -> float:
    return float(store.execute("SELECT coalesce(max(last_started_at), 0) FROM alert_sweeps").scalar() or 0)


async def takeovers(
    cluster: PostgresCluster, scratch: Path, okta_url: str, kills: int
) -> list[tuple[float, float]]:
    """Two replicas sweep the Okta org under a claim; the holder is killed with SIGKILL `kills` times
    (restarted in between). Each time: (seconds until the survivor holds the claim, seconds until it
    started a sweep), from the kill."""
    alerts = (
        f"[alerts]\npoll_seconds = {POLL_SECONDS}\nfull_sweep_every = 1\n\n"
        f"[replicas]\nlease_seconds = {LEASE_SECONDS}"
    )
    found: list[tuple[float, float]] = []
    with cluster.database() as database:
        config = scratch / "takeover.toml"
        store_toml = f'[store]\nurl = "{database.config_url}"\npassword_env = "{PASSWORD_ENV}"'
        config.write_text(config_text(store_toml, okta_url, alerts))
        store = connect(postgresql_url(database.config_url, database.password))
        try:
            async with slack_standin() as slack:
                env = replica_env(slack, {PASSWORD_ENV: database.password})
                for _ in range(kills):
                    async with replica_processes(2, config, env) as procs:
                        found.append(await one_takeover(store, procs))
                        claimed, swept = found[-1]
                        print(
                            f"  kill {len(found)}: claim taken in {claimed:.2f} s, swept in {swept:.2f} s",
                            flush=True,
                        )
        finally:
            store.close()
    return found


async def one_takeover(store: Store, procs: list[Any]) -> tuple[float, float]:
    """Kill the sweep claim's holder; (seconds until another holds it, until a sweep started)."""
    await until(lambda: sweep_holder(store) is not None and last_sweep_started(store) > 0, "a first sweep")
    holder, _ = sweep_holder(store) or ("", 0.0)
    victim = next(proc for proc in procs if proc.pid == int(holder.split(":")[1]))
    killed_at = time.time()
    victim.kill()
    await until(lambda: (sweep_holder(store) or (holder, 0.0))[0] != holder, "a take-over")
    claimed = time.time() - killed_at
    await until(lambda: last_sweep_started(store) > killed_at, "the survivor's sweep")
    return claimed, last_sweep_started(store) - killed_at


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200, help="slash commands and approvals per round")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--kills", type=int, default=5, help="take-overs measured (0: none)")
    args = parser.parse_args()
    # SIGTERM unwinds like Ctrl-C (KeyboardInterrupt), so every `with` below stops what it started;
    # its default, dying on the spot, would leave the PostgreSQL server and the simulator running
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    identities = max(200, args.requests * 2)
    users = targets(identities, args.requests)
    results: dict[Setup, list[Figures]] = {setup: [] for setup in SETUPS}
    print(f"{args.requests} requests a round, {args.concurrency} in flight, {args.rounds} rounds")
    with (
        simulator_process(
            "okta", "--no-rate-limit", "--identities", str(identities), env={"OKTA_API_TOKEN": OKTA_TOKEN}
        ) as okta_url,
        running_cluster() as cluster,
        tempfile.TemporaryDirectory(prefix="idops-bench-") as scratch,
    ):
        if args.kills:
            print(
                f"Take-over: 2 replicas, [replicas] lease_seconds = {LEASE_SECONDS},"
                f" [alerts] poll_seconds = {POLL_SECONDS}; the sweep claim's holder killed with SIGKILL"
            )
            found = asyncio.run(takeovers(cluster, Path(scratch), okta_url, args.kills))
            print(
                f"  median: claim taken after {statistics.median(c for c, _ in found):.2f} s,"
                f" sweep started after {statistics.median(w for _, w in found):.2f} s"
                f" (lease {LEASE_SECONDS} s, poll interval {POLL_SECONDS} s)"
            )
        for n in range(args.rounds):
            for setup in SETUPS:
                figures = asyncio.run(
                    one_round(setup, n, cluster, Path(scratch), okta_url, users, args.concurrency)
                )
                results[setup].append(figures)
                ack = f"ack p99 {figures.ack_p99 * 1000:7.1f} ms (median {figures.ack_median * 1000:6.1f} ms)"
                rate = f"{figures.approvals_per_second:6.1f} approvals/s"
                print(f"  round {n + 1} {setup.label:<14}: {ack}, {rate}", flush=True)
    report(results)


def report(results: dict[Setup, list[Figures]]) -> None:
    base = SETUPS[0]
    base_p99 = statistics.median(f.ack_p99 for f in results[base])
    base_rate = statistics.median(f.approvals_per_second for f in results[base])
    print("Medians over the rounds (ratio: against one replica on SQLite):")
    for setup in SETUPS:
        p99 = statistics.median(f.ack_p99 for f in results[setup])
        rate = statistics.median(f.approvals_per_second for f in results[setup])
        print(
            f"  {setup.label:<14}: ack p99 {p99 * 1000:7.1f} ms ({p99 / base_p99:4.2f}x),"
            f" {rate:6.1f} approvals/s ({rate / base_rate:4.2f}x)"
        )


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        print("bench/replicas.py: stopped; the cluster, the simulator and the replicas are gone", flush=True)
        sys.exit(130)

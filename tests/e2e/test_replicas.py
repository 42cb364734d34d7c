"""Three `idops serve` replicas on one store, the HomeBase and Okta simulators and the Slack stand-in:
concurrent Approve clicks sent to different replicas (actions at Okta), risk changes at HomeBase while
replicas are killed with SIGKILL at random moments and restarted, and requests and time-boxed
containments (at Okta, which can undo) falling due while it happens. Counted where it shows: actions
at the simulators, messages at the Slack stand-in, expiries and reverts in the store and the audit
trail (which must still verify).

Each replica is a real `idops serve --port 0` process (the port it bound is read from its log, so no
port is picked and released before use); claims last 3 s and sweeps run every second, so a dead
replica's work moves to another within seconds.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import random
import re
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Optional

import aiohttp
import pytest
from support.alerts import ALERTS, eventually, payload, posted
from support.approvals import API_KEY
from support.postgres import PgDatabase

from bot import audit, thread_replies
from bot.store import Store, connect
from standins import homebase, okta, serving
from standins.slack import SOCKET_MODE, FakeSlack, SlackUser

ROOT = Path(__file__).resolve().parents[2]
APPROVALS, COMMANDS = "C0APPROVALS", "C0SECOPS"
ALICE, BOB, CAROL = "U0ALICE", "U0BOB", "U0CAROL"  # requester; two approvers
OKTA_TOKEN = "00okta-replicas-token"  # the simulator's made-up token
HEALTH_TOKEN = "replicas-api-token"  # IDOPS_API_TOKEN: /healthz shows its details to its bearer only
LISTENING = re.compile(r"idops listening on (http://\S+)")

CONFIG = """
[slack]
alert_channel = "{alerts}"
approval_channel = "{approvals}"

[access]
responders = ["{alice}"]
approvers = ["{bob}", "{carol}"]

[approvals]
expire_minutes = 30

{store}

[replicas]
lease_seconds = 3

[alerts]
poll_seconds = 1
fold_after = 0

[[connectors]]
name = "homebase"
kind = "homebase"
base_url = "{sim}/v1"
api_key_env = "TEST_HLD_KEY"
timeout = 5

[[connectors]]
name = "okta"
kind = "okta"
base_url = "{okta}"
api_token_env = "TEST_OKTA_TOKEN"
timeout = 5
"""


class Replica:
    """One `idops serve` process; `restart` starts a new one (a new holder) in its place. Given the
    Slack stand-in, it runs `--socket-mode` and `connection` is the number of the connection it opened."""

    def __init__(
        self, number: int, config: Path, env: dict[str, str], logs: Path, socket: Optional[FakeSlack] = None
    ) -> None:
        self.number = number
        self.config = config
        self.env = env
        self.logs = logs
        self.socket = socket
        self.runs = 0
        self.proc: Optional[asyncio.subprocess.Process] = None
        self.url = ""
        self.connection = 0

    @property
    def events(self) -> str:
        return SOCKET_MODE if self.socket is not None else self.url + "/slack/events"

    @property
    def log(self) -> Path:
        return self.logs / f"replica{self.number}-{self.runs}.log"

    async def start(self) -> None:
        self.runs += 1
        mode = ("--socket-mode",) if self.socket is not None else ()
        before = set(self.socket.socket_connections) if self.socket is not None else set()
        with self.log.open("wb") as out:
            self.proc = await asyncio.create_subprocess_exec(
                *(sys.executable, "-m", "bot.cli", "serve", "--config", str(self.config), "--port", "0"),
                *mode,
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=out,
            )
        found = await eventually(
            lambda: LISTENING.search(self.log.read_text(errors="replace")) or self._exited(),
            60,
            f"replica {self.number} to listen",
        )
        assert isinstance(found, re.Match), self.log.read_text(errors="replace")[-3000:]
        self.url = found.group(1)
        if self.socket is not None:  # connected before it listens: its connection is the new one
            (self.connection,) = set(self.socket.socket_connections) - before

    def _exited(self) -> bool:
        return self.proc is not None and self.proc.returncode is not None

    async def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 20)
            except asyncio.TimeoutError:
                self.proc.kill()
                await self.proc.wait()


class Cluster:
    def __init__(
        self,
        slack: FakeSlack,
        sim: homebase.HomeBaseState,
        okta: Any,
        store: Store,
        replicas: list[Replica],
    ) -> None:
        self.slack = slack
        self.sim = sim
        self.okta = okta
        self.store = store
        self.replicas = replicas

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Read the shared store as an operator would (a connection of its own)."""
        return [tuple(row) for row in self.store.execute(sql, params)]

    def write(self, sql: str, params: tuple[Any, ...] = ()) -> None:
        self.store.execute(sql, params)

    def card_of(self, request_id: str) -> Optional[dict[str, Any]]:
        for message in self.slack.messages(APPROVALS):
            if payload(message, "idops_approval").get("request_id") == request_id:
                return message
        return None

    async def request(
        self, replica: Replica, identity_id: str, command: str = "revoke {id}"
    ) -> tuple[str, dict[str, Any]]:
        """`/idops revoke <id>` (or `command`) on `replica`: the request id and its approval card (by
        id: the simulators share their seeded people, so an email names one in each)."""
        reply = await self.slack.command(
            replica.events, ALICE, command.format(id=identity_id), channel_id=COMMANDS
        )
        rows = await eventually(
            lambda: self.query(
                "SELECT id FROM approvals WHERE identity_id = ? AND status = 'pending'", (identity_id,)
            ),
            20,
            f"the request for {identity_id} (the command's answer: {reply.status} {reply.body[:300]},"
            f" then {self.slack.responses(ALICE)[-1:]})",
        )
        request_id = rows[0][0]
        card = await eventually(lambda: self.card_of(request_id), 20, f"the card of {request_id}")
        return request_id, card


async def click(slack: FakeSlack, replica: Replica, user: str, card: dict[str, Any]) -> Any:
    """Approve as `user` through `replica`; a replica killed meanwhile drops the connection (as Slack
    would see it) and the click is simply lost."""
    try:
        return await slack.click(replica.events, user, card, "approval:approve")
    except (aiohttp.ClientError, asyncio.TimeoutError, AssertionError) as exc:
        return exc


@contextlib.asynccontextmanager
async def cluster(
    tmp_path: Path, trials: int, pg: Optional[PgDatabase] = None, *, socket_mode: bool = False
) -> AsyncIterator[Cluster]:
    """The simulators (people enough for `trials`), the Slack stand-in and three replicas, on one
    PostgreSQL database (`pg`) or one SQLite file; over HTTP, or each with its own Socket Mode
    connection (started one after the other, so each one's connection is known)."""
    sim_app = homebase.create_app(identities=100 + 4 * trials, rate_limits=False, api_keys=(API_KEY,))
    okta_app = okta.create_app(identities=100 + 4 * trials, rate_limits=False, api_token=OKTA_TOKEN)
    users = [
        SlackUser(id=ALICE, name="alice", email="alice@secops.example"),
        SlackUser(id=BOB, name="bob", email="bob@secops.example"),
        SlackUser(id=CAROL, name="carol", email="carol@secops.example"),
    ]
    slack = FakeSlack(
        users=users,
        channels={ALERTS: "alerts", APPROVALS: "approvals", COMMANDS: "secops"},
        ack_timeout=20,
    )
    if pg is None:
        store_toml, url = f'[store]\npath = "{tmp_path / "idops.db"}"', f"sqlite:///{tmp_path / 'idops.db'}"
    else:
        store_toml, url = f'[store]\nurl = "{pg.config_url}"\npassword_env = "TEST_PG_PASSWORD"', pg.url
    logs = tmp_path / "logs"
    logs.mkdir()
    async with serving(sim_app) as sim_url, serving(okta_app) as okta_url, slack.serve():
        config = tmp_path / "idops.toml"
        config.write_text(
            CONFIG.format(
                alerts=ALERTS,
                approvals=APPROVALS,
                alice=ALICE,
                bob=BOB,
                carol=CAROL,
                store=store_toml,
                sim=sim_url,
                okta=okta_url,
            )
        )
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "SLACK_BOT_TOKEN": slack.bot_token,
            "SLACK_SIGNING_SECRET": slack.signing_secret,
            "SLACK_APP_TOKEN": slack.app_token,
            "SLACK_API_URL": slack.api_url,
            "IDOPS_API_TOKEN": HEALTH_TOKEN,
            "TEST_HLD_KEY": API_KEY,
            "TEST_OKTA_TOKEN": OKTA_TOKEN,
            "TEST_PG_PASSWORD": pg.password if pg is not None else "",
        }
        socket = slack if socket_mode else None
        replicas = [Replica(n, config, env, logs, socket) for n in range(3)]
        store: Optional[Store] = None
        try:
            await replicas[0].start()  # creates the store; the others open it migrated
            if socket_mode:
                for replica in replicas[1:]:
                    await replica.start()
            else:
                await asyncio.gather(*(r.start() for r in replicas[1:]))
            store = connect(url)
            yield Cluster(slack, sim_app[homebase.STATE], okta_app[okta.STATE], store, replicas)
        finally:
            await asyncio.gather(*(r.stop() for r in replicas))
            if store is not None:
                store.close()


async def run_trials(c: Cluster, trials: int, seed: int) -> None:
    rng = random.Random(seed)
    sim = c.sim
    await eventually(
        lambda: len(c.query("SELECT scope FROM alert_sweeps WHERE baseline_done = 1")) == 2,
        30,
        "the first sweeps",
    )
    plain = [
        i
        for i in range(sim.size)
        if homebase.risk_level(sim.risk_score(i)) == "low"
        and sim.record(i)["status"] == "active"
        and not sim.record(i)["privileged"]
    ]
    assert len(plain) >= trials + 5, "the simulator has too few plain identities for the trials"
    rng.shuffle(plain)
    # Okta users that need one approval (no admin role) and whose risk holds no revert back; the
    # approvals act there, as Okta's pace comes from its answers (HomeBase's connector keeps to 10
    # actions a minute per replica, which a fast run could reach and be refused)
    users = [
        i
        for i in range(4, c.okta.total)
        if c.okta.status(i) == "ACTIVE" and not c.okta.role_types(i) and c.okta.risk_level(i)[0] == "NONE"
    ]
    assert len(users) >= trials + 3, "the Okta simulator has too few plain users for the trials"
    rng.shuffle(users)
    raised: list[str] = []
    requests: dict[str, str] = {}  # request id -> Okta user id

    for _ in range(trials):
        victim = rng.choice(c.replicas)
        alive = [r for r in c.replicas if r is not victim]
        # a risk change, then the victim dies at a random moment while sweeps and clicks are under way
        identity = sim.identity_id(plain.pop())
        sim.set_risk(identity, rng.choice([80, 95]))
        raised.append(identity)
        target = c.okta.user(users.pop())["id"]

        async def strike(victim: Replica = victim) -> None:
            await asyncio.sleep(rng.uniform(0.0, 1.2))
            await victim.kill()

        killing = asyncio.create_task(strike())
        request_id, card = await c.request(rng.choice(alive), target)
        requests[request_id] = target
        first, second = rng.sample(c.replicas, 2)  # concurrent Approve clicks, on two replicas
        await asyncio.gather(click(c.slack, first, BOB, card), click(c.slack, second, CAROL, card))
        await killing
        await victim.start()

    # time-boxed containments at Okta (which can undo): suspended now, due at once, reverted once
    contained: dict[str, str] = {}  # request id -> Okta user id
    for index in (users.pop() for _ in range(3)):
        user = c.okta.user(index)
        command = "disable {id} for 1h replicas test"
        request_id, card = await c.request(rng.choice(c.replicas), user["id"], command)
        await click(c.slack, rng.choice(c.replicas), BOB, card)
        contained[request_id] = user["id"]
    await eventually(
        lambda: len(c.query("SELECT request_id FROM containments WHERE status = 'active'")) == len(contained),
        30,
        "the containments to start",
    )

    # requests and containments that fall due while a replica dies: each expires or reverts once
    c.write("UPDATE containments SET due_at = '2000-01-01T00:00:00.000000+00:00'")
    due = []
    for _ in range(3):
        record = c.sim.record(plain.pop())
        request_id, _ = await c.request(rng.choice(c.replicas), record["id"])
        due.append(request_id)
    marks = ",".join("?" * len(due))
    overdue = f"UPDATE approvals SET expires_at = '2000-01-01T00:00:00.000000+00:00' WHERE id IN ({marks})"  # noqa: S608
    c.write(overdue, tuple(due))
    victim = rng.choice(c.replicas)
    await victim.kill()
    await victim.start()

    # everything settles: the alerts delivered, the approvals run, the due requests expired
    def settled() -> bool:
        waiting = c.query("SELECT count(*) FROM alert_outbox WHERE status IN ('pending', 'sending')")[0][0]
        busy = c.query("SELECT count(*) FROM approvals WHERE status IN ('approved', 'executing')")[0][0]
        expired_sql = f"SELECT count(*) FROM approvals WHERE status = 'expired' AND id IN ({marks})"  # noqa: S608
        expired = c.query(expired_sql, tuple(due))
        cards = {payload(m).get("alert_id") for m in posted(c.slack, "card")}
        alerted = c.query("SELECT identity_id, id FROM alerts")
        reverted = c.query("SELECT count(*) FROM containments WHERE status = 'reverted'")[0][0]
        half_sent = c.query("SELECT count(*) FROM thread_replies WHERE status != 'sent'")[0][0]
        return (
            not waiting
            and not half_sent
            and not busy
            and reverted == len(contained)
            and expired[0][0] == len(due)
            and all(any(i == identity and a in cards for i, a in alerted) for identity in raised)
        )

    await eventually(settled, 120, "the replicas to settle")
    for _ in range(2):  # two more whole sweeps of every scope, and what they deliver: nothing more happens
        await swept_since(c, time.time())
    assert settled()
    await take_over(c)

    # Slack: every alert message exactly once (cards per alert; notices and replies per delivery)
    top = c.slack.messages(ALERTS)
    keys = collections.Counter(
        (payload(m).get("alert_id"), payload(m).get("part"), payload(m).get("delivery")) for m in top
    )
    assert [key for key, count in keys.items() if count > 1] == []
    replies = collections.Counter(
        (payload(r).get("alert_id"), payload(r).get("delivery")) for m in top for r in m["replies"]
    )
    assert [key for key, count in replies.items() if count > 1] == []
    per_identity = collections.Counter(
        identity for identity, _ in c.query("SELECT identity_id, id FROM alerts")
    )
    assert all(per_identity[identity] == 1 for identity in raised), per_identity
    sent = c.query("SELECT count(*) FROM alert_outbox WHERE status = 'sent' AND kind IN ('alert', 'notice')")[
        0
    ][0]
    assert sent == len(top)  # nothing lost: every delivered row is one message, and no message is extra

    # Slack: every approval thread reply (outcomes, reverts) exactly once: each claimed reply is in its
    # thread once (a kill between claim and record is taken over and looked up), and none is extra
    thread = collections.Counter(
        payload(r, thread_replies.EVENT_TYPE).get("key")
        for m in c.slack.messages(APPROVALS)
        for r in m["replies"]
        if payload(r, thread_replies.EVENT_TYPE).get("key")
    )
    assert [key for key, count in thread.items() if count > 1] == []
    claimed = {key for (key,) in c.query("SELECT key FROM thread_replies")}
    assert set(thread) == claimed and any(key.startswith("result:") for key in claimed)

    # Okta: each approved request's action ran at most once, and exactly once when idops says done
    ran = collections.Counter(user for user, verb in c.okta.actions if verb.startswith("sessions"))
    statuses = dict(c.query("SELECT id, status FROM approvals"))
    for request_id, user_id in requests.items():
        count = ran[user_id]
        assert count <= 1, f"{request_id} ran {count} times"
        assert statuses[request_id] in ("executed", "unknown"), (request_id, statuses[request_id])
        if statuses[request_id] == "executed":
            assert count == 1
    assert not c.sim.actions  # the due HomeBase requests expired: nothing ran there
    executed = [r for r in requests if statuses[r] == "executed"]
    assert len(executed) >= trials // 2  # most trials ran their action (a few were cut off: unknown)

    # Okta: each containment suspended once and, at its due time, unsuspended once
    for request_id, user_id in contained.items():
        assert c.okta.actions.count((user_id, "suspend")) == 1, request_id
        assert c.okta.actions.count((user_id, "unsuspend")) == 1, request_id
    reverts = c.query("SELECT id, status FROM approvals WHERE source = 'containment'")
    assert len(reverts) == len(contained) and {status for _, status in reverts} == {"executed"}

    # each due request expired once, and the audit chain is whole
    events = collections.Counter(
        (row[0], row[1]) for row in c.query("SELECT request_id, event FROM audit WHERE event = 'expired'")
    )
    assert all(events[(request_id, "expired")] == 1 for request_id in due)
    executing = collections.Counter(
        row[0] for row in c.query("SELECT request_id FROM audit WHERE event = 'executing'")
    )
    assert all(executing[request_id] == 1 for request_id in requests)  # one attempt each, never a second
    ok, _, said = audit.verify(c.store)
    assert ok, said


async def swept_since(c: Cluster, moment: float) -> None:
    """Wait until every scope's latest sweep started after `moment` (epoch seconds, as the replicas'
    clocks) and succeeded: a whole sweep by whichever replica holds the scope."""

    def done() -> bool:
        rows = c.query("SELECT last_started_at, last_success_at FROM alert_sweeps")
        return len(rows) == 2 and all(s and s > moment and ok and ok >= s for s, ok in rows)

    await eventually(done, 60, "a whole sweep of every scope")


async def healthz(replica: Replica) -> dict[str, Any]:
    """The details, shown to the API token's bearer only."""
    auth = {"Authorization": f"Bearer {HEALTH_TOKEN}"}
    async with aiohttp.ClientSession() as http, http.get(replica.url + "/healthz", headers=auth) as answer:
        assert answer.status == 200
        return dict(await answer.json())


async def take_over(c: Cluster) -> None:
    """/healthz names the store and which replica holds each sweep scope (exactly one); when that one
    dies, another one holds it within a lease and a wake-up or two, and sweeps it."""
    bodies = [await healthz(r) for r in c.replicas]
    backend = c.store.backend
    assert all(b["ok"] and b["store"] == {"ok": True, "backend": backend} for b in bodies), bodies
    assert len({b["replica"]["id"] for b in bodies}) == 3  # each replica is its own holder
    for scope in ("homebase", "okta"):
        holders = [r for r, b in zip(c.replicas, bodies) if scope in b["alerts"]["scopes"]]
        assert len(holders) == 1, (scope, bodies)
        assert f"sweep:{scope}" in bodies[c.replicas.index(holders[0])]["replica"]["claims"]
    holder = next(r for r, b in zip(c.replicas, bodies) if "homebase" in b["alerts"]["scopes"])
    swept = c.query("SELECT last_started_at FROM alert_sweeps WHERE scope = 'homebase'")[0][0]
    await holder.kill()
    others = [r for r in c.replicas if r is not holder]

    async def holding() -> list[Replica]:
        return [r for r in others if "homebase" in (await healthz(r))["alerts"]["scopes"]]

    # a lease (3 s) and a wake-up (1 s), on a loaded machine
    held = await eventually(holding, 30, "a replica to take over the dead one's sweep", every=0.2)
    assert len(held) == 1
    await eventually(
        lambda: c.query("SELECT last_started_at FROM alert_sweeps WHERE scope = 'homebase'")[0][0] > swept,
        10,
        "a sweep by the replica that took over",
    )
    await holder.start()


async def test_three_replicas_on_postgresql_killed_at_random_run_everything_exactly_once(
    tmp_path: Path, pg_database: PgDatabase
) -> None:
    async with cluster(tmp_path, trials=20, pg=pg_database) as c:
        await run_trials(c, trials=20, seed=14)


async def test_three_replicas_on_one_sqlite_file_run_everything_exactly_once(tmp_path: Path) -> None:
    async with cluster(tmp_path, trials=8) as c:
        await run_trials(c, trials=8, seed=41)


@pytest.mark.slow
async def test_three_replicas_on_postgresql_over_ninety_kills(
    tmp_path: Path, pg_database: PgDatabase
) -> None:
    async with cluster(tmp_path, trials=90, pg=pg_database) as c:
        await run_trials(c, trials=90, seed=1414)

"""Risk alerts inside `idops serve`: sweep jobs on an APScheduler `AsyncIOScheduler`, the outbox sender,
webhook re-checks and the card buttons, wired into the server through its extension hook.

Replicas: the scheduler only wakes this replica up (each third of a lease, at most every poll
interval); the work runs under claims in the store (bot/claims.py). Each scope's sweep runs on the
replica holding `sweep:<scope>`, when the scope's last sweep (`alert_sweeps.last_started_at`, whoever
ran it) is a poll interval old, or at once when this replica just took the scope (a first start, or a
take-over from a replica whose lease ran out). Its page transactions check the fence, so a holder that
lost the scope writes nothing more. Ended snoozes are redrawn by the holder of `snoozes`.

`setup(web_app, bot, environ)` is the extension `bot.server` loads; `install` is the same with the
clock and timings passed in too, for tests and the demo.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Optional

from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger
from slack_sdk.web.async_client import AsyncWebClient

from .. import claims as claiming
from .. import tasks
from ..claims import Claims, LostClaim
from ..config import ConfigError
from ..extension import BOLT, HEALTH
from ..services import Bot
from . import digests, listeners, webhooks
from .auto import AutoContainment, rules_from_config
from .detector import Detector, Scope, SweepResult
from .responses import AlertResponses
from .sender import Sender

log = logging.getLogger(__name__)

MAX_JITTER = 30.0


@dataclass(frozen=True)
class Timings:
    """Sender pacing and retry timings, how often ended snoozes are looked for, and how long an alert
    may wait undelivered before /healthz calls it stuck (seconds); tests shrink them."""

    interval: float = 1.0
    backoff: float = 1.0
    backoff_cap: float = 60.0
    poll: float = 5.0
    snoozes: float = 30.0
    stuck_after: float = 300.0


class AlertService:
    """Owns the scheduler, the sender and the webhook re-check tasks of one server."""

    def __init__(
        self,
        detector: Detector,
        sender: Sender,
        *,
        poll_seconds: int,
        snooze_seconds: float = 30.0,
        stuck_after: float = 300.0,
        claims: Claims,
    ) -> None:
        self.claims = claims
        self.detector = detector
        self.sender = sender
        self.poll_seconds = poll_seconds
        self.snooze_seconds = snooze_seconds
        self.stuck_after = stuck_after
        self.scheduler: Optional[AsyncIOScheduler] = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.results: dict[str, SweepResult] = {}
        #: auto-containment (None without `[[auto_containment]]` rules)
        self.auto: Optional[AutoContainment] = None

    async def start(self, _: Optional[web.Application] = None) -> None:
        self.sender.start()
        scheduler = AsyncIOScheduler(timezone=timezone.utc)
        # wake often enough to take over a dead replica's scopes within one interval
        wake = min(self.poll_seconds, self.claims.ttl / 3)
        jitter = min(MAX_JITTER, wake / 10)
        for scope in self.detector.scopes():
            scheduler.add_job(
                self.tick,
                IntervalTrigger(seconds=wake, jitter=jitter or None),
                args=[scope],
                id=f"alerts:{scope.key}",
                name=f"risk sweep of {scope.key}",
                max_instances=1,  # a slow sweep is never overlapped by the next one
                coalesce=True,  # runs missed while busy or asleep collapse into one
                misfire_grace_time=max(1, int(wake)),
                next_run_time=datetime.now(timezone.utc),  # the first run at start-up
            )
        # a card must not say "snoozed until" once that time has passed
        scheduler.add_job(
            self.end_snoozes,
            IntervalTrigger(seconds=self.snooze_seconds),
            id="alerts:snoozes",
            name="end snoozes",
            max_instances=1,
            coalesce=True,
        )
        if self.auto is not None:
            # runs what a stop cut off, reads back unknown outcomes, tells what was not told yet
            scheduler.add_job(
                self.settle_auto,
                IntervalTrigger(seconds=self.snooze_seconds),
                id="alerts:auto",
                name="auto-containment",
                max_instances=1,
                coalesce=True,
                next_run_time=datetime.now(timezone.utc),
            )
        scheduler.start()
        self.scheduler = scheduler

    async def stop(self, _: Optional[web.Application] = None) -> None:
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
            self.scheduler = None
        await tasks.stop(*self._tasks)
        if self.auto is not None:
            await self.auto.stop()
        await self.sender.stop()

    async def tick(self, scope: Scope) -> Optional[SweepResult]:
        """The scheduled wake-up: sweep `scope` if this replica holds (or can take) its claim and the
        sweep is due; None when it did not sweep."""
        lease = self.claims.take(sweep_claim(scope))
        if lease is None or not (lease.fresh or self._due(scope)):
            return None
        return await self.sweep(scope)

    def _due(self, scope: Scope) -> bool:
        """A poll interval since the scope's last sweep started, on any replica (stored)."""
        row = self.detector.db.execute(
            "SELECT last_started_at FROM alert_sweeps WHERE scope = ?", [scope.key]
        ).fetchone()
        slack = min(self.poll_seconds, self.claims.ttl / 3) / 2  # a wake-up's jitter never skips a round
        return row is None or row[0] is None or self.detector.clock() - row[0] >= self.poll_seconds - slack

    async def sweep(self, scope: Scope) -> Optional[SweepResult]:
        """One run; tracked so shutdown cancels it between two page transactions. Under the scope's
        claim when this replica holds it (its writes fenced; cancelled if the claim is lost)."""
        task = asyncio.current_task()
        name = sweep_claim(scope)
        under = self.claims.holds(name)
        if task is not None:
            self._tasks.add(task)
            if under:
                self.claims.attach(name, task)
        try:
            started = time.monotonic()
            with claiming.working_under(self.claims, name) if under else contextlib.nullcontext():
                result = await self.detector.sweep(scope)
            self.results[scope.key] = result
            log.info(
                "risk sweep of %s (%s): %d identities in %.1f s, changes %s%s",
                scope.key,
                result.mode,
                result.seen,
                time.monotonic() - started,
                result.changes or "none",
                f", failed: {result.error}" if result.error else "",
            )
            return result
        except asyncio.CancelledError:
            # shutdown or a lost claim: the pages already committed stay, the rest is read again next time
            log.info("risk sweep of %s stopped (shutdown, or this replica lost its claim)", scope.key)
            return None
        except LostClaim:
            log.info("risk sweep of %s stopped: another replica took the scope over", scope.key)
            return None
        finally:
            if task is not None:
                self._tasks.discard(task)
                self.claims.detach(name, task)

    async def end_snoozes(self) -> None:
        """The periodic job (a coroutine, so it runs on the loop that owns the database connection), on
        the replica holding the `snoozes` claim."""
        if self.claims.take(SNOOZES_CLAIM) is None:
            return
        try:
            ended = self.detector.end_snoozes()
        except Exception:
            log.exception("looking for ended snoozes failed; trying again in %s s", self.snooze_seconds)
            return
        if ended:
            log.info("%d alert snoozes ended; their cards are redrawn", ended)

    async def settle_auto(self) -> None:
        """The periodic job of auto-containment (a coroutine, on the loop that owns the database)."""
        if self.auto is None or self.claims.take(AUTO_CLAIM) is None:
            return
        try:
            await self.auto.run()
        except Exception:
            log.exception("auto-containment failed; trying again in %s s", self.snooze_seconds)

    def recheck_soon(self, connector: str, identity_id: str) -> None:
        """Re-check one identity in the background (a webhook said it changed)."""

        async def run() -> None:
            try:
                change = await self.detector.recheck(connector, identity_id)
                log.info("webhook re-check of %s/%s: %s", connector, identity_id, change)
            except Exception as exc:
                # the next sweep reads this identity again anyway
                log.warning("webhook re-check of %s/%s failed: %s", connector, identity_id, exc)

        task = asyncio.get_running_loop().create_task(run(), name=f"recheck {connector}/{identity_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def health(self) -> dict[str, Any]:
        """The alerts' part of /healthz: deliveries that are stuck or failed (ages on the detector's clock,
        which stamped the rows), and the sweep scopes this replica holds."""
        try:
            body = self.sender.health(self.detector.clock(), self.stuck_after)
        except Exception as exc:  # the store does not answer: its own part of /healthz says so
            body = {"ok": False, "error": f"the outbox can't be read ({type(exc).__name__})"}
        body["scopes"] = [name.partition(":")[2] for name in self.claims.names(SWEEP_PREFIX)]
        return body

    async def join(self, timeout: float = 10.0) -> None:
        """Wait for running re-checks and sweeps (tests)."""
        async with asyncio.timeout(timeout):
            while self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)


ALERTS = web.AppKey("idops_alerts", AlertService)
SWEEP_PREFIX = "sweep:"
SNOOZES_CLAIM = "snoozes"
AUTO_CLAIM = "auto"


def sweep_claim(scope: Scope) -> str:
    return SWEEP_PREFIX + scope.key


def install(
    web_app: web.Application,
    bot: Bot,
    *,
    environ: Mapping[str, str],
    clock: Callable[[], float] = time.time,
    timings: Timings = Timings(),
) -> Optional[AlertService]:
    """Add alerts to the server app (None when `[alerts] enabled = false`); ConfigError names the fault."""
    config = bot.config
    settings = config.alerts
    rules = rules_from_config(config, bot.connectors)  # also refuses rules while alerts are off
    if not settings.enabled:
        return None
    for name in settings.tenants:
        if name not in bot.connectors:
            raise ConfigError(f"[alerts] tenants: no connector named '{name}'")
    hooks = webhooks.from_config(config.webhooks, environ)
    db = bot.service.db
    claims = bot.service.claims or Claims(db)
    # no client-side retries: the sender decides, so an uncertain post is looked up before it is repeated;
    # a call never outlasts the channel claim it started under (renewed each third of a lease)
    client = AsyncWebClient(
        token=bot.client.token,
        base_url=bot.client.base_url,
        retry_handlers=[],
        timeout=int(min(30.0, max(1.0, claims.ttl // 3))),
    )
    sender = Sender(
        db,
        client,
        interval=timings.interval,
        backoff=timings.backoff,
        backoff_cap=timings.backoff_cap,
        poll=timings.poll,
        fold_after=settings.fold_after,
        claims=claims,
    )
    detector = Detector(
        db, bot.connectors, settings, config.slack.alert_channel, clock=clock, on_outbox=sender.notify
    )
    service = AlertService(
        detector,
        sender,
        poll_seconds=settings.poll_seconds,
        snooze_seconds=timings.snoozes,
        stuck_after=timings.stuck_after,
        claims=claims,
    )
    if rules:
        service.auto = detector.on_critical = AutoContainment(
            db, bot.service, rules, clock=clock, on_outbox=sender.notify
        )
    web_app[ALERTS] = service
    web_app[HEALTH]["alerts"] = service.health
    # the App Home counts from what the sweeps stored instead of scanning providers (capped at 1000)
    bot.identities.stored_risk = detector.stored_risk
    responses = AlertResponses(detector, bot.lookups, bot.service.directory)
    listeners.register(web_app[BOLT], bot, responses, service.auto)
    digests.register(web_app[BOLT], bot, detector)  # a storm digest's *List them* pages
    webhooks.add_routes(web_app, service, hooks)
    web_app.on_startup.append(service.start)
    # on_shutdown runs before the server's clean-up closes the database and the connectors
    web_app.on_shutdown.append(service.stop)
    return service


def setup(web_app: web.Application, bot: Bot, environ: Mapping[str, str]) -> None:
    """The `bot.server` extension: alerts configured from the config file and the server's environment."""
    install(web_app, bot, environ=environ)

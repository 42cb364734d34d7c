"""The Bolt `AsyncApp` and the `Bot` its listeners share: connectors, approvals, background work.

Listeners (bot/listeners/) parse what Slack sent, `ack()` at once and hand slow work (provider calls,
execution) to `Bot.run`, which runs it as a tracked task and tells the user the outcome. `Bot.join()`
waits for that work, at shutdown and in tests.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import secrets
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Optional

import aiohttp
from slack_bolt.async_app import AsyncApp
from slack_bolt.logger.messages import warning_client_prioritized_and_token_skipped
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from connectors import Action, Connector, ConnectorError, Identity, RiskLevel

from . import blocks
from .approvals import ApprovalRequest, ApprovalService, Decision, PolicyError, Status
from .blocks import Message, esc, text_message
from .config import Config
from .slack_api import describe

log = logging.getLogger(__name__)

Respond = Callable[..., Awaitable[Any]]

RISK_ORDER = (RiskLevel.CRITICAL, RiskLevel.HIGH, RiskLevel.MEDIUM, RiskLevel.LOW)
# A lookup or list reads at most this many identities per connector and level, so one command
# can't walk a million-identity tenant; the answer says when it stopped early.
SCAN_CAP = 1000
PAGE_SIZE = 10

_CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{2,}$")


def channel_ref(channel: str) -> str:
    """A channel link for a channel id, or the escaped name for anything else."""
    return f"<#{channel}>" if _CHANNEL_ID.match(channel) else esc(channel, 100)


@dataclass
class Found:
    """Identities from every connector, with the faults of those that didn't answer."""

    identities: list[Identity] = field(default_factory=list)
    faults: list[str] = field(default_factory=list)
    capped: bool = False
    #: names of the connectors that answered (a lookup with no match names them)
    searched: list[str] = field(default_factory=list)

    def fault_note(self) -> str:
        return "\n".join(f":warning: {esc(fault, 500)}" for fault in self.faults)


@dataclass
class StoredRisk:
    """One connector's risk as the alert sweeps last stored it (the App Home counts from it)."""

    counts: dict[RiskLevel, int]
    riskiest: list[Identity]  # high and critical, highest score first
    swept_at: datetime  # when the oldest of its sweep scopes last finished
    faults: list[str] = field(default_factory=list)  # scopes failing since


class BackgroundTasks:
    """Tasks started after an ack; tracked so shutdown and tests can wait for them to finish."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def join(self, timeout: float = 30.0) -> None:
        """Wait until no task is running (including tasks started meanwhile), at most `timeout` s."""
        async with asyncio.timeout(timeout):
            while self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)

    def __len__(self) -> int:
        return len(self._tasks)


class Bot:
    """What the listeners act on; one per running server."""

    def __init__(
        self,
        config: Config,
        *,
        client: AsyncWebClient,
        connectors: Mapping[str, Connector],
        service: ApprovalService,
    ) -> None:
        self.config = config
        self.client = client
        self.connectors = connectors
        self.service = service
        self.tasks = BackgroundTasks()
        # one lock per request, so card updates go out in order and the last one shows the newest state
        self._card_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._reported: set[tuple[str, int]] = set()
        #: set by the alerts extension: a connector's stored risk once its sweeps have run, else None
        self.stored_risk: Optional[Callable[[str], Optional[StoredRisk]]] = None

    # -- small helpers -------------------------------------------------------------------------

    def source(self, connector: str) -> str:
        """How messages name a connector: its provider label and configured name."""
        found = self.connectors.get(connector)
        return f"{found.label} ({connector})" if found else connector

    def actions_for(self, identity: Identity) -> frozenset[Action]:
        found = self.connectors.get(identity.connector)
        return found.capabilities if found else frozenset()

    def card(self, identity: Identity) -> Message:
        return blocks.identity_card(
            identity, source=self.source(identity.connector), actions=self.actions_for(identity)
        )

    def labelled(self, identities: Sequence[Identity]) -> list[tuple[Identity, str]]:
        return [(identity, self.source(identity.connector)) for identity in identities]

    async def may_look(self, user_id: str) -> bool:
        """Identity data is for responders and approvers only."""
        return await self.service.is_responder(user_id) or await self.service.is_approver(user_id)

    # -- background work -----------------------------------------------------------------------

    def run(
        self,
        work: Awaitable[Optional[Message]],
        *,
        user: str,
        respond: Optional[Respond] = None,
        channel: Optional[str] = None,
        replace: bool = False,
        name: str = "idops",
    ) -> None:
        """Run `work` after the ack and show the user the message it returns (nothing for None)."""

        async def runner() -> None:
            try:
                reply = await work
            except ConnectorError as exc:
                reply = text_message(f":warning: {esc(exc, 2000)}")
            except PolicyError as exc:
                reply = text_message(f":no_entry: {esc(exc.message, 2000)}")
            except SlackApiError as exc:
                # e.g. the directory lookup a policy check needs: say so instead of an internal error
                method = str(getattr(exc.response, "api_url", "") or "").rstrip("/").rsplit("/", 1)[-1]
                log.warning("%s: Slack refused %s: %s", name, method, describe(exc.response))
                reply = text_message(
                    f":warning: Slack answered {esc(method or 'a call', 100)} with"
                    f" {esc(exc.response.get('error') or 'an error', 100)}, so idops stopped there;"
                    " try again in a minute."
                )
            except Exception:
                reference = secrets.token_hex(4)
                log.exception("%s failed (reference %s)", name, reference)
                reply = text_message(
                    f":x: idops hit an internal error (reference {reference}); it is logged."
                )
            if reply is not None:
                await self.tell(user, reply, respond=respond, channel=channel, replace=replace)

        self.tasks.spawn(runner(), name)

    async def tell(
        self,
        user: str,
        reply: Message,
        *,
        respond: Optional[Respond] = None,
        channel: Optional[str] = None,
        replace: bool = False,
    ) -> None:
        """Show `reply` to `user` only: through response_url, as an ephemeral in `channel`, or by DM
        (also when the bot may not post in that channel)."""
        try:
            if respond is not None:
                await respond(**reply, response_type="ephemeral", replace_original=replace)
                return
            if channel:
                try:
                    await self.client.chat_postEphemeral(channel=channel, user=user, **reply)
                    return
                except SlackApiError as exc:
                    log.info(
                        "no ephemeral in %s (%s); answering %s by DM",
                        channel,
                        describe(exc.response),
                        user,
                    )
            await self.client.chat_postMessage(channel=user, **reply)
        except (SlackApiError, OSError, asyncio.TimeoutError) as exc:
            log.warning("could not answer %s: %s", user, exc)

    async def join(self, timeout: float = 30.0) -> None:
        """Wait for background work (tests, shutdown)."""
        await self.tasks.join(timeout)

    # -- identities ----------------------------------------------------------------------------

    async def _each(
        self, call: Callable[[Connector], Awaitable[Any]], connectors: Optional[Sequence[Connector]] = None
    ) -> list[tuple[Connector, Any]]:
        """Call every connector (or those given) concurrently; a ConnectorError comes back as the result."""

        async def one(connector: Connector) -> Any:
            try:
                return await call(connector)
            except ConnectorError as exc:
                return exc

        connectors = list(self.connectors.values()) if connectors is None else list(connectors)
        results = await asyncio.gather(*(one(c) for c in connectors))
        return list(zip(connectors, results))

    async def search(self, query: str, *, limit: int = 10) -> Found:
        """Identities matching an email, id or name, across connectors; a single exact match wins."""
        found = Found()
        for connector, result in await self._each(lambda c: c.find_identities(query, limit=limit)):
            if isinstance(result, ConnectorError):
                found.faults.append(str(result))
            else:
                found.searched.append(connector.name)
                found.identities.extend(result)
        wanted = query.strip().casefold()
        exact = [
            i
            for i in found.identities
            if wanted in ((i.email or "").casefold(), i.id.casefold(), (i.display_name or "").casefold())
        ]
        if len(exact) == 1:
            found.identities = exact
        return found

    async def _scan(self, connector: Connector, *, level: RiskLevel, tenant: Optional[str]) -> list[Identity]:
        out: list[Identity] = []
        async for page in connector.iter_pages(risk_level=level, tenant_id=tenant):
            out.extend(page)
            if len(out) >= SCAN_CAP:
                break
        return out

    async def riskiest(
        self, level: Optional[RiskLevel], tenant: Optional[str], *, offset: int = 0, count: int = PAGE_SIZE
    ) -> tuple[Found, bool]:
        """The page of identities at `offset`, highest score first, across connectors; and whether
        there are more. Without a level, levels are read from critical down until the page is full."""
        found = Found()
        for current in (level,) if level else RISK_ORDER:
            for _, result in await self._each(functools.partial(self._scan, level=current, tenant=tenant)):
                if isinstance(result, ConnectorError):
                    found.faults.append(str(result))
                    continue
                found.capped |= len(result) >= SCAN_CAP
                found.identities.extend(result)
            if len(found.identities) > offset + count:
                break
        found.identities.sort(key=lambda i: (-(i.risk_score or 0), i.name.lower(), i.connector, i.id))
        more = len(found.identities) > offset + count
        found.identities = found.identities[offset : offset + count]
        return found, more

    async def risk_counts(self) -> tuple[dict[RiskLevel, str], Found, dict[str, datetime]]:
        """Identities per risk level across connectors, the riskiest ten, and when each connector
        counted from the alert sweeps' stored state was swept. Connectors the sweeps have not covered
        yet are scanned ("1000+" once a scan stops early)."""
        found = Found()
        totals = dict.fromkeys(RISK_ORDER, 0)
        capped: set[RiskLevel] = set()
        swept: dict[str, datetime] = {}
        scanned: list[Connector] = []
        for name, connector in self.connectors.items():
            stored = self.stored_risk(name) if self.stored_risk is not None else None
            if stored is None:
                scanned.append(connector)
                continue
            swept[name] = stored.swept_at
            for level, count in stored.counts.items():
                totals[level] += count
            found.identities.extend(stored.riskiest)
            found.faults.extend(fault for fault in stored.faults if fault not in found.faults)
        for level in RISK_ORDER if scanned else ():
            scan = functools.partial(self._scan, level=level, tenant=None)
            for _, result in await self._each(scan, scanned):
                if isinstance(result, ConnectorError):
                    if str(result) not in found.faults:
                        found.faults.append(str(result))
                    continue
                totals[level] += len(result)
                if len(result) >= SCAN_CAP:
                    capped.add(level)
                if level in (RiskLevel.CRITICAL, RiskLevel.HIGH):
                    found.identities.extend(result)
        counts = {level: f"{total}+" if level in capped else str(total) for level, total in totals.items()}
        found.identities.sort(key=lambda i: -(i.risk_score or 0))
        found.identities = found.identities[:10]
        return counts, found, swept

    # -- approvals -----------------------------------------------------------------------------

    async def start_request(
        self, *, user: str, connector: str, identity_id: str, action: Action, reason: str
    ) -> Message:
        """Create a request, post its approval card, and say where it waits."""
        try:
            request = await self.service.request(
                connector=connector, identity_id=identity_id, action=action, reason=reason, requested_by=user
            )
        except PolicyError as exc:
            waiting = exc.request
            if waiting is None or waiting.status is not Status.PENDING or waiting.message_ts:
                text = f":no_entry: {esc(exc.message, 1500)}"
                if waiting is not None and waiting.message_channel:
                    text += f" It is in {channel_ref(waiting.message_channel)}."
                return text_message(text)
            # the same request is pending but its card never reached Slack: post it now, or nobody
            # could approve it and nobody could ask again until it expires
            request = waiting
        name = esc(request.target.get("name") or request.identity_id, 200)
        channel = self.config.slack.approval_channel
        try:
            await self.post_approval(request)
        except (SlackApiError, aiohttp.ClientError, asyncio.TimeoutError) as exc:
            said = (
                f"Slack said {esc(exc.response.get('error'), 100)}"
                if isinstance(exc, SlackApiError)
                else f"Slack could not be reached: {type(exc).__name__}"
            )
            return text_message(
                f":warning: Request {request.id} is stored, but its approval card could not be posted in"
                f" {channel_ref(channel)} ({said}). Ask for the same action again to post it."
            )
        return text_message(
            f":hourglass_flowing_sand: Requested *{request.action.label}* for *{name}*;"
            f" waiting for approval in {channel_ref(channel)} (request {request.id})."
        )

    def _card_lock(self, request_id: str) -> asyncio.Lock:
        lock = self._card_locks.get(request_id)
        if lock is None:
            lock = self._card_locks[request_id] = asyncio.Lock()
        return lock

    async def post_approval(self, request: ApprovalRequest) -> None:
        """Post the approval card unless it is in Slack already, and remember where it is (also the SOAR
        API's `on_created`). Two callers re-posting a missing card at once post it once."""
        async with self._card_lock(request.id):
            if self.service.get(request.id).message_ts:
                return
            response = await self.client.chat_postMessage(
                channel=self.config.slack.approval_channel,
                **blocks.approval_card(request),
                metadata={"event_type": "idops_approval", "event_payload": {"request_id": request.id}},
            )
            self.service.set_message(request.id, response["channel"], response["ts"])

    async def refresh_card(self, request_id: str) -> ApprovalRequest:
        """Redraw the approval card from the stored state (never from a possibly stale copy)."""
        async with self._card_lock(request_id):
            request = self.service.get(request_id)
            if request.message_channel and request.message_ts:
                try:
                    await self.client.chat_update(
                        channel=request.message_channel,
                        ts=request.message_ts,
                        **blocks.approval_card(request),
                    )
                except SlackApiError as exc:
                    log.warning("could not update the card of %s: %s", request_id, describe(exc.response))
            return request

    async def report(self, request: ApprovalRequest) -> None:
        """After execution: redraw the card and post the outcome in its thread, once per attempt."""
        current = await self.refresh_card(request.id)
        key = (current.id, current.attempts)
        if current.status not in (Status.EXECUTED, Status.FAILED) or key in self._reported:
            return
        self._reported.add(key)
        if current.message_channel and current.message_ts:
            try:
                await self.client.chat_postMessage(
                    channel=current.message_channel,
                    thread_ts=current.message_ts,
                    **blocks.result_reply(current),
                )
            except (SlackApiError, aiohttp.ClientError, asyncio.TimeoutError) as exc:
                # the action ran and the card shows its outcome: a lost thread reply must not read as
                # "nothing happened" to whoever clicked
                log.warning("the result of %s was not posted in its thread: %s", current.id, exc)

    async def refused(self, exc: PolicyError) -> Message:
        """The answer to a refused click: why, after redrawing the card when the refusal changed it
        (e.g. expired it)."""
        if exc.request is not None:
            await self.refresh_card(exc.request.id)
        return text_message(f":no_entry: {esc(exc.message, 2000)}")

    async def approve(self, request_id: str, user: str) -> Optional[Message]:
        """One Approve click: record it, and run the action when it was the last approval needed."""
        try:
            before = self.service.get(request_id)
            request = await self.service.decide(request_id, user_id=user, decision=Decision.APPROVE)
        except PolicyError as exc:
            return await self.refused(exc)
        await self.refresh_card(request.id)
        if request.status is Status.APPROVED:
            await self.report(await self.service.execute(request.id))
            return None
        missing = request.approvals_needed - len(request.approvers)
        text = (
            f":ballot_box_with_check: Your approval is recorded ({len(request.approvers)} of"
            f" {request.approvals_needed}); {missing} more approver{'s' if missing != 1 else ''} needed."
        )
        if request.approvals_needed > before.approvals_needed:
            text = (
                f":warning: The target is now privileged: needs {request.approvals_needed} approvals. " + text
            )
        return text_message(text)

    async def deny(self, request_id: str, user: str, reason: str) -> Optional[Message]:
        """A submitted Deny form: record the denial and redraw the card, or say why it was refused."""
        try:
            request = await self.service.decide(
                request_id, user_id=user, decision=Decision.DENY, reason=reason
            )
        except PolicyError as exc:
            return await self.refused(exc)
        await self.refresh_card(request.id)
        return None

    async def retry(self, request_id: str, user: str) -> Optional[Message]:
        """Retry a failed action; a repeated click runs nothing twice."""
        try:
            request = await self.service.retry(request_id, user_id=user)
        except PolicyError as exc:
            return await self.refused(exc)
        await self.report(request)
        return None

    async def expire_due(self) -> list[ApprovalRequest]:
        """The periodic sweep: expire overdue requests (buttons off their cards) and fail executions a
        stopped process cut off (their cards offer Retry, the error goes in the thread)."""
        changed = self.service.expire_due()
        for request in changed:
            await self.report(request)
        return changed


def _not_token_skipped(record: logging.LogRecord) -> bool:
    # Bolt sees SLACK_BOT_TOKEN in the environment next to the client built from it, and warns that the
    # token "will be unused": untrue (the client carries it) and alarming in an operator's log
    return record.getMessage() != warning_client_prioritized_and_token_skipped()


def create_app(bot: Bot, *, signing_secret: str, verify: bool = True) -> AsyncApp:
    """The Bolt app with every idops listener registered; Bolt verifies each request's signature
    (`verify=False` only for Socket Mode, where requests come over the app's own websocket)."""
    from .listeners import actions, commands, events, views

    logger = logging.getLogger("idops.bolt")
    if _not_token_skipped not in logger.filters:
        logger.addFilter(_not_token_skipped)
    app = AsyncApp(
        client=bot.client,
        signing_secret=signing_secret,
        request_verification_enabled=verify,
        # listeners ack first and hand slow work to Bot.run, so the response never waits on a provider
        process_before_response=True,
        logger=logger,
    )
    commands.register(app, bot)
    actions.register(app, bot)
    views.register(app, bot)
    events.register(app, bot)
    return app

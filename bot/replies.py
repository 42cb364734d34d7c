"""Slack I/O towards one person: slow work run after the ack, private answers, modals, the Home tab.

Listeners ack at once and hand slow work (provider calls, execution) to `Replies.run`, which runs it as
a tracked task and shows the person the message it returns; a fault becomes a one-line answer, never
a traceback. `Replies.join()` waits for that work, at shutdown and in tests.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime, timedelta, timezone
from typing import Any, Optional

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from connectors import ConnectorError, RateLimitedError
from connectors.http import interactive

from .approvals import PolicyError
from .blocks import Message, esc, info_modal, text_message
from .slack_api import describe

log = logging.getLogger(__name__)

Respond = Callable[..., Awaitable[Any]]
Work = Callable[[], Awaitable[Optional[Message]]]
# how long a provider's rate limit may hold work a person is waiting on before they are told
INTERACTIVE_WAIT = 5.0


def _wait_text(exc: RateLimitedError) -> str:
    """ "HomeBase asked us to wait until 14:05" (the reader's time zone in Slack, UTC as fallback)."""
    until = datetime.now(timezone.utc) + timedelta(seconds=exc.retry_after or 0)
    when = f"<!date^{int(until.timestamp())}^{{time}}|{until:%H:%M} UTC>"
    return f"{esc(exc.provider or 'The provider', 100)} asked us to wait until {when}"


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


class Replies:
    """Answers to the person who typed or clicked, over one Web API client."""

    def __init__(
        self,
        client: AsyncWebClient,
        *,
        max_wait: float = INTERACTIVE_WAIT,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.client = client
        self.tasks = BackgroundTasks()
        self.max_wait = max_wait
        self.sleep = sleep

    def run(
        self,
        work: Awaitable[Optional[Message]],
        *,
        user: str,
        respond: Optional[Respond] = None,
        channel: Optional[str] = None,
        replace: bool = False,
        name: str = "idops",
        again: Optional[Work] = None,
    ) -> asyncio.Task[None]:
        """Run `work` after the ack and show the user the message it returns (nothing for None); the
        task running it is returned.

        Never silent: provider requests inside wait at most `max_wait` s on rate limits. A provider that
        asks for longer is named with the time it gave; with `again` (the same work, to run once more)
        the person is told the answer follows then, and it does."""

        async def runner() -> None:
            reply, held = await self._attempt(work, name)
            if held is not None and again is None:
                reply = text_message(
                    f":hourglass_flowing_sand: {_wait_text(held)}; nothing was done, try again then."
                )
            elif held is not None and again is not None:
                said = text_message(f":hourglass_flowing_sand: {_wait_text(held)}; I'll answer then.")
                await self.tell(user, said, respond=respond, channel=channel, replace=replace)
                await self.sleep(held.retry_after or 0)
                reply, held = await self._attempt(again(), name)
                if held is not None:
                    reply = text_message(f":warning: {_wait_text(held)} again; please try later.")
            if reply is not None:
                await self.tell(user, reply, respond=respond, channel=channel, replace=replace)

        return self.tasks.spawn(runner(), name)

    async def _attempt(
        self, work: Awaitable[Optional[Message]], name: str
    ) -> tuple[Optional[Message], Optional[RateLimitedError]]:
        """(the reply, None), or (None, the error) when a provider asked to wait past `max_wait`; a fault
        becomes a one-line reply, never a traceback."""
        try:
            with interactive(self.max_wait):
                return await work, None
        except RateLimitedError as exc:
            if exc.retry_after is not None:
                return None, exc
            return text_message(f":warning: {esc(exc, 2000)}"), None
        except ConnectorError as exc:
            return text_message(f":warning: {esc(exc, 2000)}"), None
        except PolicyError as exc:
            return text_message(f":no_entry: {esc(exc.message, 2000)}"), None
        except SlackApiError as exc:
            # e.g. the directory lookup a policy check needs: say so instead of an internal error
            method = str(getattr(exc.response, "api_url", "") or "").rstrip("/").rsplit("/", 1)[-1]
            log.warning("%s: Slack refused %s: %s", name, method, describe(exc.response))
            return text_message(
                f":warning: Slack answered {esc(method or 'a call', 100)} with"
                f" {esc(exc.response.get('error') or 'an error', 100)}, so idops stopped there;"
                " try again in a minute."
            ), None
        except Exception:
            # anything else is a bug: logged with a reference the user can quote, never shown
            reference = secrets.token_hex(4)
            log.exception("%s failed (reference %s)", name, reference)
            return text_message(
                f":x: idops hit an internal error (reference {reference}); it is logged."
            ), None

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
            if respond is not None and await self._responded(user, respond, reply, replace):
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

    async def _responded(self, user: str, respond: Respond, reply: Message, replace: bool) -> bool:
        """Answer through the response_url; False when there is none or Slack refused the answer (its
        webhook answers an HTTP error instead of raising: expired, used too often, invalid blocks)."""
        try:
            answer = await respond(**reply, response_type="ephemeral", replace_original=replace)
        except ValueError:  # Bolt's respond on a request that came without a response_url
            return False
        status = getattr(answer, "status_code", 200)
        if status < 400:
            return True
        said = str(getattr(answer, "body", "") or "")[:100].replace("\n", " ")
        log.warning("Slack refused the answer to %s by response_url (HTTP %s: %s)", user, status, said)
        return False

    async def open_view(
        self,
        view: dict[str, Any],
        *,
        trigger_id: str,
        stacked: bool = False,
        user: str,
        respond: Optional[Respond] = None,
        channel: Optional[str] = None,
    ) -> Optional[str]:
        """Open a modal (pushed onto the open one when `stacked`); its id, or None after telling the user."""
        try:
            if stacked:
                response = await self.client.views_push(trigger_id=trigger_id, view=view)
            else:
                response = await self.client.views_open(trigger_id=trigger_id, view=view)
        except SlackApiError as exc:
            error = esc(describe(exc.response), 100)
            reply = text_message(f":warning: Slack did not open the form ({error}).")
            await self.tell(user, reply, respond=respond, channel=channel)
            return None
        return (response.get("view") or {}).get("id")

    async def fill_view(self, view_id: str, title: str, work: Awaitable[Message]) -> None:
        """Replace a loading modal with what `work` returns, or what went wrong: the same one-line
        answers as `run` (a provider's or Slack's error, a policy refusal, a rate limit's wait, an internal
        error's reference), never a modal left loading."""
        content, held = await self._attempt(work, "modal")
        if held is not None:
            content = text_message(
                f":hourglass_flowing_sand: {_wait_text(held)}; nothing was done, try again then."
            )
        if content is None:
            return
        try:
            await self.client.views_update(view_id=view_id, view=info_modal(title, content))
        except SlackApiError as exc:
            # the person may have closed the modal already
            log.info("modal %s not updated: %s", view_id, describe(exc.response))

    async def publish_home(self, user: str, view: Awaitable[dict[str, Any]]) -> None:
        """Publish the Home tab `view` builds; a Slack failure is logged (the next visit tries again)."""
        try:
            await self.client.views_publish(user_id=user, view=await view)
        except SlackApiError as exc:
            log.warning("App Home of %s not published: Slack said %s", user, describe(exc.response))
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            log.warning("App Home of %s not published: Slack unreachable (%s)", user, type(exc).__name__)

    async def join(self, timeout: float = 30.0) -> None:
        """Wait for background work (tests, shutdown)."""
        await self.tasks.join(timeout)

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
from typing import Any, Optional

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from connectors import ConnectorError

from .approvals import PolicyError
from .blocks import Message, esc, info_modal, text_message
from .slack_api import describe

log = logging.getLogger(__name__)

Respond = Callable[..., Awaitable[Any]]


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

    def __init__(self, client: AsyncWebClient) -> None:
        self.client = client
        self.tasks = BackgroundTasks()

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
                # anything else is a bug: logged with a reference the user can quote, never shown
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
        """Replace a loading modal with what `work` returns (or the error it raised)."""
        try:
            content = await work
        except (ConnectorError, PolicyError) as exc:
            content = text_message(f":warning: {esc(exc, 2000)}")
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

"""Who is in a Slack user group and which Slack user has an email, read from Slack and cached briefly.

The approval policy asks these on every click; a short cache keeps a burst of clicks to one Slack call
while a change in Slack (someone leaves the approvers group) still takes effect within a minute.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Optional, TypeVar

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from .slack_api import slack_error

T = TypeVar("T")


class SlackDirectory:
    """`bot.approvals.Directory` over the Slack Web API (usergroups.users.list, users.lookupByEmail)."""

    def __init__(
        self, client: AsyncWebClient, *, ttl: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.client = client
        self.ttl = ttl
        self.clock = clock
        self._cache: dict[tuple[str, str], tuple[float, object]] = {}

    async def _cached(self, key: tuple[str, str], fetch: Callable[[], Awaitable[T]]) -> T:
        hit = self._cache.get(key)
        now = self.clock()
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]  # type: ignore[return-value]
        value = await fetch()
        self._cache[key] = (now, value)
        return value

    async def group_members(self, group_id: str) -> frozenset[str]:
        """User ids in the user group; a group Slack doesn't know has no members (policy denies)."""

        async def fetch() -> frozenset[str]:
            try:
                response = await self.client.usergroups_users_list(usergroup=group_id)
            except SlackApiError as exc:
                if slack_error(exc.response) in ("no_such_subteam", "subteam_not_found"):
                    return frozenset()
                raise
            return frozenset(response.get("users") or ())

        return await self._cached(("group", group_id), fetch)

    async def user_id_for_email(self, email: str) -> Optional[str]:
        """The Slack user with this email, or None when nobody in the workspace has it."""

        async def fetch() -> Optional[str]:
            try:
                response = await self.client.users_lookupByEmail(email=email)
            except SlackApiError as exc:
                if slack_error(exc.response) == "users_not_found":
                    return None
                raise
            user = response.get("user") or {}
            return user.get("id")

        return await self._cached(("email", email.strip().lower()), fetch)

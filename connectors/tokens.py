"""The access-token cache the OAuth connectors share (Okta service app, Entra ID, Google Workspace).

Rules: a token is kept until `min(renew_max, renew_share * its lifetime)` before it expires (never past
that), and fetched by one caller at a time while the others wait for it (the lock is made inside the
event loop: Python 3.9 binds a lock to the loop it was made in). After a 401, `drop(token)` forgets the
token only if it is still the cached one, so callers that all got the 401 renew it once, not once each;
each connector sends its call again once, never more. Fetching (the request, its errors, checking the
answer) stays with each connector, which hands `get` a coroutine function returning (token, lifetime).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Callable, Optional


class TokenCache:
    """One cached bearer token and when to renew it."""

    def __init__(
        self,
        *,
        renew_max: float = 60.0,
        renew_share: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.renew_max = renew_max
        self.renew_share = renew_share
        self._clock = clock
        self.token: Optional[str] = None
        self._renew_at = 0.0
        self._lock: Optional[asyncio.Lock] = None

    async def get(self, fetch: Callable[[], Awaitable[tuple[str, float]]]) -> str:
        """The cached token, or a new one from `fetch()` when there is none or it is due for renewal."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self.token is not None and self._clock() < self._renew_at:
                return self.token
            token, lifetime = await fetch()
            self.token = token
            margin = min(self.renew_max, lifetime * self.renew_share)
            self._renew_at = self._clock() + max(0.0, lifetime - margin)
            return token

    def drop(self, token: str) -> None:
        """Forget `token` after the API refused it (401), unless another caller already renewed it."""
        if self.token == token:
            self.token = None

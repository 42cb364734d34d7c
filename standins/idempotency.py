"""`Idempotency-Key` on state-changing requests, honoured as the providers that support it do (Stripe's
API, the IETF httpapi "Idempotency-Key header field" draft), for the HomeBase and SailPoint stand-ins.

* The key is scoped to the caller (API key or OAuth client) and kept for 24 hours (`ttl`).
* The same key with the same request (method, path and body) returns the first answer again, with
  `Idempotent-Replayed: true`, and does nothing: no second execution.
* The same key with a different request is refused with 422; while the first request with a key is
  still being processed, a second one is refused with 409.
* Only an answer from a request that was executed (2xx) is kept: a refused request (4xx) leaves the
  key free to be used again, as nothing happened.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Callable, Optional

from aiohttp import web

HEADER = "Idempotency-Key"
DAY = 24 * 3600.0
MAX_KEY = 255

Refuse = Callable[[int, str], web.StreamResponse]


@dataclass
class _Entry:
    fingerprint: str
    created: float
    status: Optional[int] = None  # None while the first request is being processed
    body: bytes = b""


class IdempotencyKeys:
    """The keys one simulator has seen; `replays` counts answers given again instead of executing."""

    def __init__(self, ttl: float = DAY, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._clock = clock
        self._entries: dict[tuple[str, str], _Entry] = {}
        self.replays = 0

    def __len__(self) -> int:
        return len(self._entries)

    async def run(
        self,
        request: web.Request,
        caller: str,
        handler: Callable[[], Awaitable[web.StreamResponse]],
        refuse: Refuse,
    ) -> web.StreamResponse:
        """Answer `request` through `handler` once per (caller, key); `refuse(status, message)` builds
        the simulator's own error answer. Without the header, `handler` simply runs."""
        key = request.headers.get(HEADER)
        if key is None:
            return await handler()
        if not 1 <= len(key) <= MAX_KEY:
            return refuse(400, f"{HEADER} must be 1 to {MAX_KEY} characters")
        fingerprint = hashlib.sha256(
            b"\0".join([request.method.encode(), request.path.encode(), await request.read()])
        ).hexdigest()
        now = self._clock()
        slot = (caller, key)
        entry = self._entries.get(slot)
        if entry is not None and now - entry.created >= self.ttl:
            entry = None
        if entry is not None:
            if entry.fingerprint != fingerprint:
                return refuse(422, f"This {HEADER} was already used with a different request")
            if entry.status is None:
                return refuse(409, f"A request with this {HEADER} is still being processed")
            self.replays += 1
            return web.Response(
                body=entry.body,
                status=entry.status,
                content_type="application/json",
                headers={"Idempotent-Replayed": "true"},
            )
        entry = self._entries[slot] = _Entry(fingerprint, now)
        try:
            response = await handler()
        except BaseException:  # not executed (or cut off before it was): the key may be used again
            del self._entries[slot]
            raise
        if 200 <= response.status < 300 and isinstance(response, web.Response):
            entry.status = response.status
            entry.body = response.body if isinstance(response.body, bytes) else b""
        else:
            del self._entries[slot]
        return response

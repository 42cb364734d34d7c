"""Stopping background loops (the server's expiry and claims loops, the alert scheduler's and sender's).

Rule: a stop cancels and waits until every task has ended. A cancellation can be lost inside a task (a
library that catches it, or Python 3.11's `asyncio.wait_for` when the awaited call finishes at the same
moment), so it is repeated every second until the task ends: a stopping server never waits forever on a
loop that ignored one. A task that failed is logged, not raised, so the rest of the stop still runs.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Optional

log = logging.getLogger(__name__)


async def stop(*tasks: Optional[asyncio.Task[Any]]) -> None:
    """Cancel `tasks` (None is skipped) and return once all have ended."""
    running = {task for task in tasks if task is not None}
    while pending := {task for task in running if not task.done()}:
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=1)
    for task in running:
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s failed while stopping: %r", task.get_name(), task.exception())

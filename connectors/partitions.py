"""Paging disjoint partitions of a listing at the same time (for cursors that only go one page after
the other, such as Google's `nextPageToken`).

Rules: `merged` runs `concurrency` workers; each takes the next partition not yet taken and pages through
it to its end, handing every page to the one consumer through a queue of `concurrency` places (a slow
consumer holds the workers back, so memory stays flat). A worker's error is raised to the consumer, and
when the consumer stops (done, error or early exit) every worker is cancelled and awaited, so no request
outlives the listing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from typing import Callable, TypeVar

T = TypeVar("T")


async def merged(partitions: Iterable[Callable[[], AsyncIterator[T]]], concurrency: int) -> AsyncIterator[T]:
    """The pages of every partition (`partitions` are functions starting one), in the order they come."""
    todo = iter(list(partitions))
    queue: asyncio.Queue = asyncio.Queue(maxsize=max(1, concurrency))
    done = object()

    async def worker() -> None:
        try:
            for start in todo:
                async for page in start():
                    await queue.put(page)
        except BaseException as exc:  # handed to the consumer, which raises it (a cancel ends the worker)
            if not isinstance(exc, asyncio.CancelledError):
                await queue.put(exc)
            raise
        await queue.put(done)

    workers = [asyncio.ensure_future(worker()) for _ in range(max(1, concurrency))]
    running = len(workers)
    try:
        while running:
            item = await queue.get()
            if item is done:
                running -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield item
    finally:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)

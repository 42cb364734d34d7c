"""Log capture for tests that throw many inputs at a real component: every traceback or error logged."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator


class Problems(logging.Handler):
    """Collects every record with a traceback or at ERROR and above, from any logger."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.found: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info or record.levelno >= logging.ERROR:
            self.found.append(f"{record.name}: {record.getMessage()[:300]}")


@contextlib.contextmanager
def watching() -> Iterator[Problems]:
    """A Problems handler on the root logger (at DEBUG, so nothing is filtered out) while inside."""
    handler = Problems()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)

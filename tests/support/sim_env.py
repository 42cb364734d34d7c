"""Connector tests' set-up: a provider simulator served on loopback, and the connectors a test builds
against it, closed when the test ends.

Each connector test module subclasses `SimEnv` with its own `connector(**settings)` (the provider's
settings) and makes its `env` fixture with `serve_env(Env, create_app(**params(request, ...)), STATE)`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any, TypeVar

import aiohttp
import pytest
from aiohttp import web

import connectors
from standins import serving

E = TypeVar("E", bound="SimEnv")
C = TypeVar("C", bound=connectors.Connector)


class SimEnv:
    """A simulator on loopback (`state`, `url`) and the connectors built against it (`opened`)."""

    def __init__(self, state: Any, url: str) -> None:
        self.state, self.url = state, url
        self.opened: list[connectors.Connector] = []

    def build(self, cls: type[C], kind: str, name: str, settings: Mapping[str, Any]) -> C:
        """A connector built from settings as `idops serve` builds it, checked to be a `cls`."""
        built = connectors.build(kind, name, dict(settings))
        assert isinstance(built, cls)
        return self.keep(built)

    def keep(self, built: C) -> C:
        """`built`, closed when the test ends."""
        self.opened.append(built)
        return built

    async def admin(self, path: str, body: dict) -> Any:
        """POST `body` to the simulator's admin API at `path`, which must answer 200; its JSON (or text)."""
        async with aiohttp.ClientSession() as session, session.post(f"{self.url}{path}", json=body) as answer:
            assert answer.status == 200, await answer.text()
            if answer.content_type == "application/json":
                return await answer.json()
            return await answer.text()


def params(request: pytest.FixtureRequest, **defaults: Any) -> dict[str, Any]:
    """The simulator's arguments: `defaults`, overridden by an indirect parametrization's dict."""
    return {**defaults, **getattr(request, "param", {})}


@contextlib.asynccontextmanager
async def serve_env(env_cls: type[E], app: web.Application, state_key: Any) -> AsyncIterator[E]:
    """`app` served on loopback, as an `env_cls` over its state; every connector it kept is closed after."""
    async with serving(app) as url:
        env = env_cls(app[state_key], url)
        try:
            yield env
        finally:
            for opened in env.opened:
                await opened.close()

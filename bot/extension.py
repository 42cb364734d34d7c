"""What a server extension (e.g. risk alerts) gets from `bot.server`: its signature and the keys of
what the server keeps on the aiohttp application.

`setup(web_app, bot, environ)` may add routes, Bolt listeners (`web_app[BOLT]`), migrations
(`bot.service.db`), start-up/clean-up callbacks and a `/healthz` part (`web_app[HEALTH][name] = check`,
a function returning a dict shown under `name`; its `ok: false` makes the whole `ok` false).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web
from slack_bolt.async_app import AsyncApp

from .services import Bot

Extension = Callable[[web.Application, Bot, Mapping[str, str]], None]
#: one part of /healthz: a dict shown under its name, with `ok` False when that part is failing
HealthCheck = Callable[[], dict[str, Any]]

BOT = web.AppKey("idops_bot", Bot)
BOLT = web.AppKey("idops_bolt", AsyncApp)
HEALTH = web.AppKey("idops_health", dict[str, HealthCheck])

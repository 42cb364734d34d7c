"""The Bolt `AsyncApp` with every idops listener registered.

Layers, top down: this module and `bot.server` wire things; listeners (bot/listeners/, each kind's
`register(app, bot)`) parse what Slack sent, ack and hand off; services (`bot.services.Bot` and its
parts) do the work. A layer imports only the layers below it; listeners never import each other.
"""

from __future__ import annotations

import logging

from slack_bolt.async_app import AsyncApp
from slack_bolt.logger.messages import warning_client_prioritized_and_token_skipped

from .listeners import actions, commands, events, views
from .services import Bot


def _not_token_skipped(record: logging.LogRecord) -> bool:
    # Bolt sees SLACK_BOT_TOKEN in the environment next to the client built from it, and warns that the
    # token "will be unused": untrue (the client carries it) and alarming in an operator's log
    return record.getMessage() != warning_client_prioritized_and_token_skipped()


def create_app(bot: Bot, *, signing_secret: str, verify: bool = True) -> AsyncApp:
    """The Bolt app with every idops listener registered; Bolt verifies each request's signature
    (`verify=False` only for Socket Mode, where requests come over the app's own websocket)."""
    logger = logging.getLogger("idops.bolt")
    if _not_token_skipped not in logger.filters:
        logger.addFilter(_not_token_skipped)
    app = AsyncApp(
        client=bot.client,
        signing_secret=signing_secret,
        request_verification_enabled=verify,
        # listeners ack first and hand slow work to Replies.run, so the response never waits on a provider
        process_before_response=True,
        logger=logger,
    )
    commands.register(app, bot)
    actions.register(app, bot)
    views.register(app, bot)
    events.register(app, bot)
    return app

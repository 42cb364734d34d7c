"""The Slack stand-in: `FakeSlack` (Web API, response URLs, Socket Mode, views, and the driver that
sends the bot signed requests as Slack does), Block Kit checks, and the records tests use.

The page over it is `standins.slack.page`; `idops sim slack` is `standins.slack.sim`.
"""

from __future__ import annotations

from .blocks import block_problems, view_problems
from .fake import FakeSlack
from .records import SOCKET_MODE, BotReply, SlackError, SlackUser

__all__ = [
    "SOCKET_MODE",
    "BotReply",
    "FakeSlack",
    "SlackError",
    "SlackUser",
    "block_problems",
    "view_problems",
]

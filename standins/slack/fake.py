"""A local Slack: the Web API the bot calls, and a driver that sends the bot what Slack would send.

`FakeSlack.app` serves `/api/<method>` (point the bot's `api_url` at `<base>/api/`) and the
`/response/<id>` URLs handed out with commands and clicks. It keeps channels, threads, ephemerals,
modals and App Home per user, validates Block Kit the way Slack does, records every call, and can be
told to fail. The driver methods (`command`, `click`, `submit_view`, `open_home`) sign their requests
with the signing secret exactly as Slack does, so the bot under test runs its real verification.
Given `SOCKET_MODE` instead of the bot's URL, they send the same payloads as Socket Mode envelopes
over the websocket `apps.connections.open` (app-level token) hands out, and read the bot's ack there;
with several connections open (replicas) each envelope goes to one of them, and one not acked is sent
again to another (see `socket_mode`).

The parts, each in its own module: the workspace state (`core`), the Web API and response URLs
(`web_api`), Block Kit checks (`blocks`), Socket Mode (`socket_mode`), the signed-request driver
(`driver`) and views (`views`). The page over it lives in `page`; `idops sim slack` in `sim`.
"""

from __future__ import annotations

from .socket_mode import SocketMode
from .views import Views
from .web_api import WebApi


class FakeSlack(Views, WebApi):
    """Slack's Web API and response URLs on loopback, plus the driver that plays Slack towards the bot."""

    _methods = {**WebApi.METHODS, **Views.METHODS, **SocketMode.METHODS}

"""`Bot`: the services of one running server, wired together, that every listener hands off to.

| attribute | what |
| --- | --- |
| `replies` | `Replies`: run work after the ack, answer the person, modals, the Home tab (Slack I/O) |
| `identities` | `Identities`: search, the riskiest, counts across connectors |
| `flow` | `ApprovalFlow`: requests, approvals, execution and their cards |
| `containment` | `ContainmentFlow`: reverting time-boxed containments, their cards and threads |
| `lookups` | `Lookups`: the answers to commands and buttons (whois, risky, audit, show, home, ...) |
| `commands` | `CommandLog`: slash commands recorded before their ack, answered once across replicas |
| `service` | the `ApprovalService` (policy and store), `config`, `client`, `connectors` as given |

Services sit below the listeners (bot/listeners/, bot/alerts/listeners.py) and never import them.
"""

from __future__ import annotations

from collections.abc import Mapping

from slack_sdk.web.async_client import AsyncWebClient

from connectors import Connector

from .approval_flow import ApprovalFlow
from .approvals import ApprovalService
from .claims import DEFAULT_TTL, new_holder
from .command_log import CommandLog
from .config import Config
from .containment_flow import ContainmentFlow
from .identities import Identities
from .lookups import Lookups
from .replies import Replies


class Bot:
    """What the listeners act on; one per running server."""

    def __init__(
        self,
        config: Config,
        *,
        client: AsyncWebClient,
        connectors: Mapping[str, Connector],
        service: ApprovalService,
    ) -> None:
        self.config = config
        self.client = client
        self.connectors = connectors
        self.service = service
        self.replies = Replies(client)
        self.identities = Identities(connectors)
        self.flow = ApprovalFlow(service, self.replies, channel=config.slack.approval_channel)
        self.lookups = Lookups(self.identities, service, self.flow)
        self.containment = ContainmentFlow(self.flow)
        claims = service.claims
        self.commands = CommandLog(
            service.db,
            holder=claims.holder if claims is not None else new_holder(),
            lease=claims.ttl if claims is not None else DEFAULT_TTL,
        )

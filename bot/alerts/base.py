"""What every part of the detector shares: the store, the connectors, the settings, the sweep scopes and
the one way an outbox row is written (inside the caller's transaction, next to the change it reports).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any, Optional, Protocol

from connectors import Connector, Identity

from .. import store_notify
from ..config import AlertSettings
from ..store import Store
from .scope import Scope, pick_channel
from .transitions import Rules, State

#: the PostgreSQL notification channel an outbox row queued on any replica is announced on
OUTBOX_NOTIFY = "idops_outbox"


def queue(
    db: Store,
    kind: str,
    channel: str,
    alert_id: Optional[str],
    payload: Mapping[str, Any],
    now: float,
) -> None:
    """Write one outbox row; the caller holds the transaction that makes it true. On PostgreSQL every
    replica's sender is woken when it commits (`OUTBOX_NOTIFY`), whichever holds the channel."""
    db.execute(
        "INSERT INTO alert_outbox (kind, channel, alert_id, payload, created_at) VALUES (?, ?, ?, ?, ?)",
        [kind, channel, alert_id, json.dumps(dict(payload)), now],
    )
    store_notify.notify(db, OUTBOX_NOTIFY, channel)


class CriticalHook(Protocol):
    """What runs when an identity enters critical risk (bot/alerts/auto.py): `entered` inside the
    transaction that records it (True when it wrote something to run), `kick` after it commits."""

    def entered(
        self, connector: Connector, identity: Identity, previous: Optional[State], alert_id: str, now: float
    ) -> bool: ...

    def kick(self) -> None: ...


class AlertsBase:
    """The state the detector's parts (sweeps, stored views, people acting on cards) work on."""

    def __init__(
        self,
        db: Store,
        connectors: Mapping[str, Connector],
        settings: AlertSettings,
        alert_channel: str,
        *,
        clock: Callable[[], float] = time.time,
        on_outbox: Callable[[], None] = lambda: None,
    ) -> None:
        self.db = db
        self.connectors = connectors
        self.settings = settings
        self.alert_channel = alert_channel
        self.clock = clock
        self.on_outbox = on_outbox
        self.rules = Rules(frozenset(settings.levels), settings.cooldown_minutes * 60.0)
        # scopes this process has listed in full: the first sweep after a start is always a full one
        self.listed: set[str] = set()
        #: auto-containment, when `[[auto_containment]]` rules are configured
        self.on_critical: Optional[CriticalHook] = None

    def scopes(self) -> list[Scope]:
        """One sweep per connector, or per tenant for connectors listed in `[alerts] tenants`."""
        return [scope for name in self.connectors for scope in self._scopes_of(name)]

    def _scopes_of(self, name: str) -> list[Scope]:
        tenants = self.settings.tenants.get(name) or []
        return [Scope(name, tenant) for tenant in tenants] or [Scope(name)]

    def source(self, connector: Connector, tenant_id: Optional[str] = None) -> str:
        """How messages name a connector: 'HomeBase (hld)', plus the tenant for tenant scopes."""
        text = f"{connector.label} ({connector.name})"
        return f"{text} / {tenant_id}" if tenant_id else text

    def _outbox(
        self, kind: str, channel: str, alert_id: Optional[str], payload: dict[str, Any], now: float
    ) -> None:
        queue(self.db, kind, channel, alert_id, payload, now)

    def _notice_channel(self, connector: Connector, scope: Scope) -> str:
        return pick_channel(
            self.settings,
            self.alert_channel,
            connector=connector.name,
            kind=connector.kind,
            tenant_id=scope.tenant_id,
        )

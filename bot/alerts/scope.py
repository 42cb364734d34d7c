"""What a sweep covers and reports, and which channel an alert goes to."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from connectors import RiskLevel

from ..config import AlertSettings

FULL = "full"
CHANGES = "changes"


@dataclass(frozen=True)
class Scope:
    """What one scheduled sweep covers: a connector, or one tenant of a connector scoped to several."""

    connector: str
    tenant_id: Optional[str] = None

    @property
    def key(self) -> str:
        return self.connector if self.tenant_id is None else f"{self.connector}:{self.tenant_id}"

    @classmethod
    def parse(cls, key: str) -> Scope:
        connector, _, tenant = key.partition(":")
        return cls(connector, tenant or None)


@dataclass(frozen=True)
class SweepResult:
    scope: Scope
    seen: int
    changes: dict[str, int]
    baseline: bool
    error: Optional[str] = None
    #: FULL (every identity listed) or CHANGES (only what the provider's change feed reported)
    mode: str = FULL


def pick_channel(
    settings: AlertSettings,
    default: str,
    *,
    connector: str,
    kind: str,
    tenant_id: Optional[str],
    provider: Optional[str] = None,
    level: Optional[RiskLevel] = None,
) -> str:
    """The first route whose every condition matches, else the alert channel.

    A route's `provider` matches the connector's kind (homebase, sailpoint) or the identity's upstream
    provider (okta, azure_ad, …); a route with a `level` never matches level-less notices.
    """
    for route in settings.routes:
        if route.connector is not None and route.connector != connector:
            continue
        if route.tenant is not None and route.tenant != tenant_id:
            continue
        if route.provider is not None and route.provider.lower() not in {
            kind.lower(),
            (provider or "").lower(),
        }:
            continue
        if route.level is not None and route.level is not level:
            continue
        return route.channel
    return default

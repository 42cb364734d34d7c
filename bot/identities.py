"""Identities across every configured connector: search, the riskiest, counts per risk level.

Each call asks every connector concurrently; a connector that fails is reported in `Found.faults`
and never hides what the others answered. A scan reads at most `SCAN_CAP` identities per connector
and level, so one command can't walk a million-identity tenant; the answer says when it stopped early.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Optional

from connectors import Action, Connector, ConnectorError, Identity, RateLimitedError, RiskLevel

from . import blocks
from .blocks import Message, esc

RISK_ORDER = (RiskLevel.CRITICAL, RiskLevel.HIGH, RiskLevel.MEDIUM, RiskLevel.LOW)
SCAN_CAP = 1000
PAGE_SIZE = 10


@dataclass
class Found:
    """Identities from every connector, with the faults of those that didn't answer."""

    identities: list[Identity] = field(default_factory=list)
    faults: list[str] = field(default_factory=list)
    capped: bool = False
    #: names of the connectors that answered (a lookup with no match names them)
    searched: list[str] = field(default_factory=list)
    #: a connector that asked to be left alone for a while (its Retry-After), if one did
    limited: Optional[RateLimitedError] = None

    def fault_note(self) -> str:
        return "\n".join(f":warning: {esc(fault, 500)}" for fault in self.faults)


@dataclass
class StoredRisk:
    """One connector's risk as the alert sweeps last stored it (the App Home counts from it)."""

    counts: dict[RiskLevel, int]
    riskiest: list[Identity]  # high and critical, highest score first
    swept_at: datetime  # when the oldest of its sweep scopes last finished
    faults: list[str] = field(default_factory=list)  # scopes failing since


class Identities:
    """Reads identities from the configured connectors (never changes them)."""

    def __init__(self, connectors: Mapping[str, Connector]) -> None:
        self.connectors = connectors
        #: set by the alerts extension: a connector's stored risk once its sweeps have run, else None
        self.stored_risk: Optional[Callable[[str], Optional[StoredRisk]]] = None

    def source(self, connector: str) -> str:
        """How messages name a connector: its provider label and configured name."""
        found = self.connectors.get(connector)
        return f"{found.label} ({connector})" if found else connector

    def actions_for(self, identity: Identity) -> frozenset[Action]:
        """The response actions the identity's connector offers (its `capabilities`)."""
        found = self.connectors.get(identity.connector)
        return found.capabilities if found else frozenset()

    def card(self, identity: Identity) -> Message:
        return blocks.identity_card(
            identity, source=self.source(identity.connector), actions=self.actions_for(identity)
        )

    def labelled(self, identities: Sequence[Identity]) -> list[tuple[Identity, str]]:
        return [(identity, self.source(identity.connector)) for identity in identities]

    async def _each(
        self, call: Callable[[Connector], Awaitable[Any]], connectors: Optional[Sequence[Connector]] = None
    ) -> list[tuple[Connector, Any]]:
        """Call every connector (or those given) concurrently; a ConnectorError comes back as the result."""

        async def one(connector: Connector) -> Any:
            try:
                return await call(connector)
            except ConnectorError as exc:
                return exc

        connectors = list(self.connectors.values()) if connectors is None else list(connectors)
        results = await asyncio.gather(*(one(c) for c in connectors))
        return list(zip(connectors, results))

    async def search(self, query: str, *, limit: int = 10) -> Found:
        """Identities matching an email, id or name, across connectors; a single exact match wins."""
        found = Found()
        for connector, result in await self._each(lambda c: c.find_identities(query, limit=limit)):
            if isinstance(result, ConnectorError):
                found.faults.append(str(result))
                if isinstance(result, RateLimitedError) and result.retry_after is not None:
                    found.limited = result
            else:
                found.searched.append(connector.name)
                found.identities.extend(result)
        wanted = query.strip().casefold()
        exact = [
            i
            for i in found.identities
            if wanted in ((i.email or "").casefold(), i.id.casefold(), (i.display_name or "").casefold())
        ]
        if len(exact) == 1:
            found.identities = exact
        return found

    async def _scan(self, connector: Connector, *, level: RiskLevel, tenant: Optional[str]) -> list[Identity]:
        out: list[Identity] = []
        async for page in connector.iter_pages(risk_level=level, tenant_id=tenant):
            out.extend(page)
            if len(out) >= SCAN_CAP:
                break
        return out

    async def riskiest(
        self, level: Optional[RiskLevel], tenant: Optional[str], *, offset: int = 0, count: int = PAGE_SIZE
    ) -> tuple[Found, bool]:
        """The page of identities at `offset`, highest score first, across connectors; and whether
        there are more. Without a level, levels are read from critical down until the page is full."""
        found = Found()
        for current in (level,) if level else RISK_ORDER:
            for _, result in await self._each(functools.partial(self._scan, level=current, tenant=tenant)):
                if isinstance(result, ConnectorError):
                    found.faults.append(str(result))
                    continue
                found.capped |= len(result) >= SCAN_CAP
                found.identities.extend(result)
            if len(found.identities) > offset + count:
                break
        found.identities.sort(key=lambda i: (-(i.risk_score or 0), i.name.lower(), i.connector, i.id))
        more = len(found.identities) > offset + count
        found.identities = found.identities[offset : offset + count]
        return found, more

    async def risk_counts(self) -> tuple[dict[RiskLevel, str], Found, dict[str, datetime]]:
        """Identities per risk level across connectors, the riskiest ten, and when each connector
        counted from the alert sweeps' stored state was swept. Connectors the sweeps have not covered
        yet are scanned ("1000+" once a scan stops early)."""
        found = Found()
        totals = dict.fromkeys(RISK_ORDER, 0)
        capped: set[RiskLevel] = set()
        swept: dict[str, datetime] = {}
        scanned: list[Connector] = []
        for name, connector in self.connectors.items():
            stored = self.stored_risk(name) if self.stored_risk is not None else None
            if stored is None:
                scanned.append(connector)
                continue
            swept[name] = stored.swept_at
            for level, count in stored.counts.items():
                totals[level] += count
            found.identities.extend(stored.riskiest)
            found.faults.extend(fault for fault in stored.faults if fault not in found.faults)
        for level in RISK_ORDER if scanned else ():
            scan = functools.partial(self._scan, level=level, tenant=None)
            for _, result in await self._each(scan, scanned):
                if isinstance(result, ConnectorError):
                    if str(result) not in found.faults:
                        found.faults.append(str(result))
                    continue
                totals[level] += len(result)
                if len(result) >= SCAN_CAP:
                    capped.add(level)
                if level in (RiskLevel.CRITICAL, RiskLevel.HIGH):
                    found.identities.extend(result)
        counts = {level: f"{total}+" if level in capped else str(total) for level, total in totals.items()}
        found.identities.sort(key=lambda i: -(i.risk_score or 0))
        found.identities = found.identities[:10]
        return counts, found, swept

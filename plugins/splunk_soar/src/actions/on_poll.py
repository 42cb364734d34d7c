"""on poll: ingest identities at high or critical risk as containers, one per identity and risk episode.

An episode starts when an identity is first seen at high or critical and ends when a complete poll no
longer finds it there; the next rise starts a new episode (a new container). Episodes are numbered per
identity in the asset's ingestion state, and the number is part of each container's
source_data_identifier, so SOAR itself also refuses a duplicate if the state is ever lost. An escalation
from high to critical within an episode adds an artifact to the same container.
"""

from collections.abc import MutableMapping
from typing import Any, Optional, Union

from soar_sdk.models.artifact import Artifact
from soar_sdk.models.container import Container

from connectors import Connector, Identity, RiskLevel

from ..asset import Asset
from ..common import IDENTITY_ID, connector_name, with_connector

POLLED_LEVELS = (RiskLevel.CRITICAL, RiskLevel.HIGH)  # critical first: a container limit keeps the worst
# SOAR's built-in severities are low, medium and high; critical is idops's top band.
SEVERITY = {RiskLevel.HIGH: "medium", RiskLevel.CRITICAL: "high"}
LABEL = "identity"

Item = Union[Container, Artifact]


Risky = dict[str, tuple[Identity, RiskLevel]]


async def _risky(asset: Asset, limit: Optional[int]) -> tuple[Risky, bool]:
    """Identities at high or critical (at most `limit`) with their level, and whether the listing was
    complete (only a complete one may end episodes)."""

    async def work(connector: Connector) -> tuple[Risky, bool]:
        found: Risky = {}
        for level in POLLED_LEVELS:
            async for identity in connector.list_identities(risk_level=level):
                found.setdefault(identity.id, (identity, level))
                if limit is not None and len(found) >= limit:
                    return found, False
        return found, True

    return await with_connector(asset, work)


def _source_id(name: str, identity_id: str, episode: int) -> str:
    return f"idops:{name}:{identity_id}:episode-{episode}"


def _container(name: str, identity: Identity, level: RiskLevel, episode: int) -> Container:
    return Container(
        name=f"Risky identity: {identity.name} ({level.value} risk)",
        label=LABEL,
        description=f"{identity.name} reached {level.value} risk in {name}.",
        source_data_identifier=_source_id(name, identity.id, episode),
        severity=SEVERITY[level],
        data=identity.to_dict(),
    )


def _artifact(name: str, identity: Identity, level: RiskLevel, episode: int) -> Artifact:
    cef: dict[str, Any] = {
        "sourceUserName": identity.email or identity.name,
        "emailAddress": identity.email,
        "sourceAddress": identity.last_login_ip,
        "sourceCountry": identity.last_login_country,
        "displayName": identity.display_name,
        "idopsIdentityId": identity.id,
        "idopsConnector": name,
        "riskScore": identity.risk_score,
        "riskLevel": level.value,
        "tenantId": identity.tenant_id,
        "privileged": identity.privileged,
    }
    return Artifact(
        name=f"{level.value.capitalize()} risk identity",
        label=LABEL,
        type="user",
        severity=SEVERITY[level],
        source_data_identifier=f"{_source_id(name, identity.id, episode)}:{level.value}",
        cef={key: value for key, value in cef.items() if value is not None},
        cef_types={
            "sourceUserName": ["user name"],
            "emailAddress": ["email"],
            "sourceAddress": ["ip"],
            "idopsIdentityId": [IDENTITY_ID],
        },
        run_automation=True,
    )


async def ingest(asset: Asset, state: MutableMapping[str, Any], limit: Optional[int] = None) -> list[Item]:
    """Containers and artifacts for new episodes and escalations; updates `state` (the ingestion state)."""
    name = connector_name(asset)
    risky, complete = await _risky(asset, limit)
    episodes: dict[str, dict[str, Any]] = state.setdefault("episodes", {}).setdefault(name, {})
    items: list[Item] = []
    for identity, level in risky.values():
        entry = episodes.get(identity.id)
        if entry is None or not entry["open"]:
            episode = entry["episode"] + 1 if entry else 1
            episodes[identity.id] = {"episode": episode, "open": True, "level": level.value}
            items += [_container(name, identity, level, episode), _artifact(name, identity, level, episode)]
        elif level.rank > RiskLevel(entry["level"]).rank:
            # same episode, worse: the container is found again by its source_data_identifier
            entry["level"] = level.value
            episode = entry["episode"]
            items += [_container(name, identity, level, episode), _artifact(name, identity, level, episode)]
    if complete:
        for identity_id, entry in episodes.items():
            if entry["open"] and identity_id not in risky:
                entry["open"] = False
    return items

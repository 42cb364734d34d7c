"""TheHive Cortex workers over the idops connector core: an analyzer that looks identities up and a
responder that runs one response action, both configured like any Cortex worker.

Credentials live in config fields whose names Cortex (cortexutils) redacts when a failed job echoes its
input: `api_key`, `client_secret`. Every failure is one plain sentence through `error()`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping
from typing import Any, Callable, TypeVar

from cortexutils.analyzer import Analyzer
from cortexutils.responder import Responder

from connectors import (
    Action,
    AuthenticationError,
    ConfigurationError,
    Connector,
    ConnectorError,
    Identity,
    NotFoundError,
    RiskLevel,
    ValidationError,
    build_from_form,
)

T = TypeVar("T")
# config keys whose values cortexutils replaces with REMOVED when it echoes a failed job's input: its
# defaults (key, password, secret) miss a Google service account key file's JSON
SECRET_PHRASES = ("key", "password", "secret", "token", "service_account")

TAXONOMY_LEVEL = {
    RiskLevel.LOW: "safe",
    RiskLevel.MEDIUM: "suspicious",
    RiskLevel.HIGH: "malicious",
    RiskLevel.CRITICAL: "malicious",
}


def connector_from_config(config: Mapping[str, Any]) -> Connector:
    """The connector a worker's config describes; ConfigurationError names what is wrong."""
    kind = str(config.get("connector_kind") or "").strip()
    if not kind:
        raise ConfigurationError(
            "the worker's configuration needs connector_kind"
            " (homebase, sailpoint, google_workspace, entra or okta)"
        )
    name = str(config.get("connector_name") or kind).strip()
    return build_from_form(kind, name, config)


def is_exact(identity: Identity, query: str) -> bool:
    wanted = query.strip().casefold()
    return wanted in {identity.id.casefold(), (identity.email or "").casefold()}


def with_connector(worker: Any, work: Callable[[Connector], Awaitable[T]]) -> T:
    """Run `work` with the worker's configured connector; a connector error ends the job with its
    message (cortexutils' `error()` exits, redacting the secret config fields it echoes)."""

    async def run() -> T:
        async with connector_from_config(worker.get_param("config", {})) as connector:
            return await work(connector)

    try:
        return asyncio.run(run())
    except (AuthenticationError, ConfigurationError) as exc:
        worker.error(f"{exc}. Check the worker's configuration.")
    except ConnectorError as exc:
        worker.error(str(exc))
    raise AssertionError("error() exits")


def observable_value(worker: Any) -> str:
    """What to look for: the observable's value (a responder gets the whole observable as data)."""
    data = worker.get_param("data", None, "Missing data field")
    if isinstance(data, dict):
        data = data.get("data")
    if not isinstance(data, str) or not data.strip():
        worker.error("The observable has no value to look an identity up by (expected an email, name or id).")
    return str(data).strip()


async def resolve(connector: Connector, query: str) -> Identity:
    """Exactly one identity: an exact id or email match, or the only match."""
    found = await connector.find_identities(query, limit=5)
    exact = [identity for identity in found if is_exact(identity, query)]
    if len(exact) == 1:
        return exact[0]
    if len(found) == 1:
        return found[0]
    if not found:
        raise NotFoundError(f"No identity in '{connector.name}' matches '{query}'.")
    raise ValidationError(
        f"{len(found)} identities in '{connector.name}' match '{query}'; use the email or id."
    )


class IdopsAnalyzer(Analyzer):
    """Look identities up by email, name or id; the summary shows the riskiest match's level."""

    def __init__(self) -> None:
        super().__init__(secret_phrases=SECRET_PHRASES)

    def run(self) -> None:
        query = observable_value(self)
        found = with_connector(self, lambda connector: connector.find_identities(query, limit=10))
        self.report({"query": query, "identities": [identity.to_dict() for identity in found]})

    def summary(self, raw: dict) -> dict:
        identities = raw.get("identities") or []
        if not identities:
            return {"taxonomies": [self.build_taxonomy("info", "idops", "Identity", "not found")]}
        top = identities[0]
        level = RiskLevel(top["risk_level"]) if top.get("risk_level") else None
        value = f"{level.value} ({top['risk_score']})" if level else "unknown"
        taxonomy = self.build_taxonomy(TAXONOMY_LEVEL[level] if level else "info", "idops", "Risk", value)
        return {"taxonomies": [taxonomy]}

    def artifacts(self, raw: dict) -> list:
        return []


class IdopsResponder(Responder):
    """Run the configured action (config `service`) on the identity an observable names."""

    def __init__(self) -> None:
        super().__init__(secret_phrases=SECRET_PHRASES)

    def run(self) -> None:
        if self.data_type != "thehive:case_artifact":
            self.error(f"This responder acts on observables (thehive:case_artifact), not {self.data_type}.")
        service = str(self.get_param("config.service", ""))
        try:
            action = Action(service)
        except ValueError:
            valid = ", ".join(a.value for a in Action)
            self.error(f"Unknown service '{service}' in the responder definition (expected one of: {valid}).")
        query = observable_value(self)
        reason = self._reason(action)

        async def respond(connector: Connector) -> dict:
            identity = await resolve(connector, query)
            result = await connector.run_action(action, identity.id, reason)
            return {"identity": identity.to_dict(), "result": result.to_dict(), "reason": reason}

        self.report(with_connector(self, respond))

    def _reason(self, action: Action) -> str:
        """The observable's description, else the configured default; disabling needs one."""
        observable = self.get_param("data", {}) or {}
        reason = str(observable.get("message") or self.get_param("config.default_reason", "") or "").strip()
        if action is Action.DISABLE and not reason:
            self.error("Disabling an account needs a reason: describe the observable or set default_reason.")
        return reason

    def operations(self, raw: dict) -> list:
        return [self.build_operation("AddTagToArtifact", tag=f"idops:{raw['result']['action']}")]

"""The connector interface: one small base per capability, combined into `Connector`.

A provider module subclasses `Connector`, implements `iter_pages`, `get_identity`, `find_identities`
and `check`, overrides the actions it supports, lists them in `capabilities`, and registers itself
with `connectors.registry.register`.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Mapping
from typing import Any, ClassVar, Optional

import aiohttp

from .errors import ConfigurationError, UnsupportedActionError
from .models import Action, ActionResult, CheckResult, Identity, RiskLevel


class IdentitySource(abc.ABC):
    """Reads identities: stream them page by page, get one, find by email, id or name."""

    @abc.abstractmethod
    def iter_pages(
        self,
        *,
        risk_level: Optional[RiskLevel] = None,
        tenant_id: Optional[str] = None,
        privileged: Optional[bool] = None,
        mfa_enrolled: Optional[bool] = None,
        provider: Optional[str] = None,
    ) -> AsyncIterator[list[Identity]]:
        """Yield identities one provider page at a time, so memory stays flat whatever the total."""

    async def list_identities(
        self,
        *,
        risk_level: Optional[RiskLevel] = None,
        tenant_id: Optional[str] = None,
        privileged: Optional[bool] = None,
        mfa_enrolled: Optional[bool] = None,
        provider: Optional[str] = None,
    ) -> AsyncIterator[Identity]:
        """Yield identities one at a time (pages are fetched as they are consumed)."""
        async for page in self.iter_pages(
            risk_level=risk_level,
            tenant_id=tenant_id,
            privileged=privileged,
            mfa_enrolled=mfa_enrolled,
            provider=provider,
        ):
            for identity in page:
                yield identity

    @abc.abstractmethod
    async def get_identity(self, identity_id: str) -> Identity:
        """One identity by the provider's id; NotFoundError when there is none."""

    @abc.abstractmethod
    async def find_identities(self, query: str, *, limit: int = 10) -> list[Identity]:
        """Identities whose email, id or name matches `query` (exact email or id first); a blank
        `query` is a ValidationError saying what to type."""

    @abc.abstractmethod
    async def check(self) -> CheckResult:
        """Reach the provider with the configured credentials and say whether that worked."""


class ResponseActions:
    """The three response actions; each one a provider lacks raises UnsupportedActionError."""

    capabilities: ClassVar[frozenset[Action]] = frozenset()
    label: ClassVar[str] = "provider"

    def supports(self, action: Action) -> bool:
        return action in self.capabilities

    def _unsupported(self, action: Action) -> UnsupportedActionError:
        return UnsupportedActionError(f"{self.label} has no '{action.label}' action", provider=self.label)

    async def force_password_reset(self, identity_id: str) -> ActionResult:
        raise self._unsupported(Action.FORCE_PASSWORD_RESET)

    async def revoke_sessions(self, identity_id: str) -> ActionResult:
        raise self._unsupported(Action.REVOKE_SESSIONS)

    async def disable(self, identity_id: str, reason: str) -> ActionResult:
        raise self._unsupported(Action.DISABLE)

    async def run_action(self, action: Action, identity_id: str, reason: str = "") -> ActionResult:
        """Dispatch by action name, for callers that store the action as data (approvals, SOAR)."""
        if action is Action.FORCE_PASSWORD_RESET:
            return await self.force_password_reset(identity_id)
        if action is Action.REVOKE_SESSIONS:
            return await self.revoke_sessions(identity_id)
        if action is Action.DISABLE:
            return await self.disable(identity_id, reason)
        raise self._unsupported(action)


class Connector(IdentitySource, ResponseActions):
    """An identity platform: its identities and its response actions, under one configured name.

    `kind` is the registry key; `label` is how messages name the provider ("HomeBase").
    Use as `async with` (or call `close()`): a session the connector opened itself is closed then;
    an injected session is left to its owner.
    """

    kind: ClassVar[str] = ""
    #: settings `from_config` accepts (besides `name` and `kind`); anything else is a config error
    settings: ClassVar[frozenset[str]] = frozenset()
    required_settings: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, name: str) -> None:
        self.name = name

    @classmethod
    def from_config(
        cls, name: str, config: Mapping[str, Any], *, session: Optional[aiohttp.ClientSession] = None
    ) -> Connector:
        """Build from a mapping of settings (secrets already resolved by the entry point)."""
        raise NotImplementedError

    @classmethod
    def validate_config(cls, name: str, config: Mapping[str, Any]) -> None:
        """Reject unknown and missing settings with an error that names the key."""
        unknown = sorted(set(config) - cls.settings - {"name", "kind"})
        if unknown:
            raise ConfigurationError(
                f"connector '{name}' ({cls.kind}): unknown setting '{unknown[0]}'"
                f" (known: {', '.join(sorted(cls.settings))})"
            )
        for key in sorted(cls.required_settings):
            if config.get(key) in (None, ""):
                raise ConfigurationError(f"connector '{name}' ({cls.kind}): setting '{key}' is required")

    async def close(self) -> None:
        """Release what the connector opened."""

    async def __aenter__(self) -> Connector:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

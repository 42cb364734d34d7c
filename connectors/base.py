"""The connector interface: one small base per capability, combined into `Connector`.

A provider module subclasses `Connector`, implements `iter_pages`, `get_identity`, `find_identities`
and `check`, overrides the actions it supports, lists them in `capabilities`, and registers itself
with `connectors.registry.register`.
"""

from __future__ import annotations

import abc
import contextvars
from collections.abc import AsyncIterator, Mapping
from typing import Any, ClassVar, Optional

import aiohttp

from .errors import ConfigurationError, UnsupportedActionError
from .models import Action, ActionResult, Changes, CheckResult, Identity, RiskLevel


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


class ChangeFeed:
    """Optional capability: identities whose risk (or state) changed since a cursor.

    A provider that reports changes (a system log, a `lastUpdated` filter) sets `incremental = True`
    and implements `changes_since`; the alert sweep then reads only changes between periodic full
    reconciliations. The cursor is opaque to callers and survives restarts (it is stored as text).
    """

    incremental: ClassVar[bool] = False

    async def changes_since(self, cursor: Optional[str], *, tenant_id: Optional[str] = None) -> Changes:
        """Identities changed since `cursor` (their current state) and the cursor to pass next time.
        With `cursor=None` no identities are returned: the cursor marks "now" (after a full listing).
        A cursor the provider no longer accepts (too old) raises ValidationError: list in full."""
        raise UnsupportedActionError("this provider reports no changes: list identities in full")


# the Idempotency-Key of the action `run_action` is running in this task (None outside one)
_ACTION_KEY: contextvars.ContextVar[Optional[str]] = contextvars.ContextVar("idops_action_key", default=None)


class ResponseActions:
    """The response actions; each one a provider lacks raises UnsupportedActionError.

    `capabilities` lists the actions a provider supports; an action whose `Action.undo` is also
    supported can be time-boxed (contained now, reverted later)."""

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

    async def enable(self, identity_id: str, reason: str = "") -> ActionResult:
        """The undo of `disable`. As for every action, a target already in the wanted state is success
        (status completed, the message saying it already was), never an error."""
        raise self._unsupported(Action.ENABLE)

    async def confirm_compromised(self, identity_id: str) -> ActionResult:
        raise self._unsupported(Action.CONFIRM_COMPROMISED)

    async def dismiss_risk(self, identity_id: str) -> ActionResult:
        raise self._unsupported(Action.DISMISS_RISK)

    def can_undo(self, action: Action) -> bool:
        return action.undo is not None and self.supports(action.undo)

    def idempotency_key(self, part: str = "") -> Optional[str]:
        """The Idempotency-Key for an action request sent now: the key given to `run_action`, with
        `part` appended when one action sends several requests (one per account); None without one."""
        key = _ACTION_KEY.get()
        return None if key is None else f"{key}:{part}" if part else key

    async def action_in_effect(self, action: Action, identity_id: str) -> Optional[bool]:
        """Whether the provider shows `action`'s effect on the identity now (True: e.g. it is disabled),
        shows it is not in effect (False), or can't tell (None, the default: nothing readable). Used to
        settle an action whose outcome is unknown without sending it again."""
        return None

    async def run_action(
        self, action: Action, identity_id: str, reason: str = "", *, idempotency_key: Optional[str] = None
    ) -> ActionResult:
        """Dispatch by action name, for callers that store the action as data (approvals, SOAR).

        `idempotency_key` (stable across retries of the same request) goes with every action request
        as `Idempotency-Key`, so a provider that honours it does not act twice."""
        token = _ACTION_KEY.set(idempotency_key)
        try:
            return await self._dispatch(action, identity_id, reason)
        finally:
            _ACTION_KEY.reset(token)

    async def _dispatch(self, action: Action, identity_id: str, reason: str) -> ActionResult:
        if action is Action.FORCE_PASSWORD_RESET:
            return await self.force_password_reset(identity_id)
        if action is Action.REVOKE_SESSIONS:
            return await self.revoke_sessions(identity_id)
        if action is Action.DISABLE:
            return await self.disable(identity_id, reason)
        if action is Action.ENABLE:
            return await self.enable(identity_id, reason)
        if action is Action.CONFIRM_COMPROMISED:
            return await self.confirm_compromised(identity_id)
        if action is Action.DISMISS_RISK:
            return await self.dismiss_risk(identity_id)
        raise self._unsupported(action)


class Connector(IdentitySource, ChangeFeed, ResponseActions):
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

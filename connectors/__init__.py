"""idops connector core: one async interface over identity platforms (aiohttp + stdlib, Python 3.9+)."""

from __future__ import annotations

from .base import ChangeFeed, Connector, IdentitySource, ResponseActions
from .errors import (
    AuthenticationError,
    ConfigurationError,
    ConflictError,
    ConnectorError,
    NotFoundError,
    OutcomeUnknownError,
    PermissionDeniedError,
    ProviderUnavailableError,
    RateLimitedError,
    UnsupportedActionError,
    ValidationError,
)
from .models import Action, ActionResult, Changes, CheckResult, Identity, RiskLevel, derive_risk
from .registry import build, build_from_form, kinds, register

__all__ = [
    "Action",
    "ActionResult",
    "AuthenticationError",
    "ChangeFeed",
    "Changes",
    "CheckResult",
    "ConfigurationError",
    "ConflictError",
    "Connector",
    "ConnectorError",
    "Identity",
    "IdentitySource",
    "NotFoundError",
    "OutcomeUnknownError",
    "PermissionDeniedError",
    "ProviderUnavailableError",
    "RateLimitedError",
    "ResponseActions",
    "RiskLevel",
    "UnsupportedActionError",
    "ValidationError",
    "build",
    "build_from_form",
    "derive_risk",
    "kinds",
    "register",
]

"""Provider-neutral models: an identity, its risk, the response actions and their results."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from typing import Any, Optional


class RiskLevel(str, enum.Enum):
    """Risk bands as HomeBase documents them: 0-20 low, 21-50 medium, 51-75 high, 76-100 critical."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _RANKS[self]

    @classmethod
    def for_score(cls, score: int) -> RiskLevel:
        if not 0 <= score <= 100:
            raise ValueError(f"risk score {score} is outside 0-100")
        if score <= 20:
            return cls.LOW
        if score <= 50:
            return cls.MEDIUM
        if score <= 75:
            return cls.HIGH
        return cls.CRITICAL

    @classmethod
    def parse(cls, value: str) -> RiskLevel:
        """Parse a level typed by a person or sent by a provider; the error lists the valid ones."""
        try:
            return cls(str(value).strip().lower())
        except ValueError:
            valid = ", ".join(level.value for level in cls)
            raise ValueError(f"unknown risk level {value!r} (expected one of: {valid})") from None


_RANKS = {RiskLevel.LOW: 0, RiskLevel.MEDIUM: 1, RiskLevel.HIGH: 2, RiskLevel.CRITICAL: 3}

# A score derived from a level alone: the top of its band, so sorting by score keeps level order.
LEVEL_SCORES = {RiskLevel.LOW: 20, RiskLevel.MEDIUM: 50, RiskLevel.HIGH: 75, RiskLevel.CRITICAL: 100}


def derive_risk(
    score: Optional[int], level: Optional[RiskLevel]
) -> tuple[Optional[int], Optional[RiskLevel]]:
    """Fill in whichever of score and level the provider left out."""
    if score is not None and level is None:
        level = RiskLevel.for_score(score)
    elif level is not None and score is None:
        score = LEVEL_SCORES[level]
    return score, level


class Action(str, enum.Enum):
    """The response actions a connector may support."""

    FORCE_PASSWORD_RESET = "force_password_reset"  # noqa: S105 - an action name, not a secret
    REVOKE_SESSIONS = "revoke_sessions"
    DISABLE = "disable"
    #: the undo of DISABLE (Okta unsuspend, Entra accountEnabled, Workspace unsuspend, SailPoint enable)
    ENABLE = "enable"
    #: an analyst's verdict reported back to the provider's risk engine (Entra, Okta)
    CONFIRM_COMPROMISED = "confirm_compromised"
    DISMISS_RISK = "dismiss_risk"

    @property
    def label(self) -> str:
        return _ACTION_LABELS[self]

    @property
    def undo(self) -> Optional[Action]:
        """The action that reverses this one, if any (time-boxed containment needs it supported)."""
        return UNDO.get(self)


_ACTION_LABELS = {
    Action.FORCE_PASSWORD_RESET: "Force password reset",
    Action.REVOKE_SESSIONS: "Revoke sessions",
    Action.DISABLE: "Disable account",
    Action.ENABLE: "Enable account",
    Action.CONFIRM_COMPROMISED: "Confirm compromised",
    Action.DISMISS_RISK: "Dismiss risk",
}

#: action -> the action that reverses it
UNDO = {Action.DISABLE: Action.ENABLE}


@dataclass(frozen=True)
class Identity:
    """One person's identity as a provider reports it, in one shape for every provider."""

    id: str
    connector: str
    email: Optional[str] = None
    display_name: Optional[str] = None
    tenant_id: Optional[str] = None
    status: Optional[str] = None
    risk_score: Optional[int] = None
    risk_level: Optional[RiskLevel] = None
    mfa_enrolled: Optional[bool] = None
    mfa_methods: tuple[str, ...] = ()
    privileged: bool = False
    last_login_at: Optional[datetime] = None
    last_login_ip: Optional[str] = None
    last_login_country: Optional[str] = None
    provider: Optional[str] = None
    provider_id: Optional[str] = None
    roles: tuple[str, ...] = ()
    created_at: Optional[datetime] = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)

    @classmethod
    def from_fields(cls, values: dict[str, Any]) -> Identity:
        """The identity `cls(**values)` builds, for connectors building one per listed user: `values`
        names every field (checked by count: TypeError naming what is missing or unknown), copied into
        the instance without the generated constructor's keyword binding and frozen `__setattr__` per
        field (0.6 µs instead of 3). The price is memory: the attributes sit in a dict of their own,
        ~280 bytes more per identity than the constructor's (Python 3.11), so use it for identities
        handled a page at a time, not for ones kept by the thousand."""
        if len(values) != len(_IDENTITY_FIELDS):
            missing, unknown = _IDENTITY_FIELDS - values.keys(), values.keys() - _IDENTITY_FIELDS
            raise TypeError(f"Identity fields missing {sorted(missing)}, unknown {sorted(unknown)}")
        identity = object.__new__(cls)
        identity.__dict__.update(values)  # bypasses the frozen __setattr__, as dataclasses' own __init__ does
        return identity

    @property
    def name(self) -> str:
        """What to call this identity in a message: display name, else email, else id."""
        return self.display_name or self.email or self.id

    def to_dict(self, *, include_raw: bool = False) -> dict:
        """A JSON-ready dict (datetimes as ISO 8601, level as its string)."""
        data = asdict(self)
        raw = data.pop("raw")
        for key in ("last_login_at", "created_at"):
            if data[key] is not None:
                data[key] = data[key].isoformat()
        if self.risk_level is not None:
            data["risk_level"] = self.risk_level.value
        data["mfa_methods"] = list(self.mfa_methods)
        data["roles"] = list(self.roles)
        if include_raw:
            data["raw"] = dict(raw)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Identity:
        """The identity `to_dict()` described (what a store keeps); `raw` is not restored."""
        level = data.get("risk_level")
        return cls(
            id=str(data["id"]),
            connector=str(data["connector"]),
            email=data.get("email"),
            display_name=data.get("display_name"),
            tenant_id=data.get("tenant_id"),
            status=data.get("status"),
            risk_score=data.get("risk_score"),
            risk_level=RiskLevel(level) if level else None,
            mfa_enrolled=data.get("mfa_enrolled"),
            mfa_methods=tuple(data.get("mfa_methods") or ()),
            privileged=bool(data.get("privileged")),
            last_login_at=parse_datetime(data.get("last_login_at")),
            last_login_ip=data.get("last_login_ip"),
            last_login_country=data.get("last_login_country"),
            provider=data.get("provider"),
            provider_id=data.get("provider_id"),
            roles=tuple(data.get("roles") or ()),
            created_at=parse_datetime(data.get("created_at")),
        )


_IDENTITY_FIELDS = frozenset(f.name for f in fields(Identity))


@dataclass(frozen=True)
class ActionResult:
    """What a provider said about an action: done now, or queued under a task reference."""

    action: Action
    identity_id: str
    connector: str
    status: str  # "completed" or "queued"
    reference: Optional[str] = None
    message: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)

    COMPLETED = "completed"
    QUEUED = "queued"

    def to_dict(self) -> dict:
        return {
            "action": self.action.value,
            "identity_id": self.identity_id,
            "connector": self.connector,
            "status": self.status,
            "reference": self.reference,
            "message": self.message,
        }


@dataclass
class Changes:
    """What `Connector.changes_since` found: the changed identities (current state) and the next cursor.

    `identities` may repeat an identity that changed twice; `cursor` is opaque text to store and pass
    back."""

    identities: list[Identity]
    cursor: str


@dataclass(frozen=True)
class CheckResult:
    """Outcome of `Connector.check()`: reachable with working credentials, and what was seen."""

    ok: bool
    connector: str
    message: str
    request_id: Optional[str] = None


def parse_datetime(value: Any) -> Optional[datetime]:
    """Parse an ISO 8601 timestamp from an API (with `Z` or an offset); None for empty values."""
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise ValueError(f"expected an ISO 8601 timestamp, got {type(value).__name__}")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed

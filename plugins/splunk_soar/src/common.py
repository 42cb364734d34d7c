"""What every action shares: the connector built from the asset, connector errors turned into action
failures, and the identity as an action output."""

from collections.abc import Awaitable
from typing import Callable, Optional, TypeVar

from soar_sdk.action_results import ActionOutput, OutputField
from soar_sdk.exceptions import ActionFailure, AssetMisconfiguration

from connectors import (
    AuthenticationError,
    ConfigurationError,
    Connector,
    ConnectorError,
    Identity,
    RiskLevel,
    build_from_form,
)

from .asset import Asset

T = TypeVar("T")

IDENTITY_ID = "idops identity id"
RISK_LEVELS = [level.value for level in RiskLevel]
IDENTITY_ID_HELP = "Identity id, as returned by lookup, get or list identities"


def connector_name(asset: Asset) -> str:
    return asset.connector_name or asset.connector_kind


def open_connector(asset: Asset) -> Connector:
    """The asset's connector; a settings problem is an asset misconfiguration naming the setting."""
    try:
        return build_from_form(asset.connector_kind, connector_name(asset), asset.dict())
    except ConfigurationError as exc:
        raise AssetMisconfiguration(str(exc)) from None


async def with_connector(asset: Asset, work: Callable[[Connector], Awaitable[T]]) -> T:
    """Run `work` with the asset's connector; connector errors become action failures carrying the
    provider's message and request id (refused credentials: the asset is misconfigured)."""
    connector = open_connector(asset)
    try:
        async with connector:
            return await work(connector)
    except (AuthenticationError, ConfigurationError) as exc:
        raise AssetMisconfiguration(f"{exc}. Check the asset's credentials.") from None
    except ConnectorError as exc:
        raise ActionFailure(str(exc)) from None


def parse_level(value: str) -> Optional[RiskLevel]:
    """A risk level parameter ("any" or empty means no filter)."""
    if not value or value.strip().lower() == "any":
        return None
    try:
        return RiskLevel.parse(value)
    except ValueError as exc:
        raise ActionFailure(str(exc)) from None


def require(value: str, name: str) -> str:
    """A parameter that must not be blank, stripped."""
    text = (value or "").strip()
    if not text:
        raise ActionFailure(f"parameter '{name}' is required")
    return text


class IdentityOutput(ActionOutput):
    """One identity, the same fields for every provider."""

    id: str = OutputField(cef_types=[IDENTITY_ID], example_values=["idn_2f1c9a7b"], column_name="ID")
    connector: str
    email: Optional[str] = OutputField(cef_types=["email"], column_name="Email")
    display_name: Optional[str] = OutputField(cef_types=["user name"], column_name="Name")
    tenant_id: Optional[str]
    status: Optional[str] = OutputField(example_values=["active", "disabled"], column_name="Status")
    risk_score: Optional[int] = OutputField(example_values=[82], column_name="Risk score")
    risk_level: Optional[str] = OutputField(example_values=RISK_LEVELS, column_name="Risk level")
    mfa_enrolled: Optional[bool]
    mfa_methods: list[str]
    privileged: bool
    last_login_at: Optional[str]
    last_login_ip: Optional[str] = OutputField(cef_types=["ip"])
    last_login_country: Optional[str]
    provider: Optional[str]
    provider_id: Optional[str]
    roles: list[str]
    created_at: Optional[str]

    @classmethod
    def of(cls, identity: Identity) -> "IdentityOutput":
        return cls(**identity.to_dict())

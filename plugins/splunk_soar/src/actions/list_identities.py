"""list identities: stream the provider's identities with its filters, up to a limit."""

from typing import Optional

from soar_sdk.exceptions import ActionFailure
from soar_sdk.params import Param, Params

from connectors import Connector

from ..asset import Asset
from ..common import RISK_LEVELS, IdentityOutput, parse_level, with_connector

MAX_LIMIT = 1000
YES_NO = {"any": None, "yes": True, "no": False}


class ListIdentitiesParams(Params):
    risk_level: str = Param(
        description="Only identities at this risk level", required=False, value_list=["any", *RISK_LEVELS]
    )
    tenant_id: str = Param(description="Only identities of this tenant", required=False)
    privileged: str = Param(
        description="Only privileged identities (yes) or none (no)", required=False, value_list=list(YES_NO)
    )
    mfa_enrolled: str = Param(
        description="Only identities enrolled in MFA (yes) or not (no)",
        required=False,
        value_list=list(YES_NO),
    )
    provider: str = Param(
        description="Only identities from this upstream directory (HomeBase: azure_ad, okta, ...)",
        required=False,
    )
    limit: int = Param(description=f"At most this many (1-{MAX_LIMIT})", required=False, default=100)


def _yes_no(value: Optional[str], name: str) -> Optional[bool]:
    key = (value or "any").strip().lower()
    if key not in YES_NO:
        raise ActionFailure(f"parameter '{name}' must be one of: {', '.join(YES_NO)}")
    return YES_NO[key]


async def list_identities(params: ListIdentitiesParams, asset: Asset) -> list[IdentityOutput]:
    """List identities from the identity platform, filtered as the provider allows."""
    limit = 100 if params.limit is None else params.limit
    if not 1 <= limit <= MAX_LIMIT:
        raise ActionFailure(f"parameter 'limit' must be between 1 and {MAX_LIMIT}, not {limit}")
    filters = {
        "risk_level": parse_level(params.risk_level),
        "tenant_id": (params.tenant_id or "").strip() or None,
        "privileged": _yes_no(params.privileged, "privileged"),
        "mfa_enrolled": _yes_no(params.mfa_enrolled, "mfa_enrolled"),
        "provider": (params.provider or "").strip() or None,
    }

    async def work(connector: Connector) -> list[IdentityOutput]:
        found: list[IdentityOutput] = []
        async for identity in connector.list_identities(**filters):
            found.append(IdentityOutput.of(identity))
            if len(found) >= limit:
                break
        return found

    return await with_connector(asset, work)

"""lookup identity: find identities by email, name or id."""

from soar_sdk.exceptions import ActionFailure
from soar_sdk.params import Param, Params

from ..asset import Asset
from ..common import IDENTITY_ID, IdentityOutput, connector_name, require, with_connector


class LookupIdentityParams(Params):
    query: str = Param(
        description="Email address, display name (or its start) or identity id",
        primary=True,
        cef_types=["email", "user name", IDENTITY_ID],
    )
    limit: int = Param(description="At most this many matches (1-50)", required=False, default=10)


async def lookup_identity(params: LookupIdentityParams, asset: Asset) -> list[IdentityOutput]:
    """Find identities by email or name; an exact email or id match comes first."""
    query = require(params.query, "query")
    limit = 10 if params.limit is None else params.limit
    if not 1 <= limit <= 50:
        raise ActionFailure(f"parameter 'limit' must be between 1 and 50, not {limit}")
    found = await with_connector(asset, lambda connector: connector.find_identities(query, limit=limit))
    if not found:
        raise ActionFailure(f"no identity in '{connector_name(asset)}' matches '{query}'")
    return [IdentityOutput.of(identity) for identity in found]

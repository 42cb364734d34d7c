"""get identity: one identity by the provider's id."""

from soar_sdk.params import Param, Params

from ..asset import Asset
from ..common import IDENTITY_ID, IDENTITY_ID_HELP, IdentityOutput, require, with_connector


class GetIdentityParams(Params):
    identity_id: str = Param(description=IDENTITY_ID_HELP, primary=True, cef_types=[IDENTITY_ID])


async def get_identity(params: GetIdentityParams, asset: Asset) -> IdentityOutput:
    """Get one identity by its id: risk, MFA, status, last login, roles."""
    identity_id = require(params.identity_id, "identity_id")
    identity = await with_connector(asset, lambda connector: connector.get_identity(identity_id))
    return IdentityOutput.of(identity)

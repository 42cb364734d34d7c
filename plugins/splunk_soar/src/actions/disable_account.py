"""disable account: with a reason, which the provider keeps."""

from soar_sdk.params import Param, Params

from connectors import Action

from ..asset import Asset
from ..common import IDENTITY_ID, IDENTITY_ID_HELP, require
from ..response import ResponseOutput, run_action


class DisableParams(Params):
    identity_id: str = Param(description=IDENTITY_ID_HELP, primary=True, cef_types=[IDENTITY_ID])
    reason: str = Param(description="Why the account is disabled (kept by the provider)")


async def disable_account(params: DisableParams, asset: Asset) -> ResponseOutput:
    """Disable the identity's account; the reason is required and kept by the provider."""
    return await run_action(asset, Action.DISABLE, params.identity_id, require(params.reason, "reason"))

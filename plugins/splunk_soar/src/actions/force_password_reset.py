"""force password reset: the identity must choose a new password at its next sign-in."""

from connectors import Action

from ..asset import Asset
from ..response import IdentityActionParams, ResponseOutput, run_action


async def force_password_reset(params: IdentityActionParams, asset: Asset) -> ResponseOutput:
    """Make the identity choose a new password at its next sign-in."""
    return await run_action(asset, Action.FORCE_PASSWORD_RESET, params.identity_id)

"""revoke sessions: end every session of the identity."""

from connectors import Action

from ..asset import Asset
from ..response import IdentityActionParams, ResponseOutput, run_action


async def revoke_sessions(params: IdentityActionParams, asset: Asset) -> ResponseOutput:
    """End every session of the identity, so it must sign in again."""
    return await run_action(asset, Action.REVOKE_SESSIONS, params.identity_id)

"""confirm compromised: an analyst's verdict reported back to the provider's risk engine."""

from connectors import Action

from ..asset import Asset
from ..response import IdentityActionParams, ResponseOutput, run_action


async def confirm_compromised(params: IdentityActionParams, asset: Asset) -> ResponseOutput:
    """Report the analyst's verdict: the identity is compromised (Entra ID: confirmCompromised)."""
    return await run_action(asset, Action.CONFIRM_COMPROMISED, params.identity_id)

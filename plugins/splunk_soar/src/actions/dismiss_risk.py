"""dismiss risk: an analyst's verdict reported back to the provider's risk engine."""

from connectors import Action

from ..asset import Asset
from ..response import IdentityActionParams, ResponseOutput, run_action


async def dismiss_risk(params: IdentityActionParams, asset: Asset) -> ResponseOutput:
    """Report the analyst's verdict: the risk is a false positive (Entra ID: dismiss)."""
    return await run_action(asset, Action.DISMISS_RISK, params.identity_id)

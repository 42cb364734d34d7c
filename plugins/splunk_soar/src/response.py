"""force password reset, revoke sessions, disable account: the three response actions."""

from typing import Optional

from soar_sdk.action_results import ActionOutput, OutputField
from soar_sdk.params import Param, Params

from connectors import Action

from ..asset import Asset
from ..common import IDENTITY_ID, IDENTITY_ID_HELP, require, with_connector


class ResponseOutput(ActionOutput):
    """What the provider said: done now (completed) or accepted as a task (queued)."""

    action: str = OutputField(example_values=[action.value for action in Action])
    identity_id: str = OutputField(cef_types=[IDENTITY_ID])
    connector: str
    status: str = OutputField(example_values=["completed", "queued"], column_name="Status")
    reference: Optional[str] = OutputField(column_name="Reference")
    message: str


class IdentityActionParams(Params):
    identity_id: str = Param(description=IDENTITY_ID_HELP, primary=True, cef_types=[IDENTITY_ID])


class DisableParams(Params):
    identity_id: str = Param(description=IDENTITY_ID_HELP, primary=True, cef_types=[IDENTITY_ID])
    reason: str = Param(description="Why the account is disabled (kept by the provider)")


async def _run(asset: Asset, action: Action, identity_id: str, reason: str = "") -> ResponseOutput:
    result = await with_connector(
        asset, lambda connector: connector.run_action(action, require(identity_id, "identity_id"), reason)
    )
    return ResponseOutput(**result.to_dict())


async def force_password_reset(params: IdentityActionParams, asset: Asset) -> ResponseOutput:
    """Make the identity choose a new password at its next sign-in."""
    return await _run(asset, Action.FORCE_PASSWORD_RESET, params.identity_id)


async def revoke_sessions(params: IdentityActionParams, asset: Asset) -> ResponseOutput:
    """End every session of the identity, so it must sign in again."""
    return await _run(asset, Action.REVOKE_SESSIONS, params.identity_id)


async def disable_account(params: DisableParams, asset: Asset) -> ResponseOutput:
    """Disable the identity's account; the reason is required and kept by the provider."""
    return await _run(asset, Action.DISABLE, params.identity_id, require(params.reason, "reason"))

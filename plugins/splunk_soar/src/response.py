"""What the three response actions share: their output, the identity parameter, running one."""

from typing import Optional

from soar_sdk.action_results import ActionOutput, OutputField
from soar_sdk.params import Param, Params

from connectors import Action

from .asset import Asset
from .common import IDENTITY_ID, IDENTITY_ID_HELP, require, with_connector


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


async def run_action(asset: Asset, action: Action, identity_id: str, reason: str = "") -> ResponseOutput:
    result = await with_connector(
        asset, lambda connector: connector.run_action(action, require(identity_id, "identity_id"), reason)
    )
    return ResponseOutput(**result.to_dict())

"""request slack approval: the bot posts an approval card in Slack and runs the action once approved."""

from soar_sdk.exceptions import ActionFailure
from soar_sdk.params import Param, Params

from connectors import Action

from ..asset import Asset
from ..common import IDENTITY_ID, IDENTITY_ID_HELP, connector_name, require
from ..idops_api import API, ApprovalOutput, call_api


class RequestApprovalParams(Params):
    identity_id: str = Param(description=IDENTITY_ID_HELP, primary=True, cef_types=[IDENTITY_ID])
    action: str = Param(description="Response action to approve", value_list=[a.value for a in Action])
    reason: str = Param(description="Why (required to disable)", required=False)
    requested_by: str = Param(
        description="Slack user id (U...) making the request; default: the asset's idops_requested_by",
        required=False,
    )
    duration: str = Param(
        description="Time box, e.g. 15m, 4h, 3d (1 minute to 30 days): idops undoes the action that long"
        " after it ran; only where the provider can undo it. Empty: not time-boxed",
        required=False,
    )


async def request_slack_approval(params: RequestApprovalParams, asset: Asset) -> ApprovalOutput:
    """Ask for approval in Slack; the bot runs the action once a person approves (and, with `duration`,
    undoes it when the time is up). Returns the approval id."""
    requested_by = (params.requested_by or "").strip() or asset.idops_requested_by
    if not requested_by:
        raise ActionFailure("parameter 'requested_by' is required (or set the asset's idops_requested_by)")
    body: dict[str, str] = {
        "connector": connector_name(asset),
        "identity": require(params.identity_id, "identity_id"),
        "action": require(params.action, "action"),
        "reason": (params.reason or "").strip(),
        "requested_by": requested_by,
    }
    duration = (params.duration or "").strip()
    if duration:
        body["duration"] = duration
    return await call_api(asset, "POST", API, body)

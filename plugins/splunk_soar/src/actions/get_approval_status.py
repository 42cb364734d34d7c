"""get approval status: where a Slack approval stands, so a playbook can wait for the decision."""

from urllib.parse import quote

from soar_sdk.params import Param, Params

from ..asset import Asset
from ..common import require
from ..idops_api import API, APPROVAL_ID, ApprovalOutput, call_api


class ApprovalStatusParams(Params):
    approval_id: str = Param(
        description="Approval id from request slack approval", primary=True, cef_types=[APPROVAL_ID]
    )


async def get_approval_status(params: ApprovalStatusParams, asset: Asset) -> ApprovalOutput:
    """The approval's state (pending, approved, denied, expired, executed, failed, unknown: sent without an
    answer), the action's result and, for a time-boxed action that ran, its containment (status, due_at,
    revert_id)."""
    approval_id = require(params.approval_id, "approval_id")
    return await call_api(asset, "GET", f"{API}/{quote(approval_id, safe='')}")

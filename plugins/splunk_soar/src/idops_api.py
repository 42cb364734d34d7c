"""The idops bot's approvals API as the approval actions use it: `POST /api/v1/approvals` asks a person in
Slack (optionally time-boxed by `duration`), `GET /api/v1/approvals/{id}` reads the decision, the action's
result and, once a time-boxed action ran, its `containment` (status, due_at, revert_id)."""

from typing import Any, Optional, Union

from soar_sdk.action_results import ActionOutput, OutputField
from soar_sdk.exceptions import ActionFailure, AssetMisconfiguration

from connectors import Action, ConfigurationError, ConnectorError
from connectors.http import HttpClient, Response, error_class_for_status
from connectors.settings import SettingsReader

from .asset import Asset
from .common import IDENTITY_ID

APPROVAL_ID = "idops approval id"
STATUSES: list[Union[str, float, bool]] = [
    "pending",
    "approved",
    "denied",
    "expired",
    "executed",
    "failed",
    "unknown",
]
CONTAINMENT_STATUSES: list[Union[str, float, bool]] = [
    "active",
    "held",
    "reverting",
    "reverted",
    "failed",
    "unknown",
    "permanent",
]
API = "/api/v1/approvals"


class ContainmentOutput(ActionOutput):
    """A time-boxed action after it ran: idops undoes it at `due_at` (the undo is request `revert_id`)."""

    status: str = OutputField(example_values=CONTAINMENT_STATUSES, column_name="Containment")
    due_at: str = OutputField(column_name="Reverts at")
    revert_id: Optional[str] = OutputField(cef_types=[APPROVAL_ID])

    @classmethod
    def of(cls, body: Any) -> "Optional[ContainmentOutput]":
        if not isinstance(body, dict):
            return None
        revert_id = body.get("revert_id")
        return cls(
            status=str(body.get("status", "")),
            due_at=str(body.get("due_at", "")),
            revert_id=str(revert_id) if revert_id else None,
        )


class ApprovalOutput(ActionOutput):
    """An approval request as the bot reports it; `status` moves on as people decide in Slack."""

    id: str = OutputField(cef_types=[APPROVAL_ID], column_name="Approval id")
    status: str = OutputField(example_values=STATUSES, column_name="Status")
    connector: str
    identity_id: str = OutputField(cef_types=[IDENTITY_ID])
    action: str = OutputField(example_values=[action.value for action in Action], column_name="Action")
    reason: str
    requested_by: str
    expires_at: Optional[str]
    approvers: list[str]
    decided_by: Optional[str]
    decision_reason: Optional[str]
    result_status: Optional[str] = OutputField(example_values=["completed", "queued"])
    result_reference: Optional[str]
    error: Optional[str]
    note: Optional[str]
    duration_seconds: Optional[int]
    containment: Optional[ContainmentOutput]

    @classmethod
    def of(cls, body: Any, note: Optional[str] = None) -> "ApprovalOutput":
        if not isinstance(body, dict) or not isinstance(body.get("id"), str):
            raise ActionFailure("idops answered without an approval id; check the asset's idops_url")
        result = body["result"] if isinstance(body.get("result"), dict) else {}
        return cls(
            id=body["id"],
            status=str(body.get("status", "")),
            connector=str(body.get("connector", "")),
            identity_id=str(body.get("identity_id", "")),
            action=str(body.get("action", "")),
            reason=str(body.get("reason") or ""),
            requested_by=str(body.get("requested_by", "")),
            expires_at=body.get("expires_at"),
            approvers=[str(a) for a in body.get("approvers") or []],
            decided_by=body.get("decided_by"),
            decision_reason=body.get("decision_reason") or None,
            result_status=result.get("status"),
            result_reference=result.get("reference"),
            error=body.get("error"),
            note=note or body.get("warning"),
            duration_seconds=body.get("duration_seconds"),
            containment=ContainmentOutput.of(body.get("containment")),
        )


def _error_message(response: Response) -> str:
    try:
        body = response.json("idops")
    except ConnectorError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        field = body.get("field")
        if isinstance(field, str) and field and f"'{field}'" not in body["error"]:
            return f"{body['error']} (field '{field}')"  # e.g. a bad duration names only the value
        return str(body["error"])
    return f"HTTP {response.status}"


def _map_error(response: Response) -> ConnectorError:
    cls = error_class_for_status(response.status)
    return cls(  # type: ignore[no-any-return]
        f"idops refused the request: {_error_message(response)}",
        provider="idops",
        request_id=response.client_request_id,
        status=response.status,
    )


def _client(asset: Asset) -> HttpClient:
    if not asset.idops_url or not asset.idops_api_token:
        raise AssetMisconfiguration("set the asset's idops_url and idops_api_token to use Slack approvals")
    try:
        url = SettingsReader("the asset", asset.dict()).url("idops_url", example="https://idops.example.com")
    except ConfigurationError as exc:
        raise AssetMisconfiguration(str(exc)) from None
    return HttpClient(url, provider="idops", error_mapper=_map_error)


async def call_api(asset: Asset, method: str, path: str, body: Optional[dict] = None) -> ApprovalOutput:
    client = _client(asset)
    headers = {"Authorization": f"Bearer {asset.idops_api_token}"}
    try:
        response = await client.request(method, path, json_body=body, headers=headers, raise_for_status=False)
        if response.status == 409 and method == "POST":
            existing = response.json("idops")
            if isinstance(existing, dict) and isinstance(existing.get("existing"), dict):
                return ApprovalOutput.of(existing["existing"], note=_error_message(response))
        if response.status == 401:
            raise AssetMisconfiguration("idops rejected the API token; check the asset's idops_api_token")
        if not response.ok:
            raise _map_error(response)
        return ApprovalOutput.of(response.json("idops"))
    except ConnectorError as exc:
        raise ActionFailure(str(exc)) from None
    finally:
        await client.close()

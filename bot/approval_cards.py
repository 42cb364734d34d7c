"""The approval card in the approval channel, the outcome reply in its thread, and request lists.

Buttons carry only the request id (and, for *Run again*, the attempt the card shows); every string from
a provider or a person is escaped (`blocks.esc`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ConfirmObject,
    ContextBlock,
    HeaderBlock,
    SectionBlock,
)

from .approvals import ApprovalRequest, Status
from .blocks import (
    HEADER_CHARS,
    Message,
    _md,
    _plain,
    button,
    esc,
    message,
    risk_badge,
    slack_date,
    text_message,
    user_ref,
)

STATUS_LINE = {
    Status.PENDING: ":hourglass_flowing_sand: Waiting for approval",
    Status.APPROVED: ":white_check_mark: Approved, running now",
    Status.EXECUTING: ":gear: Running",
    Status.EXECUTED: ":white_check_mark: Done",
    Status.FAILED: ":x: Failed",
    Status.UNKNOWN: ":warning: Outcome unknown",
    Status.DENIED: ":no_entry: Denied",
    Status.EXPIRED: ":alarm_clock: Expired, nobody decided in time",
}


def _target_line(request: ApprovalRequest) -> str:
    target = request.target
    name = target.get("name") or target.get("email") or request.identity_id
    parts = [risk_badge(target.get("risk_score"), target.get("risk_level")), f"*{esc(name, 200)}*"]
    if target.get("email") and target.get("email") != name:
        parts.append(esc(target["email"], 200))
    where = esc(target.get("provider_label") or request.connector, 100)
    if target.get("tenant_id"):
        where += f" / {esc(target['tenant_id'], 100)}"
    parts.append(where)
    if target.get("privileged"):
        parts.append(":crown: privileged")
    return " · ".join(parts)


def approval_card(request: ApprovalRequest) -> Message:
    """The card in the approval channel; buttons only while a click can still change something."""
    target = request.target
    name = esc(target.get("name") or target.get("email") or request.identity_id, 200)
    status = STATUS_LINE[request.status]
    if request.status is Status.DENIED:
        status += f" by {user_ref(request.decided_by)}"
        if request.decision_reason:
            status += f": {esc(request.decision_reason, 1000)}"
    elif request.status is Status.EXECUTED and request.decided_at:
        status += f" (approved {slack_date(request.decided_at)})"
    elif request.status is Status.FAILED and not request.retryable:
        status = f":x: Closed without running: {esc(request.error or 'unknown error', 1000)}"
    elif request.status is Status.UNKNOWN:
        status += f": it may or may not have been done. {esc(request.outcome_check or '', 500)}"
    approvals = f"{len(request.approvers)} of {request.approvals_needed}"
    if request.approvers:
        approvals += ": " + ", ".join(user_ref(u) for u in request.approvers)
    fields = [
        f"*Action*\n{request.action.label}",
        f"*Requested by*\n{user_ref(request.requested_by)}",
        f"*Reason*\n{esc(request.reason or '-', 1500)}",
        f"*Expires*\n{slack_date(request.expires_at)}",
        f"*Approvals*\n{approvals}",
        f"*Status*\n{status}",
    ]
    blocks: list[Block] = [
        HeaderBlock(text=_plain(f"{request.action.label} request", HEADER_CHARS)),
        SectionBlock(text=_md(_target_line(request))),
        SectionBlock(fields=[_md(field) for field in fields]),
    ]
    if request.status is Status.PENDING:
        confirm = ConfirmObject(
            title="Approve this action?",
            text=_md(f"{request.action.label} for *{name}* runs as soon as enough approvers agree."),
            confirm="Approve",
            deny="Cancel",
        )
        blocks.append(
            ActionsBlock(
                elements=[
                    button("Approve", "approval:approve", request.id, style="primary", confirm=confirm),
                    button("Deny", "approval:deny", request.id, style="danger"),
                ]
            )
        )
    elif request.retryable:
        blocks.append(ActionsBlock(elements=[button("Retry", "approval:retry", request.id)]))
    elif request.outcome_unknown:
        blocks.append(ActionsBlock(elements=_unknown_buttons(request, name)))
    blocks.append(ContextBlock(elements=[_md(f"Request {esc(request.id, 100)} · {esc(request.source, 50)}")]))
    fallback = f"{request.action.label} for {name}: {STATUS_LINE[request.status].split(' ', 1)[1]}"
    return message(fallback, blocks)


def result_reply(request: ApprovalRequest) -> Message:
    """The thread reply under an approval card once its action ran: the provider's answer or error."""
    name = esc(request.target.get("name") or request.identity_id, 200)
    if request.status is Status.EXECUTED:
        result: Mapping[str, Any] = request.result or {}
        outcome = esc(result.get("status") or "done", 50)
        text = f":white_check_mark: {request.action.label} for *{name}*: {outcome}"
        if result.get("message"):
            text += f"\n> {esc(result['message'], 1500)}"
        if result.get("reference"):
            text += f"\nProvider reference: {esc(result['reference'], 200)}"
    elif request.status is Status.UNKNOWN:
        label = esc(request.target.get("provider_label") or request.connector, 100)
        text = (
            f":warning: {request.action.label} for *{name}*: outcome unknown."
            f" {esc(request.error or 'No answer came back.', 1500)}"
        )
        if request.outcome_check:
            text += f"\n{esc(request.outcome_check, 500)}"
        text += (
            f"\nidops will not send it again by itself. Check {label}: if it was not done, an approver can"
            " press *Run again* on the card (it asks to confirm, and is audited)."
        )
    else:
        text = (
            f":x: {request.action.label} for *{name}* failed: {esc(request.error or 'unknown error', 2000)}"
        )
        text += "\nAn approver can press *Retry* on the card."
    return text_message(text)


def _unknown_buttons(request: ApprovalRequest, name: str) -> list[Any]:
    """*Check again* reads the provider; *Run again* (confirmed) sends the action once more, for the
    attempt shown (a redelivered click of an older card runs nothing)."""
    label = esc(request.target.get("provider_label") or request.connector, 100)
    confirm = ConfirmObject(
        title="Run it again?",
        text=_md(
            f"{label} may already have done {request.action.label} for *{name}*: its answer was lost."
            f" Run it again only if you checked in {label} that it was not done."
        ),
        confirm="Run again",
        deny="Cancel",
    )
    return [
        button("Check again", "approval:check", request.id),
        button(
            "Run again", "approval:rerun", f"{request.id}:{request.attempts}", style="danger", confirm=confirm
        ),
    ]

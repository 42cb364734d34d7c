"""The approval card in the approval channel, the outcome reply in its thread, and request lists.

Buttons carry only the request id (and, for *Run again*, the attempt the card shows); every string from
a provider or a person is escaped (`blocks.esc`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any, Optional

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ContextBlock,
    HeaderBlock,
    SectionBlock,
)

from .approvals import ApprovalRequest, Containment, State, Status, duration_text
from .approvals.rules import Rule, who_text
from .blocks import (
    HEADER_CHARS,
    Message,
    _md,
    _plain,
    button,
    confirm_dialog,
    esc,
    esc_lines,
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


def approval_card(request: ApprovalRequest, containment: Optional[Containment] = None) -> Message:
    """The card in the approval channel; buttons only while a click can still change something.
    A time-boxed request shows its duration, then (`containment`) when it reverts and how it ended."""
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
        f"*Reason*\n{esc_lines(request.reason, 1500) if request.reason else '-'}",
        f"*Expires*\n{slack_date(request.expires_at)}",
        f"*Approvals*\n{approvals}",
        f"*Rule*\n{rule_line(request)}",
        f"*Status*\n{status}",
    ]
    timebox = containment_status(request, containment)
    if timebox:
        fields.append(f"*Time box*\n{timebox}")
    blocks: list[Block] = [
        HeaderBlock(text=_plain(f"{request.action.label} request", HEADER_CHARS)),
        SectionBlock(text=_md(_target_line(request))),
        SectionBlock(fields=[_md(field) for field in fields]),
    ]
    if request.status is Status.PENDING:
        confirm = confirm_dialog(
            title="Approve this action?",
            text=f"{request.action.label} for *{name}* runs as soon as enough approvers agree.",
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
    elif containment is not None and containment.status in DECIDABLE:
        blocks.append(containment_buttons(request, containment))
    blocks.append(ContextBlock(elements=[_md(f"Request {esc(request.id, 100)} · {esc(request.source, 50)}")]))
    fallback = f"{request.action.label} for {name}: {STATUS_LINE[request.status].split(' ', 1)[1]}"
    return message(fallback, blocks)


def rule_line(request: ApprovalRequest) -> str:
    """Which approval rule applies and who may still approve (how many more, from which groups), or
    that one person approved alone under break-glass. Groups are named, never mentioned."""
    rule = Rule.from_stored(request.rule, request.approvals_needed)
    line = esc(rule.name, 60)
    if request.break_glass_by:
        return f"{line} · :rotating_light: break-glass: approved alone by {user_ref(request.break_glass_by)}"
    missing = request.approvals_needed - len(request.approvers)
    if request.status is Status.PENDING and missing > 0:
        line += f" · {missing} more from {esc(who_text(rule), 300)}"
        if rule.break_glass:
            line += f"; or one of {esc(rule.break_glass, 40)} alone at critical risk (break-glass)"
        if request.escalation_step:
            line += (
                f" · :rotating_light: escalated ({esc(rule.escalate_to or rule.escalate_oncall or '', 40)})"
            )
    return line


def escalation_reply(request: ApprovalRequest, mention: str) -> Message:
    """The thread reply of an escalation step: `mention` (made by idops: a group or users) is asked
    to look at a request nobody has decided."""
    rule = Rule.from_stored(request.rule, request.approvals_needed)
    name = esc(request.target.get("name") or request.identity_id, 200)
    waited = (rule.escalate_after_minutes or 0) * request.escalation_step
    missing = request.approvals_needed - len(request.approvers)
    text = (
        f":rotating_light: {mention} *{request.action.label}* for *{name}* has waited {waited} min for"
        f" approval (rule {esc(rule.name, 60)}: {missing} more from {esc(who_text(rule), 300)})."
        f" It expires {slack_date(request.expires_at)}."
    )
    return text_message(text)


def result_head(request: ApprovalRequest) -> str:
    """How the thread reply of the request's outcome starts, in every idops version: how one an earlier
    idops posted (without metadata) is recognised in the thread (bot/thread_replies.py `Legacy`)."""
    name = esc(request.target.get("name") or request.identity_id, 200)
    if request.status is Status.EXECUTED:
        return f":white_check_mark: {request.action.label} for *{name}*"
    if request.status is Status.UNKNOWN:
        return f":warning: {request.action.label} for *{name}*: outcome unknown"
    return f":x: {request.action.label} for *{name}* failed"


def result_reply(request: ApprovalRequest) -> Message:
    """The thread reply under an approval card once its action ran: the provider's answer or error."""
    head = result_head(request)
    if request.status is Status.EXECUTED:
        result: Mapping[str, Any] = request.result or {}
        outcome = esc(result.get("status") or "done", 50)
        text = f"{head}: {outcome}"
        if result.get("message"):
            text += f"\n> {esc(result['message'], 1500)}"
        if result.get("reference"):
            text += f"\nProvider reference: {esc(result['reference'], 200)}"
    elif request.status is Status.UNKNOWN:
        label = esc(request.target.get("provider_label") or request.connector, 100)
        text = f"{head}. {esc(request.error or 'No answer came back.', 1500)}"
        if request.outcome_check:
            text += f"\n{esc(request.outcome_check, 500)}"
        text += (
            f"\nidops will not send it again by itself. Check {label}: if it was not done, an approver can"
            " press *Run again* on the card (it asks to confirm, and is audited)."
        )
    else:
        text = f"{head}: {esc(request.error or 'unknown error', 2000)}"
        text += "\nAn approver can press *Retry* on the card."
    return text_message(text)


def _unknown_buttons(request: ApprovalRequest, name: str) -> list[Any]:
    """*Check again* reads the provider; *Run again* (confirmed) sends the action once more, for the
    attempt shown (a redelivered click of an older card runs nothing)."""
    label = esc(request.target.get("provider_label") or request.connector, 100)
    confirm = confirm_dialog(
        title="Run it again?",
        text=f"{label} may already have done {request.action.label} for *{name}*: its answer was lost."
        f" Run it again only if you checked in {label} that it was not done.",
        confirm="Run again",
        deny="Cancel",
    )
    return [
        button("Check again", "approval:check", request.id),
        button(
            "Run again", "approval:rerun", f"{request.id}:{request.attempts}", style="danger", confirm=confirm
        ),
    ]


def containment_status(request: ApprovalRequest, item: Optional[Containment]) -> Optional[str]:
    """The card's *Time box* field: the duration, then when it reverts (each viewer's time zone) and
    how it ended; None when the request is not time-boxed."""
    if not request.duration_seconds:
        return None
    length = duration_text(request.duration_seconds)
    if item is None:
        return f":stopwatch: {length} from when it runs, then idops undoes it"
    by = f" by {user_ref(item.decided_by)}" if item.decided_by else ""
    return {
        State.ACTIVE: f":stopwatch: Reverts {slack_date(item.due_at)}" + (f" (extended{by})" if by else ""),
        State.HELD: f":warning: Revert held (due {slack_date(item.due_at)}): {esc(item.note, 500)}",
        State.REVERTING: ":gear: Reverting now",
        State.REVERTED: f":leftwards_arrow_with_hook: Reverted ({length} time box)",
        State.FAILED: ":x: The revert failed; still contained",
        State.UNKNOWN: ":warning: Revert sent, outcome unknown; idops reads it back",
        State.PERMANENT: f":lock: Made permanent{by}",
        State.GONE: f":information_source: Closed: {esc(item.note, 300)}",
    }[item.status]


def containment_reply(
    request: ApprovalRequest, item: Containment, revert: Optional[ApprovalRequest]
) -> Message:
    """The thread reply when a containment's state changes by itself: held back by risk, or the revert's
    outcome (who asked, who approved, when it ran, the provider's answer)."""
    name = esc(request.target.get("name") or request.identity_id, 200)
    if item.status is State.HELD:
        text = (
            f":warning: {user_ref(request.requested_by)} the time box of *{name}* ended, but access is not"
            f" restored: {esc(item.note, 1000)}"
        )
        return message(text, [SectionBlock(text=_md(text)), containment_buttons(request, item)])
    if item.status is State.PERMANENT:
        return text_message(f":lock: {user_ref(item.decided_by)} made the containment of *{name}* permanent.")
    if item.status is State.GONE:
        return text_message(
            f":information_source: {user_ref(request.requested_by)} the time box of *{name}* ended, and"
            f" nothing was reverted: {esc(item.note, 500)} The containment is closed."
        )
    if revert is None:
        return text_message(f"Containment of *{name}*: {item.status.value}.")
    reply = result_reply(revert)
    who = (
        f"Asked by {user_ref(revert.requested_by)}, approved by "
        + (", ".join(user_ref(u) for u in revert.approvers) or "nobody")
        + f", ran {slack_date(revert.decided_at)} (request {esc(revert.id, 60)})."
    )
    text = f"*Revert of the containment* · {reply['text']}\n{who}"
    if item.status is State.FAILED:
        text += f"\n*{name}* is still contained."
    if item.status is State.UNKNOWN:
        text = text.split("\nidops will not send it again", 1)[0] + (
            "\nidops reads it back at each sweep and never sends it again by itself; if it was not done,"
            " *Revert now* on the card sends it once more (it asks to confirm, and is audited)."
        )
    return text_message(text)


def containment_list(
    items: Sequence[tuple[Containment, ApprovalRequest]], limit: int = 30
) -> list[dict[str, Any]]:
    """Blocks listing the containments still in force and when each ends (`/idops pending`, App Home):
    at most `limit` lines and `limit + 2` blocks."""
    out: list[Block] = [SectionBlock(text=_md(f"*Active containments* ({len(items)})"))]
    for item, request in items[:limit]:
        name = esc(request.target.get("name") or request.target.get("email") or request.identity_id, 200)
        line = f"*{request.action.label}* of *{name}* · {containment_status(request, item)}"
        if request.message_channel:
            line += f" · in <#{request.message_channel}>"
        out.append(SectionBlock(text=_md(line)))
    if len(items) > limit:
        out.append(ContextBlock(elements=[_md(f"… and {len(items) - limit} more")]))
    return [block.to_dict() for block in out]


#: containment states a person can still decide about (Extend, Make permanent, Revert now)
DECIDABLE = (State.ACTIVE, State.HELD, State.FAILED, State.UNKNOWN)
#: the Extend buttons: the only lengths a click may add
EXTENSIONS = {"1h": timedelta(hours=1), "4h": timedelta(hours=4), "24h": timedelta(hours=24)}


def containment_buttons(request: ApprovalRequest, item: Containment) -> ActionsBlock:
    """Extend (1 h / 4 h / 24 h) and Make permanent (an approver other than the requester and the
    target), Revert now (the requester or a responder); the server checks each click."""
    name = esc(request.target.get("name") or request.identity_id, 200)
    undo = item.undo.label
    elements: list[Any] = []
    if item.status in (State.ACTIVE, State.HELD):
        elements += [
            button(f"Extend {length}", "containment:extend", f"{request.id}:{length}")
            for length in EXTENSIONS
        ]
    elements += [
        button(
            "Make permanent",
            "containment:permanent",
            request.id,
            confirm=confirm_dialog(
                title="Make it permanent?",
                text=f"idops will never undo this for *{name}* by itself; someone must do it by hand.",
                confirm="Make permanent",
                deny="Cancel",
            ),
        ),
        button(
            "Revert now",
            "containment:revert",
            request.id,
            style="danger",
            confirm=confirm_dialog(
                title="Revert now?",
                text=f"Runs *{undo}* for *{name}* now, restoring access.",
                confirm="Revert now",
                deny="Cancel",
            ),
        ),
    ]
    return ActionsBlock(elements=elements)


def reminder_head(request: ApprovalRequest, item: Containment) -> str:
    """How the reminder before `item`'s end starts, in every idops version: how a reminder an earlier
    idops posted (without metadata) is recognised in the thread (bot/thread_replies.py `Legacy`)."""
    name = esc(request.target.get("name") or request.identity_id, 200)
    return (
        f":alarm_clock: {user_ref(request.requested_by)} the containment of *{name}* ends"
        f" {slack_date(item.due_at)}"
    )


def reminder(request: ApprovalRequest, item: Containment) -> Message:
    """The thread reply before the end, mentioning the requester, with the decision buttons."""
    text = (
        f"{reminder_head(request, item)}: then idops runs *{item.undo.label}*. Extend it, make it permanent"
        " or revert it now; if nobody does, access is restored at the end."
    )
    blocks: list[Block] = [SectionBlock(text=_md(text)), containment_buttons(request, item)]
    return message(text, blocks)


def decision_reply(request: ApprovalRequest, item: Containment, user: str, length: str = "") -> Message:
    """The thread reply after Extend or Make permanent."""
    name = esc(request.target.get("name") or request.identity_id, 200)
    if item.status is State.PERMANENT:
        return text_message(f":lock: {user_ref(user)} made the containment of *{name}* permanent.")
    return text_message(
        f":stopwatch: {user_ref(user)} extended the containment of *{name}* by {esc(length, 10)}:"
        f" it now ends {slack_date(item.due_at)}."
    )

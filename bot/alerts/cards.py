"""Block Kit for alerts: the alert card (built from its stored row), thread replies and notices.

Every provider string goes through `bot.blocks.esc` (escape + length cut); the identity fields reuse
the lookup card's section so both cards show an identity the same way.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, Optional

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    HeaderBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)

from connectors import Action, Identity, RiskLevel

from ..blocks import (
    MAX_LIST,
    Message,
    button,
    confirm_dialog,
    esc,
    identity_card,
    identity_list,
    message,
    mrkdwn,
    request_buttons,
    slack_date,
    user_ref,
)
from ..slack_text import one_line, truncate

LEVEL_TITLES = {
    RiskLevel.CRITICAL: ":red_circle: Critical risk",
    RiskLevel.HIGH: ":large_orange_circle: High risk",
    RiskLevel.MEDIUM: ":large_yellow_circle: Medium risk",
    RiskLevel.LOW: ":large_green_circle: Low risk",
}


def alert_name(alert: Mapping[str, Any]) -> str:
    """The identity's name as the alert row keeps it (unescaped)."""
    return Identity.from_dict(json.loads(alert["identity"])).name


def _md(text: str) -> MarkdownTextObject:
    return mrkdwn(text, 3000)


def _when(epoch: Optional[float]) -> str:
    return slack_date(datetime.fromtimestamp(epoch, timezone.utc) if epoch is not None else None)


def change_text(
    from_score: Optional[int], from_level: Optional[str], score: Optional[int], level: Optional[str]
) -> str:
    """'34 → 82, medium → critical'; just the new values when nothing was known before."""
    shown = "?" if score is None else str(score)
    if from_level is None:
        return f"{shown}, {level} (first seen)"
    before = "?" if from_score is None else str(from_score)
    if from_level == level:
        return f"{before} → {shown}, {level}"
    return f"{before} → {shown}, {from_level} → {level}"


def mention_text(group: Optional[str]) -> str:
    """A user group mention (`S…` id from config), the only markup idops itself adds to alerts."""
    return f"<!subteam^{group}>" if group else ""


def alert_card(alert: Mapping[str, Any]) -> Message:
    """The card for one stored alert row: what changed, who it is, and what can be done now."""
    identity = Identity.from_dict(json.loads(alert["identity"]))
    level = RiskLevel(alert["level"])
    resolved = alert["status"] == "resolved"
    source = f"{alert['connector_label']} ({alert['connector']})"
    title = f"Resolved: {identity.name}" if resolved else f"{LEVEL_TITLES[level]}: {identity.name}"
    change = change_text(alert["from_score"], alert["from_level"], alert["score"], alert["level"])
    headline = f"*{esc(change, 200)}*"
    if resolved and alert["gone"]:
        shown = f"{'?' if alert['score'] is None else alert['score']}, {alert['level']}"
        headline = (
            f":white_check_mark: Resolved {_when(alert['resolved_at'])}: {esc(gone_text(source), 300)}"
            f" (last seen at *{esc(shown, 100)}*)"
        )
    elif resolved:
        headline = f":white_check_mark: Resolved {_when(alert['resolved_at'])}, now *{esc(change, 200)}*"
    elif alert["mention"]:
        headline += f" {mention_text(alert['mention'])}"
    lookup = identity_card(identity, source=source, actions=())
    fields = [block for block in lookup["blocks"] if block["type"] == "section" and "fields" in block]
    blocks: list[Any] = [
        HeaderBlock(text=PlainTextObject(text=truncate(one_line(title), 150), emoji=True)).to_dict(),
        SectionBlock(text=_md(headline)).to_dict(),
        *fields,
    ]
    status = [f"Alert {esc(alert['id'], 64)}"]
    if alert["acked_by"]:
        status.append(f"acknowledged by {user_ref(alert['acked_by'])} {_when(alert['acked_at'])}")
    if alert["snoozed_until"] and not resolved:
        status.append(f"snoozed by {user_ref(alert['snoozed_by'])} until {_when(alert['snoozed_until'])}")
    blocks.append(ContextBlock(elements=[_md(" · ".join(status))]).to_dict())
    auto = json.loads(alert.get("auto") or "null")
    if auto:
        blocks.append(SectionBlock(text=_md(auto_text(auto))).to_dict())
    elements = [] if resolved else alert_buttons(alert, identity)
    if auto and can_undo(auto):
        elements.append(undo_button(auto, identity))
    if elements:
        blocks.append(ActionsBlock(elements=elements).to_dict())
    prefix = "Resolved" if resolved else f"{level.value.title()} risk"
    why = gone_text(source) if resolved and alert["gone"] else change
    fallback = f"{prefix}: {esc(identity.name, 200)} ({esc(why, 300)})"
    if alert["mention"] and not resolved:
        fallback = f"{mention_text(alert['mention'])} {fallback}"
    return {"text": fallback, "blocks": blocks}


def alert_buttons(alert: Mapping[str, Any], identity: Identity) -> list[ButtonElement]:
    """An open alert's buttons: the provider's request buttons, then Acknowledge and Snooze while they
    apply (on its card, and on its line when a digest's *List them* pages through it)."""
    actions: Iterable[Action] = (Action(a) for a in json.loads(alert["actions"]))
    buttons: list[ButtonElement] = request_buttons(identity, actions)
    if not alert["acked_by"]:
        buttons.append(button("Acknowledge", "alert:ack", alert["id"], style="primary"))
    if not alert["snoozed_until"]:
        buttons.append(
            button(
                "Snooze",
                "alert:snooze",
                alert["id"],
                confirm=confirm_dialog(
                    title="Snooze this identity?",
                    text="No new alerts or notifications for this identity for a while.",
                    confirm="Snooze",
                    deny="Cancel",
                ),
            )
        )
    return buttons


def auto_text(auto: Mapping[str, Any]) -> str:
    """The card's line about what an auto-containment rule ran (bot/alerts/auto.py), and its undo."""
    label = Action(auto["action"]).label
    rule = esc(auto["rule"], 64)
    said = esc(auto.get("message") or "", 500)
    status = auto.get("status")
    text = {
        "executed": f":shield: Auto-containment (rule `{rule}`) ran *{label}*: {said}",
        "failed": f":x: Auto-containment (rule `{rule}`): *{label}* failed: {said}",
        "unknown": f":warning: Auto-containment (rule `{rule}`): *{label}* sent, outcome unknown; never"
        " sent again by idops",
    }.get(str(status), f":gear: Auto-containment (rule `{rule}`) is running *{label}*")
    undo_status = auto.get("undo_status")
    if undo_status:
        who = user_ref(auto["undo_by"])
        undone = esc(auto.get("undo_message") or "", 300)
        text += {
            "executed": f"\n:leftwards_arrow_with_hook: Undone by {who}: {undone}",
            "failed": f"\n:x: The undo by {who} failed: {undone}",
            "unknown": f"\n:warning: The undo by {who} was sent, outcome unknown",
        }.get(str(undo_status), f"\n:gear: Being undone by {who}")
    return text


def can_undo(auto: Mapping[str, Any]) -> bool:
    """The automatic action ran, the provider has its undo, and nobody undid it yet."""
    return bool(auto.get("undo")) and auto.get("status") == "executed" and not auto.get("undo_id")


def undo_button(auto: Mapping[str, Any], identity: Identity) -> ButtonElement:
    undo = Action(auto["undo"]).label
    return button(
        "Undo",
        "auto:undo",
        str(auto["request_id"]),
        confirm=confirm_dialog(
            title="Undo the automatic action?",
            text=f"Runs *{undo}* for *{esc(identity.name, 200)}* now (audited, in your name).",
            confirm="Undo",
            deny="Cancel",
        ),
    )


def escalation_reply(change: str, mention: Optional[str]) -> Message:
    """The thread reply that re-notifies on escalation (`change` is idops' own text, escaped anyway)."""
    text = f":arrow_up: Escalated: *{esc(change, 200)}*"
    if mention:
        text = f"{mention_text(mention)} {text}"
    return message(text, [SectionBlock(text=_md(text))])


def resolve_reply(change: str) -> Message:
    text = f":white_check_mark: Resolved: *{esc(change, 200)}*"
    return message(text, [SectionBlock(text=_md(text))])


def gone_text(source: str) -> str:
    """Why an alert resolved without a risk change: the identity was deleted at the provider."""
    return f"no longer reported by {source}"


def gone_reply(source: str) -> Message:
    text = f":white_check_mark: Resolved: {esc(gone_text(source), 300)}"
    return message(text, [SectionBlock(text=_md(text))])


def levels_phrase(levels: Sequence[RiskLevel]) -> str:
    """'high or critical' from the configured alerting levels, lowest first."""
    names = [level.value for level in sorted(levels, key=lambda lvl: lvl.rank)]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def baseline_summary(source: str, count: int, levels: Sequence[RiskLevel], scope: str) -> Message:
    """The one message a first sweep posts instead of a flood of cards; button lists them."""
    noun = "identity is" if count == 1 else "identities are"
    text = (
        f":clipboard: First sweep of {esc(source, 200)}: *{count} {noun} {levels_phrase(levels)}*. "
        "From now on, each identity that turns that risky gets its own alert."
    )
    blocks: list[Block] = [SectionBlock(text=_md(text))]
    if count:
        blocks.append(ActionsBlock(elements=[button("List them", "alert:list", scope)]))
    return message(text, blocks)


def unrated_notice(source: str) -> Message:
    """A first sweep that found no risk level at all: say so, instead of a reassuring zero."""
    text = (
        f":grey_question: {esc(source, 200)} reports no risk score for any identity, so it can raise no"
        " risk alerts. For SailPoint, set the connector's `risk_attribute`."
    )
    return message(text, [SectionBlock(text=_md(text))])


def outage_notice(source: str, error: str) -> Message:
    text = (
        f":warning: {esc(source, 200)} is failing: {esc(error, 1500)}\n"
        "Its risk alerts are paused; idops says so once more when it recovers."
    )
    return message(text, [SectionBlock(text=_md(text))])


def recovery_notice(source: str) -> Message:
    text = f":white_check_mark: {esc(source, 200)} answers again; its risk alerts have resumed."
    return message(text, [SectionBlock(text=_md(text))])


def stored_identity(row: Mapping[str, Any]) -> Identity:
    """The `Identity` an `alert_identities` row describes (name, email, tenant and risk only)."""
    return Identity(
        id=row["identity_id"],
        connector=row["connector"],
        display_name=row["name"],
        email=row["email"],
        tenant_id=row["tenant_id"],
        risk_score=row["score"],
        risk_level=RiskLevel(row["level"]),
    )


def risky_list(
    source: str, rows: Sequence[Mapping[str, Any]], total: int, levels: Sequence[RiskLevel]
) -> Message:
    """The answer to "List them": stored identities at alerting levels, riskiest first, each with Show."""
    matches = [(stored_identity(row), source) for row in rows]
    noun = "identity" if total == 1 else "identities"
    title = f"*{total} {noun} {levels_phrase(levels)}* in {esc(source, 200)}"
    shown = min(len(matches), MAX_LIST)
    note = f"… and {total - shown} more; riskiest shown first." if total > shown else ""
    return identity_list(title, matches, note=note)

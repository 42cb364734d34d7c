"""Block Kit builders for every message and view idops sends, built with slack_sdk.models so they validate.

Each builder returns `{"text": ..., "blocks": [...]}` (splat it into `chat_postMessage`, `respond`, ...)
or a view dict. Every string that came from a provider or a person goes through `esc()`, which escapes
`&`, `<`, `>`, keeps it on one line and cuts it to a length Block Kit accepts; the `text` fallback is
escaped the same way. A multi-line free text (a requester's reason) goes through `esc_lines()` instead:
its lines kept, each quoted (`bot/slack_text.py` states the line rule).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Optional

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    InputBlock,
    MarkdownTextObject,
    Option,
    PlainTextInputElement,
    PlainTextObject,
    SectionBlock,
    StaticSelectElement,
)
from slack_sdk.models.views import View

from connectors import Action, Identity, RiskLevel

from .action_names import TABLE
from .approvals import ApprovalRequest
from .slack_text import one_line, quoted, truncate

Message = dict[str, Any]

RISK_EMOJI = {
    RiskLevel.CRITICAL: ":red_circle:",
    RiskLevel.HIGH: ":large_orange_circle:",
    RiskLevel.MEDIUM: ":large_yellow_circle:",
    RiskLevel.LOW: ":large_green_circle:",
}
UNKNOWN_RISK = ":white_circle:"


# Block Kit limits (https://docs.slack.dev/reference/block-kit/blocks)
FIELD_CHARS = 2000
TEXT_CHARS = 3000
HEADER_CHARS = 150
BUTTON_TEXT_CHARS = 75
FALLBACK_CHARS = 3000
MAX_MESSAGE_BLOCKS = 50  # Slack refuses a whole message with more (a view: 100)
MAX_LIST = 15  # identities per list message: 15 sections + header/context/actions stays under 50 blocks

# Slack user and group ids as Slack formats them; anything else in a user field is shown as text.
_SLACK_ID_PREFIXES = ("U", "W")


def esc(text: Optional[object], limit: int = TEXT_CHARS) -> str:
    """Escape untrusted text for mrkdwn, on one line (`slack_text.one_line`: line breaks and other
    control characters become spaces), and cut it to `limit` (escaping first, so entities count)."""
    return truncate(one_line(text), limit)


def esc_lines(text: Optional[object], limit: int = TEXT_CHARS) -> str:
    """Untrusted free text meant to be multi-line (a reason): its lines kept, each a block quote
    (`slack_text.quoted`), cut to `limit`."""
    return truncate(quoted(text), limit)


def user_ref(user: Optional[str]) -> str:
    """A mention for a Slack user id, or the escaped text for anything else (e.g. a SOAR requester)."""
    if user and user[:1] in _SLACK_ID_PREFIXES and user.isalnum() and user.isupper():
        return f"<@{user}>"
    return esc(user or "someone", 200)


def slack_date(when: Optional[datetime], fallback_format: str = "%Y-%m-%d %H:%M UTC") -> str:
    """A Slack date token shown in the reader's time zone, with a UTC fallback."""
    if when is None:
        return "never"
    return f"<!date^{int(when.timestamp())}^{{date_short_pretty}} {{time}}|{when:{fallback_format}}>"


def risk_badge(score: Optional[int], level: Optional[RiskLevel | str]) -> str:
    """Emoji by level, score and level name: the first thing a reader sees."""
    parsed = _level(level)
    emoji = RISK_EMOJI.get(parsed, UNKNOWN_RISK) if parsed else UNKNOWN_RISK
    shown_score = "?" if score is None else str(score)
    return f"{emoji} *{shown_score}* {parsed.value if parsed else 'unknown'}"


def _level(level: Optional[RiskLevel | str]) -> Optional[RiskLevel]:
    if level is None or isinstance(level, RiskLevel):
        return level
    try:
        return RiskLevel.parse(level)
    except ValueError:
        return None


def message(text: str, blocks: Sequence[Block] = ()) -> Message:
    """A message payload: `text` (already escaped) as fallback and the blocks as validated dicts."""
    out: Message = {"text": truncate(text, FALLBACK_CHARS)}
    if blocks:
        out["blocks"] = [block.to_dict() for block in blocks]
    return out


def mrkdwn(text: str, limit: int = FIELD_CHARS) -> MarkdownTextObject:
    """Every mrkdwn text object idops sends: cut to `limit`, and `verbatim`, so Slack does no automatic
    parsing of its own: a bare URL, `#channel` name or `@name` in a provider's or a person's text stays
    text (escaping stops `<…>` markup; only verbatim stops auto-links). idops' own `<@U…>`, `<#C…>`,
    `<!date^…>` and `<!subteam^…>` still render."""
    return MarkdownTextObject(text=truncate(text, limit), verbatim=True)


def text_message(text: str) -> Message:
    """A plain mrkdwn reply (`text` already escaped), as one section so it renders like the cards."""
    return message(text, [SectionBlock(text=mrkdwn(text, TEXT_CHARS))])


def _md(text: str) -> MarkdownTextObject:
    return mrkdwn(text, FIELD_CHARS)


def _plain(text: str, limit: int) -> PlainTextObject:
    return PlainTextObject(text=truncate(text, limit), emoji=True)


def button(
    text: str,
    action_id: str,
    value: str,
    *,
    style: Optional[str] = None,
    confirm: Optional[ConfirmObject] = None,
) -> ButtonElement:
    """The one button builder every card uses (label trimmed to Slack's limit)."""
    return ButtonElement(
        text=_plain(text, BUTTON_TEXT_CHARS), action_id=action_id, value=value, style=style, confirm=confirm
    )


def confirm_dialog(title: str, text: str, confirm: str, deny: str = "Cancel") -> ConfirmObject:
    """A button's confirm dialog, every part cut to Slack's limits (title 100, text 300, buttons 30):
    a text naming an identity must not make the whole message one Slack refuses (or slack_sdk raises on).
    `text` is mrkdwn, untrusted parts already escaped."""
    return ConfirmObject(
        title=_plain(title, 100), text=mrkdwn(text, 300), confirm=_plain(confirm, 30), deny=_plain(deny, 30)
    )


def identity_ref(identity: Identity) -> str:
    """The `<connector>:<identity id>` value that request buttons carry (see docs/architecture.md)."""
    return f"{identity.connector}:{identity.id}"


def split_ref(value: str) -> Optional[tuple[str, str]]:
    """(connector, identity id) from what `identity_ref` made; None when malformed."""
    connector, sep, identity_id = (value or "").partition(":")
    return (connector, identity_id) if sep and connector and identity_id else None


def request_buttons(identity: Identity, actions: Iterable[Action]) -> list[ButtonElement]:
    """One `request:<action>` button per action the provider supports (its `capabilities`), in the
    order of `bot.action_names.TABLE`."""
    wanted = set(actions)
    return [
        button(
            row.action.label,
            f"request:{row.action.value}",
            identity_ref(identity),
            style="danger" if row.danger else None,
        )
        for row in TABLE
        if row.action in wanted
    ]


def _summary_line(identity: Identity, source: str) -> str:
    """One mrkdwn line: risk, name, email, where it lives."""
    parts = [risk_badge(identity.risk_score, identity.risk_level), f"*{esc(identity.name, 200)}*"]
    if identity.email and identity.email != identity.name:
        parts.append(esc(identity.email, 200))
    where = esc(source, 100) + (f" / {esc(identity.tenant_id, 100)}" if identity.tenant_id else "")
    parts.append(where)
    if identity.privileged:
        parts.append(":crown: privileged")
    if identity.status and identity.status.lower() not in ("active", "enabled"):
        parts.append(f"_{esc(identity.status, 50)}_")
    return " · ".join(parts)


def identity_card(identity: Identity, *, source: str, actions: Iterable[Action]) -> Message:
    """The lookup answer: who it is, risk at a glance, MFA, privilege, last login, roles, action buttons.

    `source` names the connector ("HomeBase (hld)"); `actions` are the ones the provider supports.
    """
    mfa = (
        ":warning: not enrolled"
        if identity.mfa_enrolled is False
        else ("enrolled" if identity.mfa_enrolled else "unknown")
    )
    if identity.mfa_methods:
        mfa += ": " + ", ".join(esc(m, 50) for m in identity.mfa_methods)
    login_parts = [slack_date(identity.last_login_at)]
    if identity.last_login_ip:
        login_parts.append(esc(identity.last_login_ip, 100))
    if identity.last_login_country:
        login_parts.append(esc(identity.last_login_country, 50))
    provider = esc(source, 200)
    if identity.provider:
        provider += f" via {esc(identity.provider, 100)}"
    if identity.tenant_id:
        provider += f"\ntenant {esc(identity.tenant_id, 200)}"
    fields = [
        f"*Risk*\n{risk_badge(identity.risk_score, identity.risk_level)}",
        f"*Status*\n{esc(identity.status or 'unknown', 200)}",
        f"*Email*\n{esc(identity.email or '-', 500)}",
        f"*Provider*\n{provider}",
        f"*MFA*\n{mfa}",
        f"*Privileged*\n{':crown: yes' if identity.privileged else 'no'}",
        f"*Last login*\n{' · '.join(login_parts)}",
        f"*Roles*\n{esc(', '.join(identity.roles) or '-', 1000)}",
        f"*ID*\n{esc(identity.id, 500)}",
    ]
    blocks: list[Block] = [
        HeaderBlock(text=_plain(one_line(identity.name), HEADER_CHARS)),
        SectionBlock(fields=[_md(field) for field in fields]),
    ]
    buttons = request_buttons(identity, actions)
    if buttons:
        blocks.append(ActionsBlock(elements=buttons))
    else:
        blocks.append(ContextBlock(elements=[_md(f"{esc(source, 200)} offers no response actions.")]))
    fallback = (
        f"{esc(identity.name, 200)}: risk {identity.risk_score if identity.risk_score is not None else '?'}"
    )
    if identity.risk_level:
        fallback += f" ({identity.risk_level.value})"
    return message(fallback, blocks)


def identity_list(
    title: str,
    matches: Sequence[tuple[Identity, str]],
    *,
    row_button: Optional[tuple[str, str]] = ("Show", "identity:show"),
    note: str = "",
    more: Optional[tuple[str, str]] = None,
) -> Message:
    """Several identities, one line each with a button (label, action_id) carrying `connector:id`.

    `title` and `note` are trusted mrkdwn made by idops; `more` adds a paging button (label, value)
    with action_id `risky:page`.
    """
    blocks: list[Block] = [SectionBlock(text=_md(title))]
    for identity, source in matches[:MAX_LIST]:
        accessory = button(row_button[0], row_button[1], identity_ref(identity)) if row_button else None
        blocks.append(SectionBlock(text=_md(_summary_line(identity, source)), accessory=accessory))
    if note:
        blocks.append(ContextBlock(elements=[_md(note)]))
    if more:
        blocks.append(ActionsBlock(elements=[button(more[0], "risky:page", more[1])]))
    lines = [title] + [
        f"{esc(identity.name, 100)} ({identity.risk_score if identity.risk_score is not None else '?'})"
        for identity, _ in matches[:MAX_LIST]
    ]
    return message("\n".join(lines), blocks)


def page_value(level: Optional[RiskLevel], tenant: Optional[str], offset: int) -> str:
    """What the `risky:page` button carries: the query and where the next page starts."""
    return json.dumps({"level": level.value if level else None, "tenant": tenant, "offset": offset})[:2000]


def approval_line(request: ApprovalRequest) -> str:
    """One mrkdwn line for lists of requests (`/idops pending`, App Home)."""
    target = request.target
    name = esc(target.get("name") or target.get("email") or request.identity_id, 200)
    line = (
        f"*{request.action.label}* for *{name}* "
        f"({risk_badge(target.get('risk_score'), target.get('risk_level'))})"
        f" · by {user_ref(request.requested_by)} · {len(request.approvers)} of {request.approvals_needed}"
        f" · expires {slack_date(request.expires_at)}"
    )
    if request.message_channel:
        line += f" · in <#{request.message_channel}>"
    return line


def approval_list(title: str, requests: Sequence[ApprovalRequest], *, empty: str, limit: int = 40) -> Message:
    """A list of pending requests (each line links to where its card is), at most `limit` lines and
    `limit + 2` blocks."""
    if not requests:
        return text_message(empty)
    blocks: list[Block] = [SectionBlock(text=_md(title))]
    blocks += [SectionBlock(text=_md(approval_line(r))) for r in requests[:limit]]
    if len(requests) > limit:
        blocks.append(ContextBlock(elements=[_md(f"… and {len(requests) - limit} more")]))
    return message(title + f" ({len(requests)})", blocks)


def _audit_line(row: Mapping[str, Any]) -> str:
    at = row.get("at")
    try:
        when = slack_date(datetime.fromisoformat(at)) if isinstance(at, str) else "?"
    except ValueError:
        when = esc(at, 40)
    line = f"{when} · *{esc(row.get('event'), 50)}*"
    if row.get("action"):
        try:
            line += f" {Action(row['action']).label}"
        except ValueError:
            line += f" {esc(row['action'], 50)}"
    line += f" by {user_ref(row.get('actor'))}"
    detail = row.get("detail")
    if not isinstance(detail, Mapping):
        detail = {}
    for key in ("reason", "rule", "error"):
        if detail.get(key):
            line += f" · {key}: {esc(detail[key], 300)}"
    if row.get("request_id"):
        line += f" · {esc(row['request_id'], 60)}"
    return line


def audit_list(title: str, rows: Sequence[Mapping[str, Any]]) -> Message:
    """Audit rows about one identity, newest first, one line each (`title` is trusted mrkdwn)."""
    if not rows:
        return text_message(title + "\nNo audit entries yet.")
    blocks: list[Block] = [SectionBlock(text=_md(title))]
    chunk: list[str] = []
    for line in (_audit_line(row) for row in rows[:40]):
        if chunk and sum(len(x) + 1 for x in chunk) + len(line) > FIELD_CHARS - 10:
            blocks.append(SectionBlock(text=_md("\n".join(chunk))))
            chunk = []
        chunk.append(line)
    blocks.append(SectionBlock(text=_md("\n".join(chunk))))
    return message(title, blocks)


def _reason_form(callback_id: str, metadata: str, title: str, submit: str, prompt: str, label: str) -> dict:
    """A modal with one required multi-line `reason` input (block and action id `reason`)."""
    view = View(
        type="modal",
        callback_id=callback_id,
        private_metadata=metadata[:3000],
        title=_plain(title, 24),
        submit=_plain(submit, 24),
        close=_plain("Cancel", 24),
        blocks=[
            SectionBlock(text=_md(prompt)),
            InputBlock(
                block_id="reason",
                label=_plain(label, 2000),
                element=PlainTextInputElement(action_id="reason", multiline=True, max_length=1000),
            ),
        ],
    )
    return view.to_dict()


#: the request form's duration choice (value -> label); "never" is not time-boxed
FORM_DURATIONS = {"never": "Until someone reverts it", "1h": "1 h", "4h": "4 h", "24h": "24 h", "72h": "72 h"}


def reason_modal(action: Action, who: str, metadata: str, *, durations: bool = False) -> dict[str, Any]:
    """Modal that collects the reason a request needs (disable, enable), callback_id `request:reason`;
    with `durations` (the provider can undo it) also how long it lasts (block and action id `duration`).

    `metadata` (private_metadata) says what to request; the submit handler re-reads the identity.
    """
    prompt = f"{action.label} for *{esc(who, 500)}* needs a reason for the approvers."
    view = _reason_form("request:reason", metadata, action.label, "Request", prompt, "Reason")
    if durations:
        options = [Option(value=value, label=label) for value, label in FORM_DURATIONS.items()]
        select = StaticSelectElement(action_id="duration", options=options, initial_option=options[0])
        choice = InputBlock(block_id="duration", label=_plain("Lasts", 2000), element=select, optional=True)
        view["blocks"].append(choice.to_dict())
    return view


def deny_modal(request: ApprovalRequest) -> dict[str, Any]:
    """Modal asking why a request is denied, callback_id `approval:deny`, private_metadata = request id."""
    name = esc(request.target.get("name") or request.identity_id, 500)
    prompt = f"Deny *{request.action.label}* for *{name}*?"
    return _reason_form("approval:deny", request.id, "Deny request", "Deny", prompt, "Why?")


def info_modal(title: str, content: Message) -> dict[str, Any]:
    """A modal showing a message's blocks (App Home has no conversation to answer in)."""
    blocks = content.get("blocks") or text_message(content["text"])["blocks"]
    return View(type="modal", title=_plain(title, 24), close=_plain("Close", 24), blocks=blocks).to_dict()


def home_notice(text: str) -> dict[str, Any]:
    """The App Home tab with only a notice (`text` is trusted mrkdwn), e.g. for people outside idops."""
    return View(
        type="home", blocks=[HeaderBlock(text=_plain("idops", HEADER_CHARS)), SectionBlock(text=_md(text))]
    ).to_dict()


def home_view(
    counts: Mapping[RiskLevel, str],
    riskiest: Sequence[tuple[Identity, str]],
    waiting: Sequence[ApprovalRequest],
    *,
    note: str = "",
) -> dict[str, Any]:
    """The App Home tab: counts by risk level, the riskiest identities, approvals waiting on the viewer."""
    order = (RiskLevel.CRITICAL, RiskLevel.HIGH, RiskLevel.MEDIUM, RiskLevel.LOW)
    blocks: list[Block] = [
        HeaderBlock(text=_plain("idops", HEADER_CHARS)),
        SectionBlock(
            fields=[
                _md(f"{RISK_EMOJI[level]} *{level.value.title()}*\n{counts.get(level, '0')}")
                for level in order
            ]
        ),
    ]
    if note:
        blocks.append(ContextBlock(elements=[_md(note)]))
    blocks += [DividerBlock(), SectionBlock(text=_md("*Riskiest identities*"))]
    if riskiest:
        for identity, source in riskiest[:10]:
            blocks.append(
                SectionBlock(
                    text=_md(_summary_line(identity, source)),
                    accessory=button("Show", "identity:show", identity_ref(identity)),
                )
            )
    else:
        blocks.append(ContextBlock(elements=[_md("No identities at high or critical risk.")]))
    blocks += [DividerBlock(), SectionBlock(text=_md("*Waiting on your approval*"))]
    if waiting:
        blocks += [SectionBlock(text=_md(approval_line(r))) for r in waiting[:20]]
    else:
        blocks.append(ContextBlock(elements=[_md("Nothing is waiting on you.")]))
    return View(type="home", blocks=blocks).to_dict()

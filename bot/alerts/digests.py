"""Alert storms: fold a channel's backlog of cards into digest messages, and page through a digest.

Slack takes about one message a second per channel, so 1,000 identities turning risky in one sweep would
take 17 minutes as cards. When more than `[alerts] fold_after` cards wait for one channel, the sender
folds every waiting card that was never tried (`attempts = 0`: certainly not in Slack) into digests of up
to `DIGEST_SIZE` identities, in one transaction: the first waiting row of each group becomes the digest's
outbox row (kind `digest`, so it keeps that row's place in the channel's order), the others turn
`folded`, and each alert records the digest (`alerts.digest` = that row's id). The digest is then
delivered like any row: claimed, looked for in the channel by its metadata before a second try.

A digest is drawn from its alerts' current state whenever it is posted or updated: counts by level, one
line per identity with its level, and a *List them* button (`alert:digest`, value `<digest>:<offset>`)
that pages through them with their buttons (`alert:digest:page` for the next pages). A folded alert
keeps its own row and rules: escalating posts its own card (with the escalation in its thread); a
quiet change, an acknowledgement, a snooze or a resolve redraws the digest instead. When more than
`fold_after` escalations of folded alerts wait (a second recalibration), they are folded the same way
per digest: one `escalations` row (payload: the digest and each alert's change) redraws the digest and
posts one broadcast reply in its thread naming them all, instead of a card and a reply each.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Optional

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
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

from connectors import Identity, RiskLevel

from ..blocks import Message, button, esc, message, mrkdwn, risk_badge, text_message, user_ref
from ..slack_text import one_line, truncate
from ..store import Store
from . import cards

if TYPE_CHECKING:
    from ..services import Bot
    from .detector import Detector

DIGEST_SIZE = 100  # identities per digest message (lines packed into sections stay under 50 blocks)
PAGE_SIZE = 10  # identities per *List them* page: a section and its buttons each, under 50 blocks
SECTION_CHARS = 2900  # a section's text is cut at 3000 characters
LINE_NAME_CHARS = 80
# the kinds a folded alert's later rows may be absorbed by a digest redraw (escalations get a card)
REDRAWN = ("refresh", "resolve")
ALL = 2**62  # LIMIT of "every row": SQLite has no LIMIT ALL, PostgreSQL no LIMIT -1
_RANK = "CASE level WHEN 'critical' THEN 3 WHEN 'high' THEN 2 WHEN 'medium' THEN 1 ELSE 0 END"


def fold(db: Store, channel: str, threshold: int, size: int = DIGEST_SIZE) -> int:
    """Fold `channel`'s waiting, never-tried cards into digests when more than `threshold` wait.
    Returns how many cards were folded (0: not a storm)."""
    with db.atomic():
        rows = db.execute(
            "SELECT id, alert_id FROM alert_outbox WHERE status = 'pending' AND channel = ?"
            " AND kind = 'alert' AND attempts = 0 ORDER BY id",
            [channel],
        ).fetchall()
        if not threshold or len(rows) <= threshold:
            return 0
        groups = -(-len(rows) // size)
        per = -(-len(rows) // groups)  # even groups: 101 cards make two digests of 51 and 50, not 100 + 1
        for start in range(0, len(rows), per):
            group = rows[start : start + per]
            carrier = group[0][0]
            alert_ids = [alert_id for _, alert_id in group]
            marks = ",".join("?" * len(group))
            db.execute(
                "UPDATE alert_outbox SET kind = 'digest', alert_id = NULL, payload = ? WHERE id = ?",
                [json.dumps({"alerts": len(group)}), carrier],
            )
            db.execute(
                f"UPDATE alert_outbox SET status = 'folded', payload = ? WHERE id IN ({marks}) AND id != ?",  # noqa: S608 - placeholders only
                [json.dumps({"digest": carrier}), *(row_id for row_id, _ in group), carrier],
            )
            db.execute(
                f"UPDATE alerts SET digest = ? WHERE id IN ({marks})",  # noqa: S608 - placeholders only
                [carrier, *alert_ids],
            )
    return len(rows)


def fold_escalations(db: Store, channel: str, threshold: int) -> int:
    """Fold `channel`'s waiting, never-tried escalations of folded alerts (no card of their own) into one
    `escalations` row per digest when more than `threshold` wait. Returns how many were folded."""
    with db.atomic():
        rows = db.execute(
            "SELECT o.id, o.alert_id, o.payload, a.digest FROM alert_outbox AS o JOIN alerts AS a"
            " ON a.id = o.alert_id WHERE o.status = 'pending' AND o.channel = ? AND o.kind = 'escalate'"
            " AND o.attempts = 0 AND a.ts IS NULL AND a.digest IS NOT NULL ORDER BY o.id",
            [channel],
        ).fetchall()
        if not threshold or len(rows) <= threshold:
            return 0
        groups: dict[int, list[tuple[int, str, str]]] = {}
        for row_id, alert_id, payload, digest in rows:
            groups.setdefault(digest, []).append((row_id, alert_id, payload))
        for digest, group in groups.items():
            carrier = group[0][0]
            escalations = [
                [alert_id, json.loads(payload).get("change") or "", json.loads(payload).get("mention")]
                for _, alert_id, payload in group
            ]
            db.execute(
                "UPDATE alert_outbox SET kind = 'escalations', alert_id = NULL, payload = ? WHERE id = ?",
                [json.dumps({"digest": digest, "escalations": escalations}), carrier],
            )
            marks = ",".join("?" * (len(group) - 1))
            db.execute(
                f"UPDATE alert_outbox SET status = 'folded', payload = ? WHERE id IN ({marks})",  # noqa: S608 - placeholders only
                [json.dumps({"escalations": carrier}), *(row_id for row_id, _, _ in group[1:])],
            )
    return len(rows)


def members(
    db: Store, digest: int, *, limit: Optional[int] = None, offset: int = 0
) -> tuple[int, list[dict[str, Any]]]:
    """How many alerts a digest names, and `limit` (None: all) of them from `offset`: open first,
    riskiest first."""
    total = db.execute("SELECT count(*) FROM alerts WHERE digest = ?", [digest]).fetchone()[0]
    rows = list(
        db.query(
            f"SELECT * FROM alerts WHERE digest = ? ORDER BY status = 'resolved', {_RANK} DESC,"  # noqa: S608 - constant SQL
            " score DESC NULLS LAST, id LIMIT ? OFFSET ?",
            [digest, ALL if limit is None else limit, offset],
        )
    )
    return total, rows


def absorb(db: Store, digest: int, channel: str, up_to: int, ts: Optional[str], now: float) -> int:
    """After a redraw drawn from the state of rows up to `up_to`: the folded alerts' other waiting
    redraws are done too (marked sent with the digest's ts), except those whose reply must still be
    said in the digest's thread (`folded_reply`: auto-containment's outcome). Call inside the caller's
    transaction."""
    # payloads are json.dumps of a dict (base.queue), so the flag reads `"folded_reply": true`
    return db.execute(
        "UPDATE alert_outbox SET status = 'sent', ts = ?, sent_at = ?, error = NULL"
        " WHERE status = 'pending' AND attempts = 0 AND channel = ? AND id <= ? AND kind IN (?, ?)"
        " AND payload NOT LIKE '%\"folded_reply\": true%'"
        " AND alert_id IN (SELECT id FROM alerts WHERE digest = ? AND ts IS NULL)",
        [ts, now, channel, up_to, *REDRAWN, digest],
    ).rowcount


def member_reply(alert: Mapping[str, Any], reply: Mapping[str, Any]) -> Message:
    """A folded alert's thread reply as said in its digest's thread: the identity's line first (the
    digest's thread is shared by every alert it names)."""
    identity = _identity(alert)
    who = f"*{esc(identity.name, LINE_NAME_CHARS)}*"
    text = f"{who}: {reply.get('text', '')}"
    return text_message(truncate(text, 3000))


def key(digest: int) -> dict[str, str]:
    """The metadata a digest message carries, to find it again after an uncertain post."""
    return {"alert_id": f"digest-{digest}", "part": "digest", "delivery": str(digest)}


# --- Block Kit ------------------------------------------------------------------------------------


def _md(text: str) -> MarkdownTextObject:
    return mrkdwn(text, 3000)


def _identity(alert: Mapping[str, Any]) -> Any:
    return Identity.from_dict(json.loads(alert["identity"]))


def _source(alerts: Sequence[Mapping[str, Any]]) -> str:
    sources = {f"{a['connector_label']} ({a['connector']})" for a in alerts}
    return sources.pop() if len(sources) == 1 else f"{len(sources)} connectors"


def line(alert: Mapping[str, Any]) -> str:
    """One identity of a digest: its level (or resolved), name, email, and what people did about it."""
    identity = _identity(alert)
    name = f"*{esc(identity.name, LINE_NAME_CHARS)}*"
    if identity.email and identity.email != identity.name:
        name += f" · {esc(identity.email, LINE_NAME_CHARS)}"
    if alert["status"] == "resolved":
        why = "no longer reported" if alert["gone"] else f"now {alert['score']}, {alert['level']}"
        return f":white_check_mark: {name} · resolved ({esc(why, 100)})"
    parts = [f"{risk_badge(alert['score'], alert['level'])} {name}"]
    if identity.privileged:
        parts.append(":crown: privileged")
    if alert["ts"]:
        parts.append("escalated: see its own card")
    if alert["acked_by"]:
        parts.append(f"acknowledged by {user_ref(alert['acked_by'])}")
    if alert["snoozed_until"]:
        parts.append("snoozed")
    return " · ".join(parts)


def counts_text(alerts: Sequence[Mapping[str, Any]]) -> str:
    """'*12 critical* · *88 high* · 3 resolved': the open alerts by level, riskiest first."""
    counts: dict[str, int] = {}
    for alert in alerts:
        state = "resolved" if alert["status"] == "resolved" else alert["level"]
        counts[state] = counts.get(state, 0) + 1
    order = [level.value for level in sorted(RiskLevel, key=lambda lvl: -lvl.rank)]
    parts = [f"*{counts[level]} {level}*" for level in order if counts.get(level)]
    if counts.get("resolved"):
        parts.append(f"{counts['resolved']} resolved since")
    return " · ".join(parts) or "none"


def _sections(lines: Sequence[str]) -> list[Block]:
    out: list[Block] = []
    chunk: list[str] = []
    for text in lines:
        if chunk and len("\n".join([*chunk, text])) > SECTION_CHARS:
            out.append(SectionBlock(text=_md("\n".join(chunk))))
            chunk = []
        chunk.append(text)
    if chunk:
        out.append(SectionBlock(text=_md("\n".join(chunk))))
    return out


def digest_message(digest: int, alerts: Sequence[Mapping[str, Any]]) -> Message:
    """The digest as it stands: counts by level, every identity on a line, and *List them*."""
    source = _source(alerts)
    title = f":rotating_light: {len(alerts)} risk alerts at once from {source}"
    counts = counts_text(alerts)
    blocks: list[Block] = [
        HeaderBlock(text=PlainTextObject(text=truncate(one_line(title), 150), emoji=True)),
        SectionBlock(text=_md(counts)),
        *_sections([line(alert) for alert in alerts]),
        ContextBlock(
            elements=[
                _md(
                    "More alerts were waiting for this channel than Slack shows at a readable pace, so"
                    " they are folded into this digest. An identity that gets worse gets its own card;"
                    " *List them* shows each one's buttons."
                )
            ]
        ),
        ActionsBlock(elements=[button("List them", "alert:digest", f"{digest}:0")]),
    ]
    return message(f"{len(alerts)} risk alerts from {esc(source, 200)}: {counts.replace('*', '')}", blocks)


def escalations_reply(payload: Mapping[str, Any], alerts: Sequence[Mapping[str, Any]]) -> Message:
    """One broadcast reply in a digest's thread naming the escalations folded into `payload`."""
    by_id = {alert["id"]: alert for alert in alerts}
    lines, mentions = [], []
    for alert_id, change, mention in payload["escalations"]:
        alert = by_id.get(alert_id)
        if alert is None:
            continue  # moved out of this digest: nothing to name
        lines.append(f"{line(alert)} · {esc(change, 100)}")
        if mention and mention not in mentions:
            mentions.append(mention)
    pings = " ".join(cards.mention_text(mention) for mention in mentions)
    title = f"{pings} :arrow_up: *{len(lines)} escalated*".strip()
    names = ", ".join(esc(_identity(by_id[a]).name, 100) for a, _, _ in payload["escalations"] if a in by_id)
    return message(f"{title}: {names}", [SectionBlock(text=_md(title)), *_sections(lines)])


def page_message(digest: int, alerts: Sequence[Mapping[str, Any]], total: int, offset: int) -> Message:
    """One page of a digest's identities, each with its card's buttons; Previous/Next page through."""
    shown = f"{offset + 1}-{offset + len(alerts)}" if alerts else "none"
    title = f"*Risk alert digest: identities {shown} of {total}*, riskiest first"
    blocks: list[Block] = [SectionBlock(text=_md(title))]
    for alert in alerts:
        source = f"{alert['connector_label']} ({alert['connector']})"
        blocks.append(SectionBlock(text=_md(f"{line(alert)} · {esc(source, 100)}")))
        if alert["status"] != "resolved":
            blocks.append(ActionsBlock(elements=cards.alert_buttons(alert, _identity(alert))))
    nav: list[ButtonElement] = []
    if offset > 0:
        nav.append(button("Previous", "alert:digest:page", f"{digest}:{max(0, offset - PAGE_SIZE)}"))
    if offset + len(alerts) < total:
        nav.append(button("Next", "alert:digest:page", f"{digest}:{offset + PAGE_SIZE}"))
    if nav:
        blocks.append(ActionsBlock(elements=nav))
    names = ", ".join(esc(_identity(alert).name, 100) for alert in alerts)
    return message(f"Risk alert digest {shown} of {total}: {names}", blocks)


# --- the *List them* buttons ------------------------------------------------------------------------


def parse_value(value: str) -> Optional[tuple[int, int]]:
    """`<digest>:<offset>` from a button, or None when it is not that."""
    digest, _, offset = value.partition(":")
    # ASCII digits only, short enough for SQLite's integers
    if not (digest.isascii() and digest.isdigit() and offset.isascii() and offset.isdigit()):
        return None
    if len(digest) > 12 or len(offset) > 9:
        return None
    return int(digest), int(offset)


def register(app: AsyncApp, bot: Bot, detector: Detector) -> None:
    """`alert:digest` (on the digest: a new private list) and `alert:digest:page` (on that list:
    replaced by the next page)."""

    async def show(user: str, value: str) -> Optional[Message]:
        if not await bot.lookups.may_look(user):
            return text_message(":no_entry: Only responders and approvers can act on risk alerts.")
        parsed = parse_value(value)
        if parsed is None:
            return text_message(":warning: That button carried something idops does not understand.")
        digest, offset = parsed
        total, rows = members(detector.db, digest, limit=PAGE_SIZE, offset=offset)
        if not total:
            return text_message(":warning: idops has no such alert digest any more.")
        return page_message(digest, rows, total, offset)

    def clicked(body: dict[str, Any]) -> tuple[str, str]:
        return body["user"]["id"], str((body.get("actions") or [{}])[0].get("value") or "")

    @app.action("alert:digest")
    async def on_list(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        await ack()
        user, value = clicked(body)
        bot.replies.run(show(user, value), user=user, respond=respond, name="alert:digest")

    @app.action("alert:digest:page")
    async def on_page(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        await ack()
        user, value = clicked(body)
        bot.replies.run(show(user, value), user=user, respond=respond, replace=True, name="alert:digest:page")

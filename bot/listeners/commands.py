"""The slash command: `/idops help|whois|risky|pending|audit` and one subcommand per action word
(`revoke`, `reset`, `disable`, `enable`, `confirm`, `dismiss`: the table in `bot.action_names`).

Parsing is cheap and happens before the ack, so a typo is answered in the ack itself with a usage
line; everything that calls a provider is handed to a service (`bot.lookups`, `bot.flow`) that runs
after the ack through `Replies.run` and answers by response_url.
"""

from __future__ import annotations

import functools
import html
import json
import re
import shlex
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Optional

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from connectors import RiskLevel

from .. import blocks
from ..action_names import TABLE, WORDS, needs_reason
from ..approvals import InvalidRequest, parse_duration
from ..blocks import Message, esc, text_message
from ..services import Bot

SUBCOMMANDS = {
    "help": "help",
    "whois": "whois <email|id|name>",
    "risky": "risky [low|medium|high|critical] [tenant]",
    **{row.word: f"{row.word} <who> {'<reason>' if row.needs_reason else '[reason]'}" for row in TABLE},
    "pending": "pending",
    "audit": "audit <who>",
}
MAX_QUERY = 256
MAX_TEXT = 2000

# Slack formats what it recognises in command text: <mailto:a@b.c|a@b.c>, <https://x.y|x.y>, <#C1|name>.
_SLACK_LINK = re.compile(r"<(?:mailto:)?([^<>|]*)(?:\|([^<>]*))?>")
_SMART_QUOTES = str.maketrans({"“": '"', "”": '"', "„": '"'})


class UsageError(Exception):
    """A command Slack sent that idops can't run; `str()` is mrkdwn (user text already escaped)."""


@dataclass(frozen=True)
class Parsed:
    name: str
    args: list[str]


def unwrap(text: str) -> str:
    """Command text as the person typed it: Slack's link markup removed, its entities decoded."""

    def plain(match: re.Match[str]) -> str:
        target, label = match.group(1), match.group(2)
        if target.startswith(("@", "!")):
            return match.group(0)  # a mention: keep it, it matches nothing and is escaped when echoed
        return label or target

    return html.unescape(_SLACK_LINK.sub(plain, text))


def tokenize(text: str) -> list[str]:
    """Split on spaces; double quotes group words ("Ada Lovelace"); apostrophes are plain letters."""
    lexer = shlex.shlex(text.translate(_SMART_QUOTES), posix=True)
    lexer.whitespace_split = True
    lexer.quotes = '"'
    lexer.escape = ""
    lexer.commenters = ""
    try:
        return list(lexer)
    except ValueError:
        raise UsageError("A double quote is not closed.") from None


def parse(text: str) -> Parsed:
    """Split the command text into a subcommand and its arguments; UsageError for unknown ones."""
    if len(text) > MAX_TEXT:
        raise UsageError(f"That command is longer than {MAX_TEXT} characters.")
    words = tokenize(unwrap(text or ""))
    if not words:
        return Parsed("help", [])
    name = words[0].lower()
    if name not in SUBCOMMANDS:
        raise UsageError(f"Unknown subcommand *{esc(words[0], 100)}*.")
    return Parsed(name, words[1:])


def usage(command: str, name: Optional[str] = None) -> str:
    """The usage line of one subcommand, or of all of them (escaped mrkdwn)."""
    names = [name] if name else list(SUBCOMMANDS)
    return "\n".join(f"`{esc(command)} {esc(SUBCOMMANDS[n])}`" for n in names)


def help_message(command: str) -> Message:
    return text_message(
        "*idops* looks up identities and runs response actions after an approver agrees.\n"
        + usage(command)
        + "\n`&lt;who&gt;` is an email, a provider id or a name (quote names with spaces)."
        + f"\n`{esc(command)} disable &lt;who&gt; for 4h &lt;reason&gt;` time-boxes it (15m, 4h, 3d; 1 minute"
        " to 30 days): idops undoes it at the end, where the provider can."
    )


def parse_level(value: str) -> RiskLevel:
    try:
        return RiskLevel.parse(value)
    except ValueError:
        raise UsageError(
            f"*{esc(value, 50)}* is not a risk level (expected low, medium, high or critical)."
        ) from None


def query_of(words: list[str], what: str = "<who>") -> str:
    """The identity query: the words joined; UsageError when missing or absurdly long."""
    query = " ".join(words).strip()
    if not query:
        raise UsageError(f"Say who: {esc(what)} is missing.")
    if len(query) > MAX_QUERY:
        raise UsageError(f"{esc(what)} is longer than {MAX_QUERY} characters.")
    return query


def duration_of(words: list[str]) -> tuple[Optional[timedelta], list[str]]:
    """`for 4h …` after the name: the duration and the words left (the reason). `for` followed by
    something that is not a number is just part of the reason ("for phishing")."""
    if len(words) >= 2 and words[0].lower() == "for" and words[1][:1].isdigit():
        try:
            return parse_duration(words[1]), words[2:]
        except InvalidRequest as exc:
            raise UsageError(esc(exc.message, 200)) from None
    return None, words


def register(app: AsyncApp, bot: Bot) -> None:
    command_name = bot.config.slack.command
    replies, lookups = bot.replies, bot.lookups

    @app.command(command_name)
    async def on_command(
        ack: AsyncAck,
        command: dict[str, Any],
        respond: AsyncRespond,
        client: AsyncWebClient,
        request: AsyncBoltRequest,
    ) -> None:
        user = command["user_id"]
        parsed: Optional[Parsed] = None
        # Slack sends a command again when it got no ack (Socket Mode: retry_attempt, which Bolt passes
        # as this header): the first delivery may have run on another replica already
        redelivered = bool(request.headers.get("x-slack-retry-num"))
        try:
            parsed = parse(command.get("text") or "")
            await dispatch(
                parsed,
                ack=ack,
                command=command,
                respond=respond,
                client=client,
                user=user,
                redelivered=redelivered,
            )
        except UsageError as exc:
            await ack(
                **text_message(f"{exc}\nUsage:\n{usage(command_name, parsed.name if parsed else None)}")
            )

    async def dispatch(
        parsed: Parsed,
        *,
        ack: AsyncAck,
        command: dict[str, Any],
        respond: AsyncRespond,
        client: AsyncWebClient,
        user: str,
        redelivered: bool = False,
    ) -> None:
        name, args = parsed.name, parsed.args
        if name == "help":
            await ack(**help_message(command_name))
            return
        if name in ("pending",) and args:
            raise UsageError(f"`{esc(name)}` takes no arguments.")
        if name == "whois":
            query = query_of(args, "<email|id|name>")
            await ack()
            work = functools.partial(lookups.whois, user, query)
            replies.run(work(), user=user, respond=respond, name="whois", again=work)
        elif name == "risky":
            if len(args) > 2:
                raise UsageError("Too many arguments.")
            level = parse_level(args[0]) if args else None
            tenant = args[1] if len(args) > 1 else None
            await ack()
            replies.run(lookups.risky(user, level, tenant), user=user, respond=respond, name="risky")
        elif name in WORDS:
            action = WORDS[name]
            who = query_of(args[:1])
            duration, rest = duration_of(args[1:])
            reason = " ".join(rest).strip()
            if needs_reason(action) and not reason:
                # a modal needs the trigger_id, valid for 3 s: open it now and resolve `who` on submit
                await ack()
                metadata = json.dumps(
                    {
                        "action": action.value,
                        "who": who,
                        "channel": command.get("channel_id"),
                        "duration": int(duration.total_seconds()) if duration else None,
                    }
                )
                try:
                    await client.views_open(
                        trigger_id=command["trigger_id"], view=blocks.reason_modal(action, who, metadata)
                    )
                except SlackApiError as exc:
                    await replies.tell(
                        user,
                        text_message(
                            ":warning: Slack did not open the reason form"
                            f" ({esc(exc.response.get('error'), 100)})."
                            f" Give the reason after the name instead:\n{usage(command_name, name)}"
                        ),
                        respond=respond,
                    )
                return
            await ack()
            replies.run(
                lookups.request_for(user, action, who, reason, duration, redelivered),
                user=user,
                respond=respond,
                name=name,
            )
        elif name == "pending":
            await ack()
            replies.run(lookups.pending(user), user=user, respond=respond, name="pending")
        elif name == "audit":
            who = query_of(args)
            await ack()
            replies.run(lookups.audit(user, who), user=user, respond=respond, name="audit")

"""The slash command: `/idops help|whois|risky|pending|audit` and one subcommand per action word
(`revoke`, `reset`, `disable`, `enable`, `confirm`, `dismiss`: the table in `bot.action_names`).

Parsing is cheap and happens before the ack, so a typo is answered in the ack itself with a usage
line; everything that calls a provider is handed to a service (`bot.lookups`, `bot.flow`) that runs
after the ack through `Replies.run` and answers by response_url. Such a command is recorded before its
ack and answered once across replicas (`bot.command_log`): a delivery of it Slack sends again does
nothing, and one whose replica stopped before answering is run again (`rerun`) by another replica.
"""

from __future__ import annotations

import functools
import html
import json
import re
import shlex
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Optional

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from connectors import RiskLevel

from .. import blocks
from ..action_names import TABLE, WORDS, needs_reason
from ..approvals import InvalidRequest, parse_duration
from ..blocks import Message, esc, text_message
from ..command_log import Command, Respond, Ticket
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


@dataclass(frozen=True)
class Later:
    """What a command does after its ack: `work` makes its answer (again with `again`, after a provider's
    wait); `form`, a reason form to open at once (the trigger_id lasts 3 s), when there is one."""

    name: str
    work: Callable[[], Awaitable[Message]]
    again: bool = False
    form: Optional[dict[str, Any]] = None


def register(app: AsyncApp, bot: Bot) -> None:
    command_name = bot.config.slack.command
    replies, lookups, commands = bot.replies, bot.lookups, bot.commands

    @app.command(command_name)
    async def on_command(
        ack: AsyncAck, command: dict[str, Any], respond: AsyncRespond, client: AsyncWebClient
    ) -> None:
        parsed: Optional[Parsed] = None
        try:
            parsed = parse(command.get("text") or "")
            later = plan(parsed, command)
        except UsageError as exc:
            await ack(
                **text_message(f"{exc}\nUsage:\n{usage(command_name, parsed.name if parsed else None)}")
            )
            return
        if later is None:
            await ack(**help_message(command_name))
            return
        # recorded before the ack (bot/command_log.py): a delivery of it recorded before does nothing
        accepted = Command.of(command)
        ticket = commands.accept(accepted) if accepted is not None else None
        await ack()
        if accepted is not None and ticket is None:
            return
        answer = commands.guard(ticket, respond) if ticket is not None else respond
        if later.form is None:
            start(later, command["user_id"], answer, ticket)
            return
        try:
            await client.views_open(trigger_id=command["trigger_id"], view=later.form)
        except SlackApiError as exc:
            said = text_message(
                ":warning: Slack did not open the reason form"
                f" ({esc(exc.response.get('error'), 100)})."
                f" Give the reason after the name instead:\n{usage(command_name, later.name)}"
            )
            await replies.tell(command["user_id"], said, respond=answer)
        else:
            if ticket is not None:
                commands.done(ticket)
        finally:
            if ticket is not None:  # not answered (Slack unreachable): the sweep answers it
                commands.end(ticket)

    def start(later: Later, user: str, answer: Respond, ticket: Optional[Ticket]) -> None:
        again = later.work if later.again else None
        task = replies.run(later.work(), user=user, respond=answer, name=later.name, again=again)
        if ticket is not None:
            commands.attach(ticket, task)

    def rerun(ticket: Ticket) -> None:
        """A command whose replica stopped before answering it, run again here from what was stored."""
        stored = ticket.command
        later = plan(
            parse(stored.text),
            {"user_id": stored.user_id, "channel_id": stored.channel_id, "trigger_id": stored.trigger_id},
        )
        assert later is not None  # recorded commands are answered after their ack, so never help
        if later.form is not None:  # its trigger_id is long spent: no form can open now
            said = text_message(
                ":warning: idops stopped before it could open the reason form."
                f" Give the reason after the name instead:\n{usage(command_name, later.name)}"
            )
            later = Later(later.name, functools.partial(_ready, said))
        answer = commands.guard(ticket, AsyncRespond(response_url=stored.response_url))
        start(later, stored.user_id, answer, ticket)

    commands.rerun = rerun

    def plan(parsed: Parsed, command: Mapping[str, Any]) -> Optional[Later]:
        """What `parsed` does after the ack (None: help, answered in the ack); UsageError when it can't."""
        name, args, user = parsed.name, parsed.args, command["user_id"]
        if name == "help":
            return None
        if name in ("pending",) and args:
            raise UsageError(f"`{esc(name)}` takes no arguments.")
        if name == "whois":
            query = query_of(args, "<email|id|name>")
            return Later(name, functools.partial(lookups.whois, user, query), again=True)
        if name == "risky":
            if len(args) > 2:
                raise UsageError("Too many arguments.")
            level = parse_level(args[0]) if args else None
            tenant = args[1] if len(args) > 1 else None
            return Later(name, functools.partial(lookups.risky, user, level, tenant))
        if name in WORDS:
            action = WORDS[name]
            who = query_of(args[:1])
            duration, rest = duration_of(args[1:])
            reason = " ".join(rest).strip()
            if needs_reason(action) and not reason:
                # a form needs the trigger_id, valid for 3 s: open it now and resolve `who` on submit
                metadata = json.dumps(
                    {
                        "action": action.value,
                        "who": who,
                        "channel": command.get("channel_id"),
                        "duration": int(duration.total_seconds()) if duration else None,
                    }
                )
                form = blocks.reason_modal(action, who, metadata)
                return Later(name, functools.partial(_ready, text_message("")), form=form)
            trigger_id = command.get("trigger_id") or None
            work = functools.partial(lookups.request_for, user, action, who, reason, duration, trigger_id)
            return Later(name, work)
        if name == "pending":
            return Later(name, functools.partial(lookups.pending, user))
        who = query_of(args)  # audit
        return Later(name, functools.partial(lookups.audit, user, who))


async def _ready(message: Message) -> Message:
    return message

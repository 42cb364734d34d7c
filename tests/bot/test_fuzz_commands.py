"""Property test: generated `/idops` texts (at least 10,000 per run) go as signed slash commands into the
real server (FakeSlack as Slack, the HomeBase simulator as the provider, one server for the module, run
in a thread of its own so Hypothesis drives it synchronously). For every text: HTTP 200, an answer
(ack, response_url post, ephemeral or modal: never silence), nothing sent to Slack with markup idops did
not make, no traceback or error in the log, and nothing executed at the provider (only approvals run
actions). Derandomized: every run throws the same texts, so a failure reproduces."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.bot import COMMAND_CHANNEL, REQUESTER, SENDS, BotHarness, assert_inert, harness
from support.logs import Problems, watching

from bot.approvals.records import MAX_REASON
from connectors import Action

T = TypeVar("T")

BATCH = 50  # texts per example: the server round trips are the cost, not Hypothesis
EXAMPLES = 205  # 205 x 50 = 10,250 texts
IDENTITIES = 60  # a fragment search reads them all: fewer make every text cheaper
ANSWERS = frozenset({"response_url", "chat.postEphemeral", "views.open"})

SUBCOMMANDS = ["help", "whois", "risky", "revoke", "reset", "disable", "pending", "audit"]
LEVELS = ["low", "medium", "high", "critical", "severe", ""]
HOSTILE = [
    "<!channel>",
    "<!here|here>",
    "<@U0BOB>",
    "<#C0APPROVALS>",
    "<https://evil.example|click>",
    "&lt;!everyone&gt;",
    "&amp;",
    "*bold* _it_ ~st~ `code` ```block```",
    "<mailto:a@b.c|a@b.c>",
    '"unterminated',
    "'single'",
    "\\",
    "\u202eevil",
    "\x00\x07\x1b[31m",
    "%s %d {0} {}",
    "😀" * 20,
    "a" * 3000,
]


class Server:
    """The harness running in its own event loop thread; `run` awaits a coroutine there."""

    def __init__(self, tmp_path: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fuzz-server", daemon=True)
        self.thread.start()
        self.stack = contextlib.AsyncExitStack()
        self.h: BotHarness = self.run(
            self.stack.enter_async_context(harness(tmp_path, identities=IDENTITIES, pacing=False))
        )
        self.h.slack.ack_timeout = 60.0  # a loaded machine is slow, not wrong

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 300) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        try:
            self.run(self.stack.aclose())  # the harness's own checks run here: fallbacks, inertness, scopes
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=30)
            self.loop.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    built = Server(tmp_path_factory.mktemp("fuzz"))
    try:
        yield built
    finally:
        built.close()


@pytest.fixture(scope="module")
def problems() -> Iterator[Problems]:
    with watching() as handler:
        yield handler


def who(people: list[str]) -> st.SearchStrategy[str]:
    """A target as a person might type it: a real email, id or name (quoted or not), a fragment, noise."""
    real = st.sampled_from(people)
    return st.one_of(
        real,
        real.map(lambda p: f'"{p}"'),
        real.map(lambda p: p[: max(1, len(p) // 3)]),
        real.map(lambda p: p.upper()),
        real.map(lambda p: f"<mailto:{p}|{p}>"),
        st.sampled_from(HOSTILE),
        st.text(max_size=40),
    )


def texts(people: list[str]) -> st.SearchStrategy[str]:
    command = st.one_of(st.sampled_from(SUBCOMMANDS), st.sampled_from(SUBCOMMANDS).map(str.upper))
    words = st.one_of(who(people), st.sampled_from(LEVELS), st.sampled_from(HOSTILE), st.text(max_size=20))
    structured = st.builds(
        lambda c, ws, sep: sep.join([c, *ws]),
        command,
        st.lists(words, max_size=5),
        st.sampled_from([" ", "  ", "\t", " \n "]),
    )
    return st.one_of(structured, structured, structured, st.text(max_size=300), st.sampled_from(HOSTILE))


def _people(h: BotHarness) -> list[str]:
    records = [h.sim.record(i) for i in range(0, h.sim.size, 7)]
    return [value for r in records for value in (r["email"], r["id"], r["display_name"]) if value]


async def _send(h: BotHarness, batch: list[str]) -> list[str]:
    """Send each text as REQUESTER; what went wrong with any of them."""
    wrong = []
    for text in batch:
        before = len(h.slack.calls)
        # generous limits: on a loaded machine a slow answer is still an answer
        reply = await h.slack.command(h.events_url, REQUESTER, text, channel_id=COMMAND_CHANNEL)
        await h.bot.replies.join(timeout=120)
        new = h.slack.calls[before:]
        if reply.status != 200:
            wrong.append(f"{text!r}: HTTP {reply.status}")
            continue
        if not reply.body and not any(method in ANSWERS for method, _ in new):
            wrong.append(f"{text!r}: no answer")
        shown = [reply.json if isinstance(reply.json, dict) else {"text": reply.body}]
        shown += [params for method, params in new if method in SENDS]
        for message in shown:
            message = dict(message)
            for key in ("blocks", "view"):
                if isinstance(message.get(key), str):  # form-encoded calls carry JSON strings
                    message[key] = json.loads(message[key])
            try:
                assert_inert(message)
            except AssertionError as exc:
                wrong.append(f"{text!r}: {exc}")
    return wrong


def test_ten_thousand_generated_commands_are_answered_safely(server: Server, problems: Problems) -> None:
    h = server.h
    people = _people(h)
    sent = 0

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(st.lists(texts(people), min_size=BATCH, max_size=BATCH))
    def check(batch: list[str]) -> None:
        nonlocal sent
        wrong = server.run(_send(h, batch))
        sent += len(batch)
        assert wrong == [], wrong[:5]
        assert problems.found == [], problems.found[:5]

    check()
    assert sent >= 10_000
    # nothing ran at the provider: actions run only after an approval, and nobody approved anything
    assert h.actions() == []
    # every request made names an identity the provider has, asked by the one who typed it, with a
    # reason within the limit (and one for a disable, which never goes through without it)
    requests = server.run(h.bot.service.pending())
    assert requests, "no text made a request: the generator misses the action commands"
    for request in requests:
        assert h.sim.index_of(request.identity_id) is not None
        assert request.requested_by == REQUESTER and len(request.reason) <= MAX_REASON
        assert request.reason or request.action is not Action.DISABLE

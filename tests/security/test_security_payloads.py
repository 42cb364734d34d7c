"""Validly signed payloads Slack never sends (made up by whoever holds the signing secret, or sent by a
Slack that changed): each is refused with 400 before dispatch, or answered as a damaged button or form,
never a 500 or a traceback in the log, and nothing is requested or run."""

from __future__ import annotations

import json
import logging
import urllib.parse
from typing import Any

import pytest
from support.bot import COMMAND_CHANNEL, REQUESTER, harness


def problems(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Records with a traceback or at ERROR and above (what must never come from bad input)."""
    return [
        f"{r.name}: {r.getMessage()[:200]}"
        for r in caplog.records
        if r.exc_info or r.levelno >= logging.ERROR
    ]


async def signed(h: Any, payload: dict[str, Any]) -> int:
    """POST `payload` as Slack posts interactivity (form field `payload`), signed; the HTTP status."""
    body = "payload=" + urllib.parse.quote(json.dumps(payload))
    headers = h.slack.signed_headers(body, "application/x-www-form-urlencoded")
    async with h.http.post(h.events_url, data=body.encode(), headers=headers) as response:
        await response.read()
        status = response.status
    await h.settle()
    return status


def click(action_id: str, value: str, **fields: Any) -> dict[str, Any]:
    actions = [{"action_id": action_id, "value": value}]
    return {"type": "block_actions", "user": {"id": REQUESTER}, "actions": actions, **fields}


def submission(callback_id: str, metadata: str, values: Any, *, typed: bool = True) -> dict[str, Any]:
    view = {"id": "V0FORGED", "callback_id": callback_id, "private_metadata": metadata}
    view.update({"state": {"values": values}, **({"type": "modal"} if typed else {})})
    return {"type": "view_submission", "user": {"id": REQUESTER}, "view": view}


HERE = {"id": COMMAND_CHANNEL}
REASON = {"reason": {"reason": {"type": "plain_text_input", "value": "phished"}}}
DISABLE = {"action": "disable", "who": "someone@example.com"}

REFUSED = [  # 400 before dispatch: not shaped as Slack sends it
    click("approval:approve", "apr_x", channel="C0SECOPS"),  # channel is an object
    click("identity:show", "homebase:idn_x", container="C0SECOPS"),
    click("request:revoke_sessions", "homebase:idn_x", view="V1"),
    click("approval:deny", "apr_x", response_url=5),
    click("approval:deny", "apr_x", trigger_id=["t"]),
    submission("request:reason", json.dumps(DISABLE), REASON, typed=False),  # every view has a type
    submission("approval:deny", "apr_x", {"reason": {"reason": {"type": "plain_text_input", "value": 5}}}),
    submission("request:reason", json.dumps(DISABLE), {"reason": {"reason": "phished"}}),
    submission(
        "request:reason",
        json.dumps(DISABLE),
        {**REASON, "duration": {"duration": {"selected_option": {"value": ["1h"]}}}},
    ),
]
DAMAGED = [  # dispatched: the listener reads them as damaged and says so
    click("risky:page", '{"offset": 1e400}', channel=HERE),
    click("approval:rerun", "apr_x:" + "9" * 5000, channel=HERE),
    click("approval:rerun", "apr_x:\u00b2", channel=HERE),
    submission("request:reason", json.dumps({**DISABLE, "duration": 10**30}), REASON),
    submission("request:reason", json.dumps({**DISABLE, "duration": "1e400"}), REASON),
]


# block and action ids are keys chosen by whoever made the view: a refusal's log line never shows them
HIDDEN = {"SECRET-BODY\nforged log line": {"reason": {"type": "plain_text_input", "value": 5}}}
REFUSED.append(submission("request:reason", json.dumps(DISABLE), HIDDEN))


async def test_payloads_slack_never_sends_get_400_and_a_clean_log(tmp_path, logged):
    async with harness(tmp_path) as h:
        for payload in REFUSED:
            logged.clear()
            assert await signed(h, payload) == 400, payload
            assert problems(logged) == [], payload
            lines = [r.getMessage() for r in logged.records if r.name == "idops.server"]
            assert len(lines) == 1 and "\n" not in lines[0] and "SECRET-BODY" not in lines[0], lines
        assert lines == [
            "refused POST /slack/events from 127.0.0.1: signed but not shaped as Slack sends it"
            " (viewpayload payload: view.state.values.*.*.value: string_type)"
        ]
        assert h.slack.calls == [] and h.cards() == [] and h.actions() == []


def command(text: str, **fields: Any) -> str:
    """A slash command's form as Slack posts it, with `fields` changed (None: left out)."""
    form = {"command": "/idops", "text": text, "user_id": REQUESTER, "channel_id": COMMAND_CHANNEL}
    form.update({"trigger_id": "1.2.forged", "response_url": "http://127.0.0.1:9/never", **fields})
    return urllib.parse.urlencode({key: value for key, value in form.items() if value is not None})


async def test_a_slash_command_without_a_trigger_id_gets_400(tmp_path, logged):
    # a disable without a reason opens the reason form with the command's trigger_id: a 500 without it
    async with harness(tmp_path) as h:
        for form in (command("disable someone@example.com", trigger_id=None), command("help", trigger_id="")):
            headers = h.slack.signed_headers(form, "application/x-www-form-urlencoded")
            async with h.http.post(h.events_url, data=form.encode(), headers=headers) as answer:
                assert answer.status == 400
            await h.settle()
        assert problems(logged) == [] and h.slack.calls == []


async def test_damaged_values_are_answered_as_damaged_without_a_traceback(tmp_path, logged):
    async with harness(tmp_path) as h:
        for payload in DAMAGED:
            logged.clear()
            assert await signed(h, payload) == 200, payload
            assert problems(logged) == [], payload
        shown = [m["text"] for m in h.slack.visible_ephemerals(REQUESTER)]
        assert shown == [":warning: That button carries something idops can't read; nothing was done."] * 3
        # the two forms were refused in their own ack (errors on the reason field), nothing requested
        assert h.cards() == [] and h.actions() == [] and await h.bot.service.pending() == []


async def test_an_alert_click_without_a_response_url_is_answered_by_dm(tmp_path, logged):
    # Slack sends every click on a message with a response_url; one without it was answered through
    # Bolt's `respond`, which raises there: a traceback and no answer at all
    async with harness(tmp_path, with_alerts=True) as h:
        for action_id in ("alert:ack", "alert:snooze", "alert:list"):
            logged.clear()
            assert await signed(h, click(action_id, "alert_missing", channel=HERE)) == 200
            assert problems(logged) == [], action_id
        answers = [p["text"] for p in h.slack.calls_to("chat.postMessage") if p["channel"] == REQUESTER]
        assert answers == [
            ":warning: idops has no such alert; nothing was done.",
            ":warning: idops has no such alert; nothing was done.",
            ":warning: No connector named alert_missing any more.",
        ]

"""The Slack stand-in itself, through slack_sdk's real AsyncWebClient and a real Bolt app on loopback."""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from standins import serving
from standins.slack import FakeSlack, SlackUser, block_problems
from standins.slack.page import SlackUI

TOKEN = "xoxb-test-token"
SECRET = "test-signing-secret"
ALERTS = "C0ALERTS"

USERS = [
    SlackUser(id="U0ALICE", name="alice", email="alice@example.com", real_name="Alice Responder"),
    SlackUser(id="U0BOB", name="bob", email="bob@example.com", is_admin=True),
    SlackUser(id="U0CAROL", name="carol", email="carol@example.com"),
]

CARD = [
    {"type": "header", "text": {"type": "plain_text", "text": "Critical risk: Ada Lovelace", "emoji": True}},
    {
        "type": "section",
        "block_id": "summary",
        "text": {"type": "mrkdwn", "text": "*Risk* 92 (critical) &lt;!channel&gt;"},
        "fields": [{"type": "mrkdwn", "text": "*Tenant*\nacme"}, {"type": "plain_text", "text": "okta"}],
        "accessory": {
            "type": "button",
            "action_id": "alert:ack",
            "value": "a-1",
            "text": {"type": "plain_text", "text": "Acknowledge"},
        },
    },
    {"type": "divider"},
    {"type": "context", "elements": [{"type": "mrkdwn", "text": "homebase · hb-42"}]},
    {
        "type": "actions",
        "block_id": "act",
        "elements": [
            {
                "type": "button",
                "action_id": "request:revoke_sessions",
                "value": "homebase:hb-42",
                "style": "danger",
                "text": {"type": "plain_text", "text": "Revoke sessions"},
                "confirm": {
                    "title": {"type": "plain_text", "text": "Revoke?"},
                    "text": {"type": "mrkdwn", "text": "Ends every session."},
                    "confirm": {"type": "plain_text", "text": "Revoke"},
                    "deny": {"type": "plain_text", "text": "Cancel"},
                    "style": "danger",
                },
            },
            {
                "type": "button",
                "action_id": "request:disable",
                "value": "homebase:hb-42",
                "text": {"type": "plain_text", "text": "Disable"},
            },
        ],
    },
]

MODAL = {
    "type": "modal",
    "callback_id": "reason",
    "title": {"type": "plain_text", "text": "Why?"},
    "submit": {"type": "plain_text", "text": "Send"},
    "blocks": [
        {
            "type": "input",
            "block_id": "reason",
            "label": {"type": "plain_text", "text": "Reason"},
            "element": {"type": "plain_text_input", "action_id": "text", "multiline": True},
        },
        {
            "type": "input",
            "block_id": "ticket",
            "optional": True,
            "label": {"type": "plain_text", "text": "Ticket"},
            "element": {"type": "plain_text_input", "action_id": "id"},
        },
    ],
}


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    fake = FakeSlack(
        users=USERS,
        usergroups={"S0SECOPS": ["U0BOB", "U0CAROL"]},
        channels={ALERTS: "idops-alerts", "C0APPROVALS": "idops-approvals"},
        bot_token=TOKEN,
        signing_secret=SECRET,
    )
    async with fake.serve():
        yield fake


@pytest.fixture
def client(slack: FakeSlack) -> AsyncWebClient:
    return AsyncWebClient(token=TOKEN, base_url=slack.api_url)


async def error_of(call: Any) -> SlackApiError:
    with pytest.raises(SlackApiError) as caught:
        await call
    return caught.value


# --- Web API -------------------------------------------------------------------------------------


async def test_post_update_and_threads_keep_current_state(slack: FakeSlack, client: AsyncWebClient) -> None:
    posted = await client.chat_postMessage(channel="#idops-alerts", text="alert", blocks=CARD)
    assert posted["channel"] == ALERTS
    assert posted["message"]["blocks"][0]["type"] == "header"
    ts = posted["ts"]
    reply = await client.chat_postMessage(channel=ALERTS, thread_ts=ts, text="escalated")
    broadcast = await client.chat_postMessage(
        channel=ALERTS, thread_ts=ts, text="resolved", reply_broadcast=True
    )
    updated = await client.chat_update(channel=ALERTS, ts=ts, text="alert (acked)", blocks=CARD[:3])
    assert updated["text"] == "alert (acked)"

    top = slack.messages(ALERTS)
    assert [m["ts"] for m in top] == [ts, broadcast["ts"]]
    assert top[0]["text"] == "alert (acked)" and len(top[0]["blocks"]) == 3 and "edited" in top[0]
    assert [r["text"] for r in top[0]["replies"]] == ["escalated", "resolved"]
    assert top[0]["reply_count"] == 2 and top[0]["latest_reply"] == broadcast["ts"]

    thread = await client.conversations_replies(channel=ALERTS, ts=reply["ts"])
    assert [m["text"] for m in thread["messages"]] == ["alert (acked)", "escalated", "resolved"]
    assert (await error_of(client.chat_postMessage(channel=ALERTS, thread_ts="1.2", text="x"))).response[
        "error"
    ] == "thread_not_found"
    assert (await error_of(client.chat_update(channel=ALERTS, ts="1.2", text="x"))).response[
        "error"
    ] == "message_not_found"

    await client.chat_delete(channel=ALERTS, ts=broadcast["ts"])
    assert [m["ts"] for m in slack.messages(ALERTS)] == [ts]
    link = await client.chat_getPermalink(channel=ALERTS, message_ts=ts)
    assert link["permalink"].endswith("/archives/C0ALERTS/p" + ts.replace(".", ""))


async def test_history_is_newest_first_with_limit_oldest_and_metadata(
    slack: FakeSlack, client: AsyncWebClient
) -> None:
    stamps = []
    for n in range(4):
        meta = {"event_type": "idops_alert", "event_payload": {"alert_id": n}}
        stamps.append((await client.chat_postMessage(channel=ALERTS, text=f"m{n}", metadata=meta))["ts"])
    plain = await client.conversations_history(channel=ALERTS, limit=2)
    assert [m["text"] for m in plain["messages"]] == ["m3", "m2"]
    assert plain["has_more"] and "metadata" not in plain["messages"][0]
    rest = await client.conversations_history(
        channel=ALERTS, limit=2, cursor=plain["response_metadata"]["next_cursor"]
    )
    assert [m["text"] for m in rest["messages"]] == ["m1", "m0"] and not rest["has_more"]

    recent = await client.conversations_history(channel=ALERTS, oldest=stamps[1], include_all_metadata=True)
    assert [m["text"] for m in recent["messages"]] == ["m3", "m2"]
    assert recent["messages"][0]["metadata"] == {
        "event_type": "idops_alert",
        "event_payload": {"alert_id": 3},
    }
    bad = await error_of(client.chat_postMessage(channel=ALERTS, text="x", metadata={"event_payload": {}}))  # type: ignore[arg-type]
    assert bad.response["error"] == "invalid_metadata_format"
    missing = await error_of(client.conversations_history(channel="C0NOPE"))
    assert missing.response["error"] == "channel_not_found"


@pytest.mark.parametrize(
    ("blocks", "pointer"),
    [
        ([{"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}], "/blocks/0"),
        ([{"type": "bogus"}], "/blocks/0/type"),
        ([{"type": "header", "text": {"type": "mrkdwn", "text": "h"}}], "/blocks/0/text/type"),
        ([{"type": "section", "text": "a bare string"}], "/blocks/0/text"),
        ([{"type": "section", "text": {"type": "mrkdwn", "text": ""}}], "/blocks/0/text/text"),
        ([{"type": "section", "text": {"type": "mrkdwn", "text": "x"}, "colour": "red"}], "/blocks/0/colour"),
        ([{"type": "actions", "elements": [{"type": "nonsense"}]}], "/blocks/0/elements/0"),
        (
            [
                {
                    "type": "actions",
                    "elements": [
                        {"type": "button", "action_id": "a", "text": {"type": "mrkdwn", "text": "b"}}
                    ],
                }
            ],
            "/blocks/0/elements/0/text/type",
        ),
        ([{"type": "divider"}] * 51, "/blocks"),
    ],
)
async def test_invalid_block_kit_is_refused_like_slack(
    slack: FakeSlack, client: AsyncWebClient, blocks: list, pointer: str
) -> None:
    failure = await error_of(client.chat_postMessage(channel=ALERTS, text="x", blocks=blocks))
    assert failure.response["error"] == "invalid_blocks"
    assert any(f"[json-pointer:{pointer}]" in m for m in failure.response["response_metadata"]["messages"])
    assert slack.messages(ALERTS) == []


async def test_valid_cards_pass_and_limits_and_warnings_apply(
    slack: FakeSlack, client: AsyncWebClient
) -> None:
    assert block_problems(CARD) == []
    assert block_problems(MODAL["blocks"], 100, "/view/blocks") == []
    with pytest.warns(UserWarning):  # slack_sdk itself warns about blocks without fallback text
        posted = await client.chat_postMessage(channel=ALERTS, blocks=CARD)
    assert posted["warning"] == "missing_text_or_fallback"
    assert slack.warnings == [("chat.postMessage", "missing_text_or_fallback")]
    with pytest.warns(UserWarning):
        no_text = await error_of(client.chat_postMessage(channel=ALERTS, text=""))
    assert no_text.response["error"] == "no_text"
    too_long = await error_of(client.chat_postMessage(channel=ALERTS, text="x" * 40_001))
    assert too_long.response["error"] == "msg_too_long"
    bad_update = await error_of(
        client.chat_update(channel=ALERTS, ts=posted["ts"], text="x", blocks=[{"type": "x"}])
    )
    assert bad_update.response["error"] == "invalid_blocks"
    assert slack.messages(ALERTS)[0]["blocks"] == CARD


async def test_tokens_are_checked_and_unknown_methods_named(slack: FakeSlack, client: AsyncWebClient) -> None:
    wrong = AsyncWebClient(token="xoxb-wrong", base_url=slack.api_url)
    assert (await error_of(wrong.auth_test())).response["error"] == "invalid_auth"
    assert (await error_of(AsyncWebClient(base_url=slack.api_url).auth_test())).response[
        "error"
    ] == "not_authed"
    me = await client.auth_test()
    assert me["user_id"] == slack.bot_user_id and me["team_id"] == "T0IDOPS"
    assert (await error_of(client.api_call("chat.teleport"))).response["error"] == "unknown_method"
    # form-encoded bodies with the token as a field work like JSON bodies with a bearer header
    async with aiohttp.ClientSession() as session:
        form = {"token": TOKEN, "channel": ALERTS, "text": "via form", "blocks": json.dumps(CARD[:1])}
        async with session.post(slack.api_url + "chat.postMessage", data=form) as response:
            assert (await response.json())["ok"] is True
    assert slack.messages(ALERTS)[0]["blocks"] == CARD[:1]
    assert [name for name, _ in slack.calls] == [
        "auth.test",
        "auth.test",
        "auth.test",
        "chat.teleport",
        "chat.postMessage",
    ]
    assert all("token" not in params for _, params in slack.calls)


async def test_users_and_usergroups(client: AsyncWebClient) -> None:
    found = await client.users_lookupByEmail(email="ALICE@example.com")
    assert found["user"]["id"] == "U0ALICE" and found["user"]["profile"]["email"] == "alice@example.com"
    missing = await error_of(client.users_lookupByEmail(email="mallory@example.com"))
    assert missing.response["error"] == "users_not_found"
    info = await client.users_info(user="U0BOB")
    assert info["user"]["is_admin"] is True and info["user"]["name"] == "bob"
    assert (await error_of(client.users_info(user="U0NOBODY"))).response["error"] == "user_not_found"
    groups = await client.usergroups_list(include_users=True)
    assert groups["usergroups"][0]["id"] == "S0SECOPS" and groups["usergroups"][0]["users"] == [
        "U0BOB",
        "U0CAROL",
    ]
    members = await client.usergroups_users_list(usergroup="S0SECOPS")
    assert members["users"] == ["U0BOB", "U0CAROL"]
    assert (await error_of(client.usergroups_users_list(usergroup="S0X"))).response[
        "error"
    ] == "no_such_subteam"


async def test_rate_limit_injection_surfaces_in_slack_sdk_and_its_retry(slack: FakeSlack) -> None:
    plain = AsyncWebClient(token=TOKEN, base_url=slack.api_url)
    slack.fail_next("chat.postMessage", status=429, retry_after=0)
    limited = await error_of(plain.chat_postMessage(channel=ALERTS, text="one"))
    assert limited.response.status_code == 429 and limited.response["error"] == "ratelimited"
    assert limited.response.headers["Retry-After"] == "0"
    assert slack.messages(ALERTS) == []

    retrying = AsyncWebClient(
        token=TOKEN,
        base_url=slack.api_url,
        retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=2)],
    )
    slack.fail_next("chat.postMessage", status=429, retry_after=0, count=2)
    await retrying.chat_postMessage(channel=ALERTS, text="two")
    assert [m["text"] for m in slack.messages(ALERTS)] == ["two"]
    assert len(slack.calls_to("chat.postMessage")) == 4  # 1 refused + 2 refused + 1 accepted

    slack.fail_next("chat.update", error="ratelimited")
    assert (await error_of(plain.chat_update(channel=ALERTS, ts="1.1", text="x"))).response[
        "error"
    ] == "ratelimited"
    slack.fail_next("auth.test", status=500)
    server = await error_of(plain.auth_test())
    assert server.response.status_code == 500
    assert (await plain.auth_test())["ok"] is True


@pytest.mark.parametrize("mode", ["503", "drop"])
async def test_down_makes_slack_unreachable_until_up(slack: FakeSlack, mode: str) -> None:
    slack.down(mode)
    async with aiohttp.ClientSession() as session:
        if mode == "503":
            async with session.post(slack.api_url + "auth.test") as response:
                assert response.status == 503
        else:
            with pytest.raises(aiohttp.ClientError):
                async with session.post(slack.api_url + "auth.test") as response:
                    await response.read()
    slack.up()
    assert (await AsyncWebClient(token=TOKEN, base_url=slack.api_url).auth_test())["ok"] is True


# --- the driver towards a real Bolt app ----------------------------------------------------------


def bolt_app(slack: FakeSlack) -> AsyncApp:
    """A small Bolt app exercising each kind of request the driver sends."""
    app = AsyncApp(client=AsyncWebClient(token=TOKEN, base_url=slack.api_url), signing_secret=SECRET)

    @app.command("/idops")
    async def command(ack, body, client, respond) -> None:  # type: ignore[no-untyped-def]
        text = body["text"]
        if text == "card":
            await ack()
            await client.chat_postMessage(channel=ALERTS, text="card", blocks=CARD)
        elif text == "modal":
            await ack()
            await client.views_open(trigger_id=body["trigger_id"], view=MODAL)
        elif text == "late-modal":
            await ack()
            failure = None
            try:
                await client.views_open(trigger_id="123.456.nope", view=MODAL)
            except SlackApiError as exc:
                failure = exc.response["error"]
            await respond(f"views.open said {failure}")
        elif text == "in-channel":
            await ack()
            await respond(text="for everyone", response_type="in_channel")
        elif text == "broken":
            raise RuntimeError("handler failed")
        else:
            await ack(f"you said {text}")

    @app.action("alert:ack")
    async def acked(ack, body, respond) -> None:  # type: ignore[no-untyped-def]
        await ack()
        blocks = [b for b in body["message"]["blocks"] if b.get("type") != "section"]
        await respond(replace_original=True, text=f"acked by {body['user']['id']}", blocks=blocks)

    @app.action("request:disable")
    async def disable(ack, body, respond) -> None:  # type: ignore[no-untyped-def]
        await ack()
        await respond(
            text="confirm?",
            blocks=[
                {
                    "type": "actions",
                    "elements": [
                        {
                            "type": "button",
                            "action_id": "dismiss",
                            "value": body["actions"][0]["value"],
                            "text": {"type": "plain_text", "text": "Dismiss"},
                        }
                    ],
                }
            ],
        )

    @app.action("dismiss")
    async def dismiss(ack, respond) -> None:  # type: ignore[no-untyped-def]
        await ack()
        await respond(delete_original=True)

    @app.view("reason")
    async def reason(ack, body, view, client) -> None:  # type: ignore[no-untyped-def]
        text = view["state"]["values"]["reason"]["text"]["value"]
        if len(text) < 5:
            await ack(response_action="errors", errors={"reason": "Say a bit more"})
            return
        await ack()
        await client.chat_postMessage(channel=ALERTS, text=f"reason: {text}")

    @app.event("app_home_opened")
    async def home(event, client) -> None:  # type: ignore[no-untyped-def]
        await client.views_publish(
            user_id=event["user"],
            view={"type": "home", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "Hi"}}]},
        )

    return app


@pytest.fixture
async def bot_url(slack: FakeSlack) -> AsyncIterator[str]:
    async with serving(bolt_app(slack).web_app()) as url:
        yield url + "/slack/events"


async def test_command_ack_and_response_url_show_to_the_user(slack: FakeSlack, bot_url: str) -> None:
    reply = await slack.command(bot_url, "U0ALICE", "hello <!channel>", channel_id=ALERTS)
    assert reply.status == 200
    assert [r["text"] for r in slack.responses("U0ALICE")] == ["you said hello <!channel>"]
    assert slack.responses("U0BOB") == []

    await slack.command(bot_url, "U0ALICE", "in-channel", channel_id=ALERTS)
    shared = await slack.wait_for(lambda: slack.messages(ALERTS), what="the in_channel response")
    assert [m["text"] for m in shared] == ["for everyone"]

    failed = await slack.command(bot_url, "U0ALICE", "broken", channel_id=ALERTS)
    assert failed.status == 500
    assert "dispatch_failed" in slack.responses("U0ALICE")[-1]["text"]
    with pytest.raises(ValueError, match="U0NOBODY"):
        await slack.command(bot_url, "U0NOBODY", "hi")


async def test_clicks_carry_the_stored_button_and_respond_replaces_or_deletes(
    slack: FakeSlack, bot_url: str
) -> None:
    await slack.command(bot_url, "U0ALICE", "card", channel_id=ALERTS)
    (card,) = await slack.wait_for(lambda: slack.messages(ALERTS), what="the card")
    with pytest.raises(LookupError, match="approval:approve"):
        await slack.click(bot_url, "U0BOB", card, "approval:approve")

    reply = await slack.click(bot_url, "U0BOB", card, "alert:ack")
    assert reply.status == 200
    now = await slack.wait_for(lambda: next((m for m in slack.messages(ALERTS) if "edited" in m), None))
    assert now["text"] == "acked by U0BOB" and all(b["type"] != "section" for b in now["blocks"])
    with pytest.raises(LookupError, match="alert:ack"):  # the button is gone since the update
        await slack.click(bot_url, "U0BOB", card, "alert:ack")

    await slack.click(bot_url, "U0CAROL", now, "request:disable")
    (prompt,) = await slack.wait_for(lambda: slack.responses("U0CAROL"), what="the prompt")
    assert prompt["text"] == "confirm?" and prompt["is_ephemeral"] is True
    assert prompt["blocks"][0]["elements"][0]["value"] == "homebase:hb-42"
    await slack.click(bot_url, "U0CAROL", prompt, "dismiss")
    await slack.wait_for(lambda: not slack.responses("U0CAROL"), what="the prompt to go")


async def test_modals_need_fresh_triggers_and_submissions_reach_the_bot(
    slack: FakeSlack, bot_url: str
) -> None:
    await slack.command(bot_url, "U0ALICE", "modal")
    (modal,) = await slack.wait_for(lambda: slack.views("U0ALICE"), what="the modal")
    assert modal["title"]["text"] == "Why?" and modal["id"].startswith("V")
    with pytest.raises(ValueError, match="required"):
        await slack.submit_view(bot_url, "U0ALICE", modal["id"], {"ticket": {"id": "T-1"}})
    await slack.submit_view(bot_url, "U0ALICE", modal["id"], {"reason": {"text": "no"}})
    assert slack.views("U0ALICE")[0]["errors"] == {"reason": "Say a bit more"}
    await slack.submit_view(bot_url, "U0ALICE", modal["id"], {"reason": {"text": "phished <@U0BOB>"}})
    assert slack.views("U0ALICE") == []
    (posted,) = await slack.wait_for(lambda: slack.messages(ALERTS), what="the reason")
    assert posted["text"] == "reason: phished <@U0BOB>"

    await slack.command(bot_url, "U0ALICE", "late-modal")
    (said,) = await slack.wait_for(lambda: slack.responses("U0ALICE"), what="the views.open failure")
    assert said["text"] == "views.open said invalid_trigger_id"

    client = AsyncWebClient(token=TOKEN, base_url=slack.api_url)
    reply = await slack.command(bot_url, "U0ALICE", "plain")
    await client.views_open(trigger_id=reply.trigger_id, view=MODAL)
    used = await error_of(client.views_open(trigger_id=reply.trigger_id, view=MODAL))
    assert used.response["error"] == "exchanged_trigger_id"
    slack.trigger_ttl = -1.0
    stale = await slack.command(bot_url, "U0ALICE", "plain")
    expired = await error_of(client.views_open(trigger_id=stale.trigger_id, view=MODAL))
    assert expired.response["error"] == "expired_trigger_id"

    (current,) = slack.views("U0ALICE")
    updated = await client.views_update(
        view_id=current["id"], view={**MODAL, "title": {"type": "plain_text", "text": "Now"}}
    )
    assert updated["view"]["id"] == current["id"] and slack.views("U0ALICE")[0]["title"]["text"] == "Now"
    conflict = await error_of(client.views_update(view_id=current["id"], hash="stale", view=MODAL))
    assert conflict.response["error"] == "hash_conflict"
    bad_view = {
        **MODAL,
        "blocks": [{"type": "input", "label": {"type": "mrkdwn", "text": "L"}, "element": {}}],
    }
    assert (await error_of(client.views_update(view_id=current["id"], view=bad_view))).response[
        "error"
    ] == "invalid_blocks"


async def test_app_home_opened_reaches_the_bot_and_publish_is_per_user(
    slack: FakeSlack, bot_url: str
) -> None:
    assert slack.home("U0CAROL") is None
    reply = await slack.open_home(bot_url, "U0CAROL")
    assert reply.status == 200
    home = await slack.wait_for(lambda: slack.home("U0CAROL"), what="the App Home")
    assert home["blocks"][0]["text"]["text"] == "Hi"
    assert slack.home("U0ALICE") is None


class Capture:
    """A bare endpoint that keeps the raw requests the driver sends."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], str]] = []
        self.app = web.Application()
        self.app.router.add_post("/slack/events", self.handle)

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((dict(request.headers), await request.text()))
        return web.Response(status=200)


async def test_outgoing_requests_are_signed_and_shaped_like_slack(slack: FakeSlack) -> None:
    capture = Capture()
    verifier = SignatureVerifier(SECRET)
    async with serving(capture.app) as base:
        url = base + "/slack/events"
        await slack.command(url, "U0ALICE", "whois ada@example.com", channel_id=ALERTS)
        await slack.open_home(url, "U0ALICE")
        await slack.command(url, "U0ALICE", "x", sign=False)
        await slack.command(url, "U0ALICE", "x", timestamp_offset=-600)
        await slack.command(url, "U0ALICE", "x", secret="wrong")

    (h1, b1), (h2, b2), (h3, _), (h4, b4), (h5, b5) = capture.requests
    assert verifier.is_valid(b1, h1["X-Slack-Request-Timestamp"], h1["X-Slack-Signature"])
    assert verifier.is_valid(b2, h2["X-Slack-Request-Timestamp"], h2["X-Slack-Signature"])
    assert "X-Slack-Signature" not in h3
    assert not verifier.is_valid(b4, h4["X-Slack-Request-Timestamp"], h4["X-Slack-Signature"])
    assert not verifier.is_valid(b5, h5["X-Slack-Request-Timestamp"], h5["X-Slack-Signature"])

    form = dict(urllib.parse.parse_qsl(b1))
    assert set(form) == {
        "token", "team_id", "team_domain", "channel_id", "channel_name", "user_id", "user_name", "command",
        "text", "api_app_id", "is_enterprise_install", "response_url", "trigger_id",
    }  # fmt: skip
    assert form["channel_name"] == "idops-alerts" and form["user_name"] == "alice"
    assert form["response_url"].startswith(slack.base_url + "/response/")
    event = json.loads(b2)
    assert event["type"] == "event_callback" and event["event"]["type"] == "app_home_opened"
    assert h2["Content-Type"] == "application/json"


async def test_bolt_refuses_badly_signed_requests(slack: FakeSlack, bot_url: str) -> None:
    for signing in ({"sign": False}, {"timestamp_offset": -600}, {"secret": "wrong"}):
        reply = await slack.command(bot_url, "U0ALICE", "hello", **signing)
        assert reply.status == 401, signing
    assert all(r["text"] != "you said hello" for r in slack.responses("U0ALICE"))


# --- the demo page's endpoints -------------------------------------------------------------------


async def test_page_endpoints_drive_the_bot_and_name_bad_input() -> None:
    fake = FakeSlack(users=USERS, channels={ALERTS: "idops-alerts"}, bot_token=TOKEN, signing_secret=SECRET)
    page = SlackUI(fake, "", [("U0ALICE", "responder"), ("U0BOB", "approver")])
    page.attach()
    async with (
        fake.serve() as base,
        serving(bolt_app(fake).web_app()) as bot,
        aiohttp.ClientSession() as http,
    ):
        page.bot_url = bot + "/slack/events"

        async def post(path: str, body: Any) -> tuple[int, dict]:
            async with http.post(base + path, json=body) as response:
                return response.status, await response.json()

        async with http.get(base + "/") as response:
            assert response.status == 200 and "/ui/app.js" in await response.text()
        async with http.get(base + "/ui/app.js") as response:
            assert response.status == 200 and "textContent" in await response.text()
        async with http.get(base + "/_ui/people") as response:
            assert [p["id"] for p in (await response.json())["people"]] == ["U0ALICE", "U0BOB"]
        async with http.get(base + "/_ui/state?user=U0MALLORY") as response:
            assert response.status == 400 and "U0MALLORY" in (await response.json())["error"]

        assert await post("/_ui/command", {"user": "U0ALICE", "line": "hello"}) == (
            400,
            {"error": "type a slash command, e.g. /idops help"},
        )
        async with http.post(base + "/_ui/command", data=b"{nope") as response:
            assert response.status == 400 and (await response.json())["error"]

        async with http.get(base + "/_ui/state?user=U0ALICE&version=-1") as response:
            before = (await response.json())["version"]
        waiting = asyncio.ensure_future(http.get(base + f"/_ui/state?user=U0ALICE&version={before}"))
        assert await post("/_ui/command", {"user": "U0ALICE", "line": "/idops card", "channel": ALERTS}) == (
            200,
            {"status": 200},
        )
        async with await asyncio.wait_for(waiting, 10) as response:
            state = await response.json()
        assert state["version"] > before and state["me"] == "U0ALICE"
        (card,) = await fake.wait_for(lambda: fake.messages(ALERTS), what="the card")

        where = {"kind": "message", "channel": ALERTS, "ts": card["ts"]}
        status, body = await post(
            "/_ui/click", {"user": "U0BOB", "where": where, "action_id": "approval:approve"}
        )
        assert status == 400 and "no button 'approval:approve'" in body["error"]
        assert await post("/_ui/click", {"user": "U0BOB", "where": where, "action_id": "alert:ack"}) == (
            200,
            {"status": 200},
        )
        await fake.wait_for(lambda: fake.messages(ALERTS)[0]["text"] == "acked by U0BOB", what="the ack")

        status, body = await post("/_ui/submit", {"user": "U0BOB", "view_id": "V0", "values": "x"})
        assert status == 400 and "values must be" in body["error"]

    page.bot_url = "http://127.0.0.1:9/slack/events"  # nothing listens on the discard port
    async with fake.serve() as base, aiohttp.ClientSession() as http:
        async with http.post(base + "/_ui/home", json={"user": "U0ALICE"}) as response:
            assert response.status == 502 and "did not answer" in (await response.json())["error"]


async def test_ephemerals_views_push_publish_and_conversations(slack: FakeSlack, bot_url: str) -> None:
    client = AsyncWebClient(token=TOKEN, base_url=slack.api_url)
    sent = await client.chat_postEphemeral(
        channel=ALERTS, user="U0BOB", text="psst \x1b[31m", blocks=CARD[:1]
    )
    (only,) = slack.ephemerals("U0BOB")
    assert only["ts"] == sent["message_ts"] and only["blocks"] == CARD[:1] and only["channel"] == ALERTS
    assert slack.ephemerals("U0ALICE") == [] and slack.messages(ALERTS) == []
    missing = await error_of(client.chat_postEphemeral(channel=ALERTS, user="U0NOBODY", text="x"))
    assert missing.response["error"] == "user_not_in_channel"

    reply = await slack.command(bot_url, "U0ALICE", "plain")
    opened = await client.views_open(trigger_id=reply.trigger_id, view=MODAL)
    pushed_without_trigger = await error_of(client.views_push(trigger_id=reply.trigger_id, view=MODAL))
    assert pushed_without_trigger.response["error"] == "exchanged_trigger_id"
    again = await slack.command(bot_url, "U0ALICE", "plain")
    pushed = await client.views_push(trigger_id=again.trigger_id, view={**MODAL, "callback_id": "second"})
    stack = slack.views("U0ALICE")
    assert [v["callback_id"] for v in stack] == ["reason", "second"]
    assert pushed["view"]["previous_view_id"] == opened["view"]["id"] == stack[1]["root_view_id"]

    home = {"type": "home", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "v1"}}]}
    first = await client.views_publish(user_id="U0CAROL", view=home)
    stale = await error_of(client.views_publish(user_id="U0CAROL", view=home, hash="old"))
    assert stale.response["error"] == "hash_conflict"
    await client.views_publish(user_id="U0CAROL", view=home, hash=first["view"]["hash"])
    not_home = await error_of(client.views_publish(user_id="U0CAROL", view=MODAL))
    assert not_home.response["error"] == "invalid_arguments"

    dm = await client.conversations_open(users="U0BOB")
    await client.chat_postMessage(channel="U0BOB", text="direct")
    assert [m["text"] for m in slack.messages(dm["channel"]["id"])] == ["direct"]
    info = await client.conversations_info(channel=ALERTS)
    assert info["channel"]["name"] == "idops-alerts"


async def test_event_lines_carry_no_control_characters() -> None:
    lines: list[str] = []
    fake = FakeSlack(users=USERS, bot_token=TOKEN, on_event=lines.append)
    async with fake.serve():
        client = AsyncWebClient(token=TOKEN, base_url=fake.api_url)
        await client.chat_postMessage(channel=ALERTS, text="\x1b]0;owned\x07 risky")
    assert lines and all(line.isprintable() for line in lines)
    assert "risky" in lines[-1]


async def test_undeclared_channels_exist_once_posted_to() -> None:
    """Without `channels=`, history finds what was posted (a restarted sender relies on this)."""
    fake = FakeSlack(users=USERS, bot_token=TOKEN, signing_secret=SECRET)
    async with fake.serve():
        client = AsyncWebClient(token=TOKEN, base_url=fake.api_url)
        assert (await error_of(client.conversations_history(channel="C0NEW"))).response[
            "error"
        ] == "channel_not_found"
        await client.chat_postMessage(
            channel="C0NEW",
            text="hi",
            metadata={"event_type": "idops_alert", "event_payload": {"alert_id": "a1"}},
        )
        history = await client.conversations_history(channel="C0NEW", include_all_metadata=True)
        assert [m["metadata"]["event_payload"]["alert_id"] for m in history["messages"]] == ["a1"]

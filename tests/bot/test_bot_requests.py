"""Requests that are not Slack's, or that can't be read, are refused cleanly: 401 for whatever fails
verification (checked on the raw bytes before anything is parsed), 400 for a signed body that can't be
read, 413 for a body over `server.MAX_BODY` (refused before it is read). Never a 500 or a traceback, and
never a body in the log: one short line per refusal. The SOAR API and the webhooks hold to the same."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
import urllib.parse
from collections.abc import AsyncIterator

import pytest
from support.alerts import HOOK_SECRET, SP_TOKEN, served
from support.bot import REQUESTER

from bot import server

FORM = "application/x-www-form-urlencoded"


@pytest.fixture
def logged(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


def assert_clean(caplog: pytest.LogCaptureFixture, *, most: int = 1, secret: bytes = b"") -> None:
    """No traceback and no error in the log, at most `most` lines, each short and body-free."""
    noise = ("asyncio", "aiohttp.access", "apscheduler")
    records = [r for r in caplog.records if not r.name.startswith(noise)]
    assert [r for r in records if r.exc_info or r.levelno >= logging.ERROR] == []
    assert len(records) <= most, [r.getMessage() for r in records]
    for record in records:
        line = record.getMessage()
        assert len(line) < 300 and "\n" not in line, line
        assert "SECRET-BODY" not in line and (not secret or secret.decode() not in line)


def slack_headers(h, body: bytes, content_type: str = FORM) -> dict[str, str]:
    timestamp = str(int(time.time()))
    base = b"v0:" + timestamp.encode() + b":" + body
    signature = "v0=" + hmac.new(h.slack.signing_secret.encode(), base, hashlib.sha256).hexdigest()
    return {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": signature,
    }


async def post(h, path: str, body: bytes, headers: dict[str, str]) -> int:
    async with h.http.post(h.url + path, data=body, headers=headers) as response:
        await response.read()
        return response.status


async def raw_post(url: str, path: str, header: bytes, body: bytes = b"{}") -> int:
    """POST with one header sent as the bytes given (aiohttp's client would refuse); the status answered."""
    host, _, port = url.removeprefix("http://").partition(":")
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\nConnection: close\r\n"
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(head.encode() + header + b"\r\n\r\n" + body)
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 10)
    finally:
        writer.close()
    return int(status_line.split()[1])


UNSIGNED = [
    (b"payload=%7Bx", {"Content-Type": FORM}),
    (b"payload=[1,2]", {"Content-Type": FORM}),
    (b"x", {"Content-Type": "application/json"}),
    (b"{" * 5000 + b"SECRET-BODY", {"Content-Type": "application/json"}),
    (b"\xff\xfeSECRET-BODY", {"Content-Type": FORM}),
    *[
        (b"command=%2Fidops&text=help", {"Content-Type": FORM, "X-Slack-Request-Timestamp": ts})
        for ts in ("abc", "", "1e10", "1.5", "-1", "9" * 5000, "\u0661\u0662")
    ],
    *[
        (b"payload=%7Bx", {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": "v0=00"})
        for ts in ("abc", "", "1e10", "1.5", str(int(time.time())))
    ],
    (b"text=help", {"Content-Type": FORM, "X-Slack-Signature": "v0=\u00e9\u00e9"}),
]


@pytest.mark.parametrize(("body", "headers"), UNSIGNED)
async def test_unsigned_malformed_requests_get_401_and_one_short_line(h, logged, body, headers):
    assert await post(h, "/slack/events", body, headers) == 401
    assert_clean(logged)
    assert h.slack.calls == [] and h.cards() == []


async def test_a_signature_that_is_not_text_gets_401(h, logged):
    stamp = f"X-Slack-Request-Timestamp: {int(time.time())}\r\n".encode()
    assert await raw_post(h.url, "/slack/events", stamp + b"X-Slack-Signature: v0=\xff\xfe", b"text=a") == 401
    assert_clean(logged)


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"payload=%7Bx", FORM),
        (b"payload=[1,2]", FORM),
        (b"payload=%22text%22", FORM),
        (b"x", "application/json"),
        (b"[1, 2]", "application/json"),
        (b"[" * 5000 + b"]" * 5000, "application/json"),
        (b"text=\xff\xfe", FORM),
    ],
)
async def test_signed_bodies_that_cant_be_read_get_400(h, logged, body, content_type):
    assert await post(h, "/slack/events", body, slack_headers(h, body, content_type)) == 400
    assert_clean(logged)


@pytest.mark.parametrize(
    "payload",
    [
        {"type": "block_actions"},
        {"type": "block_actions", "actions": "x", "user": {"id": "U0ALICE"}},
        {"type": "block_actions", "actions": [{}], "user": {"id": "U0ALICE"}},
        {"type": "block_actions", "actions": [{"action_id": "approval:approve"}], "user": "x"},
        {
            "type": "block_actions",
            "actions": [{"action_id": "approval:approve", "value": 5}],
            "user": {"id": "U"},
        },
        {"type": "view_submission", "view": {"callback_id": "approval:deny"}},
        {"type": "view_submission", "user": {"id": "U0ALICE"}, "view": {"state": {"values": []}}},
        {"type": "event_callback", "event": "x"},
        {"type": "event_callback", "event": {"type": "app_home_opened"}},
    ],
)
async def test_signed_payloads_not_shaped_as_slack_sends_them_get_400(h, logged, payload):
    body = ("payload=" + urllib.parse.quote(json.dumps(payload))).encode()
    assert await post(h, "/slack/events", body, slack_headers(h, body)) == 400
    command = json.dumps({"command": "/idops", "text": ["help"], "user_id": REQUESTER}).encode()
    assert await post(h, "/slack/events", command, slack_headers(h, command, "application/json")) == 400
    await h.settle()
    assert_clean(logged, most=2)
    assert h.slack.calls == []


async def test_a_signed_request_still_works(h, logged):
    reply = await h.command(REQUESTER, "help")
    assert reply.status == 200 and "whois" in h.last_seen(REQUESTER)["text"]


async def test_an_unsigned_big_body_is_not_logged(h, logged):
    body = b"text=" + b"SECRET-BODY" * 9_000  # ~100 KB, under the limit: read, refused, not logged
    assert len(body) < server.MAX_BODY
    assert await post(h, "/slack/events", body, {"Content-Type": FORM}) == 401
    assert_clean(logged)
    assert sum(len(r.getMessage()) for r in logged.records) < 300


async def test_a_body_over_the_limit_is_refused_before_it_is_read(h, logged):
    body = b"text=" + b"SECRET-BODY" * 90_000  # ~1 MB
    assert len(body) > server.MAX_BODY
    # announced by Content-Length: refused from the headers, signed or not
    assert await post(h, "/slack/events", body, {"Content-Type": FORM}) == 413
    assert await post(h, "/slack/events", body, slack_headers(h, body)) == 413

    # sent in chunks without a length: refused once the limit is passed
    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 64 * 1024):
            yield body[start : start + 64 * 1024]

    async with h.http.post(h.url + "/slack/events", data=chunks(), headers={"Content-Type": FORM}) as answer:
        assert answer.status == 413
    assert_clean(logged, most=3)


async def test_the_soar_api_refuses_bodies_it_cant_read_with_400(h, logged):
    auth = {"Authorization": "Bearer test-api-token", "Content-Type": "application/json"}
    for body in (b"\xff\xfe", b"[" * 5000, b'{"reason": ' + b"1" * 5000 + b"}", b"{"):
        assert await post(h, "/api/v1/approvals", body, auth) == 400, body[:20]
    weird_charset = {**auth, "Content-Type": "application/json; charset=no-such-charset"}
    assert await post(h, "/api/v1/approvals", b"{}", weird_charset) == 400
    big = b'{"reason": "' + b"x" * (server.MAX_BODY + 10) + b'"}'
    assert await post(h, "/api/v1/approvals", big, auth) == 413
    assert await raw_post(h.url, "/api/v1/approvals", b"Authorization: Bearer \xff\xfe") == 401
    assert_clean(logged, most=2)
    assert h.cards() == []


async def test_webhooks_refuse_what_they_cant_read_without_a_500(tmp_path, logged):
    async with served(tmp_path) as s:
        await s.started()
        logged.clear()

        def signed(body: bytes) -> dict[str, str]:
            digest = hmac.new(HOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
            return {"Content-Type": "application/json", "X-HLD-Signature-256": "sha256=" + digest}

        nested = b"[" * 5000 + b"]" * 5000
        assert await post(s, "/webhooks/homebase", nested, signed(nested)) == 400
        assert await post(s, "/webhooks/homebase", b"{}", {"X-HLD-Signature-256": "sha256=\u00e9"}) == 401
        big = b"x" * (server.MAX_BODY + 1)
        assert await post(s, "/webhooks/homebase", big, signed(big)) == 413
        assert await raw_post(s.url, "/webhooks/homebase", b"X-HLD-Signature-256: sha256=\xff") == 401
        assert await raw_post(s.url, "/webhooks/sailpoint", b"Authorization: Bearer \xff") == 401
        sailpoint = {"Authorization": f"Bearer {SP_TOKEN}", "Content-Type": "application/json"}
        assert await post(s, "/webhooks/sailpoint", nested, sailpoint) == 400
        assert await post(s, "/webhooks/sailpoint", b"\xff", sailpoint) == 400
        not_an_id = json.dumps({"identity": {"id": 1}}).encode()
        assert await post(s, "/webhooks/sailpoint", not_an_id, sailpoint) == 400
        assert_clean(logged, most=5)

"""No secret reaches the log, at any level: a real run of the server (Slack commands and clicks, the SOAR
API, both webhooks, HomeBase and SailPoint with an OAuth token that expires) with every logger at DEBUG,
good and bad credentials alike. The secrets are made up per test and long enough that a hit is a leak.

The one exception is slack_sdk's own webhook client, which at DEBUG logs each response_url it posts to
(with the body): idops never runs below INFO (`idops serve`), and nothing of idops' own does it."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets

from support.approvals import API_KEY
from support.bot import APPROVER, OUTSIDER, REQUESTER, harness

HOOK_SECRET = "whsec-" + secrets.token_hex(16)
SP_TOKEN = "sptrigger-" + secrets.token_hex(16)
API_TOKEN = "test-api-token"  # what the harness sets as IDOPS_API_TOKEN
WEBHOOK_ENV = {"LOG_TEST_HOOK": HOOK_SECRET, "LOG_TEST_SP": SP_TOKEN}


def leaks(records: list[logging.LogRecord], wanted: dict[str, str]) -> list[str]:
    """Each secret found in a record (message, arguments, traceback), with the logger's name."""
    found = []
    for record in records:
        if record.name.startswith("slack_sdk.webhook") and record.levelno == logging.DEBUG:
            continue  # the exception above
        text = record.getMessage() + (
            logging.Formatter().formatException(record.exc_info) if record.exc_info else ""
        )
        found += [
            f"{name} in {record.name}: {text[:120]!r}" for name, value in wanted.items() if value in text
        ]
    return found


async def test_no_secret_is_logged_in_a_real_run(tmp_path, logged):
    logging.getLogger().setLevel(logging.DEBUG)
    webhooks = {"homebase_secret_env": "LOG_TEST_HOOK", "sailpoint_token_env": "LOG_TEST_SP"}
    async with harness(
        tmp_path, with_sailpoint=True, with_alerts=True, environ=WEBHOOK_ENV, webhooks=webhooks
    ) as h:
        person = h.people["plain"]
        sailpoint = h.extra["sailpoint"]
        await h.command(REQUESTER, f"whois {person['email']}")
        await h.command(REQUESTER, f"whois {sailpoint.identity_id(3)}")
        await h.command(REQUESTER, f"revoke {person['email']} phished")
        await h.click(APPROVER, h.card(), "approval:approve")
        await h.command(OUTSIDER, "risky")
        await h.command(REQUESTER, "help", secret="not-the-signing-secret")
        await h.command(REQUESTER, "help", timestamp_offset=-900)
        # SailPoint forgets its tokens: the next read is refused, the token renewed (client secret sent)
        sailpoint.expire_tokens()
        await h.command(REQUESTER, f"whois {sailpoint.identity_id(4)}")

        for token in (API_TOKEN, "wrong-" + API_TOKEN):
            body = {
                "connector": "homebase",
                "identity": person["id"],
                "action": "reset",
                "requested_by": REQUESTER,
            }
            headers = {"Authorization": f"Bearer {token}"}
            async with h.http.post(h.url + "/api/v1/approvals", json=body, headers=headers) as answer:
                assert answer.status in (201, 401, 409)
        event = json.dumps(
            {"id": "evt_1", "type": "identity.risk_changed", "data": {"identity_id": person["id"]}}
        )
        for key in (HOOK_SECRET, "wrong-" + HOOK_SECRET):
            digest = hmac.new(key.encode(), event.encode(), hashlib.sha256).hexdigest()
            headers = {"X-HLD-Signature-256": f"sha256={digest}", "Content-Type": "application/json"}
            async with h.http.post(h.url + "/webhooks/homebase", data=event, headers=headers) as answer:
                assert answer.status in (202, 401)
        for token in (SP_TOKEN, "wrong-" + SP_TOKEN):
            trigger = {"identity": {"id": sailpoint.identity_id(5)}}
            headers = {"Authorization": f"Bearer {token}"}
            async with h.http.post(h.url + "/webhooks/sailpoint", json=trigger, headers=headers) as answer:
                assert answer.status in (202, 401)
        await h.settle()

        wanted = {
            "Slack bot token": h.slack.bot_token,
            "Slack signing secret": h.slack.signing_secret,
            "Slack verification token": h.slack.verification_token,
            "HomeBase API key": API_KEY,
            "SailPoint client secret": "sim-secret",
            "IDOPS_API_TOKEN": API_TOKEN,
            "HomeBase webhook secret": HOOK_SECRET,
            "SailPoint trigger token": SP_TOKEN,
            **{f"SailPoint access token {n}": token for n, token in enumerate(sailpoint.tokens)},
            **{f"response_url {n}": rid for n, rid in enumerate(h.slack._response_urls)},
        }
        assert sailpoint.tokens_issued >= 2, "the SailPoint token was renewed"
        assert len(logged.records) > 100, "everything logs at DEBUG here"
        assert leaks(logged.records, wanted) == []

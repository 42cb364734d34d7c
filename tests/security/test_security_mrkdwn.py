"""Escaping `&`, `<` and `>` stops Slack markup in untrusted text, but not Slack's automatic parsing: in
a mrkdwn text object without `verbatim`, Slack itself turns a bare URL into a link and a `#name` into a
channel link (and parses some mentions). A display name such as "verify at https://evil.example/login"
would be a clickable link on an alert card shown to the security team. Every mrkdwn object idops sends
is verbatim; idops' own `<@U…>`, `<#C…>`, `<!date^…>` and `<!subteam^…>` still render."""

from __future__ import annotations

import json
from typing import Any

from support.bot import ALERT_CHANNEL, APPROVAL_CHANNEL, APPROVER, REQUESTER, SENDS, harness

BARE = "see https://evil.example/login #general @here"


def mrkdwn_objects(node: Any) -> list[dict[str, Any]]:
    """Every mrkdwn text object in a message, block list or view."""
    if isinstance(node, str) and node[:1] in "[{":
        try:
            node = json.loads(node)  # form-encoded calls carry blocks and views as JSON strings
        except ValueError:
            return []
    if isinstance(node, dict):
        own = [node] if node.get("type") == "mrkdwn" else []
        return own + [found for value in node.values() for found in mrkdwn_objects(value)]
    if isinstance(node, list):
        return [found for value in node for found in mrkdwn_objects(value)]
    return []


async def test_every_mrkdwn_object_idops_sends_is_verbatim(tmp_path):
    async with harness(tmp_path, with_alerts=True) as h:
        person = h.people["plain"]
        # Slack sends a typed URL wrapped as <https://…>: idops unwraps it, so the reason holds it bare
        await h.command(REQUESTER, f"revoke {person['email']} <https://evil.example/login> #general @here")
        card = h.card()
        assert "https://evil.example/login #general @here" in json.dumps(card["blocks"])
        await h.click(APPROVER, card, "approval:approve")
        for text in (f"whois {person['email']}", "risky", "pending", f"audit {person['email']}", "nonsense"):
            await h.command(REQUESTER, text)
        await h.slack.open_home(h.events_url, APPROVER)
        await h.settle()
        await h.slack.wait_for(lambda: h.slack.messages(ALERT_CHANNEL), timeout=30)  # the first sweep

        sent = [params for method, params in h.slack.calls if method in SENDS]
        found = [obj for params in sent for obj in mrkdwn_objects(params)]
        assert len(found) > 50, "the flow should have sent many mrkdwn texts"
        assert [obj["text"][:80] for obj in found if obj.get("verbatim") is not True] == []
        assert h.slack.messages(APPROVAL_CHANNEL)[0]["replies"], "the approval ran and was reported"


BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"


async def test_bidirectional_overrides_in_a_display_name_never_reach_slack(tmp_path):
    # "\u202e" shows the rest of a name reversed: "\u202enimdA ecilA" reads "Alice Admin" on a card
    async with harness(tmp_path) as h:
        person = h.people["plain"]
        spoof = "\u202enimdA ecilA\u202c \u2067x\u2069"
        corrupt = {"kind": "corrupt", "field": "display_name", "value": spoof, "method": "GET"}
        await h.fault(**corrupt, count=20, path=f"/v1/identity/{person['id']}")
        await h.command(REQUESTER, f"whois {person['id']}")
        await h.command(REQUESTER, f"revoke {person['id']} phished \u202eesrever")
        card = h.card()
        assert "nimdA ecilA x" in json.dumps(card, ensure_ascii=False)  # shown, in the order stored
        assert h.bot.service.get(card["metadata"]["event_payload"]["request_id"]).target["name"] == spoof
        sent = json.dumps([params for method, params in h.slack.calls if method in SENDS], ensure_ascii=False)
        assert "nimdA" in sent and not any(char in sent for char in BIDI)

"""An untrusted value can't add lines to a card: a display name "Bob\\n*Requested by* @ceo" (or one with
U+2028, a carriage return, NEL) would put a line of its own into the card's section that reads as the
card's. Values shown on one line have every line break and control character made a space
(`bot.slack_text.one_line`); a reason, meant to be multi-line, keeps its lines, each a block quote
(`quoted`). Through the real server: the provider's answer corrupted in the HomeBase simulator, the
reason posted to the SOAR API over HTTP, the card and the whois answer as FakeSlack received them."""

from __future__ import annotations

import json
from typing import Any

from support.bot import REQUESTER, SENDS

from bot.slack_text import one_line, quoted

FAKE = "*Requested by* @ceo"
NAME = f"Bob\n{FAKE}\u2028*Status*\r\nApproved\x85\u2029\x0bdone"
REASON = f"phished\n{FAKE}\r\n*Reason*\u2028all good"
BREAKS = ("\r", "\u2028", "\u2029", "\x85", "\x0b", "\x0c")


def texts(node: Any) -> list[str]:
    """Every `text` string in a message, block list or view (blocks sent as JSON strings too)."""
    if isinstance(node, str) and node[:1] in "[{":
        try:
            node = json.loads(node)
        except ValueError:
            return []
    if isinstance(node, dict):
        own = [node["text"]] if isinstance(node.get("text"), str) else []
        return own + [found for value in node.values() for found in texts(value)]
    if isinstance(node, list):
        return [found for value in node for found in texts(value)]
    return []


def test_one_line_makes_every_break_and_control_a_space_and_escapes():
    assert one_line("a\nb\r\nc\u2028d\u2029e\x85f\tg\x0bh\x00i\x7fj") == "a b  c d e f g h i j"
    assert one_line("<!channel> & \u202eevil") == "&lt;!channel&gt; &amp; evil"
    assert one_line(None) == ""


def test_quoted_keeps_lines_each_a_block_quote():
    assert quoted(REASON) == f"> phished\n> {FAKE}\n> *Reason*\n> all good"
    assert quoted("one\u0085two\x00three\n") == "> one\n> two three"
    assert quoted("<@U1>") == "> &lt;@U1&gt;"


async def test_a_display_name_and_a_reason_with_line_breaks_add_no_card_lines(h):
    person = h.people["plain"]
    corrupt = {"kind": "corrupt", "field": "display_name", "value": NAME, "method": "GET"}
    await h.fault(**corrupt, count=50, path=f"/v1/identity/{person['id']}")
    body = {
        "connector": "homebase",
        "identity": person["id"],
        "action": "revoke",
        "requested_by": REQUESTER,
        "reason": REASON,
    }
    auth = {"Authorization": "Bearer test-api-token"}
    async with h.http.post(h.url + "/api/v1/approvals", json=body, headers=auth) as response:
        assert response.status == 201, await response.text()
    await h.settle()
    await h.command(REQUESTER, f"whois {person['id']}")
    card = h.card()
    assert h.bot.service.get(card["metadata"]["event_payload"]["request_id"]).target["name"] == NAME

    sent = [params for method, params in h.slack.calls if method in SENDS]
    shown = [text for params in sent for text in texts(params)]
    flat = "Bob *Requested by* @ceo *Status*  Approved   done"
    assert any(flat in text for text in texts(card)), texts(card)
    assert any(flat in text for text in texts(h.last_seen(REQUESTER)))
    lines = [line for text in shown for line in text.split("\n")]
    # the only lines that say who asked are idops' own, and nothing a provider sent breaks a line
    assert {line for line in lines if line.startswith("*Requested by*")} == {
        "*Requested by*"
    }  # the field's title
    assert not any(line.startswith(FAKE) or line.startswith("*Status*  Approved") for line in lines)
    assert not any(char in text for text in shown for char in BREAKS)
    # the reason keeps its lines, each quoted: none passes for a line of the card
    reason = next(text for text in texts(card) if text.startswith("*Reason*"))
    assert reason == f"*Reason*\n> phished\n> {FAKE}\n> *Reason*\n> all good"

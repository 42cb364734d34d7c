"""Make untrusted text safe for Slack mrkdwn and plain_text: no pings, no links, no markup tricks, no
reordered text."""

from __future__ import annotations

from typing import Optional

# Unicode's bidirectional embeddings, overrides and isolates reorder the text around them: a display name
# "\u202enimda" reads as "admin" on a card. Dropped (the stored value keeps them); marks (LRM/RLM) stay.
_BIDI: dict[str, Optional[str]] = {
    chr(code): None for code in [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]
}
_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", **_BIDI})


def escape(text: Optional[object]) -> str:
    """Escape `&`, `<` and `>` as Slack requires, so `<!channel>` or `<https://x|y>` stay inert text, and
    drop bidirectional override characters, so untrusted text can't show reordered.

    Use for every provider- or user-supplied string that goes into mrkdwn or a `text` fallback.
    """
    if text is None:
        return ""
    return str(text).translate(_ESCAPES)


def truncate(text: str, limit: int) -> str:
    """Cut `text` to at most `limit` characters, marking the cut (Block Kit rejects longer fields)."""
    return text if len(text) <= limit else text[: max(0, limit - 1)] + "…"

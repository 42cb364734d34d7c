"""Make untrusted text safe for Slack mrkdwn and plain_text: no pings, no links, no markup tricks."""

from __future__ import annotations

from typing import Optional

_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})


def escape(text: Optional[object]) -> str:
    """Escape `&`, `<` and `>` as Slack requires, so `<!channel>` or `<https://x|y>` stay inert text.

    Use for every provider- or user-supplied string that goes into mrkdwn or a `text` fallback.
    """
    if text is None:
        return ""
    return str(text).translate(_ESCAPES)


def truncate(text: str, limit: int) -> str:
    """Cut `text` to at most `limit` characters, marking the cut (Block Kit rejects longer fields)."""
    return text if len(text) <= limit else text[: max(0, limit - 1)] + "…"

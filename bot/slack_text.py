"""Make untrusted text safe for Slack mrkdwn and plain_text: no pings, no links, no markup tricks, no
reordered text, no lines of its own.

The line rule: an untrusted value shown on one line of a card (a display name, email, alert title, a
SOAR or webhook field, an error a provider sent) goes through `one_line`: every line break, other
control character and Unicode line/paragraph separator (U+2028, U+2029) becomes a space, so a display
name "Bob\n*Requested by* @ceo" can't add a line that passes for one of the card's own. Free text meant
to be multi-line (a requester's or approver's reason) goes through `quoted`: it keeps its lines, each
shown as a block quote ("> "), so none of them can imitate a card line either.
"""

from __future__ import annotations

import re
from typing import Optional

# Unicode's bidirectional embeddings, overrides and isolates reorder the text around them: a display name
# "\u202enimda" reads as "admin" on a card. Dropped (the stored value keeps them); marks (LRM/RLM) stay.
_BIDI: dict[str, Optional[str]] = {
    chr(code): None for code in [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]
}
_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", **_BIDI})
# C0 controls (line feed, carriage return, tab, vertical tab, form feed, ...), DEL, C1 controls (NEL
# U+0085 among them) and the Unicode line and paragraph separators: each would break or mark a line
_BREAKS = [*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0), 0x2028, 0x2029]
_ONE_LINE = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", **_BIDI, **{chr(c): " " for c in _BREAKS}})
_LINE_ENDS = re.compile("\r\n|[\n\r\x0b\x0c\x85\u2028\u2029]")


def escape(text: Optional[object]) -> str:
    """Escape `&`, `<` and `>` as Slack requires, so `<!channel>` or `<https://x|y>` stay inert text, and
    drop bidirectional override characters, so untrusted text can't show reordered.

    Use for every provider- or user-supplied string that goes into mrkdwn or a `text` fallback.
    """
    if text is None:
        return ""
    return str(text).translate(_ESCAPES)


def one_line(text: Optional[object]) -> str:
    """`escape(text)` on one line: line breaks, other control characters and U+2028/U+2029 become spaces.

    Use for every untrusted value shown inside one line of a card (see the module's line rule).
    """
    if text is None:
        return ""
    return str(text).translate(_ONE_LINE)


def quoted(text: Optional[object]) -> str:
    """Untrusted multi-line free text (a reason): each of its lines escaped as by `one_line` and shown as
    a block quote ("> "), so it keeps its lines but none can pass for a line of the card."""
    return "\n".join(
        "> " + one_line(line) for line in _LINE_ENDS.split("" if text is None else str(text).strip())
    )


def truncate(text: str, limit: int) -> str:
    """Cut `text` to at most `limit` characters, marking the cut (Block Kit rejects longer fields)."""
    return text if len(text) <= limit else text[: max(0, limit - 1)] + "…"

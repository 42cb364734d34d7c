"""Every emoji shortcode the bot writes is one the Slack stand-in's page draws from a shipped image."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "standins" / "slack" / "static"
# `:name:` standing alone in a string (not inside `alert:digest:page` or `09:00:00`)
SHORTCODE = re.compile(r"(?<![\w:]):([a-z0-9_+-]+):(?![\w:])")
# strings that look like shortcodes and are not emoji
NOT_EMOJI = {"memory", "mailto"}


def page_emoji() -> dict[str, str]:
    """The page's EMOJI table (app.js): Slack name -> Twemoji code points."""
    source = (STATIC / "app.js").read_text()
    table = re.search(r"const EMOJI = new Map\(Object\.entries\(\{(.*?)\}\)\);", source, re.S)
    assert table, "app.js has no EMOJI table"
    return dict(re.findall(r'([a-z0-9_+-]+): "([0-9a-f-]+)"', table.group(1)))


def bot_shortcodes() -> set[str]:
    found = set()
    for path in (ROOT / "bot").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                found |= set(SHORTCODE.findall(node.value))
    return found - NOT_EMOJI


def test_every_shortcode_the_bot_writes_is_drawn_by_the_page() -> None:
    used = bot_shortcodes()
    assert {"rotating_light", "warning", "white_check_mark", "red_circle"} <= used
    missing = sorted(used - set(page_emoji()))
    how = "add them to EMOJI in standins/slack/static/app.js with their Twemoji SVGs (static/emoji/README.md)"
    assert missing == [], f"the page can't draw {missing}: {how}"


def test_every_emoji_in_the_table_is_a_shipped_svg_and_credited() -> None:
    table = page_emoji()
    assert len(table) >= 30
    shipped = {p.stem for p in (STATIC / "emoji").glob("*.svg")}
    assert sorted(set(table.values()) - shipped) == []
    assert sorted(shipped - set(table.values())) == []  # nothing shipped that the page can't show
    for points in table.values():
        svg = (STATIC / "emoji" / f"{points}.svg").read_text()
        assert svg.startswith("<svg") and "<script" not in svg
    assert "CC-BY 4.0" in (STATIC / "index.html").read_text()
    assert "CC-BY 4.0" in (STATIC / "emoji" / "README.md").read_text()

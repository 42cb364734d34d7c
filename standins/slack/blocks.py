"""Block Kit checks: why Slack would answer `invalid_blocks` (or refuse a view), as Slack words it.

slack_sdk's own models parse every block; what they drop or change, and text objects Slack refuses
though the models let them through, are reported too, each with Slack's `[json-pointer:…]`.
"""

from __future__ import annotations

import copy
from typing import Any, Optional

from slack_sdk.errors import SlackObjectFormationError
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

MAX_MESSAGE_BLOCKS = 50
MAX_VIEW_BLOCKS = 100
TEXT_TYPES = ("plain_text", "mrkdwn")
# Block Kit keys whose text object Slack accepts only as plain_text.
PLAIN_ONLY_KEYS = frozenset({"label", "placeholder", "title", "deny", "confirm", "submit", "close", "hint"})
PLAIN_ONLY_TEXT_PARENTS = frozenset({"header", "button"})


def _not_kept(raw: Any, parsed: Any, where: str) -> Optional[str]:
    """The first place where `raw` holds something the slack_sdk model dropped or changed."""
    if isinstance(raw, dict):
        if not isinstance(parsed, dict):
            return where
        for key, value in raw.items():
            if key not in parsed:
                return f"{where}/{key}"
            problem = _not_kept(value, parsed[key], f"{where}/{key}")
            if problem:
                return problem
        return None
    if isinstance(raw, list):
        if not isinstance(parsed, list) or len(parsed) != len(raw):
            return where
        for index, (item, kept) in enumerate(zip(raw, parsed)):
            problem = _not_kept(item, kept, f"{where}/{index}")
            if problem:
                return problem
        return None
    return None if raw == parsed else where


def _text_problems(node: Any, where: str, parent_type: str = "") -> list[str]:
    """Text objects Slack rejects though slack_sdk's models let them through."""
    problems: list[str] = []
    if isinstance(node, list):
        for index, item in enumerate(node):
            problems += _text_problems(item, f"{where}/{index}", parent_type)
        return problems
    if not isinstance(node, dict):
        return problems
    node_type = str(node.get("type", ""))
    if node_type in TEXT_TYPES:
        text = node.get("text")
        if not isinstance(text, str) or not text:
            problems.append(f"[ERROR] must be more than 0 characters [json-pointer:{where}/text]")
        return problems
    for key, value in node.items():
        child = f"{where}/{key}"
        if isinstance(value, dict) and value.get("type") in TEXT_TYPES:
            plain_only = key in PLAIN_ONLY_KEYS or (key == "text" and node_type in PLAIN_ONLY_TEXT_PARENTS)
            if plain_only and value.get("type") != "plain_text":
                problems.append(f"[ERROR] must be a plain_text text object [json-pointer:{child}/type]")
        if key == "text" and isinstance(value, str) and node_type and node_type not in TEXT_TYPES:
            problems.append(f"[ERROR] must be a text object, not a string [json-pointer:{child}]")
            continue
        problems += _text_problems(value, child, node_type)
    return problems


def block_problems(blocks: Any, limit: int = MAX_MESSAGE_BLOCKS, pointer: str = "/blocks") -> list[str]:
    """Why Slack would answer `invalid_blocks` for this block list (empty when it is valid Block Kit)."""
    if not isinstance(blocks, list):
        return [f"[ERROR] must provide an array [json-pointer:{pointer}]"]
    if len(blocks) > limit:
        return [f"[ERROR] no more than {limit} items allowed [json-pointer:{pointer}]"]
    problems: list[str] = []
    for index, raw in enumerate(blocks):
        where = f"{pointer}/{index}"
        if not isinstance(raw, dict) or not isinstance(raw.get("type"), str):
            problems.append(f"[ERROR] missing required field: type [json-pointer:{where}]")
            continue
        try:
            model = Block.parse(copy.deepcopy(raw))
            if model is None:
                problems.append(f"[ERROR] unsupported type: {raw['type']} [json-pointer:{where}/type]")
                continue
            model.validate_json()
            dropped = _not_kept(raw, model.to_dict(), where)
        except SlackObjectFormationError as exc:
            problems.append(f"[ERROR] {exc} [json-pointer:{where}]")
            continue
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            problems.append(f"[ERROR] not a valid {raw['type']} block ({exc}) [json-pointer:{where}]")
            continue
        if dropped:
            problems.append(f"[ERROR] unknown or malformed field [json-pointer:{dropped}]")
        problems += _text_problems(raw, where)
    return problems


def view_problems(view: Any) -> list[str]:
    """Why Slack would reject this view (empty when views.open/update/push/publish would accept it)."""
    if not isinstance(view, dict):
        return ["[ERROR] must provide an object [json-pointer:/view]"]
    if view.get("type") not in ("modal", "home"):
        return ["[ERROR] must be one of: modal, home [json-pointer:/view/type]"]
    problems = block_problems(view.get("blocks"), MAX_VIEW_BLOCKS, "/view/blocks")
    if problems:
        return problems
    try:
        View(**copy.deepcopy(view)).validate_json()
    except SlackObjectFormationError as exc:
        return [f"[ERROR] {exc} [json-pointer:/view]"]
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        return [f"[ERROR] not a valid view ({exc}) [json-pointer:/view]"]
    if view["type"] == "modal":
        title = view.get("title")
        if not isinstance(title, dict) or title.get("type") != "plain_text":
            return ["[ERROR] missing required field: title [json-pointer:/view/title]"]
        has_input = any(b.get("type") == "input" for b in view["blocks"])
        if has_input and not view.get("submit"):
            return ["[ERROR] must provide submit when using input blocks [json-pointer:/view/submit]"]
    return _text_problems({k: v for k, v in view.items() if k != "blocks"}, "/view")

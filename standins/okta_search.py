"""Okta's SCIM-style `search` and `filter` expressions for the Okta simulator: parsed (never eval'd) with
the SailPoint stand-in's filter grammar, each property limited to the operators Okta takes there, and
matched against a user or a System Log event as Okta does (strings compare case-insensitively)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Optional

from .sailpoint import BoolOp, Comparison, FilterError, parse_filter

__all__ = [
    "BoolOp",
    "Comparison",
    "SearchError",
    "conjuncts",
    "fields",
    "matches",
    "parse_search",
    "parse_time",
]


class SearchError(ValueError):
    """A `search`, `filter` or parameter the API would refuse with 400."""


def _ops(text: str) -> frozenset[str]:
    return frozenset(text.split())


_ALL = _ops("eq sw co gt ge lt le")
USER_SEARCH = {
    name: _ALL
    for name in (
        "id status created activated statusChanged lastUpdated lastLogin type.id profile.login profile.email"
        " profile.firstName profile.lastName profile.displayName"
    ).split()
}
USER_FILTERS = {
    "status": _ops("eq"),
    "id": _ops("eq"),
    "profile.login": _ops("eq"),
    "profile.email": _ops("eq"),
    "profile.firstName": _ops("eq"),
    "profile.lastName": _ops("eq"),
    "lastUpdated": _ops("eq gt ge lt le"),
}
LOG_FILTERS = {
    "eventType": _ops("eq sw"),
    "target.id": _ops("eq"),
    "actor.id": _ops("eq"),
    "outcome.result": _ops("eq"),
    "severity": _ops("eq"),
}


def parse_search(text: str, allowed: Optional[dict[str, frozenset[str]]]) -> Any:
    """Parse a `search` (allowed None: any user property) or `filter` expression."""
    try:
        return parse_filter(text, allowed if allowed is not None else USER_SEARCH)
    except FilterError as exc:
        raise SearchError(str(exc)) from None


def _get(doc: dict, dotted: str) -> Any:
    value: Any = doc
    for part in dotted.split("."):
        if isinstance(value, list):  # System Log targets: any element
            value = value[0] if value else None
        value = value.get(part) if isinstance(value, dict) else None
    return value


def matches(node: Any, doc: dict) -> bool:
    """Whether `doc` satisfies the parsed expression; strings compare case-insensitively, as Okta's do."""
    if isinstance(node, BoolOp):
        parts = (matches(part, doc) for part in node.parts)
        return all(parts) if node.op == "and" else any(parts)
    assert isinstance(node, Comparison)
    actual, wanted = _get(doc, node.field), node.values[0]
    if isinstance(actual, str) and isinstance(wanted, str):
        actual, wanted = actual.casefold(), wanted.casefold()
    if actual is None or wanted is None:
        return node.op == "eq" and actual == wanted
    try:
        return bool(
            {
                "eq": lambda: actual == wanted,
                "sw": lambda: isinstance(actual, str) and actual.startswith(wanted),
                "co": lambda: isinstance(actual, str) and wanted in actual,
                "gt": lambda: actual > wanted,
                "ge": lambda: actual >= wanted,
                "lt": lambda: actual < wanted,
                "le": lambda: actual <= wanted,
            }[node.op]()
        )
    except TypeError:
        return False


def conjuncts(node: Any) -> list[Comparison]:
    if isinstance(node, Comparison):
        return [node]
    if isinstance(node, BoolOp) and node.op == "and":
        return [c for part in node.parts for c in conjuncts(part)]
    return []


def fields(node: Any) -> set[str]:
    if isinstance(node, BoolOp):
        return {name for part in node.parts for name in fields(part)}
    return {node.field}


def parse_time(text: str, name: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise SearchError(f"{name}: '{text[:40]}' is not an ISO 8601 timestamp") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)

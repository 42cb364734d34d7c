"""The OData `$filter` subset the Entra simulator understands, parsed as Graph parses it (the shared
parser in `standins.filters`, in Graph's dialect).

Graph's dialect: string literals `'text'` (a `'` inside is written `''`), unquoted DateTimeOffset values,
`startswith`/`endswith`, `not`, at most 15 values in an `in`, and Graph's error wording and codes. Only
the field/operator pairs an endpoint allows are accepted; anything else is a FilterError Graph-style
(400). String comparisons ignore case, as Graph's do on these properties.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Optional

from .filters import Dialect, FilterError, parse

__all__ = ["FilterError", "Moment", "Node", "evaluate", "parse_filter", "pinned_values"]


@dataclass(frozen=True)
class Moment:
    """An unquoted DateTimeOffset literal."""

    value: datetime


@dataclass(frozen=True)
class Node:
    op: str  # or, and, not, eq, ne, gt, ge, lt, le, in, startswith, endswith
    field: str = ""
    values: tuple[Any, ...] = ()
    parts: tuple[Node, ...] = ()

    @property
    def ops(self) -> frozenset[str]:
        """Every operator used in the expression."""
        return frozenset({self.op}).union(*(part.ops for part in self.parts))

    def lower_bound(self, name: str) -> Optional[str]:
        """The ISO time a `name gt|ge T` term (maybe inside an `and`) pins from below, if any."""
        if self.op in ("gt", "ge") and self.field == name and isinstance(self.values[0], Moment):
            return self.values[0].value.strftime("%Y-%m-%dT%H:%M:%SZ")
        if self.op == "and":
            return next((b for b in (p.lower_bound(name) for p in self.parts) if b is not None), None)
        return None


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)


GRAPH = Dialect(
    quote="'",
    string=r"'(?:[^']|'')*'",
    unquote=lambda raw: raw[1:-1].replace("''", "'"),
    comparison=lambda name, op, values: Node(op, name, values),
    boolean=lambda op, parts: Node(op, parts=parts),
    extra_literals=(
        (r"\d{4}-\d\d-\d\dT[\d:.]+(?:Z|[+-]\d\d:\d\d)?", lambda raw: Moment(_moment(raw)), "datetime"),
    ),
    functions=frozenset({"startswith", "endswith"}),
    negation=True,
    max_in=15,
    unsupported_code="Request_UnsupportedQuery",
    messages={
        "unterminated": "Invalid filter clause: unterminated string literal at position {start}.",
        "character": "Invalid filter clause: syntax error at character {raw!r} at position {start}.",
        "datetime": "Invalid filter clause: bad DateTimeOffset at position {start}.",
        "empty": "Invalid filter clause: the filter is empty.",
        "trailing": "Invalid filter clause: unexpected {raw!r} at position {at}.",
        "ends": "Invalid filter clause: the filter ends where {expected} was expected.",
        "expected": "Invalid filter clause: expected {expected} at position {at}.",
        "field": "Unsupported or invalid query filter clause specified for property '{name}'.",
        "op": "Unsupported query operator '{op}' for property '{name}'.",
        "in": "Too many values in the 'in' operator ({most} at most).",
    },
)


def parse_filter(text: str, allowed: dict[str, str]) -> Node:
    """Parse `$filter`, accepting only `allowed` properties and their space-separated operators."""
    node = parse(text, allowed, GRAPH)
    assert isinstance(node, Node)
    return node


def _norm(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return Moment(_moment(value)) if value[:4].isdigit() and "T" in value else value.casefold()
        except ValueError:
            return value.casefold()
    return value


def evaluate(node: Node, doc: dict) -> bool:
    if node.op == "or":
        return any(evaluate(part, doc) for part in node.parts)
    if node.op == "and":
        return all(evaluate(part, doc) for part in node.parts)
    if node.op == "not":
        return not evaluate(node.parts[0], doc)
    actual = _norm(doc.get(node.field))
    wanted = [_norm(value) for value in node.values]
    if node.op == "in":
        return actual in wanted
    if node.op in ("startswith", "endswith"):
        if not isinstance(actual, str) or not isinstance(wanted[0], str):
            return False
        return actual.startswith(wanted[0]) if node.op == "startswith" else actual.endswith(wanted[0])
    if node.op in ("eq", "ne"):
        return (actual == wanted[0]) == (node.op == "eq")
    if not isinstance(actual, Moment) or not isinstance(wanted[0], Moment):
        return False
    a, b = actual.value, wanted[0].value
    return {"gt": a > b, "ge": a >= b, "lt": a < b, "le": a <= b}[node.op]


def pinned_values(node: Node, fields: tuple[str, ...]) -> Optional[list[str]]:
    """String values an expression pins one of `fields` to (eq/in, through and/or of such terms), or None
    when it could match anything (then the caller scans)."""
    if node.field in fields and node.op in ("eq", "in"):
        return [value for value in node.values if isinstance(value, str)]
    if node.op == "or":
        found = [pinned_values(part, fields) for part in node.parts]
        return None if any(f is None for f in found) else [v for f in found for v in f or []]
    if node.op == "and":
        return next((f for f in (pinned_values(p, fields) for p in node.parts) if f is not None), None)
    return None

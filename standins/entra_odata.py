"""The OData `$filter` subset the Entra simulator understands, parsed as Graph parses it.

Grammar: `expr := and ("or" and)*`, `and := unary ("and" unary)*`, `unary := "not" unary | atom`,
`atom := "(" expr ")" | startswith|endswith "(" field "," literal ")" | field op literal
| field "in" "(" literal ("," literal)* ")"`. Literals: `'text'` (a `'` inside is written `''`),
true, false, null, numbers and unquoted DateTimeOffset values. Only the field/operator pairs an
endpoint allows are accepted; anything else is a FilterError Graph-style (400). String comparisons
ignore case, as Graph's do on these properties.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Optional

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>'(?:[^']|'')*')
      | (?P<datetime>\d{4}-\d\d-\d\dT[\d:.]+(?:Z|[+-]\d\d:\d\d)?)
      | (?P<number>-?\d+(?:\.\d+)?)
      | (?P<word>[A-Za-z_][A-Za-z0-9_.]*)
      | (?P<punct>[(),])
      | (?P<bad>\S)
    )""",
    re.VERBOSE | re.DOTALL,
)
_LITERALS = {"true": True, "false": False, "null": None}
FUNCTIONS = ("startswith", "endswith")


class FilterError(ValueError):
    """A query Graph would refuse with 400; `code` is Graph's error code."""

    def __init__(self, message: str, code: str = "BadRequest") -> None:
        super().__init__(message)
        self.code = code


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


def _tokens(text: str) -> list[tuple[str, Any, int]]:
    out: list[tuple[str, Any, int]] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            break
        kind, start = match.lastgroup or "", match.start(match.lastgroup or 0)
        raw = match.group(kind) if kind else ""
        pos = match.end()
        if kind == "bad":
            what = "unterminated string literal" if raw == "'" else f"syntax error at character {raw!r}"
            raise FilterError(f"Invalid filter clause: {what} at position {start}.")
        if kind == "string":
            out.append(("value", raw[1:-1].replace("''", "'"), start))
        elif kind == "datetime":
            try:
                out.append(("value", Moment(_moment(raw)), start))
            except ValueError:
                raise FilterError(f"Invalid filter clause: bad DateTimeOffset at position {start}.") from None
        elif kind == "number":
            out.append(("value", float(raw) if "." in raw else int(raw), start))
        elif kind == "word" and raw in _LITERALS:
            out.append(("value", _LITERALS[raw], start))
        elif kind:
            out.append((kind, raw, start))
    return out


class _Parser:
    def __init__(self, text: str, allowed: dict[str, str]) -> None:
        self.tokens = _tokens(text)
        self.pos = 0
        self.allowed = {name: frozenset(ops.split()) for name, ops in allowed.items()}

    def parse(self) -> Node:
        if not self.tokens:
            raise FilterError("Invalid filter clause: the filter is empty.")
        node = self._or()
        if self.pos < len(self.tokens):
            _, raw, at = self.tokens[self.pos]
            raise FilterError(f"Invalid filter clause: unexpected {str(raw)[:40]!r} at position {at}.")
        return node

    def _peek(self) -> Optional[tuple[str, Any, int]]:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _take(self, kind: str, raw: Optional[str] = None) -> tuple[str, Any, int]:
        token = self._peek()
        if token is None:
            raise FilterError(f"Invalid filter clause: the filter ends where {raw or kind} was expected.")
        if token[0] != kind or (raw is not None and token[1] != raw):
            raise FilterError(f"Invalid filter clause: expected {raw or kind} at position {token[2]}.")
        self.pos += 1
        return token

    def _keyword(self, word: str) -> bool:
        token = self._peek()
        if token is not None and token[0] == "word" and token[1] == word:
            self.pos += 1
            return True
        return False

    def _or(self) -> Node:
        parts = [self._and()]
        while self._keyword("or"):
            parts.append(self._and())
        return parts[0] if len(parts) == 1 else Node("or", parts=tuple(parts))

    def _and(self) -> Node:
        parts = [self._unary()]
        while self._keyword("and"):
            parts.append(self._unary())
        return parts[0] if len(parts) == 1 else Node("and", parts=tuple(parts))

    def _unary(self) -> Node:
        if self._keyword("not"):
            return Node("not", parts=(self._unary(),))
        return self._atom()

    def _check(self, name: str, op: str) -> None:
        if name not in self.allowed:
            raise FilterError(
                f"Unsupported or invalid query filter clause specified for property '{name[:60]}'.",
                "Request_UnsupportedQuery",
            )
        if op not in self.allowed[name]:
            raise FilterError(
                f"Unsupported query operator '{op}' for property '{name}'.", "Request_UnsupportedQuery"
            )

    def _atom(self) -> Node:
        token = self._peek()
        if token is not None and token[:2] == ("punct", "("):
            self.pos += 1
            node = self._or()
            self._take("punct", ")")
            return node
        _, word, _ = self._take("word")
        if word in FUNCTIONS:
            self._take("punct", "(")
            name = self._take("word")[1]
            self._take("punct", ",")
            value = self._take("value")[1]
            self._take("punct", ")")
            self._check(name, word)
            return Node(word, name, (value,))
        op = self._take("word")[1]
        self._check(word, op)
        if op == "in":
            self._take("punct", "(")
            values = [self._take("value")[1]]
            while self._peek() is not None and self._peek()[1] == ",":  # type: ignore[index]
                self.pos += 1
                values.append(self._take("value")[1])
            self._take("punct", ")")
            if len(values) > 15:
                raise FilterError(
                    "Too many values in the 'in' operator (15 at most).", "Request_UnsupportedQuery"
                )
            return Node("in", word, tuple(values))
        return Node(op, word, (self._take("value")[1],))


def parse_filter(text: str, allowed: dict[str, str]) -> Node:
    """Parse `$filter`, accepting only `allowed` properties and their space-separated operators."""
    return _Parser(text, allowed).parse()


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

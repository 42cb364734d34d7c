"""One parser for the filter languages the vendor simulators speak: SailPoint's (and Okta's) `filters`
(`name sw "A" and id in ("x", "y")`) and Microsoft Graph's OData `$filter`
(`startswith(mail,'o''b') or not (userType eq 'Guest')`).

Grammar: `expr := and ("or" and)*`, `and := unary ("and" unary)*`, `unary := "not" unary | atom` (`not`
only where the dialect has it), `atom := "(" expr ")" | function "(" field "," literal ")" | field op
literal | field "in" "(" literal ("," literal)* ")"`. Literals: the dialect's strings, true, false, null,
numbers, and the dialect's extra unquoted literals (Graph's DateTimeOffset). Only the field/operator pairs
an endpoint allows are accepted. A `Dialect` holds what differs between vendors: how a string is quoted
and unescaped, the functions, `not`, the `in` limit, the nodes built and every error's wording (each
vendor words them its own way). Evaluating a parsed filter stays with each vendor (their operators and
case rules differ).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Union

Token = tuple[str, Any, int]  # (kind, value, position): kind is value, word or punct


class FilterError(ValueError):
    """A filter the vendor would refuse with 400; `code` is the vendor's error code where it has one."""

    def __init__(self, message: str, code: str = "BadRequest") -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Dialect:
    """One vendor's filter language: literals, functions, nodes and messages (str.format templates)."""

    quote: str  # the character a string literal starts with
    string: str  # regex of a quoted string literal
    unquote: Callable[[str], str]  # the literal's text (quotes off, escapes undone)
    comparison: Callable[[str, str, tuple[Any, ...]], Any]  # (field, op, values) -> node
    boolean: Callable[[str, tuple[Any, ...]], Any]  # ("and" | "or" | "not", parts) -> node
    messages: Mapping[str, str]
    # extra unquoted literals: (regex, converter raising ValueError, message key when it does)
    extra_literals: tuple[tuple[str, Callable[[str], Any], str], ...] = ()
    functions: frozenset[str] = frozenset()  # name(field, literal), e.g. startswith
    negation: bool = False
    max_in: Optional[int] = None
    unsupported_code: str = "BadRequest"  # the code of an unknown field, operator or a too long `in`
    token: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        extras = "".join(f"| (?P<extra{n}>{regex})\n" for n, (regex, _, _) in enumerate(self.extra_literals))
        pattern = rf"""\s*(?:
            (?P<string>{self.string})
          {extras}| (?P<number>-?\d+(?:\.\d+)?)
          | (?P<word>[A-Za-z_][A-Za-z0-9_.]*)
          | (?P<punct>[(),])
          | (?P<bad>\S)
        )"""
        object.__setattr__(self, "token", re.compile(pattern, re.VERBOSE | re.DOTALL))

    def error(self, key: str, code: str = "BadRequest", **values: Any) -> FilterError:
        return FilterError(self.messages[key].format(**values), code)


_LITERALS = {"true": True, "false": False, "null": None}


def tokens(text: str, dialect: Dialect) -> list[Token]:
    out: list[Token] = []
    pos = 0
    while pos < len(text):
        match = dialect.token.match(text, pos)
        if match is None:  # only trailing whitespace is left
            break
        kind = match.lastgroup or ""
        raw = match.group(kind) if kind else ""
        start = match.start(kind) if kind else pos
        pos = match.end()
        if kind == "bad":
            key = "unterminated" if raw == dialect.quote else "character"
            raise dialect.error(key, raw=raw, start=start)
        if kind == "string":
            out.append(("value", dialect.unquote(raw), start))
        elif kind.startswith("extra"):
            _, convert, message = dialect.extra_literals[int(kind[5:])]
            try:
                out.append(("value", convert(raw), start))
            except ValueError:
                raise dialect.error(message, raw=raw, start=start) from None
        elif kind == "number":
            out.append(("value", float(raw) if "." in raw else int(raw), start))
        elif kind == "word" and raw in _LITERALS:
            out.append(("value", _LITERALS[raw], start))
        elif kind:
            out.append((kind, raw, start))
    return out


class _Parser:
    def __init__(
        self, text: str, allowed: Mapping[str, Union[str, frozenset[str]]], dialect: Dialect
    ) -> None:
        self.dialect = dialect
        self.tokens = tokens(text, dialect)
        self.pos = 0
        self.allowed = {
            name: frozenset(ops.split()) if isinstance(ops, str) else frozenset(ops)
            for name, ops in allowed.items()
        }

    def parse(self) -> Any:
        if not self.tokens:
            raise self.dialect.error("empty")
        node = self._or()
        if self.pos < len(self.tokens):
            _, raw, at = self.tokens[self.pos]
            raise self.dialect.error("trailing", raw=str(raw)[:40], at=at)
        return node

    def _peek(self) -> Optional[Token]:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _take(self, kind: str, raw: Optional[str] = None) -> Token:
        token = self._peek()
        if token is None:
            raise self.dialect.error("ends", expected=raw or kind)
        if token[0] != kind or (raw is not None and token[1] != raw):
            raise self.dialect.error("expected", expected=raw or kind, at=token[2], found=token[1])
        self.pos += 1
        return token

    def _keyword(self, word: str) -> bool:
        token = self._peek()
        if token is not None and token[0] == "word" and token[1] == word:
            self.pos += 1
            return True
        return False

    def _or(self) -> Any:
        parts = [self._and()]
        while self._keyword("or"):
            parts.append(self._and())
        return parts[0] if len(parts) == 1 else self.dialect.boolean("or", tuple(parts))

    def _and(self) -> Any:
        parts = [self._unary()]
        while self._keyword("and"):
            parts.append(self._unary())
        return parts[0] if len(parts) == 1 else self.dialect.boolean("and", tuple(parts))

    def _unary(self) -> Any:
        if self.dialect.negation and self._keyword("not"):
            return self.dialect.boolean("not", (self._unary(),))
        return self._atom()

    def _field(self, name: str, at: int) -> frozenset[str]:
        ops = self.allowed.get(name)
        if ops is None:
            raise self.dialect.error("field", self.dialect.unsupported_code, name=name[:60], at=at)
        return ops

    def _op(self, name: str, op: str, ops: frozenset[str]) -> None:
        if op not in ops:
            supported = ", ".join(sorted(ops))
            raise self.dialect.error(
                "op", self.dialect.unsupported_code, name=name, op=op[:40], ops=supported
            )

    def _atom(self) -> Any:
        token = self._peek()
        if token is not None and token[:2] == ("punct", "("):
            self.pos += 1
            node = self._or()
            self._take("punct", ")")
            return node
        _, word, at = self._take("word")
        if word in self.dialect.functions:
            self._take("punct", "(")
            _, name, name_at = self._take("word")
            self._take("punct", ",")
            value = self._take("value")[1]
            self._take("punct", ")")
            self._op(name, word, self._field(name, name_at))
            return self.dialect.comparison(name, word, (value,))
        ops = self._field(word, at)
        op = self._take("word")[1]
        self._op(word, op, ops)
        if op != "in":
            return self.dialect.comparison(word, op, (self._take("value")[1],))
        self._take("punct", "(")
        values = [self._take("value")[1]]
        while (token := self._peek()) is not None and token[:2] == ("punct", ","):
            self.pos += 1
            values.append(self._take("value")[1])
        self._take("punct", ")")
        if self.dialect.max_in is not None and len(values) > self.dialect.max_in:
            raise self.dialect.error("in", self.dialect.unsupported_code, most=self.dialect.max_in)
        return self.dialect.comparison(word, op, tuple(values))


def parse(text: str, allowed: Mapping[str, Union[str, frozenset[str]]], dialect: Dialect) -> Any:
    """Parse `text` in `dialect`, accepting only the `allowed` fields and their operators (a set, or a
    space-separated string)."""
    return _Parser(text, allowed, dialect).parse()

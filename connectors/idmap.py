"""Compact read-only maps from user ids to one of a few values: the maps a listing must hold across its
pages (Entra's role holders and users at risk, Okta's admins and risk levels), at about 17 bytes an entry
instead of a dict's ~120.

Rules:
- A key of the shape its map's `Codec` packs is kept as a 128-bit number, in 16 bytes: its high and low 64
  bits, in two parallel `array("Q")`s sorted by (high, low) and found by binary search. `GUIDS` packs
  GUIDs in canonical form (36 characters: lowercase hex, hyphens after the 8th, 12th, 16th and 20th digit,
  as Graph writes object ids); `OKTA_IDS` packs 20 characters of [0-9A-Za-z] (Okta's object ids), 6 bits
  each. Each codec is a bijection between its shape and the numbers, and any other key (upper case,
  braces, another length, empty) goes to an ordinary dict, so the map answers exactly as a dict keyed by
  the same strings would: "ABC…" and "abc…" stay two keys.
- Values must be hashable and few (a risk band, a combination of role names): each distinct value is kept
  once in a table, and each entry holds its index there in an `array` of 1, 2 or 4 bytes (the smallest
  that fits the table).
- Built once through `IdMapBuilder`: `add` buffers entries, sorting each 1,024 into a run; `build` merges
  the runs (the only moment both the runs and the result exist: about 34 bytes an entry) and returns the
  `IdMap`. A key added again keeps `merge(old, new)` (default: the new value), in the order added.
- An `IdMap` is a read-only `Mapping`; iteration gives the packed keys (in number order) then the others.
"""

from __future__ import annotations

import heapq
import re
import string
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from operator import itemgetter
from typing import Callable, Generic, Optional, TypeVar, Union, overload

V = TypeVar("V", bound=Hashable)
T = TypeVar("T")
LOW = (1 << 64) - 1
RUN = 1024  # entries sorted together before they join the arrays
_MISSING = object()


@dataclass(frozen=True)
class Codec:
    """The keys packed into 128 bits: those `shape` matches (to its end), as `number(key)`, and back."""

    shape: re.Pattern
    number: Callable[[str], int]
    text: Callable[[int], str]

    def pack(self, key: str) -> Optional[int]:
        """The key's number; None for a key of another shape."""
        return None if self.shape.match(key) is None else self.number(key)


def _guid_text(number: int) -> str:
    digits = f"{number:032x}"
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


_ALNUM = string.digits + string.ascii_uppercase + string.ascii_lowercase
_TO_OCTAL = str.maketrans({char: f"{n:02o}" for n, char in enumerate(_ALNUM)})  # 6 bits a character


def _okta_text(number: int) -> str:
    digits = f"{number:040o}"
    return "".join(_ALNUM[int(digits[at : at + 2], 8)] for at in range(0, 40, 2))


GUIDS = Codec(
    re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z"),
    lambda key: int(key.replace("-", ""), 16),
    _guid_text,
)
OKTA_IDS = Codec(re.compile(r"[0-9A-Za-z]{20}\Z"), lambda key: int(key.translate(_TO_OCTAL), 8), _okta_text)


def _fitting(codes: array, distinct: int) -> array:
    """`codes`, or a copy in a wider type if indices into a table of `distinct` values would not fit."""
    if distinct <= 1 << (8 * codes.itemsize):
        return codes
    return array("B" if distinct <= 1 << 8 else "H" if distinct <= 1 << 16 else "I", codes)


class IdMap(Mapping[str, V]):
    """user id -> value, packed as the module docstring says; build it with `IdMapBuilder`."""

    __slots__ = ("_codec", "_codes", "_high", "_low", "_other", "_values")

    def __init__(
        self, codec: Codec, high: array, low: array, codes: array, values: Sequence[V], other: dict[str, V]
    ) -> None:
        self._codec = codec
        self._high, self._low, self._codes = high, low, codes
        self._values = tuple(values)
        self._other = other

    def _find(self, key: str) -> object:
        """The value of `key`, or _MISSING."""
        if self._codec.shape.match(key) is None:
            return self._other.get(key, _MISSING)
        number = self._codec.number(key)
        high, low = number >> 64, number & LOW
        start = bisect_left(self._high, high)
        if start == len(self._high) or self._high[start] != high:
            return _MISSING  # the usual answer: no entry shares the high half
        end = bisect_right(self._high, high, start)
        at = bisect_left(self._low, low, start, end)
        if at == end or self._low[at] != low:
            return _MISSING
        return self._values[self._codes[at]]

    @overload
    def get(self, key: str) -> Optional[V]: ...

    @overload
    def get(self, key: str, default: Union[V, T]) -> Union[V, T]: ...

    def get(self, key: str, default: object = None) -> object:
        if not isinstance(key, str):
            return default
        found = self._find(key)
        return default if found is _MISSING else found

    def __getitem__(self, key: str) -> V:
        found = self._find(key) if isinstance(key, str) else _MISSING
        if found is _MISSING:
            raise KeyError(key)
        return found  # type: ignore[return-value]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._find(key) is not _MISSING

    def __len__(self) -> int:
        return len(self._high) + len(self._other)

    def __iter__(self) -> Iterator[str]:
        for high, low in zip(self._high, self._low):
            yield self._codec.text(high << 64 | low)
        yield from self._other

    def __repr__(self) -> str:
        return f"IdMap({len(self)} entries, {len(self._values)} distinct values)"

    def nbytes(self) -> int:
        """The packed entries' bytes (the arrays; not the table nor the dict of other keys)."""
        return sum(a.itemsize * len(a) for a in (self._high, self._low, self._codes))


class IdMapBuilder(Generic[V]):
    """Collects entries for one `IdMap` of keys that `codec` packs; `merge(old, new)` decides a key added
    twice (default: new)."""

    def __init__(self, merge: Optional[Callable[[V, V], V]] = None, codec: Codec = GUIDS) -> None:
        self._merge = merge
        self._codec = codec
        self._reset()

    def _reset(self) -> None:
        self._code_of: dict[V, int] = {}
        self._values: list[V] = []
        self._buffer: list[tuple[int, int]] = []  # (packed key, code), in the order added
        self._high, self._low, self._codes = array("Q"), array("Q"), array("B")
        self._runs = [0]  # where each sorted run starts in the arrays, then their end
        self._other: dict[str, V] = {}

    def _code(self, value: V) -> int:
        code = self._code_of.get(value)
        if code is None:
            code = self._code_of[value] = len(self._values)
            self._values.append(value)
        return code

    def _both(self, old: V, new: V) -> V:
        return new if self._merge is None else self._merge(old, new)

    def add(self, key: str, value: V) -> None:
        number = self._codec.pack(key)
        if number is None:
            old = self._other.get(key, _MISSING)
            self._other[key] = value if old is _MISSING else self._both(old, value)  # type: ignore[arg-type]
            return
        self._buffer.append((number, self._code(value)))
        if len(self._buffer) >= RUN:
            self._flush()

    def _flush(self) -> None:
        self._buffer.sort(key=itemgetter(0))  # stable: a key added twice keeps its order
        self._codes = _fitting(self._codes, len(self._values))
        for number, code in self._buffer:
            self._high.append(number >> 64)
            self._low.append(number & LOW)
            self._codes.append(code)
        self._buffer.clear()
        self._runs.append(len(self._high))

    def build(self) -> IdMap[V]:
        """The map of everything added; the builder is empty afterwards."""
        self._flush()
        high, low, codes = array("Q"), array("Q"), _fitting(array("B"), len(self._values))
        # each run as (high, low, position, code): equal keys meet in the order they were added
        runs = [
            zip(
                islice(self._high, start, end),
                islice(self._low, start, end),
                range(start, end),
                islice(self._codes, start, end),
            )
            for start, end in zip(self._runs, self._runs[1:])
        ]
        for key_high, key_low, _, code in heapq.merge(*runs):
            if high and high[-1] == key_high and low[-1] == key_low:
                code = self._code(self._both(self._values[codes[-1]], self._values[code]))
                codes = _fitting(codes, len(self._values))
                codes[-1] = code
                continue
            high.append(key_high)
            low.append(key_low)
            codes.append(code)
        del runs
        packed = IdMap(self._codec, high, low, codes, self._values, self._other)
        self._reset()
        return packed

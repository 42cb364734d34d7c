"""Compact read-only maps from user ids to one of a few values: the maps a listing must hold across its
pages (Entra's role holders and users at risk, Okta's admins and risk levels), at about 17 bytes an entry
instead of a dict's ~120, and built without ever holding their entries twice.

Rules:
- A key of the shape its map's `Codec` packs is kept as a 128-bit number, in 16 bytes: its high and low 64
  bits, in two parallel `array("Q")`s. `GUIDS` packs GUIDs in canonical form (36 characters: lowercase
  hex, hyphens after the 8th, 12th, 16th and 20th digit, as Graph writes object ids); `OKTA_IDS` packs 20
  characters of [0-9A-Za-z] (Okta's object ids), 6 bits each. Each codec is a bijection between its shape
  and the numbers, and any other key (upper case, braces, another length, empty) goes to an ordinary dict,
  so the map answers exactly as a dict keyed by the same strings would: "ABC…" and "abc…" stay two keys.
- The packed entries are sorted by number and cut into blocks of at most `BLOCK` (1,024) entries, each
  block its own three arrays (high, low, code); bisection in the list of the blocks' first numbers finds
  a key's block, bisection in that block's arrays its entry.
- Values must be hashable and few (a risk band, a combination of role names): each distinct value is kept
  once in a table, and each entry holds its index there in an `array` of 1, 2 or 4 bytes (in each block
  the smallest that fits the table as it was when the block was written).
- Built once through `IdMapBuilder`, in memory that grows with the entries only as the map itself does:
  `add` buffers `RUN` (1,024) entries, sorts them into a run of blocks; whenever `FAN_IN` (8) runs of one
  size are waiting they are merged into one, and `build` merges what is left, `FAN_IN` runs at a time, into
  the map. A merge drops each block of its runs once it has read it, so beyond the entries themselves
  building holds at most the buffer and `FAN_IN` + 1 blocks (about 0.3 MiB), whatever their number.
- A key added again keeps `merge(old, new)` (default: the new value), in the order added. Runs fold their
  repeats as they are written, so `merge` must be associative (`merge(merge(a, b), c) == merge(a,
  merge(b, c))`), as keeping the new value and an ordered union of role names are.
- An `IdMap` is a read-only `Mapping`; iteration gives the packed keys (in number order) then the others.
"""

from __future__ import annotations

import heapq
import re
import string
from array import array
from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import repeat
from operator import itemgetter
from typing import Callable, Generic, Optional, TypeVar, Union, overload

V = TypeVar("V", bound=Hashable)
T = TypeVar("T")
LOW = (1 << 64) - 1
RUN = 1024  # entries added, sorted together into a run
BLOCK = 1024  # entries a block holds at most
FAN_IN = 8  # runs merged at once
_MISSING = object()
#: a block: the high halves, the low halves and the codes of its entries, three arrays of one length
Block = tuple[array, array, array]


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


def _codes(distinct: int, codes: Iterable[int] = ()) -> array:
    """`codes` in an array of the narrowest type that indexes a table of `distinct` values."""
    return array("B" if distinct <= 1 << 8 else "H" if distinct <= 1 << 16 else "I", codes)


def _read(blocks: deque[Block], rank: int) -> Iterator[tuple[int, int, int, int]]:
    """A run's entries as (high, low, rank, code), each block dropped from the run as it is read."""
    while blocks:
        high, low, codes = blocks.popleft()
        yield from zip(high, low, repeat(rank), codes)


class IdMap(Mapping[str, V]):
    """user id -> value, packed as the module docstring says; build it with `IdMapBuilder`."""

    __slots__ = ("_blocks", "_codec", "_firsts", "_match", "_number", "_other", "_values")

    def __init__(
        self, codec: Codec, blocks: Iterable[Block], values: Sequence[V], other: dict[str, V]
    ) -> None:
        self._codec = codec
        self._match, self._number = codec.shape.match, codec.number  # a lookup's first two steps
        self._blocks = list(blocks)
        self._firsts = [high[0] << 64 | low[0] for high, low, _ in self._blocks]
        self._values = tuple(values)
        self._other = other

    def _find(self, key: str) -> object:
        """The value of `key`, or _MISSING."""
        if self._match(key) is None:
            return self._other.get(key, _MISSING)
        number = self._number(key)
        block = bisect_right(self._firsts, number) - 1
        if block < 0:
            return _MISSING
        highs, lows, codes = self._blocks[block]
        high, low = number >> 64, number & LOW
        start = bisect_left(highs, high)
        if start == len(highs) or highs[start] != high:
            return _MISSING  # the usual answer: no entry shares the high half
        end = bisect_right(highs, high, start)
        at = bisect_left(lows, low, start, end)
        if at == end or lows[at] != low:
            return _MISSING
        return self._values[codes[at]]

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
        return sum(len(high) for high, _, _ in self._blocks) + len(self._other)

    def __iter__(self) -> Iterator[str]:
        for highs, lows, _ in self._blocks:
            for high, low in zip(highs, lows):
                yield self._codec.text(high << 64 | low)
        yield from self._other

    def __repr__(self) -> str:
        return f"IdMap({len(self)} entries, {len(self._values)} distinct values)"

    def nbytes(self) -> int:
        """The packed entries' bytes (the arrays; not the table nor the dict of other keys)."""
        return sum(a.itemsize * len(a) for block in self._blocks for a in block)


class IdMapBuilder(Generic[V]):
    """Collects entries for one `IdMap` of keys that `codec` packs; `merge(old, new)` decides a key added
    twice (default: new; it must be associative, see the module docstring)."""

    def __init__(self, merge: Optional[Callable[[V, V], V]] = None, codec: Codec = GUIDS) -> None:
        self._merge = merge
        self._codec = codec
        self._reset()

    def _reset(self) -> None:
        self._code_of: dict[V, int] = {}
        self._values: list[V] = []
        self._buffer: list[tuple[int, int]] = []  # (packed key, code), in the order added
        self._runs: list[deque[Block]] = []  # sorted runs, oldest first
        self._levels: list[int] = []  # each run's level: FAN_IN ** level runs of RUN entries went into it
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
            while len(self._levels) >= FAN_IN and len(set(self._levels[-FAN_IN:])) == 1:
                self._merge_newest(FAN_IN, self._levels[-1] + 1)

    def _flush(self) -> None:
        """The buffer as the newest run (level 0)."""
        if not self._buffer:
            return
        self._buffer.sort(key=itemgetter(0))  # stable: a key added twice keeps its order
        self._runs.append(self._write((n >> 64, n & LOW, 0, code) for n, code in self._buffer))
        self._levels.append(0)
        self._buffer.clear()

    def _merge_newest(self, count: int, level: int = 0) -> None:
        """The newest `count` runs merged into one run of `level`, in their place."""
        runs = self._runs[-count:]
        del self._runs[-count:], self._levels[-count:]
        # equal keys meet in the order their runs were written (rank), so in the order added
        merged = heapq.merge(*(_read(run, rank) for rank, run in enumerate(runs)))
        del runs  # each run's blocks now live only in its reader, which drops them once read
        self._runs.append(self._write(merged))
        self._levels.append(level)

    def _write(self, entries: Iterator[tuple[int, int, int, int]]) -> deque[Block]:
        """Sorted (high, low, rank, code) entries as a run of blocks, a key's values folded by `merge`."""
        blocks: deque[Block] = deque()
        values = self._values
        highs, lows, codes = array("Q"), array("Q"), _codes(len(values))
        for high, low, _, code in entries:
            if highs and highs[-1] == high and lows[-1] == low:  # the same key again: fold
                code = self._code(self._both(values[codes[-1]], values[code]))
                if code >> (8 * codes.itemsize):
                    codes = _codes(len(values), codes)
                codes[-1] = code
                continue
            if len(highs) == BLOCK:
                blocks.append((highs, lows, codes))
                highs, lows, codes = array("Q"), array("Q"), _codes(len(values))
            elif code >> (8 * codes.itemsize):
                codes = _codes(len(values), codes)
            highs.append(high)
            lows.append(low)
            codes.append(code)
        if highs:
            blocks.append((highs, lows, codes))
        return blocks

    def build(self) -> IdMap[V]:
        """The map of everything added; the builder is empty afterwards."""
        self._flush()
        while len(self._runs) > 1:  # the newest (shortest) runs first, until FAN_IN are left; then those
            excess = len(self._runs) - FAN_IN + 1
            self._merge_newest(min(FAN_IN, excess) if excess > 1 else len(self._runs))
        packed = IdMap(self._codec, self._runs[0] if self._runs else (), self._values, self._other)
        self._reset()
        return packed

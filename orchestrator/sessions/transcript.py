"""A session's transcript: entries kept as plain tuples, read as ``Turn``s.

A live server keeps thousands of sessions with up to 200 lines each. An object
per line would be one more object for every full pass of CPython's cyclic
collector to walk, with the event loop stopped; a tuple holding only strings,
numbers, booleans and ``None`` is dropped from the collector's lists after its
first pass (CPython untracks it). So each line is one such flat tuple
(``TurnEntry``), and ``Transcript`` hands out a ``Turn`` made from it on reading.
"""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, overload

# What a transcript entry costs beside its text (its tuple, its time, its deque slot).
TURN_OVERHEAD_BYTES = 128
# A DP entry's latency: at most this many stages, names cut to this length (names
# interned, so the pairs and their floats are what it costs).
MAX_TIMING_STAGES = 8
MAX_STAGE_CHARS = 32
LATENCY_BYTES = 512

# (role, text, at, fallback, original_length, timed, stage, ms, stage, ms, ...):
# one flat tuple, as a tuple holding another is untracked only a pass later.
TurnEntry = tuple[Any, ...]


@dataclass(slots=True)
class Turn:
    """One line of the transcript: who said what, when.

    ``original_length`` is set when ``text`` was cut to ``MAX_TURN_CHARS``:
    the length (in characters) of what was said. ``latency_ms`` (a DP reply to a
    turn) holds the turn's stages in milliseconds from the user's frame; it is
    filled in once the reply is sent (``Session.record_latency``), its cost
    counted from the start. A ``Turn`` is a copy: changing it changes no session.
    """

    role: str  # "user" | "dp"
    text: str
    at: float
    fallback: bool = False
    original_length: int | None = None
    latency_ms: dict[str, float] | None = None
    # The stored entry this copy was read from (how record_latency finds it).
    entry: TurnEntry | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_entry(cls, entry: TurnEntry) -> Turn:
        role, text, at, fallback, original_length, timed, *stages = entry
        latency_ms = latency_dict(stages) if timed else None
        return cls(role, text, at, fallback, original_length, latency_ms, entry)

    def to_entry(self) -> TurnEntry:
        return make_entry(
            self.role, self.text, self.at, self.fallback, self.original_length, self.latency_ms
        )

    @property
    def cost(self) -> int:
        """The bytes this entry counts against the transcript's budget."""
        return entry_cost(self.to_entry())

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"role": self.role, "text": self.text, "at": self.at}
        if self.fallback:
            data["fallback"] = True
        data.update(self.notes())
        return data

    def notes(self) -> dict[str, Any]:
        """What the entry carries beyond its words, when set: truncation, latency."""
        notes: dict[str, Any] = {}
        if self.original_length is not None:
            notes["truncated"] = True
            notes["original_length"] = self.original_length
        if self.latency_ms is not None:
            notes["latency_ms"] = dict(self.latency_ms)
        return notes


def make_entry(
    role: str,
    text: str,
    at: float,
    fallback: bool,
    original_length: int | None,
    latency_ms: Mapping[str, float] | None,
) -> TurnEntry:
    timed = latency_ms is not None
    stages = chain.from_iterable(latency_ms.items()) if latency_ms else ()
    return (role, text, at, fallback, original_length, timed, *stages)


def with_latency(entry: TurnEntry, latency_ms: Mapping[str, float]) -> TurnEntry:
    """``entry`` with ``latency_ms`` as its stages (the line itself unchanged)."""
    return (*entry[:6], *chain.from_iterable(latency_ms.items()))


def latency_dict(stages: Sequence[Any]) -> dict[str, float]:
    """``stage, ms, stage, ms, ...`` as a dict."""
    return {str(stage): float(ms) for stage, ms in zip(stages[::2], stages[1::2], strict=True)}


def entry_cost(entry: TurnEntry) -> int:
    latency = LATENCY_BYTES if entry[5] else 0
    return TURN_OVERHEAD_BYTES + sys.getsizeof(entry[1]) + latency


class Transcript(Sequence[Turn]):
    """The latest entries, oldest first, as ``Turn`` copies (read-only: a session
    adds entries through ``Session.add_turn``, which keeps its bounds)."""

    __slots__ = ("_entries",)

    def __init__(self, entries: deque[TurnEntry]) -> None:
        self._entries = entries

    @property
    def maxlen(self) -> int | None:
        return self._entries.maxlen

    def __len__(self) -> int:
        return len(self._entries)

    @overload
    def __getitem__(self, index: int) -> Turn: ...

    @overload
    def __getitem__(self, index: slice) -> list[Turn]: ...

    def __getitem__(self, index: int | slice) -> Turn | list[Turn]:
        if isinstance(index, slice):
            return [Turn.from_entry(entry) for entry in list(self._entries)[index]]
        return Turn.from_entry(self._entries[index])

    def __iter__(self) -> Iterator[Turn]:
        return map(Turn.from_entry, self._entries)

    def __reversed__(self) -> Iterator[Turn]:
        return map(Turn.from_entry, reversed(self._entries))

    def __repr__(self) -> str:
        return f"Transcript({list(self)!r})"

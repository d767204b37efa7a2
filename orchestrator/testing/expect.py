"""A turn's result against its expectations: what differs, as expected/got pairs.

``variables`` is a subset: each name given must hold that value, and a name
given as ``null`` must not be held. ``cards`` compares the ids shown, in any
order. ``within_ms`` fails a turn that answered later (or said nothing).
The ``judge`` is asked elsewhere (``judge``): it needs the network.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from orchestrator.testing.results import TurnResult
from orchestrator.testing.scenario import Expect


@dataclass(frozen=True)
class Mismatch:
    """One expectation not met: which, what was expected, what came back."""

    what: str  # says, cards, variables, fallback, latency, judge, error
    expected: str
    got: str

    def lines(self, indent: str = "    ") -> list[str]:
        label = f"{self.what}:"
        pad = " " * len(label)
        return [f"{indent}{label} expected {self.expected}", f"{indent}{pad} got      {self.got}"]


def check(expect: Expect, result: TurnResult) -> list[Mismatch]:
    """Every expectation of ``expect`` that ``result`` does not meet (but the judge's)."""
    found: list[Mismatch] = []
    if expect.says is not None and not expect.says.matches(result.text):
        found.append(Mismatch("says", expect.says.describe(), repr(result.text)))
    if expect.cards is not None and sorted(set(expect.cards)) != sorted(set(result.cards)):
        found.append(Mismatch("cards", _json(expect.cards), _json(result.cards)))
    if expect.variables is not None:
        wrong = {
            name: value
            for name, value in expect.variables.items()
            if (
                name in result.variables
                if value is None
                else result.variables.get(name, _ABSENT) != value
            )
        }
        if wrong:
            held = {name: result.variables.get(name, "(not set)") for name in wrong}
            found.append(Mismatch("variables", _json(wrong), _json(held)))
    if expect.fallback is not None and expect.fallback != result.fallback:
        found.append(Mismatch("fallback", _json(expect.fallback), _json(result.fallback)))
    if expect.within_ms is not None:
        latency = result.latency_ms
        if latency is None or latency > expect.within_ms:
            got = "no answer" if latency is None else f"{latency:g} ms"
            found.append(Mismatch("latency", f"within {expect.within_ms:g} ms", got))
    return found


class _Absent:
    def __repr__(self) -> str:
        return "(not set)"


_ABSENT: Any = _Absent()


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)

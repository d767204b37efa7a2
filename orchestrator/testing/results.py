"""What one turn came back with, read from the frames the server sent the DP.

In-process and against a running server (``--url``) alike, a turn is the
messages sent between its request and its end: the text of every
``conversationResponse`` and ``startSpeaking`` (card markers taken out), the
ids of the cards they show, whether any asked for a fallback, the variables
the DP was given merged with what the session holds after the turn, and how
long the first of them took.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from orchestrator.control import protocol

CARD_MARKER = re.compile(r"@showcards\(([^)]*)\)")
ANSWERS = ("conversationResponse", "startSpeaking")


@dataclass(frozen=True)
class TurnResult:
    """One turn's answer: ``text``, ``cards`` (ids), ``variables``, ``fallback`` and
    ``latency_ms`` (to the first message; ``None`` when nothing was said)."""

    text: str
    cards: list[str] = field(default_factory=list)
    variables: dict[str, Any] = field(default_factory=dict)
    fallback: bool = False
    latency_ms: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "cards": list(self.cards),
            "variables": dict(self.variables),
            "fallback": self.fallback,
            "latency_ms": self.latency_ms,
        }


@dataclass(frozen=True)
class Sent:
    """A frame the server sent, and when it arrived (seconds, the runner's clock)."""

    envelope: protocol.Envelope
    at: float


def turn_result(
    sent: Iterable[Sent], *, started: float, session_variables: Mapping[str, Any]
) -> TurnResult:
    """The turn made of ``sent`` (in order), whose request went out at ``started``."""
    texts: list[str] = []
    cards: list[str] = []
    variables: dict[str, Any] = {}
    fallback = False
    first: float | None = None
    for frame in sent:
        envelope = frame.envelope
        if envelope.kind != "request" or envelope.name not in ANSWERS:
            continue
        body = envelope.body
        if first is None:
            first = frame.at
        if envelope.name == "conversationResponse":
            output = body.get("output")
            text = output.get("text") if isinstance(output, dict) else None
            carried = body.get("variables")
            if isinstance(carried, dict):
                variables.update(carried)
            fallback = fallback or body.get("fallback") is True
        else:
            text = body.get("text")
        spoken = said(text if isinstance(text, str) else "", cards)
        if spoken:
            texts.append(spoken)
    variables.update(session_variables)
    latency = None if first is None else round((first - started) * 1000, 1)
    return TurnResult(" ".join(texts), cards, variables, fallback, latency)


def said(text: str, cards: list[str]) -> str:
    """``text`` as the DP speaks it (card markers out, whitespace runs as one space);
    the ids of the cards it shows are added to ``cards`` (once each)."""
    for card in CARD_MARKER.findall(text):
        if card not in cards:
            cards.append(card)
    return " ".join(CARD_MARKER.sub("", text).split())

"""What the LLM handler tells the model: the system prompt and the conversation so far.

The system prompt (and the welcome) may name the token's custom claims and the
session's shared variables: ``{claims.name}``, ``{variables.city}``; ``{{`` and
``}}`` are literal braces. ``{claims.NAME}`` renders only a claim the backend
chose (the API key); one a client chose renders only as ``{client_claims.NAME}``,
so a template says which it trusts. Only those maps, one level deep, can be named:
no attribute, index, conversion or format spec, so a template cannot reach
anything else (a malformed or other field is refused at start-up). A name the
session does not have renders empty. Values are user-influenced data: each is
rendered on one line (control characters and line breaks become spaces,
non-text values as JSON) and cut to ``MAX_VALUE_CHARS``.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator.config import SettingsError
from orchestrator.sessions.transcript import Turn
from tokens.claims import CLIENT_CLAIMS, client_chosen

MAX_VALUE_CHARS = 200
ROOTS = ("claims", "client_claims", "variables")
_FIELD = re.compile(r"^(?P<root>claims|client_claims|variables)\.(?P<name>[A-Za-z0-9_-]{1,64})$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")
# Markers the DP acts on (``@showcards(id)``): not something the model should learn to say.
_MARKER = re.compile(r"\s*@(?:showcards|hidecards|feature|marker|close)\([^)]*\)")


@dataclass(frozen=True)
class PromptTemplate:
    """A template checked once; ``render`` fills it for one session."""

    parts: tuple[tuple[str, tuple[str, str] | None], ...]  # (literal, (root, name) or None)

    @classmethod
    def parse(cls, variable: str, text: str) -> PromptTemplate:
        """``SettingsError`` naming ``variable`` when ``text`` is not a valid template."""
        parts: list[tuple[str, tuple[str, str] | None]] = []
        try:
            parsed = list(string.Formatter().parse(text))
        except ValueError as exc:
            raise SettingsError(f"{variable}: {exc} (write {{{{ and }}}} for braces)") from None
        for literal, field_name, format_spec, conversion in parsed:
            if field_name is None:
                parts.append((literal, None))
                continue
            match = _FIELD.match(field_name)
            if match is None or format_spec or conversion:
                shown = field_name + (f"!{conversion}" if conversion else "")
                shown += f":{format_spec}" if format_spec else ""
                raise SettingsError(
                    f"{variable}: {{{shown}}} is not a template value; use {{claims.NAME}}, "
                    "{client_claims.NAME} or {variables.NAME} (and {{ }} for literal braces)"
                )
            parts.append((literal, (match.group("root"), match.group("name"))))
        return cls(tuple(parts))

    def render(self, claims: Mapping[str, Any], variables: Mapping[str, Any]) -> str:
        """Filled from a session's ``claims`` (the token's, with its ``client_claims``
        mark) and ``variables``."""
        chosen = client_chosen(claims)
        pieces: list[str] = []
        for literal, field in self.parts:
            pieces.append(literal)
            if field is not None:
                root, name = field
                value = None
                if root == "variables":
                    value = variables.get(name)
                elif name != CLIENT_CLAIMS and (name in chosen) == (root == "client_claims"):
                    value = claims.get(name)
                pieces.append(template_value(value))
        return "".join(pieces)


def template_value(value: Any) -> str:
    """One value as prompt text: on one line, bounded; ``None`` (absent) is empty."""
    if value is None:
        return ""
    if not isinstance(value, str):
        try:
            value = json.dumps(value, ensure_ascii=False, default=str)
        except (TypeError, ValueError):
            value = ""
    text = _CONTROL.sub(" ", value).strip()
    return text[:MAX_VALUE_CHARS]


def history_messages(
    transcript: Iterable[Turn], current_text: str | None, *, max_turns: int, max_chars: int
) -> list[dict[str, str]]:
    """The transcript as chat messages, newest ``max_turns`` lines within ``max_chars``.

    The current user line (already in the transcript when the turn runs; none
    on the init turn: ``current_text=None``) is left out: the caller adds the
    user's text in full.
    """
    lines = list(transcript)
    last = lines[-1] if lines else None
    if (
        last is not None
        and last.role == "user"
        and current_text is not None
        and (current_text.startswith(last.text))
    ):
        lines.pop()
    messages: list[dict[str, str]] = []
    budget = max_chars
    for turn in reversed(lines[-max_turns:] if max_turns else []):
        role = "user" if turn.role == "user" else "assistant"
        text = turn.text if role == "user" else _MARKER.sub("", turn.text).strip()
        if not text:
            continue
        if len(text) > budget:
            break
        budget -= len(text)
        messages.append({"role": role, "content": text})
    messages.reverse()
    return messages

"""The LLM handler's tools: ``show_card`` and ``set_variable``, through function calling.

A streamed tool call arrives in pieces (``delta.tool_calls[i]``: the id and
name once, the JSON arguments in fragments); ``ToolCalls`` puts them back
together, each piece bounded as it comes (a name or id past 64 characters,
arguments past ``MAX_ARGUMENT_CHARS``, calls past ``MAX_TOOL_CALLS``: the
excess is dropped, so the call is refused). ``run_tool`` checks a finished
call and carries it out: a card for the reply, or a shared session variable.
Anything else (an unknown name, bad JSON, a bad value, a variable past the
model's budget) is refused with a reason the model is told.

The model's variables are named ``llm-<name>``: it never writes a variable the
backend or the handler set, and its budget (``MODEL_VARIABLES_BYTES``) is its own.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from orchestrator.handlers.api import Card, Conversation
from orchestrator.sessions.model import MODEL_VARIABLE_PREFIX, VariablesRefused

MAX_ARGUMENT_CHARS = 16 * 1024
MAX_CARD_DATA_CHARS = 8 * 1024
MAX_VARIABLE_CHARS = 1024
MAX_TOOL_CALLS = 8  # per round
MAX_NAME_CHARS = 64  # a tool's name, a call's id
_ID = r"^[A-Za-z0-9_-]{1,64}$"
_ID_RE = re.compile(_ID)
# A variable's name as the model gives it: prefixed, it is still a template name (64).
_NAME = r"^[A-Za-z0-9_-]{1,60}$"
_NAME_RE = re.compile(_NAME)

TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "show_card",
            "description": "Show a content card on the user's screen beside the digital person.",
            "parameters": {
                "type": "object",
                "properties": {
                    "id": {"type": "string", "pattern": _ID, "description": "The card's id."},
                    "component": {
                        "type": "string",
                        "description": "The UI component, e.g. markdown, image, link, options.",
                    },
                    "data": {"type": "object", "description": "What the component shows."},
                },
                "required": ["id", "component", "data"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "set_variable",
            "description": (
                "Remember a value in the session, shared with the UI and backend "
                f"(stored as {MODEL_VARIABLE_PREFIX}<name>)."
            ),
            "parameters": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "pattern": _NAME},
                    "value": {"type": ["string", "number", "boolean"]},
                },
                "required": ["name", "value"],
            },
        },
    },
]


class ToolRefused(ValueError):
    """A tool call that is not carried out; the message is what the model is told."""


@dataclass
class ToolCall:
    id: str = ""
    name: str = ""
    arguments: str = ""

    def as_message(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


@dataclass
class ToolCalls:
    """The tool calls of one streamed response, by their ``index``."""

    calls: dict[int, ToolCall] = field(default_factory=dict)

    def add(self, deltas: Any) -> None:
        """Merge one chunk's ``delta.tool_calls`` (openai's typed deltas)."""
        for delta in deltas or ():
            index = delta.index if isinstance(delta.index, int) else len(self.calls)
            call = self.calls.get(index)
            if call is None:
                if len(self.calls) >= MAX_TOOL_CALLS:
                    continue
                call = self.calls[index] = ToolCall(id=f"call_{index}")
            if delta.id:
                call.id = delta.id[:MAX_NAME_CHARS]
            function = delta.function
            if function is not None:
                # One character past a bound is kept, so the call is refused, not cut.
                if function.name:
                    call.name = _append(call.name, function.name, MAX_NAME_CHARS + 1)
                if function.arguments:
                    call.arguments = _append(call.arguments, function.arguments, MAX_ARGUMENT_CHARS)

    def done(self) -> list[ToolCall]:
        return [self.calls[index] for index in sorted(self.calls)]


def _append(text: str, more: Any, limit: int) -> str:
    """``text + more``, at most ``limit`` characters (``more`` unchecked: typed by a server)."""
    if not isinstance(more, str) or len(text) >= limit:
        return text
    return text + more[: limit - len(text)]


@dataclass(frozen=True)
class ToolResult:
    content: str  # what the model is told
    card: Card | None = None


async def run_tool(call: ToolCall, conversation: Conversation) -> ToolResult:
    """Carry out one call; ``ToolRefused`` with the reason when it cannot be."""
    arguments = _arguments(call)
    if call.name == "show_card":
        return ToolResult("shown", card=_card(arguments))
    if call.name == "set_variable":
        name, value = _variable(arguments)
        stored = MODEL_VARIABLE_PREFIX + name
        try:
            await conversation.set_variables({stored: value}, by_model=True)
        except VariablesRefused as exc:
            raise ToolRefused(f"not set: {exc}") from None
        return ToolResult(f"set {stored}")
    raise ToolRefused(f"unknown tool {call.name[:64]!r}: use show_card or set_variable")


def _arguments(call: ToolCall) -> Mapping[str, Any]:
    if len(call.arguments) >= MAX_ARGUMENT_CHARS:
        raise ToolRefused("arguments too long")
    try:
        arguments = json.loads(call.arguments or "{}")
    except ValueError:
        raise ToolRefused("arguments are not JSON") from None
    if not isinstance(arguments, dict):
        raise ToolRefused("arguments must be a JSON object")
    return arguments


def _card(arguments: Mapping[str, Any]) -> Card:
    card_id, component, data = (arguments.get(key) for key in ("id", "component", "data"))
    if not isinstance(card_id, str) or not _ID_RE.match(card_id):
        raise ToolRefused("id must be 1 to 64 letters, digits, '-' or '_'")
    if not isinstance(component, str) or not _ID_RE.match(component):
        raise ToolRefused("component must be 1 to 64 letters, digits, '-' or '_'")
    if not isinstance(data, dict):
        raise ToolRefused("data must be a JSON object")
    if len(json.dumps(data)) > MAX_CARD_DATA_CHARS:
        raise ToolRefused(f"data is over {MAX_CARD_DATA_CHARS} characters of JSON")
    return Card(id=card_id, component=component, data=data)


def _variable(arguments: Mapping[str, Any]) -> tuple[str, str | int | float | bool]:
    name, value = arguments.get("name"), arguments.get("value")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ToolRefused("name must be 1 to 60 letters, digits, '-' or '_'")
    if name.startswith("public-"):
        raise ToolRefused("names starting with public- belong to cards")
    if not isinstance(value, str | int | float | bool):
        raise ToolRefused("value must be a string, a number or a boolean")
    if isinstance(value, float) and not math.isfinite(value):
        raise ToolRefused("value must be a finite number")
    if isinstance(value, str) and len(value) > MAX_VARIABLE_CHARS:
        raise ToolRefused(f"value is over {MAX_VARIABLE_CHARS} characters")
    return name, value

"""The scene messages the server sends (sans I/O): ``conversationResponse``,
``startSpeaking``, ``stopSpeaking``, ``conversationSetVariables``, ``conversationSend``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orchestrator.control.protocol import Envelope, PersonaId, Transaction


def conversation_response(
    *,
    input_text: str,
    output_text: str,
    variables: Mapping[str, Any] | None = None,
    fallback: bool = False,
    transaction: Transaction = None,
) -> Envelope:
    body: dict[str, Any] = {"input": {"text": input_text}, "output": {"text": output_text}}
    if variables:
        body["variables"] = dict(variables)
    if fallback:
        body["fallback"] = True
    return Envelope("request", "conversationResponse", body, transaction)


def start_speaking(
    *,
    persona_id: PersonaId,
    text: str,
    can_be_interrupted: bool | None = None,
    filter_commands: bool | None = None,
    context: str | None = None,
    transaction: Transaction = None,
) -> Envelope:
    """``context`` is a string in the Web SDK's types."""
    body: dict[str, Any] = {"personaId": persona_id, "text": text}
    if context is not None:
        body["context"] = context
    optional: dict[str, Any] = {}
    if can_be_interrupted is not None:
        optional["canBeInterrupted"] = can_be_interrupted
    if filter_commands is not None:
        optional["filterCommands"] = filter_commands
    if optional:
        body["optionalArgs"] = optional
    return Envelope("request", "startSpeaking", body, transaction)


def stop_speaking(*, persona_id: PersonaId, transaction: Transaction = None) -> Envelope:
    return Envelope("request", "stopSpeaking", {"personaId": persona_id}, transaction)


def conversation_set_variables(
    *, persona_id: PersonaId, variables: Mapping[str, Any], transaction: Transaction = None
) -> Envelope:
    body = {"personaId": persona_id, "variables": dict(variables)}
    return Envelope("request", "conversationSetVariables", body, transaction)


def conversation_send(
    *,
    persona_id: PersonaId,
    text: str,
    variables: Mapping[str, Any] | None = None,
    optional_args: Mapping[str, Any] | None = None,
    transaction: Transaction = None,
) -> Envelope:
    body: dict[str, Any] = {"personaId": persona_id, "text": text}
    if variables:
        body["variables"] = dict(variables)
    if optional_args:
        body["optionalArgs"] = dict(optional_args)
    return Envelope("request", "conversationSend", body, transaction)

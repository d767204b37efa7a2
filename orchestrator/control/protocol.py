"""The Soul Machines scene protocol, sans I/O: parse and build JSON envelopes.

Envelope: ``{"category": "scene", "kind": "event"|"request"|"response",
"name": ..., "body": {...}, "transaction": int|str|null, "status": int}``.
Parsing never trusts the peer: every malformed input raises ``FrameError``
with a stable ``code``; the caller logs and counts it and keeps the socket
open, because closing the control socket ends the user's DP session.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from tokens import jsonsafe

CATEGORY = "scene"
KINDS = frozenset({"event", "request", "response"})
DEFAULT_MAX_FRAME_BYTES = 64 * 1024
SpeechState = Literal["idle", "animating", "speaking"]
SPEECH_STATES: frozenset[str] = frozenset({"idle", "animating", "speaking"})
Transaction = int | str | None
# The DP sends personaId as 1 or "1"; it goes back with the type the DP used.
PersonaId = int | str

KNOWN_INBOUND = frozenset(
    {"conversationRequest", "state", "recognizeResults", "conversationResult", "speechMarker"}
)


class FrameError(ValueError):
    """A frame that cannot be used; ``code`` names the kind of problem."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code


@dataclass(frozen=True, slots=True)
class Envelope:
    """One scene message."""

    kind: str
    name: str
    body: Mapping[str, Any] = field(default_factory=dict)
    transaction: Transaction = None
    status: int | None = None
    category: str = CATEGORY

    def to_dict(self) -> dict[str, Any]:
        message: dict[str, Any] = {
            "category": self.category,
            "kind": self.kind,
            "name": self.name,
            "transaction": self.transaction,
            "body": self.body,
        }
        if self.status is not None:
            message["status"] = self.status
        return message

    def to_json(self) -> str:
        """Compact JSON; ``TypeError``/``ValueError`` for a body that is not JSON."""
        # A lone surrogate (from a JSON \ud800 escape) goes out as a \u escape.
        return jsonsafe.utf8_text(self.to_dict(), _UTF8_JSON, _ASCII_JSON)


# Made once: json.dumps with arguments builds a new encoder per call.
_UTF8_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
_ASCII_JSON = json.JSONEncoder(separators=(",", ":"))


def parse_frame(data: str | bytes, *, max_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> Envelope:
    """One text frame to an ``Envelope``, or ``FrameError``.

    Binary frames, frames over ``max_bytes``, invalid JSON, JSON that is not
    plain (a lone surrogate, a number past float's range, nesting deeper than
    64: see ``tokens.jsonsafe``), non-objects and fields of the wrong type are
    refused; unknown names and extra fields are accepted (the protocol grows).
    """
    if isinstance(data, bytes | bytearray):
        raise FrameError("binary_frame", "binary frames are not part of the protocol")
    if len(data) > max_bytes // 4 and len(data.encode("utf-8", "surrogatepass")) > max_bytes:
        raise FrameError("too_large", f"frame exceeds {max_bytes} bytes")
    try:
        message = jsonsafe.loads(data)
    except (ValueError, RecursionError) as exc:
        # ValueError covers JSONDecodeError, NaN/Infinity (not JSON: the DP's
        # JSON.parse refuses them), integers past Python's digit limit and
        # values that are not plain JSON (stored, they would break every read).
        raise FrameError("invalid_json", f"frame is not valid JSON: {exc}") from None
    if not isinstance(message, dict):
        raise FrameError("not_object", "frame is not a JSON object")
    return envelope_from_dict(message)


def envelope_from_dict(message: Mapping[str, Any]) -> Envelope:
    category = message.get("category", CATEGORY)
    kind = message.get("kind")
    name = message.get("name")
    body = message.get("body", {})
    transaction = message.get("transaction")
    status = message.get("status")
    if not isinstance(category, str):
        raise FrameError("bad_field", "category must be a string")
    if kind not in KINDS:
        raise FrameError("bad_field", f"kind must be one of {sorted(KINDS)}")
    if not isinstance(name, str) or not name:
        raise FrameError("bad_field", "name must be a non-empty string")
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise FrameError("bad_field", "body must be an object")
    if transaction is not None and (
        isinstance(transaction, bool) or not isinstance(transaction, int | str)
    ):
        raise FrameError("bad_field", "transaction must be an integer, a string or null")
    if status is not None and (isinstance(status, bool) or not isinstance(status, int)):
        raise FrameError("bad_field", "status must be an integer")
    return Envelope(
        kind=kind, name=name, body=body, transaction=transaction, status=status, category=category
    )


# --- typed views of inbound bodies --------------------------------------------


MAX_PERSONA_ID_CHARS = 64
MAX_PERSONA_ID_INT = 2**53  # JavaScript's safe integers: the DP's side of the wire


def _persona_id(value: Any) -> PersonaId | None:
    """``value`` if it is a persona id (an int or a string, kept as is), else ``None``.

    The session keeps it and sends it back on every speech request, so an id
    past a sane size is ignored (the session keeps the one it had), not cut:
    a shortened id would name another persona.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if abs(value) < MAX_PERSONA_ID_INT else None
    if isinstance(value, str):
        return value if len(value) <= MAX_PERSONA_ID_CHARS else None
    return None


@dataclass(frozen=True, slots=True)
class ConversationRequestBody:
    """``conversationRequest``: what the user said (or the session's start)."""

    text: str
    variables: Mapping[str, Any]
    optional_args: Mapping[str, Any]
    persona_id: PersonaId | None

    @property
    def is_init(self) -> bool:
        return self.optional_args.get("kind") == "init"


def conversation_request(envelope: Envelope) -> ConversationRequestBody:
    body = envelope.body
    raw_input = body.get("input", {})
    if raw_input is None:
        raw_input = {}
    if not isinstance(raw_input, dict):
        raise FrameError("bad_field", "conversationRequest input must be an object")
    text = raw_input.get("text", "")
    if text is None:
        text = ""
    if not isinstance(text, str):
        raise FrameError("bad_field", "conversationRequest input.text must be a string")
    variables = body.get("variables") or {}
    optional_args = body.get("optionalArgs") or {}
    if not isinstance(variables, dict) or not isinstance(optional_args, dict):
        raise FrameError("bad_field", "variables and optionalArgs must be objects")
    return ConversationRequestBody(
        text=text,
        variables=variables,
        optional_args=optional_args,
        persona_id=_persona_id(body.get("personaId")),
    )


@dataclass(frozen=True, slots=True)
class StateBody:
    """``state``: a partial update; every field may be missing."""

    dp_session_id: str | None = None
    session_state: str | None = None
    user_info: str | None = None
    key_name: str | None = None
    speech_states: Mapping[str, str] = field(default_factory=dict)
    recognizing: bool | None = None


def state(envelope: Envelope) -> StateBody:
    body = envelope.body
    session = body.get("session")
    dp_session_id = session_state = user_info = key_name = None
    if isinstance(session, dict):
        dp_session_id = _str_or_none(session.get("sessionId"))
        session_state = _str_or_none(session.get("state"))
        user_info = _str_or_none(session.get("userInfo"))
        meta = session.get("meta")
        if isinstance(meta, dict):
            key_name = _str_or_none(meta.get("keyName"))
    speech: dict[str, str] = {}
    personas = body.get("persona")
    if isinstance(personas, dict):
        for persona_id, persona in personas.items():
            if isinstance(persona, dict):
                speech_state = persona.get("speechState")
                if speech_state in SPEECH_STATES:
                    speech[str(persona_id)] = speech_state
    recognizing = body.get("recognizing")
    return StateBody(
        dp_session_id=dp_session_id,
        session_state=session_state,
        user_info=user_info,
        key_name=key_name,
        speech_states=speech,
        recognizing=recognizing if isinstance(recognizing, bool) else None,
    )


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def final_transcript(envelope: Envelope) -> str | None:
    """The best final transcript of a ``recognizeResults`` event, if any."""
    results = envelope.body.get("results")
    if not isinstance(results, list):
        return None
    for result in results:
        if not isinstance(result, dict) or result.get("final") is not True:
            continue
        alternatives = result.get("alternatives")
        if isinstance(alternatives, list) and alternatives:
            best = alternatives[0]
            if isinstance(best, dict) and isinstance(best.get("transcript"), str):
                return str(best["transcript"])
    return None

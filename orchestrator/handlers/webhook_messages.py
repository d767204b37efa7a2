"""The webhook's JSON, both ways, without I/O: what a turn and a session event
send, and the reply checked field by field before the DP says any of it.

The shapes are documented (with JSON Schemas) in docs/webhook.md; a test
validates real requests against those schemas.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import islice
from typing import Any

from orchestrator.handlers.api import Card, ConversationRequest, Reply
from orchestrator.sessions.model import Session
from tokens import jsonsafe
from tokens.claims import client_chosen, custom_claims
from tokens.jsonsafe import NotPlainJsonError

TURN = "turn"
STARTED = "session.started"
IDLE = "session.idle"
ENDED = "session.ended"
REPLY_FIELDS = frozenset({"text", "variables", "cards", "fallback", "speak"})
CARD_FIELDS = frozenset({"id", "component", "data"})
MAX_CARDS = 20
MAX_SPEAK_LINES = 10
MAX_SPEAK_CHARS = 4000  # as the sessions API's speak
# A card id goes into ``@showcards(id)`` and the variable ``public-<id>``.
_CARD_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


class BadReply(ValueError):
    """The backend's reply cannot be said; the message is the reason logged."""


@dataclass(frozen=True, slots=True)
class WebhookReply:
    """A checked reply: the ``Reply`` to send (``None``: nothing to say), the
    shared variables to merge first (``None`` removes one), and the lines to
    speak after it."""

    reply: Reply | None
    variables: Mapping[str, Any]
    speak: tuple[str, ...] = ()


def _session_fields(session: Session) -> dict[str, Any]:
    return {
        "session_id": session.id,
        "dp_session_id": session.dp_session_id,
        "variables": dict(session.variables),
        "claims": custom_claims(session.claims),
        # Which of them a client chose (no API key): the user's browser's word.
        "client_claims": sorted(client_chosen(session.claims)),
    }


def turn_payload(request: ConversationRequest, *, turn_id: str, history: int) -> dict[str, Any]:
    """The body of a turn's ``POST``: the user's words and what the backend needs around them."""
    session = request.session
    lines = list(islice(reversed(session.transcript), history))[::-1]  # the last ones only
    return {
        "type": TURN,
        "turn_id": turn_id,
        **_session_fields(session),
        "text": request.text,
        "is_init": request.is_init,
        "dp_variables": dict(request.variables),
        "transcript": [{"role": line.role, "text": line.text, "at": line.at} for line in lines],
    }


def event_payload(event: str, session: Session, *, event_id: str, **details: Any) -> dict[str, Any]:
    """The body of a session event (``session.started``, ``.idle``, ``.ended``).

    Like ``turn_id``, ``event_id`` makes every body (so every signature) unique:
    a receiver's replay guard never refuses a genuine request.
    """
    return {"type": event, "event_id": event_id, **_session_fields(session), **details}


def parse_reply(body: bytes) -> WebhookReply | None:
    """The reply a backend sent (``None`` for an empty body: nothing to say).

    Raises ``BadReply`` naming the first problem: not UTF-8 JSON, not an
    object, an unknown field, a field of the wrong type.
    """
    if not body.strip():
        return None
    try:
        text = body.decode("utf-8")
        data = jsonsafe.loads(text)
    except UnicodeDecodeError:
        raise BadReply("reply is not UTF-8") from None
    except NotPlainJsonError as exc:
        raise BadReply(f"reply is not plain JSON: {exc}") from None
    except (ValueError, RecursionError):
        raise BadReply("reply is not JSON") from None
    if not isinstance(data, dict):
        raise BadReply(f"reply is a JSON {type(data).__name__}, not an object")
    unknown = sorted(set(data) - REPLY_FIELDS)
    if unknown:
        raise BadReply(f"reply has unknown field(s) {', '.join(map(repr, unknown[:5]))}")
    text_out = _typed(data, "text", str, "")
    variables = _typed(data, "variables", dict, {})
    fallback = _typed(data, "fallback", bool, False)
    cards = tuple(_card(index, item) for index, item in enumerate(_typed(data, "cards", list, [])))
    speak = _speak_lines(_typed(data, "speak", list, []))
    if len(cards) > MAX_CARDS:
        raise BadReply(f"reply has more than {MAX_CARDS} cards")
    reply = (
        Reply(text_out, fallback=fallback, cards=cards) if text_out or cards or fallback else None
    )
    if reply is None and not variables and not speak:
        return None
    return WebhookReply(reply, variables, speak)


def _typed(data: Mapping[str, Any], name: str, kind: type, default: Any) -> Any:
    value = data.get(name, default)
    if value is None:
        return default
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        wanted = {str: "a string", dict: "an object", bool: "true or false", list: "an array"}
        raise BadReply(f"reply field {name!r} must be {wanted[kind]}")
    return value


def _card(index: int, item: Any) -> Card:
    where = f"reply field 'cards'[{index}]"
    if not isinstance(item, dict):
        raise BadReply(f"{where} must be an object with id, component and data")
    unknown = sorted(set(item) - CARD_FIELDS)
    if unknown:
        raise BadReply(f"{where} has unknown field(s) {', '.join(map(repr, unknown[:5]))}")
    card_id, component, data = item.get("id"), item.get("component"), item.get("data", {})
    if not isinstance(card_id, str) or not _CARD_ID.fullmatch(card_id):
        raise BadReply(f"{where}.id must be 1 to 64 letters, digits, '_' or '-'")
    if not isinstance(component, str) or not component:
        raise BadReply(f"{where}.component must be a non-empty string")
    if not isinstance(data, dict):
        raise BadReply(f"{where}.data must be an object")
    return Card(card_id, component, data)


def _speak_lines(lines: list[Any]) -> tuple[str, ...]:
    if len(lines) > MAX_SPEAK_LINES:
        raise BadReply(f"reply field 'speak' holds more than {MAX_SPEAK_LINES} lines")
    for index, line in enumerate(lines):
        if not isinstance(line, str) or not line.strip():
            raise BadReply(f"reply field 'speak'[{index}] must be a non-empty string")
        if len(line) > MAX_SPEAK_CHARS:
            raise BadReply(f"reply field 'speak'[{index}] exceeds {MAX_SPEAK_CHARS} characters")
    return tuple(lines)

"""The webhook's JSON without I/O: what a turn and an event send, and how a
reply is checked before the DP says any of it."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from orchestrator.handlers.api import Card, ConversationRequest, Reply
from orchestrator.handlers.webhook_messages import (
    MAX_CARDS,
    MAX_SPEAK_LINES,
    BadReply,
    WebhookReply,
    event_payload,
    parse_reply,
    turn_payload,
)
from orchestrator.sessions.model import Session

# What every request says of ``make_session()``.
SESSION_FIELDS = {
    "session_id": "s-1",
    "dp_session_id": "dp-1",
    "variables": {"name": "Ann"},
    "claims": {"plan": "gold"},
    "client_claims": [],
}


def make_session(**fields: Any) -> Session:
    session = Session(
        id="s-1", issuer="test-key", expires_at=int(time.time()) + 600, claims={"plan": "gold"}
    )
    session.dp_session_id = "dp-1"
    session.variables["name"] = "Ann"
    for name, value in fields.items():
        setattr(session, name, value)
    return session


def make_request(text: str = "hello", *, session: Session | None = None) -> ConversationRequest:
    return ConversationRequest(
        text=text,
        variables={"Current_Time": "noon"},
        is_init=False,
        optional_args={},
        session=session or make_session(),
    )


def reply_of(data: Any) -> WebhookReply | None:
    return parse_reply(json.dumps(data).encode())


def reason(body: bytes | Any) -> str:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    with pytest.raises(BadReply) as caught:
        parse_reply(raw)
    return str(caught.value)


def test_a_turn_sends_the_words_the_session_and_the_last_transcript_lines() -> None:
    session = make_session()
    for index in range(15):
        session.add_turn("user" if index % 2 else "dp", f"line {index}")
    payload = turn_payload(make_request(session=session), turn_id="t-1", history=3)
    assert {k: v for k, v in payload.items() if k != "transcript"} == {
        "type": "turn",
        "turn_id": "t-1",
        **SESSION_FIELDS,
        "text": "hello",
        "is_init": False,
        "dp_variables": {"Current_Time": "noon"},
    }
    assert [line["text"] for line in payload["transcript"]] == ["line 12", "line 13", "line 14"]
    assert set(payload["transcript"][0]) == {"role", "text", "at"}
    assert turn_payload(make_request(session=session), turn_id="t", history=0)["transcript"] == []


def test_an_event_sends_the_session_and_its_details() -> None:
    payload = event_payload("session.ended", make_session(), event_id="e-1", reason="disconnected")
    assert payload == {
        "type": "session.ended",
        "event_id": "e-1",
        **SESSION_FIELDS,
        "reason": "disconnected",
    }


def test_a_full_reply_becomes_a_reply_variables_and_lines_to_speak() -> None:
    answer = reply_of(
        {
            "text": "Here you go.",
            "variables": {"plan": "gold", "old": None},
            "cards": [{"id": "offer-1", "component": "markdown", "data": {"text": "**50%**"}}],
            "fallback": False,
            "speak": ["And one more thing."],
        }
    )
    assert answer == WebhookReply(
        Reply("Here you go.", cards=(Card("offer-1", "markdown", {"text": "**50%**"}),)),
        {"plan": "gold", "old": None},
        ("And one more thing.",),
    )


def test_an_empty_body_or_an_empty_object_says_nothing() -> None:
    assert parse_reply(b"") is None
    assert parse_reply(b"  \n") is None
    assert reply_of({}) is None
    assert reply_of({"text": "", "cards": [], "speak": [], "variables": {}}) is None
    assert reply_of({"text": None}) is None


def test_variables_alone_or_a_fallback_alone_are_a_reply() -> None:
    assert reply_of({"variables": {"a": 1}}) == WebhookReply(None, {"a": 1})
    assert reply_of({"fallback": True}) == WebhookReply(Reply("", fallback=True), {})
    card = {"id": "c", "component": "image", "data": {"url": "https://x/y.png"}}
    only_card = reply_of({"cards": [card]})
    assert only_card is not None and only_card.reply is not None
    assert only_card.reply.output_text() == "@showcards(c)"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"{", "reply is not JSON"),
        (b"\xff\xfe", "reply is not UTF-8"),
        (b"[" * 10_000, "reply is not JSON"),
        (b'{"text": "\\ud800"}', "reply is not plain JSON: a string holds a lone surrogate"),
        (b'{"variables": {"n": 1e999}}', "reply is not plain JSON: number 1e999 is out of range"),
        (b'{"variables": {"n": NaN}}', "reply is not JSON"),
        (b'"hello"', "reply is a JSON str, not an object"),
        (b"[1]", "reply is a JSON list, not an object"),
    ],
)
def test_a_reply_that_is_not_a_plain_json_object_is_refused(body: bytes, expected: str) -> None:
    assert reason(body).startswith(expected)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"txt": "typo"}, "reply has unknown field(s) 'txt'"),
        ({"text": 5}, "reply field 'text' must be a string"),
        ({"variables": []}, "reply field 'variables' must be an object"),
        ({"fallback": "yes"}, "reply field 'fallback' must be true or false"),
        ({"fallback": 1}, "reply field 'fallback' must be true or false"),
        ({"cards": {}}, "reply field 'cards' must be an array"),
        ({"speak": "hi"}, "reply field 'speak' must be an array"),
        ({"text": True}, "reply field 'text' must be a string"),
        ({"cards": [5]}, "reply field 'cards'[0] must be an object with id, component and data"),
        ({"cards": [{"id": "a b", "component": "x"}]}, "reply field 'cards'[0].id must be"),
        ({"cards": [{"id": "a", "component": ""}]}, "reply field 'cards'[0].component must"),
        ({"cards": [{"id": "a", "component": "x", "data": 1}]}, "reply field 'cards'[0].data"),
        ({"cards": [{"id": "a", "component": "x", "extra": 1}]}, "reply field 'cards'[0] has"),
        ({"speak": [""]}, "reply field 'speak'[0] must be a non-empty string"),
        ({"speak": ["ok", 3]}, "reply field 'speak'[1] must be a non-empty string"),
        ({"speak": ["x" * 4001]}, "reply field 'speak'[0] exceeds 4000 characters"),
        ({"speak": ["x"] * (MAX_SPEAK_LINES + 1)}, "reply field 'speak' holds more than"),
    ],
)
def test_a_reply_field_of_the_wrong_shape_is_refused_with_its_name(
    data: dict[str, Any], expected: str
) -> None:
    assert reason(data).startswith(expected)


def test_too_many_cards_are_refused() -> None:
    cards = [{"id": f"c{index}", "component": "x", "data": {}} for index in range(MAX_CARDS + 1)]
    assert reason({"cards": cards}) == f"reply has more than {MAX_CARDS} cards"


def test_the_claims_a_client_chose_are_named_apart_from_the_backends() -> None:
    """Issue 23: the token's ``client_claims`` mark reaches the backend as the list of
    names the user's browser chose; ``claims`` holds the values without the mark."""
    session = make_session(claims={"plan": "gold", "role": "admin", "client_claims": ["role"]})
    payload = turn_payload(make_request(session=session), turn_id="t-1", history=0)
    assert payload["claims"] == {"plan": "gold", "role": "admin"}
    assert payload["client_claims"] == ["role"]
    event = event_payload("session.started", session, event_id="e-1")
    assert (event["claims"], event["client_claims"]) == (payload["claims"], ["role"])

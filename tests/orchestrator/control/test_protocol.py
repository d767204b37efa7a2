"""The wire protocol module: envelopes in and out, without sockets."""

from __future__ import annotations

import json

import pytest

from orchestrator.control import outbound, protocol
from orchestrator.control.protocol import Envelope, FrameError, parse_frame
from orchestrator.control.transactions import TransactionCounter


def frame(**fields: object) -> str:
    message: dict[str, object] = {"category": "scene", "kind": "event", "name": "state", "body": {}}
    message.update(fields)
    return json.dumps(message)


def test_parses_a_conversation_request_with_init() -> None:
    """A DP init request parses into text, variables and the init flag."""
    envelope = parse_frame(
        frame(
            name="conversationRequest",
            body={
                "personaId": 1,
                "input": {"text": ""},
                "variables": {"Turn_Id": "x"},
                "optionalArgs": {"kind": "init"},
            },
        )
    )
    request = protocol.conversation_request(envelope)
    assert request.is_init
    assert request.text == ""
    assert request.variables == {"Turn_Id": "x"}
    assert request.persona_id == 1


@pytest.mark.parametrize(
    ("persona_id", "parsed"),
    [
        (1, 1),
        ("1", "1"),
        ("avatar-2", "avatar-2"),
        ("p" * 64, "p" * 64),
        ("p" * 65, None),
        (2**53 - 1, 2**53 - 1),
        (10**300, None),
        (True, None),
        (1.0, None),
        (None, None),
    ],
    ids=["int", "str", "name", "longest", "too-long", "largest", "huge", "bool", "float", "null"],
)
def test_persona_id_keeps_the_type_the_dp_used(persona_id: object, parsed: object) -> None:
    """personaId 1 stays the int 1 and "1" the string "1" (the server sends it back as is);
    anything else, and an id past 64 characters or JavaScript's safe integers (kept in
    the session and sent back on every speech request), is no persona id."""
    envelope = parse_frame(frame(name="conversationRequest", body={"personaId": persona_id}))
    request = protocol.conversation_request(envelope)
    assert request.persona_id == parsed
    assert type(request.persona_id) is type(parsed)


@pytest.mark.parametrize("persona_id", [1, "1"], ids=["int", "str"])
def test_speech_requests_carry_the_persona_id_with_its_type(persona_id: int | str) -> None:
    """startSpeaking and stopSpeaking send personaId exactly as given; context is a string."""
    speak = outbound.start_speaking(persona_id=persona_id, text="hey", context="greeting")
    stop = outbound.stop_speaking(persona_id=persona_id)
    assert json.loads(speak.to_json())["body"] == {
        "personaId": persona_id,
        "text": "hey",
        "context": "greeting",
    }
    assert json.loads(stop.to_json())["body"] == {"personaId": persona_id}


@pytest.mark.parametrize("transaction", [7, "scene_12", None])
def test_transaction_may_be_int_string_or_null(transaction: object) -> None:
    """Transactions arrive as integers, strings or null, and are kept as given."""
    assert parse_frame(frame(transaction=transaction)).transaction == transaction


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b'{"kind":"event"}', "binary_frame"),
        ("not json", "invalid_json"),
        ("[1, 2]", "not_object"),
        ('"text"', "not_object"),
        (frame(kind="shout"), "bad_field"),
        (frame(name=5), "bad_field"),
        (frame(name=""), "bad_field"),
        (frame(body=[1]), "bad_field"),
        (frame(transaction=1.5), "bad_field"),
        (frame(transaction=True), "bad_field"),
        (frame(status="0"), "bad_field"),
        (frame(category=3), "bad_field"),
        ("[" * 20_000, "invalid_json"),
        (frame(body={"t": "\ud800"}), "invalid_json"),
        (frame(body={"\udfff": 1}), "invalid_json"),
        ('{"kind": "event", "name": "x", "body": {"t": "\\uDC00"}}', "invalid_json"),
        ('{"kind": "event", "name": "x", "body": {"n": 1e999}}', "invalid_json"),
        (frame(body={"deep": json.loads("[" * 64 + "]" * 64)}), "invalid_json"),
    ],
    ids=lambda value: value[:40] if isinstance(value, str | bytes) else None,
)
def test_bad_frames_raise_frame_error_with_a_code(data: str | bytes, code: str) -> None:
    """Every kind of malformed input is a FrameError naming the problem."""
    with pytest.raises(FrameError) as caught:
        parse_frame(data)
    assert caught.value.code == code


def test_plain_json_at_the_limits_is_accepted() -> None:
    """A surrogate pair, a large finite number and 64 levels of nesting are fine."""
    body = {"t": "\U0001f600", "n": 1e308, "deep": json.loads("[" * 62 + "]" * 62)}
    assert parse_frame(frame(body=body)).body == body
    assert parse_frame(json.dumps({"kind": "event", "name": "x", "body": {"t": "\ud83d\ude00"}}))


def test_oversize_frames_are_refused_by_their_utf8_size() -> None:
    """The size limit counts encoded bytes, so multi-byte text cannot slip past it."""
    text = json.dumps({"kind": "event", "name": "x", "body": {"t": "é" * 1000}}, ensure_ascii=False)
    assert len(text) < 1500 < len(text.encode())
    with pytest.raises(FrameError) as caught:
        parse_frame(text, max_bytes=1500)
    assert caught.value.code == "too_large"


def test_unknown_names_and_extra_fields_are_accepted() -> None:
    """The protocol grows: an unknown message still parses."""
    envelope = parse_frame(frame(name="somethingNew", extra=1))
    assert envelope.name == "somethingNew"


def test_state_is_a_partial_update() -> None:
    """A state event may carry any subset of session, persona and recognizing."""
    full = protocol.state(
        parse_frame(
            frame(
                body={
                    "session": {
                        "sessionId": "dp-1",
                        "state": "connected",
                        "userInfo": "",
                        "meta": {"keyName": "key-a"},
                    },
                    "persona": {"1": {"speechState": "speaking"}},
                    "recognizing": True,
                }
            )
        )
    )
    assert (full.dp_session_id, full.key_name, full.user_info) == ("dp-1", "key-a", "")
    assert full.speech_states == {"1": "speaking"}
    assert full.recognizing is True
    partial = protocol.state(parse_frame(frame(body={"persona": {"1": {"speechState": "loud"}}})))
    assert partial.dp_session_id is None
    assert partial.speech_states == {}
    assert partial.recognizing is None


def test_final_transcript_picks_the_best_final_alternative() -> None:
    """recognizeResults yields the first alternative of a final result only."""
    envelope = parse_frame(
        frame(
            name="recognizeResults",
            body={
                "status": 0,
                "results": [
                    {"final": False, "alternatives": [{"transcript": "hel"}]},
                    {"final": True, "alternatives": [{"transcript": "hello", "confidence": 0.9}]},
                ],
            },
        )
    )
    assert protocol.final_transcript(envelope) == "hello"
    assert protocol.final_transcript(parse_frame(frame(body={"results": "x"}))) is None


def test_outbound_messages_have_the_vendor_shapes() -> None:
    """conversationResponse and startSpeaking serialise exactly as the DP expects."""
    response = outbound.conversation_response(
        input_text="hi", output_text="hello", variables={"a": 1}, fallback=True, transaction="t1"
    )
    assert json.loads(response.to_json()) == {
        "category": "scene",
        "kind": "request",
        "name": "conversationResponse",
        "transaction": "t1",
        "body": {
            "input": {"text": "hi"},
            "output": {"text": "hello"},
            "variables": {"a": 1},
            "fallback": True,
        },
    }
    speak = outbound.start_speaking(persona_id="1", text="hey", can_be_interrupted=False)
    assert speak.to_dict()["body"] == {
        "personaId": "1",
        "text": "hey",
        "optionalArgs": {"canBeInterrupted": False},
    }
    assert outbound.stop_speaking(persona_id="1").to_dict()["body"] == {"personaId": "1"}


def test_round_trip_of_an_envelope() -> None:
    """Serialising then parsing gives back the same envelope."""
    original = Envelope("response", "startSpeaking", {"ok": True}, "orch-3", status=0)
    assert parse_frame(original.to_json()) == original


def test_transaction_counter_ids_cannot_collide_with_browser_ids() -> None:
    """Server transaction ids are 'orch-<n>' strings, increasing per session."""
    counter = TransactionCounter()
    assert [counter.next(), counter.next()] == ["orch-1", "orch-2"]

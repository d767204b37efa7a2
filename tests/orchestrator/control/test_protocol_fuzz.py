"""Fuzzing the wire protocol: whatever arrives, only ``FrameError`` escapes, and what
parses re-serialises to an equal envelope in valid UTF-8 JSON."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.control import outbound, protocol
from orchestrator.control.protocol import Envelope, FrameError, parse_frame
from tests.fuzz_stats import record
from tokens.jsonsafe import NotPlainJsonError, check_plain

FUZZ = settings(max_examples=300, deadline=None)

# High surrogates only: a Python str holding a high+low pair as two code units has no
# JSON form of its own (any parser joins the pair), so it cannot round-trip.
lone_surrogates = st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDBFF), min_size=1)
texts = st.text(max_size=30) | lone_surrogates
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts
)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4)
)
NAMES = [*sorted(protocol.KNOWN_INBOUND), "conversationResponse", "startSpeaking", "", "x"]

# Bodies shaped like the typed views expect, with every field free to be wrong.
view_bodies = st.fixed_dictionaries(
    {},
    optional={
        "input": st.none() | json_values | st.fixed_dictionaries({}, optional={"text": scalars}),
        "variables": json_values,
        "optionalArgs": json_values
        | st.fixed_dictionaries({"kind": st.sampled_from(["init", "event", 1])}),
        "personaId": scalars,
        "session": json_values
        | st.fixed_dictionaries(
            {},
            optional={
                "sessionId": scalars,
                "state": scalars,
                "userInfo": scalars,
                "meta": json_values | st.fixed_dictionaries({"keyName": scalars}),
            },
        ),
        "persona": json_values
        | st.dictionaries(texts, st.fixed_dictionaries({"speechState": scalars})),
        "recognizing": scalars,
        "results": json_values
        | st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    "final": scalars,
                    "alternatives": json_values
                    | st.lists(st.fixed_dictionaries({"transcript": scalars})),
                },
            ),
            max_size=3,
        ),
    },
)

messages = st.fixed_dictionaries(
    {},
    optional={
        "category": st.just("scene") | scalars,
        "kind": st.sampled_from(["event", "request", "response"]) | scalars,
        "name": st.sampled_from(NAMES) | scalars,
        "body": view_bodies | json_values,
        "transaction": scalars,
        "status": scalars,
    },
) | st.dictionaries(texts, json_values, max_size=5)

frames = (
    messages.map(lambda m: json.dumps(m))
    | json_values.map(lambda v: json.dumps(v))
    | st.text(max_size=200)
    | st.binary(max_size=200)
    | st.sampled_from(['{"a": NaN}', "[Infinity]", "-Infinity", '{"x": 1e999}', "[" * 5000])
)


def check_views(envelope: Envelope) -> None:
    """Each typed view either works or raises FrameError."""
    for view in (protocol.conversation_request, protocol.state, protocol.final_transcript):
        with contextlib.suppress(FrameError):
            view(envelope)


def check_round_trip(envelope: Envelope) -> None:
    text = envelope.to_json()
    text.encode("utf-8")  # what a real socket must send
    try:
        check_plain(envelope.to_dict())
    except NotPlainJsonError:  # e.g. a lone surrogate: sendable, but refused coming in
        with pytest.raises(FrameError) as refused:
            parse_frame(text, max_bytes=10 * len(text) + 1024)
        assert refused.value.code == "invalid_json"
        return
    again = parse_frame(text, max_bytes=10 * len(text.encode("utf-8", "surrogatepass")) + 1024)
    assert again == envelope
    assert again.to_json() == text


@FUZZ
@given(data=frames)
def test_any_frame_parses_or_raises_frame_error(data: str | bytes) -> None:
    """Arbitrary JSON, text or bytes: an envelope that round-trips, or FrameError, nothing else."""
    record("protocol: parse_frame on arbitrary frames")
    try:
        envelope = parse_frame(data)
    except FrameError as exc:
        assert exc.code in {"binary_frame", "too_large", "invalid_json", "not_object", "bad_field"}
        return
    check_views(envelope)
    check_round_trip(envelope)


@FUZZ
@given(message=messages)
def test_any_json_object_gives_an_envelope_or_frame_error(message: dict[str, Any]) -> None:
    """envelope_from_dict and the typed views never raise anything but FrameError."""
    record("protocol: envelope_from_dict and typed views")
    try:
        envelope = protocol.envelope_from_dict(message)
    except FrameError:
        return
    check_views(envelope)
    check_round_trip(envelope)


@pytest.mark.parametrize(
    "data",
    [
        '{"kind": "event", "name": "x", "body": {"n": ' + "9" * 5000 + "}}",
        '{"kind": "event", "name": "x", "body": {"n": NaN}}',
        '{"kind": "event", "name": "x", "body": {"n": -Infinity}}',
        "\ud800" * 20_000,
    ],
    ids=["5000-digit-integer", "NaN", "Infinity", "lone-surrogates-over-the-size-check"],
)
def test_inputs_that_once_escaped_parse_frame_are_frame_errors(data: str) -> None:
    """An int past Python's digit limit, NaN/Infinity and unencodable text are FrameErrors."""
    with pytest.raises(FrameError):
        parse_frame(data)


def test_an_envelope_with_a_lone_surrogate_serialises_to_utf8() -> None:
    """A lone surrogate a handler put into a reply still goes out as valid UTF-8 JSON
    (as a \\u escape), though parse_frame refuses such a frame coming in."""
    reply = outbound.conversation_response(input_text="\ud800", output_text="ok")
    text = reply.to_json()
    text.encode("utf-8")
    assert json.loads(text) == reply.to_dict()
    with pytest.raises(FrameError) as refused:
        parse_frame(text)
    assert refused.value.code == "invalid_json"

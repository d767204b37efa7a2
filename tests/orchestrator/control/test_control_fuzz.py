"""Fuzzing a live control socket in-process: random frames never close it, the
conversation still answers afterwards, and every frame the server sends is valid."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient, WebSocketTestSession

from orchestrator.control.protocol import parse_frame
from tests.fuzz_stats import record
from tests.orchestrator.control_helpers import make_app, say

texts = st.text(max_size=20)
scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | texts
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3)
)
NAMES = [
    "conversationRequest",
    "state",
    "recognizeResults",
    "conversationResult",
    "speechMarker",
    "startSpeaking",
    "somethingNew",
]
envelopes = st.fixed_dictionaries(
    {
        "kind": st.sampled_from(["event", "request", "response"]) | scalars,
        "name": st.sampled_from(NAMES) | scalars,
    },
    optional={
        "category": st.just("scene") | scalars,
        "body": json_values
        | st.fixed_dictionaries(
            {},
            optional={
                "input": json_values | st.fixed_dictionaries({"text": scalars}),
                "optionalArgs": json_values,
                "variables": json_values,
                "personaId": scalars,
                "session": json_values,
                "persona": json_values,
                "results": json_values,
            },
        ),
        "transaction": scalars,
        "status": scalars,
    },
)
frames = st.lists(
    envelopes.map(lambda e: ("text", json.dumps(e)))
    | st.text(max_size=100).map(lambda t: ("text", t))
    | st.binary(max_size=100).map(lambda b: ("bytes", b)),
    min_size=1,
    max_size=5,
)


def read_until_answer(ws: WebSocketTestSession, marker: str) -> None:
    """Read frames (each must be a valid UTF-8 envelope) until the answer to ``marker``."""
    for _ in range(50):
        text = ws.receive_text()
        text.encode("utf-8")
        envelope = parse_frame(text)
        if envelope.name == "conversationResponse" and envelope.body["input"]["text"] == marker:
            assert envelope.body["output"]["text"] == f"You said: {marker}"
            return
    raise AssertionError(f"no answer to {marker!r}")


def test_random_frames_never_close_the_socket_and_the_conversation_still_answers() -> None:
    """200 batches of random envelopes, text and bytes: the socket stays open and answers."""
    app = make_app(allow_unauthenticated_control=True, control_max_frames_per_second=1e6)
    with TestClient(app) as client, client.websocket_connect("/ws") as ws:
        counter = iter(range(10**6))

        @settings(
            max_examples=200,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],  # one socket round trip per example
        )
        @given(batch=frames)
        def run(batch: list[tuple[str, Any]]) -> None:
            record("control socket: batches of random frames")
            for kind, payload in batch:
                if kind == "text":
                    ws.send_text(payload)
                else:
                    ws.send_bytes(payload)
            marker = f"still there {next(counter)}"
            ws.send_text(say(marker))
            read_until_answer(ws, marker)

        run()
        session = next(iter(app.state.store._sessions.values()))
        assert session.bad_frames > 0  # the fuzzing did reach the bad-frame path

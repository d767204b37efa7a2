"""The sans-I/O conversation core: frames in, actions out (no socket, no event loop)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from structlog.testing import capture_logs

from orchestrator.control.actions import SAVE, Actions, Close, Publish, Send, StartTurn
from orchestrator.control.conversation import ConversationCore
from orchestrator.control.options import (
    CLOSE_NORMAL,
    CLOSE_POLICY,
    CLOSE_TOO_BIG,
    MAX_QUEUED_TURNS,
    ControlOptions,
)
from orchestrator.handlers import Reply
from orchestrator.sessions.model import Session, SessionStatus
from tests.orchestrator.control_helpers import KEY_NAME, envelope, initial_state, say


async def _no_reply(request: Any, conversation: Any) -> Reply | None:
    return None


class FrozenClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def core_for(*, verified: bool = True, **options: Any) -> ConversationCore:
    session = Session(id="s1", issuer=KEY_NAME, expires_at=2**31)
    limits = ControlOptions(handler=_no_reply, **options)
    return ConversationCore(session, limits, verified=verified, clock=FrozenClock())


def sent(actions: Actions) -> list[dict[str, Any]]:
    return [json.loads(a.text) for a in actions if isinstance(a, Send)]


def published(actions: Actions) -> list[tuple[str, dict[str, Any]]]:
    return [(a.event_type, a.data) for a in actions if isinstance(a, Publish)]


def speech_state(speech: str) -> str:
    return envelope("state", {"persona": {"1": {"speechState": speech}}})


def test_a_user_request_is_recorded_and_starts_a_turn() -> None:
    core = core_for()
    (action,) = core.receive(say("hello"))
    assert isinstance(action, StartTurn)
    assert action.body.text == "hello"
    assert action.user_turn is not None and action.user_turn.text == "hello"
    assert core.session.turns == 1
    assert [t.text for t in core.session.transcript] == ["hello"]
    assert core.session.frames_in == 1


def test_the_init_request_starts_a_turn_without_a_user_turn() -> None:
    core = core_for()
    (action,) = core.receive(say("", init=True))
    assert isinstance(action, StartTurn) and action.user_turn is None
    assert core.session.turns == 0


@pytest.mark.parametrize("persona_id", [1, "1"])
def test_the_persona_id_keeps_the_type_the_dp_sent(persona_id: int | str) -> None:
    core = core_for()
    frame = envelope("conversationRequest", {"personaId": persona_id, "input": {"text": "x"}})
    core.receive(frame)
    (speak,) = sent(core.speak("hi"))
    assert speak["body"]["personaId"] == persona_id
    assert type(speak["body"]["personaId"]) is type(persona_id)


def test_turns_past_the_queue_bound_are_dropped_until_one_finishes() -> None:
    core = core_for(max_frames_per_second=1e9, burst_frames=1e9)
    for _ in range(MAX_QUEUED_TURNS):
        assert core.receive(say("hi"))
    assert core.receive(say("one too many")) == ()
    core.turn_done()
    assert core.receive(say("room again"))


def test_a_keyname_that_is_not_the_token_issuer_closes_with_1008() -> None:
    core = core_for()
    assert core.receive(initial_state(key_name="someone-else")) == (
        Close(CLOSE_POLICY, "keyName does not match the token issuer"),
    )
    assert core.session.key_name is None


def test_without_a_verified_token_any_keyname_is_kept() -> None:
    core = core_for(verified=False)
    assert SAVE in core.receive(initial_state(key_name="someone-else"))
    assert core.session.key_name == "someone-else"


def test_state_is_saved_and_published_only_when_it_changes() -> None:
    core = core_for()
    first = core.receive(initial_state())
    assert first == (SAVE,)  # the speech state stays idle: nothing to publish
    assert core.session.dp_session_id == "dp-1"
    assert core.receive(initial_state()) == ()
    speaking = core.receive(speech_state("speaking"))
    assert published(speaking) == [("speech", {"speech_state": "speaking", "recognizing": False})]
    assert speaking[-1] is SAVE
    assert core.receive(speech_state("speaking")) == ()


def test_a_frame_flood_past_the_burst_closes_with_1008() -> None:
    core = core_for(max_frames_per_second=1, burst_frames=2)
    core.receive(say("a"))
    core.receive(say("b"))
    assert core.receive(say("c")) == (Close(CLOSE_POLICY, "message rate limit exceeded"),)


def test_bad_frames_are_counted_and_never_close() -> None:
    core = core_for()
    for frame in ("not json", "[]", envelope("conversationRequest", {"input": 5}, kind="request")):
        assert core.receive(frame) == ()
    assert core.session.bad_frames == 3


def test_the_third_oversize_frame_closes_with_1009() -> None:
    core = core_for(max_frame_bytes=1024)
    big = envelope("noise", {"pad": "x" * 2000})
    assert core.receive(big) == ()
    assert core.receive(say("in between")) != ()
    assert core.receive(big) == ()
    assert core.receive(big) == (Close(CLOSE_TOO_BIG, "repeated oversize frames"),)
    assert core.session.bad_frames == 3


def test_unknown_messages_are_logged_and_kept_in_the_event_log() -> None:
    core = core_for()
    with capture_logs() as logs:
        assert core.receive(envelope("somethingNew", {"a": 1})) == ()
    assert [e["name"] for e in core.session.events] == ["somethingNew"]
    assert any(log["event"] == "unknown message kept" for log in logs)


def test_a_final_transcript_is_kept_and_published() -> None:
    core = core_for()
    result = {"final": True, "alternatives": [{"transcript": "hi there"}]}
    actions = core.receive(envelope("recognizeResults", {"results": [result]}))
    assert published(actions) == [("recognized", {"transcript": "hi there"})]
    assert core.session.last_user_transcript == "hi there"


def test_a_response_resolves_the_request_it_answers_and_others_are_ignored() -> None:
    core = core_for()
    (request,) = sent(core.stop_speaking())
    assert len(core.pending) == 1
    answer = envelope("stopSpeaking", {}, kind="response", transaction="elsewhere-1")
    assert core.receive(answer) == ()
    assert len(core.pending) == 1
    answer = envelope("stopSpeaking", {}, kind="response", transaction=request["transaction"])
    assert core.receive(answer) == ()
    assert len(core.pending) == 0


def test_a_reply_is_sent_with_the_shared_variables_and_recorded() -> None:
    core = core_for()
    core.session.variables["name"] = "Ada"
    actions = core.respond(Reply("hello Ada", variables={"mood": "good"}), input_text="hi")
    (response,) = sent(actions)
    assert response["name"] == "conversationResponse"
    assert response["body"]["variables"] == {"name": "Ada", "mood": "good"}
    assert published(actions) == [("turn", {"role": "dp", "text": "hello Ada", "fallback": False})]
    assert [t.text for t in core.session.transcript] == ["hello Ada"]


def test_a_reply_that_is_not_json_is_refused_before_anything_is_recorded() -> None:
    core = core_for()
    with pytest.raises((TypeError, ValueError)):
        core.respond(Reply("x", variables={"bad": object()}))
    assert len(core.session.transcript) == 0


def test_variables_are_merged_published_and_saved() -> None:
    core = core_for()
    core.session.variables.update(keep=1, drop=2)
    actions = core.patch_variables({"drop": None, "new": "v"})
    assert published(actions) == [("variables", {"variables": {"keep": 1, "new": "v"}})]
    assert actions[-1] is SAVE
    with pytest.raises(ValueError):
        core.patch_variables({"nan": float("nan")})


def test_connecting_ending_and_terminating_are_recorded_then_saved() -> None:
    core = core_for()
    connected = core.connected("query")
    assert core.session.status is SessionStatus.CONNECTED
    assert connected == (SAVE, Publish("connected", {"source": "query"}))
    assert core.ended() == (SAVE, Publish("ended", {}))
    assert core.session.status is SessionStatus.ENDED and not core.session.terminated
    assert core.terminate() == (SAVE, Close(CLOSE_NORMAL, "session ended"))
    assert core.session.terminated


def test_frames_out_are_counted_when_sent() -> None:
    core = core_for()
    core.sent()
    assert core.session.frames_out == 1

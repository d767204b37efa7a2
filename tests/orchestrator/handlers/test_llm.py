"""The LLM handler against an OpenAI-compatible server over HTTP (the real ``openai`` client)."""

from __future__ import annotations

import asyncio
import io
import json
import tracemalloc
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from orchestrator.config import Settings, SettingsError
from orchestrator.handlers import ConversationRequest, Reply
from orchestrator.handlers.llm import LlmHandler, build
from orchestrator.logs import configure_logging
from orchestrator.metrics import LLM_ERRORS
from orchestrator.sessions.model import Session, VariableWriter
from tests.compression_bomb import INFLATED_BYTES, gzip_bomb
from tests.fake_openai import (
    MENU_CARD,
    Answer,
    FakeOpenAI,
    ToolCallPlan,
    card_and_variable_script,
    sse_body,
)
from tests.orchestrator.test_logs import restore_logging  # noqa: F401 (a fixture)

pytestmark = pytest.mark.anyio
KEY = "sk-test-" + "k" * 40
APOLOGY = "Sorry, say again?"


class SpeakingConversation:
    """A Conversation that records what was sent and plays a DP that speaks each piece
    for ``speech_seconds`` (its speech state goes speaking, then idle)."""

    def __init__(self, session: Session, *, speech_seconds: float = 0.0) -> None:
        self._session = session
        self.sent: list[tuple[str, str, dict[str, Any]]] = []
        self.speech_seconds = speech_seconds
        self._idle = asyncio.Event()
        self._idle.set()
        self._speaking: asyncio.Task[None] | None = None
        self.first_sent = asyncio.Event()

    @property
    def session(self) -> Session:
        return self._session

    def _say(self) -> None:
        if self.speech_seconds:
            self._session.speech_state = "speaking"
            self._idle.clear()
            self._speaking = asyncio.create_task(self._finish_speaking())

    async def _finish_speaking(self) -> None:
        await asyncio.sleep(self.speech_seconds)
        self._session.speech_state = "idle"
        self._idle.set()

    async def respond(self, reply: Reply, *, input_text: str = "") -> None:
        self.sent.append(("conversationResponse", reply.output_text(), reply.all_variables()))
        self.first_sent.set()
        self._session.add_turn("dp", reply.output_text())
        self._say()

    async def speak(
        self, text: str, *, can_be_interrupted: bool = True, filter_commands: bool | None = None
    ) -> None:
        self.sent.append(("startSpeaking", text, {}))
        self._session.add_turn("dp", text)
        self._say()

    async def stop_speaking(self) -> None:
        self.sent.append(("stopSpeaking", "", {}))

    async def set_variables(self, variables: Mapping[str, Any], *, by_model: bool = False) -> None:
        # Through the session's one bounded merge, as the live connection does.
        writer = VariableWriter.MODEL if by_model else VariableWriter.HANDLER
        self._session.patch_variables(variables, writer)

    async def speech_idle(self) -> None:
        await self._idle.wait()


def new_session() -> Session:
    return Session(id="s-1", issuer="k", expires_at=0, claims={"name": "Ada"})


def turn(session: Session, text: str, *, init: bool = False) -> ConversationRequest:
    """A request as the connection makes it (the user's line already in the transcript)."""
    if not init:
        session.add_turn("user", text)
    return ConversationRequest(
        text=text, variables={}, is_init=init, optional_args={}, session=session
    )


def settings_for(fake: FakeOpenAI, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "llm_base_url": fake.base_url,
        "llm_api_key": KEY,
        "llm_model": "test-model",
        "handler_apology": APOLOGY,
        "handler_timeout_seconds": 5.0,
        **overrides,
    }
    return Settings(**values)


@pytest.fixture
async def handler(fake: FakeOpenAI) -> Any:
    built = build(settings_for(fake, llm_system_prompt="You help {claims.name}."))
    yield built
    await built.aclose()


async def test_a_turn_sends_the_prompt_history_and_key_and_answers_with_the_stream(
    fake: FakeOpenAI, handler: LlmHandler
) -> None:
    session = new_session()
    session.add_turn("user", "hi")
    session.add_turn("dp", "Hello Ada.")
    conversation = SpeakingConversation(session)
    fake.script.append(Answer("Paris is the capital. It is lovely."))
    reply = await handler.handle(turn(session, "capital of France?"), conversation)
    assert reply == Reply("Paris is the capital. It is lovely.")
    received = fake.received[-1]
    assert received.headers["authorization"] == f"Bearer {KEY}"
    assert received.body["model"] == "test-model"
    assert received.body["stream"] is True
    assert [tool["function"]["name"] for tool in received.body["tools"]] == [
        "show_card",
        "set_variable",
    ]
    assert received.body["messages"] == [
        {"role": "system", "content": "You help Ada."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "Hello Ada."},
        {"role": "user", "content": "capital of France?"},
    ]


async def test_the_init_turn_says_the_welcome_without_asking_the_model(fake: FakeOpenAI) -> None:
    handler = build(settings_for(fake, llm_welcome="Hello {claims.name}!"))
    try:
        session = new_session()
        reply = await handler.handle(turn(session, "", init=True), SpeakingConversation(session))
    finally:
        await handler.aclose()
    assert reply == Reply("Hello Ada!")
    assert fake.received == []


async def test_show_card_and_set_variable_become_a_card_and_a_shared_variable(
    fake: FakeOpenAI, handler: LlmHandler
) -> None:
    card = MENU_CARD
    fake.script += card_and_variable_script("Here is the menu.")
    session = new_session()
    reply = await handler.handle(turn(session, "menu please"), SpeakingConversation(session))
    assert reply is not None
    assert reply.output_text() == "Here is the menu. @showcards(menu)"
    assert reply.all_variables() == {
        "public-menu": {"component": "markdown", "data": {"text": "**Menu**"}}
    }
    assert session.variables == {"llm-city": "Paris"}
    second = fake.messages(-1)
    assert second[-3]["tool_calls"][0]["function"] == {
        "name": "show_card",
        "arguments": json.dumps(card),
    }
    assert second[-2:] == [
        {"role": "tool", "tool_call_id": "c1", "content": "shown"},
        {"role": "tool", "tool_call_id": "c2", "content": "set llm-city"},
    ]


async def test_an_unknown_or_bad_tool_call_is_refused_logged_and_told_to_the_model(
    fake: FakeOpenAI, handler: LlmHandler
) -> None:
    fake.script += [
        Answer(
            tool_calls=[
                ToolCallPlan("delete_everything", "{}", id="c1"),
                ToolCallPlan("set_variable", '{"name": "public-x", "value": 1}', id="c2"),
                ToolCallPlan("show_card", "{not json", id="c3"),
            ]
        ),
        Answer("I cannot do that."),
    ]
    session = new_session()
    with capture_logs() as logs:
        reply = await handler.handle(turn(session, "do it"), SpeakingConversation(session))
    assert reply == Reply("I cannot do that.")
    results = [m["content"] for m in fake.messages(-1) if m["role"] == "tool"]
    assert results[0].startswith("refused: unknown tool 'delete_everything'")
    assert results[1] == "refused: names starting with public- belong to cards"
    assert results[2] == "refused: arguments are not JSON"
    assert session.variables == {}
    refused = [log for log in logs if log["event"] == "llm tool call refused"]
    assert [log["tool"] for log in refused] == ["delete_everything", "set_variable", "show_card"]


async def test_the_tool_loop_is_bounded(fake: FakeOpenAI, handler: LlmHandler) -> None:
    """A model that keeps calling tools gets no tools on its last call and must answer."""
    loop_call = ToolCallPlan("set_variable", '{"name": "n", "value": 1}')
    fake.script += [Answer(tool_calls=[loop_call]) for _ in range(3)] + [Answer("Done.")]
    session = new_session()
    reply = await handler.handle(turn(session, "loop"), SpeakingConversation(session))
    assert reply == Reply("Done.")
    assert len(fake.received) == 4
    assert "tools" not in fake.received[-1].body


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (
            Answer(status=429, error={"message": "slow down", "type": "rate", "code": "r"}),
            "rate_limited",
        ),
        (
            Answer(status=500, error={"message": "boom", "type": "server", "code": None}),
            "server_error",
        ),
        (
            Answer(status=503, error={"message": "busy", "type": "server", "code": None}),
            "server_error",
        ),
        (
            Answer(status=401, error={"message": f"bad key {KEY}", "type": "auth", "code": "k"}),
            "unauthorized",
        ),
        (
            Answer(status=400, error={"message": "no", "type": "invalid", "code": None}),
            "bad_request",
        ),
        (Answer(raw="data: {not json\n\n"), "bad_response"),
        (Answer(raw='data: {"error": {"message": "mid-stream", "type": "x"}}\n\n'), "bad_response"),
        (Answer(raw="data: [DONE]\n\n"), "empty_answer"),
        (Answer("Cut short here", drop=True), "connection"),
        (Answer(hang=3.0), "timeout"),
    ],
)
async def test_an_api_failure_gives_the_apology_a_metric_and_a_log_line_without_the_key(
    fake: FakeOpenAI, answer: Answer, reason: str
) -> None:
    handler = build(settings_for(fake, handler_timeout_seconds=1.0))
    fake.script.append(answer)
    before = LLM_ERRORS.labels(reason)._value.get()
    session = new_session()
    try:
        with capture_logs() as logs:
            reply = await handler.handle(turn(session, "hi"), SpeakingConversation(session))
    finally:
        await handler.aclose()
    assert reply == Reply(APOLOGY)
    assert LLM_ERRORS.labels(reason)._value.get() == before + 1
    failed = [log for log in logs if log["event"] == "llm answer failed"]
    assert [log["reason"] for log in failed] == [reason]
    assert KEY not in repr(logs)


@pytest.mark.usefixtures("restore_logging")
async def test_the_key_never_reaches_the_log_even_at_debug_level(fake: FakeOpenAI) -> None:
    """The server's 401 message quotes the key; the client logs at debug level: neither shows it."""
    settings = settings_for(fake)
    stream = io.StringIO()
    configure_logging(json=True, level="debug", secrets=settings.secrets, stream=stream)
    handler = build(settings)
    fake.script.append(Answer(status=401, error={"message": f"bad key {KEY}", "type": "auth"}))
    session = new_session()
    try:
        reply = await handler.handle(turn(session, "hi"), SpeakingConversation(session))
    finally:
        await handler.aclose()
    assert reply == Reply(APOLOGY)
    assert "llm answer failed" in stream.getvalue()
    assert KEY not in stream.getvalue()


@pytest.mark.usefixtures("restore_logging")
async def test_a_refused_connection_gives_the_apology(fake: FakeOpenAI) -> None:
    from tests.live_server import free_port

    port = free_port()
    handler = build(settings_for(fake, llm_base_url=f"http://me:pw@127.0.0.1:{port}/v1?k=v"))
    session = new_session()
    before = LLM_ERRORS.labels("connection")._value.get()
    stream = io.StringIO()
    configure_logging(json=True, stream=stream)
    try:
        reply = await handler.handle(turn(session, "hi"), SpeakingConversation(session))
    finally:
        await handler.aclose()
    assert reply == Reply(APOLOGY)
    assert LLM_ERRORS.labels("connection")._value.get() == before + 1
    # The line names where and why (redacted URL, the socket's own reason), not a class.
    logs = [json.loads(line) for line in stream.getvalue().splitlines()]
    (failed,) = [line for line in logs if line["event"] == "llm answer failed"]
    assert failed["url"].startswith(f"http://[redacted]@127.0.0.1:{port}/v1")
    assert "k=[redacted]" in failed["url"]
    assert "refused" in failed["error"].lower() or "connect call failed" in failed["error"].lower()


async def test_sentences_mode_speaks_the_first_sentence_at_once_and_the_rest_when_the_dp_is_idle(
    fake: FakeOpenAI,
) -> None:
    handler = build(settings_for(fake, llm_speech="sentences"))
    fake.script.append(Answer(pieces=["First one", ". Second", " one. Third", " one."], delay=0.05))
    session = new_session()
    conversation = SpeakingConversation(session, speech_seconds=0.3)
    request = turn(session, "tell me")
    try:
        reply = await handler.handle(request, conversation)
    finally:
        await handler.aclose()
    assert reply is None
    assert [(name, text) for name, text, _ in conversation.sent] == [
        ("conversationResponse", "First one."),
        ("startSpeaking", "Second one. Third one."),
    ]
    assert [t.text for t in session.transcript] == [
        "tell me",
        "First one.",
        "Second one. Third one.",
    ]
    latency = request.timings.as_ms()
    assert 0 < latency["first_token"] <= latency["first_sentence"]


async def test_sentences_mode_can_continue_with_conversation_responses(fake: FakeOpenAI) -> None:
    handler = build(
        settings_for(fake, llm_speech="sentences", llm_continuation="conversationresponse")
    )
    fake.script.append(Answer("One. Two."))
    session = new_session()
    conversation = SpeakingConversation(session, speech_seconds=0.05)
    try:
        await handler.handle(turn(session, "count"), conversation)
    finally:
        await handler.aclose()
    assert [(name, text) for name, text, _ in conversation.sent] == [
        ("conversationResponse", "One."),
        ("conversationResponse", "Two."),
    ]


async def test_cancelling_the_turn_closes_the_stream_and_drops_unsent_sentences(
    fake: FakeOpenAI,
) -> None:
    handler = build(settings_for(fake, llm_speech="sentences"))
    fake.script.append(Answer("Said first. " + "Never said. " * 50, delay=0.02))
    session = new_session()
    conversation = SpeakingConversation(session)
    closed_before = fake.streams_closed_early
    try:
        task = asyncio.create_task(handler.handle(turn(session, "talk"), conversation))
        await conversation.first_sent.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        await handler.aclose()
    for _ in range(100):
        if fake.streams_closed_early > closed_before:
            break
        await asyncio.sleep(0.02)
    assert fake.streams_closed_early == closed_before + 1
    assert [t.text for t in session.transcript] == ["talk", "Said first."]


def test_build_refuses_what_it_cannot_use(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="LLM_MODEL"):
        build(Settings())
    with pytest.raises(SettingsError, match=r"^LLM_SYSTEM_PROMPT: cannot read"):
        build(Settings(llm_model="m", llm_system_prompt=f"@{tmp_path / 'missing.txt'}"))
    with pytest.raises(SettingsError, match=r"^LLM_WELCOME: "):
        build(Settings(llm_model="m", llm_welcome="Hi {claims.name.__class__}"))


async def test_the_system_prompt_may_come_from_a_file(fake: FakeOpenAI, tmp_path: Path) -> None:
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("You are {claims.name}'s guide. Braces: {{}}.", encoding="utf-8")
    handler = build(settings_for(fake, llm_system_prompt=f"@{prompt}"))
    session = new_session()
    try:
        await handler.handle(turn(session, "hi"), SpeakingConversation(session))
    finally:
        await handler.aclose()
    assert fake.messages(-1)[0] == {"role": "system", "content": "You are Ada's guide. Braces: {}."}


def test_the_handler_is_interruptible_and_its_key_is_a_secret() -> None:
    assert LlmHandler.interruptible is True
    settings = Settings(llm_api_key=KEY)
    assert KEY in settings.secrets
    assert KEY not in repr(settings)


# --- a hostile or broken server: compression, size, redirects, runaway answers -----------


def errors() -> dict[str, float]:
    """``orchestrator_llm_errors_total`` by reason."""
    [metric] = LLM_ERRORS.collect()
    return {s.labels["reason"]: s.value for s in metric.samples if s.name.endswith("_total")}


async def failed_turn(fake: FakeOpenAI, answer: Answer) -> tuple[Reply | None, str, int]:
    """One turn against ``answer``: the reply, the failure's reason (counted) and the
    peak of traced memory during the turn (the fake server's thread included)."""
    handler = build(settings_for(fake))
    fake.script.append(answer)
    session = new_session()
    before = errors()
    tracemalloc.start()
    try:
        reply = await handler.handle(turn(session, "hi"), SpeakingConversation(session))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        await handler.aclose()
    counted = [reason for reason, n in errors().items() if n != before.get(reason, 0)]
    return reply, ",".join(counted), peak


@pytest.mark.parametrize("status", [200, 500])
async def test_a_gzip_bomb_is_refused_unread_whether_a_stream_or_an_error_body(
    fake: FakeOpenAI, status: int
) -> None:
    """~260 KB of gzip inflating to 256 MiB, chunked: refused at its headers."""
    bomb = Answer(status=status, body=gzip_bomb(), headers={"Content-Encoding": "gzip"})
    reply, reason, peak = await failed_turn(fake, bomb)
    assert peak < 4 * 1024 * 1024 < INFLATED_BYTES
    assert (reply, reason) == (Reply(APOLOGY), "compressed")
    assert fake.received[-1].headers["accept-encoding"] == "identity"


async def test_a_huge_stream_event_is_refused_before_it_is_parsed(fake: FakeOpenAI) -> None:
    """A tool call's name of 4 MB in one event (the issue's 9.6 MB name cost +85 MiB)."""
    name = "n" * 4_000_000
    body = sse_body([{"tool_calls": [{"index": 0, "id": "c1", "function": {"name": name}}]}])
    del name
    reply, reason, peak = await failed_turn(fake, Answer(body=body))
    assert (reply, reason) == (Reply(APOLOGY), "too_large")
    assert peak < 2 * 1024 * 1024 < len(body), peak


async def test_a_tool_call_is_bounded_as_it_streams(fake: FakeOpenAI, handler: LlmHandler) -> None:
    """A name, an id and arguments in many small fragments keep only what can be used:
    the call is refused, and what goes back to the model is bounded."""
    fragments = [
        {"tool_calls": [{"index": 0, "id": "i" * 1000, "function": {"name": "n" * 1000,
                                                                     "arguments": "a" * 1000}}]}
        for _ in range(1000)
    ]  # fmt: skip
    fake.script += [Answer(body=sse_body(fragments)), Answer("No such tool.")]
    session = new_session()
    reply = await handler.handle(turn(session, "go"), SpeakingConversation(session))
    assert reply == Reply("No such tool.")
    [call] = fake.messages(-1)[-2]["tool_calls"]
    assert (len(call["id"]), len(call["function"]["name"])) == (64, 65)
    assert len(call["function"]["arguments"]) == 16 * 1024
    assert fake.messages(-1)[-1]["content"] == "refused: arguments too long"


async def test_tool_calls_are_not_run_when_no_tools_were_offered(
    fake: FakeOpenAI, handler: LlmHandler
) -> None:
    """The last round offers no tools: a model calling one anyway gets nothing done."""
    calls = [ToolCallPlan("set_variable", json.dumps({"name": "n", "value": n})) for n in range(4)]
    fake.script += [Answer(tool_calls=[call]) for call in calls[:3]]
    fake.script.append(Answer("Done.", tool_calls=[calls[3]]))
    session = new_session()
    reply = await handler.handle(turn(session, "loop"), SpeakingConversation(session))
    assert reply == Reply("Done.")
    assert session.variables == {"llm-n": 2}
    assert "tools" not in fake.received[-1].body


async def test_with_tools_off_a_tool_call_is_never_run(fake: FakeOpenAI) -> None:
    handler = build(settings_for(fake, llm_tools=False))
    fake.script.append(Answer("Fine.", tool_calls=[ToolCallPlan("set_variable", '{"name": '
                                                                '"x", "value": 1}')]))  # fmt: skip
    session = new_session()
    try:
        reply = await handler.handle(turn(session, "set x"), SpeakingConversation(session))
    finally:
        await handler.aclose()
    assert reply == Reply("Fine.")
    assert session.variables == {}
    assert len(fake.received) == 1


async def test_a_redirect_is_not_followed(fake: FakeOpenAI) -> None:
    """The key and the conversation go only to LLM_BASE_URL."""
    target = fake.base_url.replace("/v1", "/elsewhere/v1/chat/completions")
    reply, reason, _ = await failed_turn(fake, Answer(status=307, headers={"Location": target}))
    assert (reply, reason) == (Reply(APOLOGY), "redirect")
    assert [received.path for received in fake.received] == ["/v1/chat/completions"]


async def test_max_tokens_is_sent_by_default_and_zero_sends_none(fake: FakeOpenAI) -> None:
    for overrides, expected in (({}, 1024), ({"llm_max_tokens": 0}, None)):
        handler = build(settings_for(fake, **overrides))
        session = new_session()
        try:
            await handler.handle(turn(session, "hi"), SpeakingConversation(session))
        finally:
            await handler.aclose()
        assert fake.received[-1].body.get("max_tokens") == expected


@pytest.mark.parametrize("speech", ["final", "sentences"])
async def test_a_runaway_answer_is_cut_at_a_word_and_its_stream_closed(
    fake: FakeOpenAI, speech: str
) -> None:
    """A server that ignores max_tokens: 50,000 words are cut at LLM_MAX_ANSWER_CHARS."""
    handler = build(settings_for(fake, llm_max_answer_chars=100, llm_speech=speech))
    fake.script.append(Answer(" ".join(["Blah blah."] * 25_000), delay=0.001))
    session = new_session()
    conversation = SpeakingConversation(session)
    closed_before = fake.streams_closed_early
    try:
        reply = await handler.handle(turn(session, "talk"), conversation)
    finally:
        await handler.aclose()
    said = [reply.output_text()] if reply else [text for _, text, _ in conversation.sent]
    spoken = " ".join(said)
    assert 90 <= len(spoken) <= 100
    assert spoken.endswith(("blah.", "Blah", "blah"))
    for _ in range(100):
        if fake.streams_closed_early > closed_before:
            break
        await asyncio.sleep(0.02)
    assert fake.streams_closed_early == closed_before + 1


def set_variable(name: str, value: Any, call_id: str) -> ToolCallPlan:
    return ToolCallPlan("set_variable", json.dumps({"name": name, "value": value}), id=call_id)


async def test_the_model_writes_only_its_own_names_and_never_the_backends(
    fake: FakeOpenAI, handler: LlmHandler
) -> None:
    """Issue 23: the model's set_variable lands under ``llm-``: a variable the backend
    set (``plan``) is never overwritten, whatever name the model gives."""
    fake.script += [
        Answer(tool_calls=[set_variable("plan", "free", "c1")]),
        Answer("Done."),
    ]
    session = new_session()
    session.variables["plan"] = "gold"
    reply = await handler.handle(turn(session, "make me free"), SpeakingConversation(session))
    assert reply == Reply("Done.")
    assert session.variables == {"plan": "gold", "llm-plan": "free"}
    assert [m["content"] for m in fake.messages(-1) if m["role"] == "tool"] == ["set llm-plan"]


async def test_the_models_variables_stop_at_its_budget_and_the_turn_goes_on(
    fake: FakeOpenAI, handler: LlmHandler
) -> None:
    """Issue 23: set_variable goes through the session's one bound: past the model's
    16 KiB the call is refused (the model reads why; logged and counted by the
    connection), nothing already set is cut, and the turn is answered."""
    value = "x" * 1024  # the longest value the tool takes
    rounds = [
        [set_variable(f"v{n}", value, f"c{n}") for n in range(start, start + 8)] for start in (0, 8)
    ]
    fake.script += [Answer(tool_calls=calls) for calls in rounds] + [Answer("Noted.")]
    session = new_session()
    reply = await handler.handle(turn(session, "remember"), SpeakingConversation(session))
    assert reply == Reply("Noted.")
    results = [m["content"] for m in fake.messages(-1) if m["role"] == "tool"]
    assert results[:15] == [f"set llm-v{n}" for n in range(15)]
    assert results[15].startswith("refused: not set: the model's llm-* variables would exceed")
    assert sorted(session.variables) == sorted(f"llm-v{n}" for n in range(15))
    assert all(stored == value for stored in session.variables.values())

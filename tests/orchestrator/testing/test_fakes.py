"""The stand-ins speak the real wire formats: FakeModel to the real openai client
(streamed and not), FakeBackend checks signatures as a real backend must."""

from __future__ import annotations

import httpx
import openai
import pytest

from orchestrator.testing import FakeBackend, FakeModel, ModelAnswer, ToolCall, conversation

pytestmark = pytest.mark.anyio


async def test_the_model_answers_in_order_then_refuses() -> None:
    script = [ModelAnswer("one two", tool_calls=(ToolCall("f", {"a": 1}, id="c1"),)), "three"]
    with FakeModel(script) as model:
        client = openai.AsyncOpenAI(base_url=model.base_url, api_key="k", max_retries=0)
        try:
            first = await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "hi"}]
            )
            stream = await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "again"}], stream=True
            )
            pieces = [chunk.choices[0].delta.content async for chunk in stream if chunk.choices]
            with pytest.raises(openai.InternalServerError):
                await client.chat.completions.create(model="m", messages=[])
        finally:
            await client.close()
    message = first.choices[0].message
    assert message.content == "one two"
    assert message.tool_calls is not None
    assert message.tool_calls[0].function.arguments == '{"a": 1}'
    assert "".join(p for p in pieces if p) == "three"
    assert [r["messages"] for r in model.requests][:2] == [
        [{"role": "user", "content": "hi"}],
        [{"role": "user", "content": "again"}],
    ]


async def test_past_the_script_the_llm_handler_apologises() -> None:
    with FakeModel(["only answer"]) as model:
        settings = model.settings(handler_apology="Sorry.")
        async with conversation("llm", settings=settings) as convo:
            first = await convo.say("one")
            second = await convo.say("two")
    assert (first.text, second.text) == ("only answer", "Sorry.")


async def test_the_backend_refuses_an_unsigned_request() -> None:
    with FakeBackend() as backend:
        async with httpx.AsyncClient() as client:
            response = await client.post(backend.url, json={"type": "turn", "text": "x"})
        async with conversation("webhook", settings=backend.settings()) as convo:
            turn = await convo.say("hi")
    assert response.status_code == 401 and backend.refused == 1
    assert turn.text == "The backend heard: hi"
    assert [p["type"] for p in backend.received] == [
        "session.started", "turn", "turn", "session.ended",
    ]  # fmt: skip

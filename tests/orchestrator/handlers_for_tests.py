"""Conversation handlers that misbehave on purpose, for the control tests."""

from __future__ import annotations

import asyncio

from orchestrator.handlers import Conversation, ConversationRequest, Reply


async def explode(request: ConversationRequest, conversation: Conversation) -> Reply | None:
    if request.is_init:
        return Reply("ready")
    raise RuntimeError("handler bug")


async def dawdle(request: ConversationRequest, conversation: Conversation) -> Reply | None:
    if request.is_init:
        return Reply("ready")
    await asyncio.sleep(30)
    return Reply("too late")


async def chatty(request: ConversationRequest, conversation: Conversation) -> Reply | None:
    """Several responses in one turn, a variable, and speech control."""
    await conversation.respond(Reply("one"), input_text=request.text)
    await conversation.set_variables({"seen": request.text})
    await conversation.speak("two", can_be_interrupted=False)
    await conversation.stop_speaking()
    return Reply("three", variables={"extra": 1})


not_callable = 42


async def slow_echo(request: ConversationRequest, conversation: Conversation) -> Reply | None:
    """Echo after a pause, long enough for a test to drop the socket mid-turn."""
    await asyncio.sleep(0.2)
    name = request.session.variables.get("name", "")
    return Reply(f"{name}: {request.text}")


async def bad_variable(request: ConversationRequest, conversation: Conversation) -> Reply | None:
    """Sets a variable that is not JSON on 'break', echoes otherwise."""
    if request.text == "break":
        await conversation.set_variables({"when": object()})
    return Reply(f"echo {request.text}")

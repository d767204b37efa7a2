"""Conversation handlers that misbehave on purpose, for the control tests."""

from __future__ import annotations

import asyncio
import functools

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


def sync_handle(request: ConversationRequest, conversation: Conversation) -> Reply | None:
    """A plain ``def``: the server would await its Reply and fail every turn."""
    return Reply(request.text)


sync_lambda = lambda request, conversation: Reply(request.text)  # noqa: E731


class SyncCallable:
    def __call__(self, request: ConversationRequest, conversation: Conversation) -> Reply:
        return Reply(request.text)


sync_object = SyncCallable()


class AsyncCallable:
    """An object whose ``__call__`` is ``async def``: a usable handler."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix

    async def __call__(self, request: ConversationRequest, conversation: Conversation) -> Reply:
        return Reply(f"{self.prefix}{request.text}")


async_object = AsyncCallable("object: ")


async def _prefixed(
    prefix: str, request: ConversationRequest, conversation: Conversation
) -> Reply | None:
    return Reply(f"{prefix}{request.text}")


async_partial = functools.partial(_prefixed, "partial: ")
partial_of_object = functools.partial(AsyncCallable())


async def one_argument(request: ConversationRequest) -> Reply | None:
    """Forgets the conversation argument."""
    return Reply(request.text)


async def keyword_only(*, request: ConversationRequest, conversation: Conversation) -> Reply:
    return Reply(request.text)

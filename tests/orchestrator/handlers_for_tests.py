"""Conversation handlers that misbehave on purpose, for the control tests."""

from __future__ import annotations

import asyncio
import functools

from orchestrator.handlers import Conversation, ConversationRequest, Reply
from orchestrator.sessions.model import Session


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


# --- handler objects with hooks -----------------------------------------------------------


class HookedEcho:
    """Echoes, and records every hook the server calls (``calls``, in order)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []

    async def handle(self, request: ConversationRequest, conversation: Conversation) -> Reply:
        return Reply("ready" if request.is_init else f"echo: {request.text}")

    async def on_start(self, session: Session) -> None:
        self.calls.append(("on_start", session.id))

    async def on_idle(self, session: Session, seconds: float) -> str:
        self.calls.append(("on_idle", session.id))
        return "Anyone there?"

    async def on_end(self, session: Session, reason: str) -> None:
        self.calls.append(("on_end", session.id, reason))

    async def aclose(self) -> None:
        self.calls.append(("aclose",))


hooked = HookedEcho()


class SlowInterruptible:
    """Lines starting with "slow" take seconds; a new user turn or the user speaking
    cancels them (``cancelled`` counts the cancellations seen inside ``handle``)."""

    interruptible = True

    def __init__(self) -> None:
        self.cancelled: list[str] = []

    async def handle(self, request: ConversationRequest, conversation: Conversation) -> Reply:
        if request.is_init:
            return Reply("ready")
        if request.text.startswith("slow"):
            try:
                await asyncio.sleep(5)
            except asyncio.CancelledError:
                self.cancelled.append(request.text)
                raise
        return Reply(f"answer to {request.text}")


interruptible = SlowInterruptible()


class SwallowingInterruptible(SlowInterruptible):
    """A slow turn that, cancelled, swallows the cancellation and answers anyway."""

    async def handle(self, request: ConversationRequest, conversation: Conversation) -> Reply:
        try:
            return await super().handle(request, conversation)
        except asyncio.CancelledError:
            return Reply(f"late answer to {request.text}")


swallowing = SwallowingInterruptible()


class FailingHooks:
    """Every hook raises or hangs: the conversation must go on regardless."""

    async def handle(self, request: ConversationRequest, conversation: Conversation) -> Reply:
        return Reply("ready" if request.is_init else f"echo: {request.text}")

    async def on_start(self, session: Session) -> None:
        raise RuntimeError("on_start bug")

    async def on_idle(self, session: Session, seconds: float) -> str:
        await asyncio.sleep(30)
        return "never said"


failing_hooks = FailingHooks()


class SyncHook:
    """``on_idle`` is a plain ``def``: refused at start-up."""

    async def handle(self, request: ConversationRequest, conversation: Conversation) -> Reply:
        return Reply(request.text)

    def on_idle(self, session: Session, seconds: float) -> str:
        return "hello?"


sync_hook = SyncHook()


class EndWithoutReason:
    """``on_end`` that cannot take the reason: refused at start-up."""

    async def handle(self, request: ConversationRequest, conversation: Conversation) -> Reply:
        return Reply(request.text)

    async def on_end(self, session: Session) -> None:
        return None


end_without_reason = EndWithoutReason()


class SyncHandleMethod:
    """A plain ``def handle``: refused at start-up."""

    def handle(self, request: ConversationRequest, conversation: Conversation) -> Reply:
        return Reply(request.text)


sync_handle_method = SyncHandleMethod()


class MaybeInterruptible:
    """``interruptible`` that is not a bool: refused (a typo would silently queue)."""

    interruptible = "yes"

    async def handle(self, request: ConversationRequest, conversation: Conversation) -> Reply:
        return Reply(request.text)


maybe_interruptible = MaybeInterruptible()

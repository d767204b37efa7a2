"""A handler as the server drives it: its turn method and the hooks it has.

Whatever ``CONVERSATION_HANDLER`` names (a function, or an object with
``handle`` and optional hooks) is looked at once, here, so a turn or a silence
costs no attribute lookups and a handler without hooks costs nothing.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from orchestrator.handlers.api import Handler, Reply
from orchestrator.handlers.deadline import TurnDeadline
from orchestrator.metrics import Metrics
from orchestrator.sessions.model import Session

T = TypeVar("T")

StartHook = Callable[[Session], Awaitable[None]]
IdleHook = Callable[[Session, float], Awaitable[Reply | str | None]]
EndHook = Callable[[Session, str], Awaitable[None]]
CloseHook = Callable[[], Awaitable[None]]

# Each hook's name and the arguments the server passes it.
HOOK_ARGUMENTS: dict[str, tuple[str, ...]] = {
    "on_start": ("session",),
    "on_idle": ("session", "seconds"),
    "on_end": ("session", "reason"),
    "aclose": (),
}


@dataclass(frozen=True, slots=True)
class LoadedHandler:
    """The turn callable and the optional hooks of one handler."""

    turn: Handler
    on_start: StartHook | None = None
    on_idle: IdleHook | None = None
    on_end: EndHook | None = None
    aclose: CloseHook | None = None
    interruptible: bool = False

    @classmethod
    def of(cls, target: Any) -> LoadedHandler:
        """``target``'s parts (no checks: the loader made them at start-up)."""
        if isinstance(target, LoadedHandler):
            return target
        if is_function_like(target):
            return cls(turn=target)
        return cls(
            turn=getattr(target, "handle", target),
            on_start=getattr(target, "on_start", None),
            on_idle=getattr(target, "on_idle", None),
            on_end=getattr(target, "on_end", None),
            aclose=getattr(target, "aclose", None),
            interruptible=bool(getattr(target, "interruptible", False)),
        )


def is_function_like(target: Any) -> bool:
    """A function, method or partial: a turn handler with no hooks."""
    return inspect.isroutine(target) or isinstance(target, functools.partial)


def idle_reply(said: Reply | str | None) -> Reply | None:
    """What ``on_idle`` returned, as the reply to send (``None``: say nothing)."""
    if isinstance(said, Reply):
        return said
    return Reply(said) if isinstance(said, str) and said else None


async def within(awaitable: Awaitable[T], seconds: float) -> T:
    """``await awaitable`` in this task, ``TimeoutError`` past ``seconds``: a hook's
    bound, with the turn's semantics (``TurnDeadline``; a hook is one-off, so its
    timer goes with it)."""
    deadline = TurnDeadline(seconds)
    try:
        return await deadline.run(awaitable)
    finally:
        deadline.stop()


async def run_hook(
    name: str,
    call: Callable[..., Awaitable[Any]],
    *args: Any,
    seconds: float,
    log: Any,
    metrics: Metrics | None = None,
) -> Any:
    """Await a hook with the handler timeout; a failure is logged and counted, and
    gives ``None`` (a hook never ends the socket or the server)."""
    try:
        return await within(call(*args), seconds)
    except TimeoutError:
        log.error("handler hook timed out", hook=name, seconds=seconds)
    except Exception:
        log.exception("handler hook failed", hook=name)
    if metrics is not None:
        metrics.hook_failures.labels(name).inc()
    return None


async def close_handler(handler: LoadedHandler, seconds: float, log: Any) -> None:
    """The handler's ``aclose`` at shutdown (within ``seconds``), if it has one."""
    if handler.aclose is not None:
        await run_hook("aclose", handler.aclose, seconds=seconds, log=log)

"""``CONVERSATION_HANDLER``: a built-in name or ``module:callable``, checked at start-up.

What would fail every turn (a plain ``def``, a signature that cannot take the
arguments the server passes, a hook that is not async) is refused here, with
the fix, instead of showing up as a ``TypeError`` and the apology on each turn.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

from orchestrator.config.parsing import import_object, split_spec
from orchestrator.config.settings import Settings
from orchestrator.handlers.hooks import HOOK_ARGUMENTS, is_function_like

# A built-in name maps to a module's ``build(settings)``, which returns the handler.
BUILT_IN = {
    "default": "orchestrator.handlers.default",
    "webhook": "orchestrator.handlers.webhook",
    "llm": "orchestrator.handlers.llm",
}


class HandlerLoadError(ImportError):
    """The setting does not name a usable handler."""


def load_handler(spec: str, settings: Settings | None = None) -> Any:
    """The handler ``spec`` names (a function or a handler object), checked.

    A built-in name is built from ``settings`` (its ``build`` raises
    ``SettingsError`` naming the variable it misses).
    """
    setting = f"CONVERSATION_HANDLER={spec!r}"
    if spec in BUILT_IN:
        build = _import(BUILT_IN[spec], "build")
        target = build(settings if settings is not None else Settings())
    else:
        try:
            module_name, attribute = split_spec(spec)
        except ValueError:
            raise HandlerLoadError(
                f"{setting}: use {', '.join(BUILT_IN)} or 'package.module:callable'"
            ) from None
        target = _import(module_name, attribute)
        if not callable(target) and not hasattr(target, "handle"):
            raise HandlerLoadError(f"{setting} is not callable")
    check_handler(setting, target)
    return target


def _import(module_name: str, attribute: str) -> Any:
    try:
        return import_object(module_name, attribute)
    except ImportError as exc:
        raise HandlerLoadError(f"cannot import {module_name!r}: {exc}") from None
    except AttributeError:
        raise HandlerLoadError(f"{module_name!r} has no attribute {attribute!r}") from None


def check_handler(setting: str, target: Any) -> None:
    """Refuse a handler the server could not await, or call, as it does."""
    if isinstance(target, type):
        raise HandlerLoadError(
            f"{setting} is a class, not a handler: name an `async def` function or an "
            "instance whose __call__ (or handle) is `async def`"
        )
    if is_function_like(target) or not hasattr(target, "handle"):
        _check_turn(setting, target)
        if is_function_like(target):
            return
    else:
        _check_method(setting, target, "handle", ("request", "conversation"))
    for hook, arguments in HOOK_ARGUMENTS.items():
        if getattr(target, hook, None) is not None:
            _check_method(setting, target, hook, arguments)
    interruptible = getattr(target, "interruptible", False)
    if not isinstance(interruptible, bool):
        raise HandlerLoadError(f"{setting}: interruptible must be True or False")


def _check_turn(setting: str, target: Any) -> None:
    """A function, partial or object called as ``handler(request, conversation)``."""
    fix = "declare it `async def handle(request, conversation)`"
    inner = target
    while isinstance(inner, functools.partial):
        inner = inner.func
    if not (
        inspect.iscoroutinefunction(inner)
        or (
            not inspect.isroutine(inner)
            and not isinstance(inner, type)
            and inspect.iscoroutinefunction(type(inner).__call__)
        )
    ):
        kind = "a plain (not async) function" if inspect.isroutine(inner) else "not async"
        raise HandlerLoadError(
            f"{setting} is {kind}: the server awaits the handler on every turn; {fix}"
        )
    _check_arguments(setting, target, ("request", "conversation"))


def _check_method(setting: str, target: Any, name: str, arguments: tuple[str, ...]) -> None:
    method = getattr(target, name)
    declaration = f"`async def {name}({', '.join(('self', *arguments))})`"
    if not inspect.iscoroutinefunction(method):
        raise HandlerLoadError(
            f"{setting}: its {name} is not async; the server awaits it; declare it {declaration}"
        )
    _check_arguments(f"{setting}: its {name}", method, arguments)


def _check_arguments(what: str, call: Any, arguments: tuple[str, ...]) -> None:
    try:
        signature = inspect.signature(call)
    except (TypeError, ValueError):  # no signature to read (some C callables): trust it
        return
    try:
        signature.bind(*(None for _ in arguments))
    except TypeError:
        count = ("no", "one", "two", "three")[len(arguments)]
        listed = f" ({', '.join(arguments)})" if arguments else ""
        plural = "" if len(arguments) == 1 else "s"
        raise HandlerLoadError(
            f"{what} must accept {count} positional argument{plural}{listed}; "
            f"its signature is {signature}"
        ) from None

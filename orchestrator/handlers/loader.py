"""``CONVERSATION_HANDLER=module:callable``: import it and check, at start-up, that it can serve."""

from __future__ import annotations

import functools
import inspect
from typing import Any

from orchestrator.config.parsing import import_object, split_spec
from orchestrator.handlers.api import Handler


class HandlerLoadError(ImportError):
    """The ``module:callable`` setting does not name a usable handler."""


def load_handler(spec: str) -> Handler:
    """Import ``module:callable`` and check it is callable."""
    try:
        module_name, attribute = split_spec(spec)
    except ValueError:
        raise HandlerLoadError(
            f"CONVERSATION_HANDLER={spec!r}: use 'package.module:callable'"
        ) from None
    try:
        target: Any = import_object(module_name, attribute)
    except ImportError as exc:
        raise HandlerLoadError(f"cannot import {module_name!r}: {exc}") from None
    except AttributeError:
        raise HandlerLoadError(f"{module_name!r} has no attribute {attribute!r}") from None
    if not callable(target):
        raise HandlerLoadError(f"CONVERSATION_HANDLER={spec!r} is not callable")
    _check_handler(f"CONVERSATION_HANDLER={spec!r}", target)
    handler: Handler = target
    return handler


def _check_handler(setting: str, target: Any) -> None:
    """Refuse at start-up what would fail every turn: the server awaits
    ``handler(request, conversation)``, so a plain ``def`` (whose result is not
    awaitable) or a signature that cannot take those two arguments would only
    show up as a ``TypeError`` and the apology on each turn."""
    fix = "declare it `async def handle(request, conversation)`"
    if isinstance(target, type):
        raise HandlerLoadError(
            f"{setting} is a class, not a handler: name an `async def` function or an "
            "instance whose __call__ is `async def`"
        )
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
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):  # no signature to read (some C callables): trust it
        return
    try:
        signature.bind(None, None)
    except TypeError:
        raise HandlerLoadError(
            f"{setting} must accept two positional arguments (request, conversation); "
            f"its signature is {signature}"
        ) from None

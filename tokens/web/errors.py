"""The token package's errors as HTTP answers, mapped once at the boundary.

Routes raise (``ApiError``, or the token core's own errors) and Starlette's
``exception_handlers`` turn what they raise into the one error shape,
``{"error": code, "detail": text}`` with ``NO_STORE`` headers. An app that
mounts the token routes passes ``EXCEPTION_HANDLERS``; the orchestrator adds
its own errors with ``exception_handlers``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from starlette.requests import HTTPConnection
from starlette.responses import Response

from tokens.errors import (
    ClaimsError,
    InvalidTokenError,
    PolicyError,
    UnknownProfileError,
    WrongAudienceError,
)
from tokens.generation_store import StoreUnavailableError
from tokens.web.http import CHALLENGE, ApiError, error_response

# How each error reads as an ``ApiError``; looked up along the raised error's MRO.
ErrorTable = Mapping[type[Exception], Callable[[Any], ApiError]]
Handler = Callable[[HTTPConnection, Exception], Any]


def refused_token(error: InvalidTokenError) -> ApiError:
    """401 for a refused bearer token; 403 when only the origin is wrong (the
    challenge still says which scheme to use)."""
    if isinstance(error, WrongAudienceError):
        return ApiError(403, error.code, str(error), CHALLENGE)
    return ApiError(401, error.code, str(error))


def store_unavailable(error: StoreUnavailableError) -> ApiError:
    """503 while the token store (Redis) cannot be reached; the client may retry."""
    return ApiError(
        503, "store_unavailable", f"token store unreachable: {error}", {"Retry-After": "5"}
    )


TOKEN_ERRORS: ErrorTable = {
    ApiError: lambda error: error,
    ClaimsError: lambda error: ApiError(422, error.code, str(error)),
    PolicyError: lambda error: ApiError(422, error.code, str(error)),
    UnknownProfileError: lambda error: ApiError(400, error.code, str(error)),
    InvalidTokenError: refused_token,
    StoreUnavailableError: store_unavailable,
}


def exception_handlers(table: ErrorTable) -> dict[Any, Handler]:
    """Starlette ``exception_handlers`` answering each error of ``table`` over HTTP.

    A WebSocket is left to close on its own terms: the handler re-raises there.
    """

    def handler(translate: Callable[[Any], ApiError]) -> Handler:
        async def answer(connection: HTTPConnection, exc: Exception) -> Response:
            if connection.scope["type"] != "http":
                raise exc
            error = translate(exc)
            return error_response(error.status, error.code, error.detail, error.headers)

        return answer

    return {kind: handler(translate) for kind, translate in table.items()}


EXCEPTION_HANDLERS = exception_handlers(TOKEN_ERRORS)

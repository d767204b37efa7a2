"""The HTTP API's error type and JSON responses, and request-body reading,
shared by the token routes and the orchestrator's own."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tokens import jsonsafe
from tokens.jsonsafe import dumps

# Every response that may carry a token or a session's state (and the errors
# beside them): no cache, shared or the browser's, keeps a copy.
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
# The Bearer challenge every 401 carries (RFC 6750 §3).
CHALLENGE = {"WWW-Authenticate": "Bearer"}
_NO_STORE_RAW = [
    (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in NO_STORE.items()
]
_JSON_CONTENT_TYPE = (b"content-type", b"application/json")
DEFAULT_MAX_BODY_BYTES = 16 * 1024


class ApiError(Exception):
    """A request the HTTP API refuses: answered ``status`` with ``{"error": code,
    "detail": detail}`` (see ``tokens.web.errors``), plus ``headers``; a 401
    always carries the Bearer challenge."""

    def __init__(
        self, status: int, code: str, detail: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = {**(CHALLENGE if status == 401 else {}), **(headers or {})}


class SafeJSONResponse(JSONResponse):
    """``JSONResponse`` whose rendering cannot fail on what a record holds (see
    ``jsonsafe.dumps``): a stored value never turns a later read into a 500."""

    def render(self, content: Any) -> bytes:
        return dumps(content).encode("utf-8")


def error_response(
    status: int, code: str, detail: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """The one error shape of the HTTP API: ``{"error": code, "detail": text}``."""
    return SafeJSONResponse(
        {"error": code, "detail": detail},
        status_code=status,
        headers={**NO_STORE, **(headers or {})},
    )


# JSONResponse.render's settings, in one encoder built once (json.dumps with
# non-default options builds a new encoder on every call).
_JSON = json.JSONEncoder(ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":"))


def token_response(body: dict[str, Any]) -> Response:
    """``JSONResponse(body, headers=NO_STORE)``, the same bytes and headers (the
    ``NO_STORE`` ones encoded once, not per response); should ``body`` echo a
    value that is not plain JSON (claims), ``jsonsafe.dumps`` writes it instead."""
    try:
        content = _JSON.encode(body).encode("utf-8")
    except (ValueError, TypeError, RecursionError):  # ValueError includes UnicodeEncodeError
        content = dumps(body).encode("utf-8")
    return json_bytes_response(content)


class _JsonBytesResponse(Response):
    """``Response(content, media_type="application/json", headers=NO_STORE)`` with
    the same headers in the same order, but the fixed ones encoded once: this
    is every token request's response, and Starlette's ``init_headers`` would
    lower-case, encode and search them per response."""

    media_type = "application/json"

    def init_headers(self, headers: Mapping[str, str] | None = None) -> None:
        self.raw_headers = [
            (b"content-length", b"%d" % len(self.body)),
            _JSON_CONTENT_TYPE,
            *_NO_STORE_RAW,
        ]


def json_bytes_response(content: bytes) -> Response:
    """A 200 ``application/json`` response of ready-made ``content``, with ``NO_STORE``."""
    return _JsonBytesResponse(content)


async def read_json_object(
    request: Request, *, max_bytes: int = DEFAULT_MAX_BODY_BYTES
) -> dict[str, Any]:
    """The request body as a JSON object; ``{}`` for an empty body.

    Reads at most ``max_bytes`` (413 beyond), requires a JSON content type when
    there is a body (415), and a JSON object of plain JSON (400: no lone
    surrogate, no number past float's range, nested at most 64 deep; see
    ``jsonsafe``).
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise ApiError(413, "body_too_large", f"request body exceeds {max_bytes} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise ApiError(413, "body_too_large", f"request body exceeds {max_bytes} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        return {}
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise ApiError(415, "unsupported_media_type", "send the body as application/json")
    try:
        # As json.loads(raw) decodes; "surrogatepass" lets encoded surrogates
        # through, for check_parsed to refuse with the escaped ones.
        text = raw.decode(json.detect_encoding(raw), "surrogatepass")
        body = jsonsafe.loads(text)
    except ValueError as exc:  # UnicodeDecodeError, JSONDecodeError, NotPlainJsonError
        raise ApiError(400, "invalid_json", f"body is not valid JSON: {exc}") from None
    except RecursionError:
        raise ApiError(400, "invalid_json", "body is not valid JSON: nested too deep") from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_body", "body must be a JSON object")
    return body

"""The HTTP client the webhook and LLM handlers call out with, and its bounds.

A server at the other end may be broken or hostile, so every response is read
within bounds before anything parses it: the client follows no redirect (a
signed body, or the API key, goes only where it was meant to), asks for
``Accept-Encoding: identity`` and refuses any other ``Content-Encoding`` (a
compressed body would be inflated chunk by chunk before any count saw it: a
few hundred KB of gzip make a gigabyte), and stops reading a body past
``max_bytes``, or, for a server-sent event stream, an event past
``max_event_bytes``. A refusal raises ``ResponseRefused``, never an ``httpx``
error, so the ``openai`` client lets it through unwrapped.

The bounds sit in a response event hook rather than a transport, so proxies
from the environment (``HTTPS_PROXY``) still apply.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx

IDENTITY = "identity"
_LINE_END = re.compile(rb"\r\n|\r|\n")


class ResponseRefused(Exception):
    """A response read no further; ``reason`` is a short label (a metric's)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def bounded_client(
    *, max_bytes: int, max_event_bytes: int | None = None, **options: Any
) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` (``options`` as its own) that reads within the bounds."""
    headers = {**options.pop("headers", {}), "Accept-Encoding": IDENTITY}

    async def bound(response: httpx.Response) -> None:
        encoding = response.headers.get("Content-Encoding", IDENTITY).strip().lower()
        if encoding not in ("", IDENTITY):
            raise ResponseRefused(
                "compressed", f"Content-Encoding {encoding[:32]!r} refused (identity was asked)"
            )
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise ResponseRefused("too_large", f"reply of {declared} bytes exceeds {max_bytes}")
        stream = response.stream
        assert isinstance(stream, httpx.AsyncByteStream)  # an AsyncClient's response
        response.stream = BoundedStream(
            stream, max_bytes=max_bytes, max_event_bytes=max_event_bytes
        )

    return httpx.AsyncClient(
        follow_redirects=False,
        headers=headers,
        event_hooks={"response": [bound]},
        **options,
    )


class BoundedStream(httpx.AsyncByteStream):
    """A response body that raises ``ResponseRefused`` past its bounds.

    An event (server-sent events) is the bytes between blank lines; a line
    ends at CR, LF or CRLF, as the ``openai`` client's decoder reads them.
    """

    def __init__(
        self, stream: httpx.AsyncByteStream, *, max_bytes: int, max_event_bytes: int | None
    ) -> None:
        self._stream = stream
        self.max_bytes = max_bytes
        self.max_event_bytes = max_event_bytes
        self.size = 0
        self._line = 0  # bytes of the line not yet ended
        self._event = 0  # bytes of the ended lines of the event not yet ended
        self._after_cr = False  # the last chunk ended with CR: a LF next ends no line

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            self.size += len(chunk)
            if self.size > self.max_bytes:
                raise ResponseRefused("too_large", f"reply exceeds {self.max_bytes} bytes")
            if self.max_event_bytes is not None:
                self._count_event(chunk)
            yield chunk

    async def aclose(self) -> None:
        await self._stream.aclose()

    def _count_event(self, chunk: bytes) -> None:
        limit = self.max_event_bytes
        assert limit is not None
        if self._after_cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]
        self._after_cr = chunk.endswith(b"\r")
        start = 0
        for end in _LINE_END.finditer(chunk):
            self._line += end.start() - start
            start = end.end()
            if self._line == 0:  # a blank line ends the event
                self._event = 0
                continue
            self._event += self._line
            self._line = 0
            if self._event > limit:
                break
        else:
            self._line += len(chunk) - start
        if self._event + self._line > limit:
            raise ResponseRefused("too_large", f"a stream event exceeds {limit} bytes")

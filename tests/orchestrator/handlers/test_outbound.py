"""``BoundedStream``'s counting, chunk by chunk (the handlers' tests drive it over HTTP)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from orchestrator.handlers.outbound import BoundedStream, ResponseRefused

pytestmark = pytest.mark.anyio


class Chunks(httpx.AsyncByteStream):
    def __init__(self, *chunks: bytes) -> None:
        self.chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk


async def read(*chunks: bytes, max_bytes: int = 1000, max_event_bytes: int | None = 10) -> bytes:
    stream = BoundedStream(Chunks(*chunks), max_bytes=max_bytes, max_event_bytes=max_event_bytes)
    return b"".join([chunk async for chunk in stream])


@pytest.mark.parametrize(
    "chunks",
    [
        (b"data: 123\n\n", b"data: 456\n\n"),  # 9 bytes per event
        (b"data: 1", b"23\r\n\r\ndata: 456\r", b"\n\r\n"),  # CRLF split across chunks
        (b"data: 123\r\rdata: 456\r\r",),  # CR line ends
        (b"a: 1\nb: 2\n\nc: 34567\n\n",),  # an event of two lines, 8 bytes
    ],
)
async def test_events_within_the_bound_pass(chunks: tuple[bytes, ...]) -> None:
    assert await read(*chunks) == b"".join(chunks)


@pytest.mark.parametrize(
    "chunks",
    [
        (b"data: 12345",),  # one line, never ended
        (b"data: 1", b"2345\n\n"),  # across chunks
        (b"a: 123\nb: 456\n\n",),  # two lines of one event
        (b"a: 1\n\n", b"b: 12345678\n\nc: 1\n\n"),  # the middle event of a chunk
        (b"a: 1\r", b"\nb: 123456\r\n\r\n"),  # the LF after a CR ends no line (no blank line)
    ],
)
async def test_an_event_past_the_bound_is_refused(chunks: tuple[bytes, ...]) -> None:
    with pytest.raises(ResponseRefused, match="a stream event exceeds 10 bytes") as refused:
        await read(*chunks)
    assert refused.value.reason == "too_large"


async def test_a_body_past_max_bytes_is_refused_without_an_event_bound() -> None:
    assert await read(b"x" * 600, b"y" * 400, max_event_bytes=None) == b"x" * 600 + b"y" * 400
    with pytest.raises(ResponseRefused, match="reply exceeds 1000 bytes"):
        await read(b"x" * 600, b"y" * 401, max_event_bytes=None)

"""A gzip bomb for the tests of clients that read hostile servers: a few hundred
KB that inflate to 256 MiB of zeros, made once per test process."""

from __future__ import annotations

import functools
import zlib

INFLATED_BYTES = 256 * 1024 * 1024
_BLOCK = bytes(1024 * 1024)


@functools.cache
def gzip_bomb() -> bytes:
    """``Content-Encoding: gzip`` bytes of ``INFLATED_BYTES`` zeros (about 260 KB)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    parts = [compressor.compress(_BLOCK) for _ in range(INFLATED_BYTES // len(_BLOCK))]
    parts.append(compressor.flush())
    return b"".join(parts)

"""The shared ``wsload.py`` with one token per socket.

``wsload.py URL N R`` opens N sockets to one URL. Against the real control
socket that cannot work: a token is one session, and a newer connection for a
session closes the older one (4001). This wrapper loads ``wsload.py`` (path
given), fetches N tokens from the server's own ``GET /api/jwt`` first (before
the clock starts, as a UI would), and runs wsload's own per-socket coroutine
(``wsload.host``) on ``<sm-control from each token>?access_token=<token>``. It
prints wsload's line format unchanged.

    python3 bench/wsload_tokens.py WSLOAD_PY HTTP_BASE N R
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import importlib.util
import json
import resource
import sys
import time
from types import ModuleType
from typing import Any
from urllib.parse import quote, urlsplit

LOOPBACK_PREFIX = "127."


def load_wsload(path: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location("wsload", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _claims(jwt: str) -> dict[str, Any]:
    part = jwt.split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return claims


def fetch_tokens(base: str, count: int, *, timeout: float = 10.0) -> list[dict[str, Any]]:
    """``count`` fresh ``/api/jwt`` bodies (``jwt``, ``session_id``, ...): one session each."""
    parts = urlsplit(base)
    if parts.scheme != "http" or not (parts.hostname or "").startswith(LOOPBACK_PREFIX):
        raise SystemExit(f"{base}: loopback http:// only")
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port or 80, timeout=timeout)
    issued: list[dict[str, Any]] = []
    try:
        for _ in range(count):
            connection.request("GET", "/api/jwt")
            response = connection.getresponse()
            body = response.read()
            if response.status != 200:
                raise SystemExit(f"GET /api/jwt answered {response.status}: {body[:200]!r}")
            issued.append(json.loads(body))
    finally:
        connection.close()
    return issued


def control_url(jwt: str) -> str:
    """``<sm-control from the token>?access_token=<token>``, as the video host connects."""
    return f"{_claims(jwt)['sm-control']}?access_token={quote(jwt)}"


def fetch_socket_urls(base: str, count: int, *, timeout: float = 10.0) -> list[str]:
    """``count`` control-socket URLs, each with its own fresh token from ``/api/jwt``."""
    return [control_url(issued["jwt"]) for issued in fetch_tokens(base, count, timeout=timeout)]


async def run(wsload: ModuleType, urls: list[str], rounds: int) -> None:
    """``wsload.main``, but socket ``i`` connects to ``urls[i]``; same output line."""
    lat: list[float] = []
    ok = [0]
    n = len(urls)
    started = time.perf_counter()
    results = await asyncio.gather(
        *(wsload.host(url, rounds, lat, ok) for url in urls), return_exceptions=True
    )
    wall = time.perf_counter() - started
    errors = [r for r in results if isinstance(r, BaseException)]
    lat.sort()

    def p(q: float) -> float:
        return lat[min(len(lat) - 1, int(q * len(lat)))] * 1e3 if lat else float("nan")

    print(
        f"conns={n} rounds={rounds} ok={ok[0]} errors={len(errors)} p50_ms={p(0.5):.2f} "
        f"p99_ms={p(0.99):.2f} msgs_per_s={ok[0] / wall:.0f}",
        flush=True,
    )
    if errors:
        print("first error:", repr(errors[0]), flush=True)


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    path, base, n, rounds = argv[0], argv[1], int(argv[2]), int(argv[3])
    raise_fd_limit()
    wsload = load_wsload(path)
    urls = fetch_socket_urls(base, n)
    asyncio.run(run(wsload, urls, rounds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

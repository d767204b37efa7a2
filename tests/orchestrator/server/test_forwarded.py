"""Behind proxies the client is the address the outermost trusted proxy saw:
the rate limit, the logs and the derived sm-control follow it, never an
``X-Forwarded-For`` entry the client wrote itself."""

from __future__ import annotations

import shlex
import subprocess
import sys

import httpx
import pytest
from starlette.types import Receive, Scope, Send
from websockets.sync.client import connect

from orchestrator.cli import EXIT_CONFIG
from orchestrator.server.forwarded import ForwardedHeadersMiddleware
from tests.live_server import REPO_ROOT, LiveServer, server_environment
from tokens.jws import read_unverified_claims

PEER = "203.0.113.7"  # what the platform's router appends: the real client
OTHER_PEER = "203.0.113.8"


def procfile_serve_args() -> tuple[str, ...]:
    """The Procfile's ``orchestrator serve`` options, without --host and --port."""
    web = next(line for line in (REPO_ROOT / "Procfile").read_text().splitlines() if "web:" in line)
    words = shlex.split(web.partition("orchestrator serve")[2])
    args: list[str] = []
    skip = False
    for word in words:
        if skip:
            skip = False
        elif word in ("--host", "--port"):
            skip = True
        else:
            args.append(word)
    return tuple(args)


def forwarded(chain: str, **extra: str) -> dict[str, str]:
    return {"X-Forwarded-For": chain, **extra}


@pytest.mark.server
def test_procfile_keys_the_rate_limit_on_the_routers_peer_not_on_forged_headers() -> None:
    """With the Procfile's flags, a client rewriting X-Forwarded-For on every request
    is still one client: the rightmost entry (appended by the router) is limited, the
    access log and WebSocket log name it, and sm-control follows X-Forwarded-Proto."""
    env = {"TOKEN_RATE_LIMIT": "5/minute"}
    server = LiveServer(env, extra_args=procfile_serve_args())
    with server, httpx.Client(base_url=server.base_url, timeout=10) as http:
        statuses = [
            http.get("/api/jwt", headers=forwarded(f"10.66.0.{i}, {PEER}")).status_code
            for i in range(10)
        ]
        assert statuses == [200] * 5 + [429] * 5
        refused = http.get("/api/jwt", headers=forwarded(f"198.51.100.99,{PEER}"))
        assert refused.json()["error"] == "rate_limited"
        # Another client behind the same router has a bucket of its own.
        other = http.get(
            "/api/jwt",
            headers=forwarded(
                OTHER_PEER, **{"X-Forwarded-Proto": "https", "Host": "orch.example.test"}
            ),
        )
        assert other.status_code == 200
        claims = read_unverified_claims(other.json()["jwt"])
        assert claims["sm-control"] == "wss://orch.example.test/ws"
        with connect(
            server.ws_url + "?access_token=" + other.json()["jwt"],
            additional_headers=forwarded(f"127.0.0.1, {OTHER_PEER}"),
        ):
            pass
    log = server.log_text
    assert f'{PEER}:0 - "GET /api/jwt HTTP/1.1" 429' in log
    assert f'{OTHER_PEER}:0 - "WebSocket /ws' in log
    assert "10.66.0." not in log
    assert "198.51.100.99" not in log


@pytest.mark.server
def test_without_trusted_hops_forwarded_headers_are_ignored() -> None:
    """By default the TCP peer is the client: X-Forwarded-For and -Proto change nothing."""
    env = {"TOKEN_RATE_LIMIT": "3/minute"}
    with LiveServer(env) as server, httpx.Client(base_url=server.base_url, timeout=10) as http:
        answers = [
            http.get(
                "/api/jwt", headers=forwarded(f"198.51.100.{i}", **{"X-Forwarded-Proto": "https"})
            )
            for i in range(4)
        ]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert read_unverified_claims(answers[0].json()["jwt"])["sm-control"].startswith("ws://")
    assert "198.51.100." not in server.log_text


@pytest.mark.server
@pytest.mark.parametrize("flag", ["--forwarded-allow-ips=*", "--forwarded-allow-ips= * "])
def test_serve_refuses_to_trust_every_forwarded_for_entry(flag: str) -> None:
    """``--proxy-headers --forwarded-allow-ips='*'`` (the old Procfile) would let any
    client choose its address; serve refuses it as a configuration error."""
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator", "serve", "--port", "0", "--proxy-headers", flag],
        cwd=REPO_ROOT,
        env=server_environment(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == EXIT_CONFIG
    assert result.stderr.startswith("configuration error: --forwarded-allow-ips='*'")
    assert "Uvicorn running" not in result.stderr


async def seen_by_app(hops: int, headers: list[tuple[bytes, bytes]], kind: str = "http") -> Scope:
    seen: dict[str, Scope] = {}

    async def app(scope: Scope, _receive: Receive, _send: Send) -> None:
        seen["scope"] = scope

    async def nothing() -> dict[str, str]:
        return {}

    async def ignore(_message: object) -> None:
        return None

    scope: Scope = {"type": kind, "headers": headers, "client": ("10.0.0.1", 5), "scheme": "http"}
    await ForwardedHeadersMiddleware(app, hops=hops)(scope, nothing, ignore)
    return seen["scope"]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("hops", "values", "client"),
    [
        (1, [b"1.1.1.1, 2.2.2.2"], "2.2.2.2"),
        (2, [b"1.1.1.1, 2.2.2.2, 10.1.1.1"], "2.2.2.2"),
        (2, [b"1.1.1.1", b"2.2.2.2", b"10.1.1.1"], "2.2.2.2"),  # several headers, in order
        (3, [b"2.2.2.2, 10.1.1.1"], "2.2.2.2"),  # fewer entries: all came from proxies
        (1, [b"1.1.1.1, 2.2.2.2:4711"], "2.2.2.2"),
        (1, [b"1.1.1.1, [2001:db8::1]:4711"], "2001:db8::1"),
        (1, [b"2001:db8::2"], "2001:db8::2"),
        (1, [b"2.2.2.2, unknown"], "10.0.0.1"),  # not an address: the peer stays
        (1, [b""], "10.0.0.1"),
    ],
)
async def test_the_client_is_the_entry_hops_places_from_the_right(
    hops: int, values: list[bytes], client: str
) -> None:
    """Only entries appended by the ``hops`` trusted proxies are believed."""
    scope = await seen_by_app(hops, [(b"x-forwarded-for", v) for v in values])
    assert scope["client"][0] == client


@pytest.mark.anyio
async def test_forwarded_proto_sets_the_scheme_for_http_and_websocket() -> None:
    """X-Forwarded-Proto from the proxy: https for HTTP, wss for a WebSocket; junk is ignored."""
    proto = [(b"x-forwarded-proto", b"https")]
    assert (await seen_by_app(1, proto))["scheme"] == "https"
    assert (await seen_by_app(1, proto, "websocket"))["scheme"] == "wss"
    assert (await seen_by_app(1, [(b"x-forwarded-proto", b"gopher")]))["scheme"] == "http"

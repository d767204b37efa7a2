"""The caps on event streams, against a real ``orchestrator serve``: a UI token
gets a few streams of its session, an address a few more, the process a share
of its open-file limit; past one, a clear 429/503 with ``Retry-After``, counted
in ``/metrics``, while ``/healthz`` and the control socket keep answering."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import httpx
import pytest
from websockets.sync.client import connect

from tests.conftest import random_secret
from tests.live_server import LiveServer
from tests.orchestrator.control_helpers import say

pytestmark = pytest.mark.server

# Short reads: a stream that neither answers nor is refused fails the test, not hangs it.
TIMEOUT = httpx.Timeout(5)


@contextmanager
def serve(
    env: dict[str, str], *, open_file_limit: int | None = None
) -> Iterator[tuple[LiveServer, str]]:
    """A development server with an API key; yields it and the key."""
    api_key = random_secret()
    config = {"JWT_PUBLIC_KEY": "live-key", "JWT_PRIVATE_KEY": random_secret()}
    env = {**config, "ORCHESTRATOR_API_KEY": api_key, **env}
    with LiveServer(env, open_file_limit=open_file_limit) as server:
        yield server, api_key


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def issue(http: httpx.Client, server: LiveServer) -> tuple[str, str]:
    """A fresh session's UI token and id."""
    body = http.get(server.base_url + "/api/jwt").json()
    return body["jwt"], body["session_id"]


def follow(
    stack: ExitStack, http: httpx.Client, url: str, headers: dict[str, str]
) -> httpx.Response:
    """``GET url`` as a stream kept open until ``stack`` closes; a refusal is read whole."""
    response = stack.enter_context(http.stream("GET", url, headers=headers, timeout=TIMEOUT))
    if response.status_code == 200:
        # Kept by the stack: a line iterator dropped early would close the connection.
        lines = response.iter_lines()
        stack.callback(lambda: lines)
        assert next(lines) == "event: snapshot"
    else:
        response.read()
    return response


def metric(http: httpx.Client, server: LiveServer, api_key: str, name: str) -> float:
    """One sample of ``/metrics`` (``name`` with its labels), 0 when absent."""
    text = http.get(server.base_url + "/metrics", headers=bearer(api_key)).text
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def open_streams(http: httpx.Client, server: LiveServer, api_key: str, expected: float) -> None:
    """Wait until the server counts ``expected`` open streams (a closed one is
    released once the server sees the client go)."""
    for _ in range(50):
        if metric(http, server, api_key, "orchestrator_sse_streams_open") == expected:
            return
        time.sleep(0.1)
    raise AssertionError(f"not {expected} open streams")


def assert_refused(response: httpx.Response, status: int, error: str) -> None:
    assert (response.status_code, response.json()["error"]) == (status, error)
    assert response.headers["Retry-After"] == "15"
    assert response.headers["Connection"] == "close"


def test_a_ui_token_gets_a_few_streams_of_its_session_then_429() -> None:
    """Four streams with one UI token (header or query); the fifth is 429
    ``too_many_streams`` with ``Retry-After``, counted; the API key still follows
    the session; a closed stream gives its place back."""
    with serve({}) as (server, api_key), httpx.Client(timeout=TIMEOUT) as http:
        token, session_id = issue(http, server)
        url = f"{server.base_url}/sessions/{session_id}/events"
        with ExitStack() as streams:
            for index in range(4):
                if index % 2:
                    response = follow(streams, http, f"{url}?access_token={token}", {})
                else:
                    response = follow(streams, http, url, bearer(token))
                assert response.status_code == 200
            with ExitStack() as refused:
                assert_refused(follow(refused, http, url, bearer(token)), 429, "too_many_streams")
                again = follow(refused, http, f"{url}?access_token={token}", {})
                assert_refused(again, 429, "too_many_streams")
            assert follow(streams, http, url, bearer(api_key)).status_code == 200
            refusals = 'orchestrator_sse_streams_refused_total{reason="session"}'
            assert metric(http, server, api_key, refusals) == 2
            open_streams(http, server, api_key, 5)
        open_streams(http, server, api_key, 0)
        with ExitStack() as streams:
            assert follow(streams, http, url, bearer(token)).status_code == 200


def test_streams_from_one_address_are_capped_as_the_trusted_proxy_saw_it() -> None:
    """Behind one trusted proxy, with two streams per address: a third session's
    stream from the same address is 429 (a client-written ``X-Forwarded-For``
    entry does not help), from another address 200; the API key is not counted
    per address."""
    env = {"TRUSTED_PROXY_HOPS": "1", "SSE_MAX_STREAMS_PER_ADDRESS": "2"}
    with serve(env) as (server, api_key), httpx.Client(timeout=TIMEOUT) as http:
        sessions = [issue(http, server) for _ in range(3)]
        url = server.base_url + "/sessions/{}/events"

        def headers(token: str, forwarded_for: str) -> dict[str, str]:
            return {**bearer(token), "X-Forwarded-For": forwarded_for}

        with ExitStack() as streams:
            for token, session_id in sessions[:2]:
                response = follow(
                    streams, http, url.format(session_id), headers(token, "203.0.113.7")
                )
                assert response.status_code == 200
            token, session_id = sessions[2]
            for forged in ("203.0.113.7", "198.51.100.1, 203.0.113.7"):
                response = follow(streams, http, url.format(session_id), headers(token, forged))
                assert_refused(response, 429, "too_many_streams")
                assert "address" in response.json()["detail"]
            other = follow(streams, http, url.format(session_id), headers(token, "203.0.113.8"))
            assert other.status_code == 200
            backend = follow(streams, http, url.format(session_id), headers(api_key, "203.0.113.7"))
            assert backend.status_code == 200
            refusals = 'orchestrator_sse_streams_refused_total{reason="address"}'
            assert metric(http, server, api_key, refusals) == 2


def test_at_the_global_cap_healthz_and_the_control_socket_still_answer() -> None:
    """Under ``ulimit -n 128`` the process takes 32 streams (a quarter); the next
    is 503 ``server_busy`` with ``Retry-After``, counted, and meanwhile
    ``/healthz`` and a control-socket handshake (and a turn) still answer."""
    env = {"SSE_MAX_BACKEND_STREAMS_PER_SESSION": "1000"}
    with (
        serve(env, open_file_limit=128) as (server, api_key),
        httpx.Client(timeout=TIMEOUT, limits=httpx.Limits(max_connections=None)) as http,
    ):
        assert "sse_max_streams=32" in server.log_text
        token, session_id = issue(http, server)
        url = f"{server.base_url}/sessions/{session_id}/events"
        with ExitStack() as streams:
            statuses = [follow(streams, http, url, bearer(api_key)).status_code for _ in range(40)]
            assert statuses == [200] * 32 + [503] * 8
            with ExitStack() as refused:
                assert_refused(follow(refused, http, url, bearer(api_key)), 503, "server_busy")
            assert http.get(server.base_url + "/healthz").status_code == 200
            with connect(f"{server.ws_url}?access_token={token}", open_timeout=5) as ws:
                ws.send(say("still here"))
                assert "You said: still here" in ws.recv(timeout=5)
            refusals = 'orchestrator_sse_streams_refused_total{reason="global"}'
            assert metric(http, server, api_key, refusals) == 9
        open_streams(http, server, api_key, 0)


def test_a_total_over_half_the_open_file_limit_is_warned_about() -> None:
    """``SSE_MAX_STREAMS=100`` under ``ulimit -n 128`` starts, and says at start-up
    that streams could leave the control socket and ``/healthz`` no descriptors."""
    with serve({"SSE_MAX_STREAMS": "100"}, open_file_limit=128) as (server, _):
        log = server.log_text
    assert "sse_max_streams=100" in log
    assert "SSE_MAX_STREAMS is over half the open-file limit" in log


def test_open_streams_do_not_hold_up_the_servers_shutdown() -> None:
    """uvicorn waits up to --graceful-timeout (10 s) for every response to end, and an
    event stream never does: a SIGTERM with streams open took the whole 10 s (a
    supervisor that kills at 10 s lost the sessions still to be archived). The
    server stack now ends them at once; their clients see the stream close."""
    api_key = random_secret()
    env = {"JWT_PUBLIC_KEY": "live-key", "JWT_PRIVATE_KEY": random_secret(),
           "ORCHESTRATOR_API_KEY": api_key}  # fmt: skip
    server = LiveServer(env, stop_timeout=20).start()
    try:
        with httpx.Client(timeout=TIMEOUT) as http, ExitStack() as streams:
            token, session_id = issue(http, server)
            url = f"{server.base_url}/sessions/{session_id}/events"
            follow(streams, http, url, bearer(token))
            follow(streams, http, url, bearer(api_key))
            open_streams(http, server, api_key, 2)
            started = time.monotonic()
            server.stop()
            stopped_in = time.monotonic() - started
    finally:
        server.stop()
    assert not server.killed
    assert stopped_in < 5, f"shutdown took {stopped_in:.1f} s with two streams open"

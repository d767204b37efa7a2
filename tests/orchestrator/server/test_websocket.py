"""The WebSocket stack under the app, through a real ``orchestrator serve``: ping floods,
a peer that does not drain, oversize handshakes and frames, invalid UTF-8, and the
control handshake's refusals in /metrics."""

from __future__ import annotations

import json
import pickle
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosedError
from websockets.frames import Frame, Opcode
from websockets.sync.client import connect

from orchestrator.server.websocket import StackLimits, uvicorn_websocket_options
from tests.conftest import random_secret
from tests.live_server import LiveServer
from tests.metrics_text import control_refused, stack_refused
from tests.orchestrator.control_helpers import make_settings, say
from tests.raw_websocket import open_raw_socket

pytestmark = pytest.mark.server

# One 125-byte ping (the largest control frame), masked as a client must.
PING = Frame(Opcode.PING, b"p" * 125).serialize(mask=True)
MIB = 1024 * 1024


def dev_env(**extra: str) -> dict[str, str]:
    return {"JWT_PUBLIC_KEY": "stack-key", "JWT_PRIVATE_KEY": random_secret(), **extra}


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    with LiveServer(dev_env()) as live:
        yield live


def token_for(server: LiveServer) -> str:
    jwt: str = httpx.get(server.base_url + "/api/jwt", timeout=10).json()["jwt"]
    return jwt


def open_socket(
    server: LiveServer, *, rcvbuf: int | None = None
) -> tuple[ClientProtocol, socket.socket]:
    """A control socket driven frame by frame (``rcvbuf`` shrinks our receive buffer)."""
    return open_raw_socket(f"{server.ws_url}?access_token={token_for(server)}", rcvbuf=rcvbuf)


def read_frames(protocol: ClientProtocol, sock: socket.socket, seconds: float) -> list[Frame]:
    """Frames that arrive within ``seconds`` (until the server closes the connection)."""
    frames: list[Frame] = []
    deadline = time.monotonic() + seconds
    while protocol.close_rcvd is None and time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = sock.recv(65536)
        except (TimeoutError, ConnectionResetError):
            break
        if not data:
            protocol.receive_eof()
            break
        protocol.receive_data(data)
        frames += [event for event in protocol.events_received() if isinstance(event, Frame)]
    return frames


def rss_bytes(server: LiveServer) -> int:
    assert server.process is not None
    status = Path(f"/proc/{server.process.pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


def flood_pings_without_reading(
    server: LiveServer, *, seconds: float, max_bytes: int
) -> tuple[float | None, int]:
    """Ping the server as fast as it takes them, never reading a pong.

    Returns when the server drops the connection (its elapsed time) or after
    ``seconds`` / ``max_bytes`` (``None``), with the server's peak RSS growth.
    """
    _protocol, sock = open_socket(server, rcvbuf=4096)
    burst = PING * 512  # 64 KiB
    baseline = peak = rss_bytes(server)
    started = time.monotonic()
    sent = 0
    try:
        sock.settimeout(1.0)
        while time.monotonic() - started < seconds and sent < max_bytes:
            try:
                sock.sendall(burst)
                sent += len(burst)
            except TimeoutError:
                pass  # the server stopped reading: keep pushing until it drops us
            except OSError:
                return time.monotonic() - started, peak - baseline
            finally:
                peak = max(peak, rss_bytes(server))
        return None, peak - baseline
    finally:
        sock.close()


def test_a_ping_flood_is_closed_with_1008(server: LiveServer) -> None:
    """Pings count against CONTROL_MAX_FRAMES_PER_SECOND (burst 200): a flood gets 1008."""
    protocol, sock = open_socket(server)
    pongs = 0
    try:
        for _ in range(50):
            sock.sendall(PING * 100)
            frames = read_frames(protocol, sock, 0.1)
            pongs += sum(frame.opcode is Opcode.PONG for frame in frames)
            if protocol.close_rcvd is not None:
                break
    finally:
        sock.close()
    assert protocol.close_rcvd is not None, f"still open after 5000 pings ({pongs} pongs)"
    assert protocol.close_rcvd.code == 1008
    assert pongs < 5000


def test_a_ping_flood_that_never_reads_is_dropped_and_memory_stays_bounded(
    server: LiveServer,
) -> None:
    """Pongs for a peer that never reads do not pile up: the flood limit drops it at once."""
    dropped_after, growth = flood_pings_without_reading(server, seconds=30, max_bytes=64 * MIB)
    assert dropped_after is not None, f"not dropped; server RSS grew {growth / MIB:.0f} MiB"
    assert dropped_after < 15
    assert growth < 24 * MIB


def test_a_peer_that_does_not_drain_is_dropped_after_the_send_timeout() -> None:
    """With pings allowed, a peer that never reads is still dropped once the server's
    write buffer stays full for CONTROL_SEND_TIMEOUT_SECONDS; memory stays bounded."""
    env = dev_env(CONTROL_MAX_FRAMES_PER_SECOND="1000000", CONTROL_SEND_TIMEOUT_SECONDS="1")
    with LiveServer(env) as live:
        dropped_after, growth = flood_pings_without_reading(live, seconds=30, max_bytes=64 * MIB)
        assert dropped_after is not None, f"not dropped; server RSS grew {growth / MIB:.0f} MiB"
        assert dropped_after < 15
        assert growth < 24 * MIB
        live.stop()
    assert "peer not reading; dropping the connection" in live.log_text


def test_invalid_utf8_closes_with_1007_and_one_warning_not_a_traceback() -> None:
    """RFC 6455's 1007 for a text frame that is not UTF-8, logged as one clean line."""
    with LiveServer(dev_env()) as live:
        protocol, sock = open_socket(live)
        try:
            protocol.send_text(b'{"name": "\xff\xfe"}')
            sock.sendall(b"".join(protocol.data_to_send()))
            read_frames(protocol, sock, 5)
        finally:
            sock.close()
        live.stop()
    assert protocol.close_rcvd is not None
    assert protocol.close_rcvd.code == 1007
    assert "Traceback" not in live.log_text
    assert "UnicodeDecodeError" not in live.log_text
    assert live.log_text.count("invalid UTF-8 in a text frame; closing") == 1


def test_a_frame_over_twice_the_app_limit_closes_with_1009_unbuffered(server: LiveServer) -> None:
    """The server's own limit (ws_max_size) is 2x CONTROL_MAX_FRAME_BYTES, not 16 MiB."""
    with connect(f"{server.ws_url}?access_token={token_for(server)}") as ws:
        ws.send("x" * (200 * 1024))
        with pytest.raises(ConnectionClosedError) as closed:
            ws.recv(timeout=5)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1009
    deadline = time.monotonic() + 5
    while "websocket frame refused; closing" not in server.log_text:
        assert time.monotonic() < deadline, "no warning line for the refused frame"
        time.sleep(0.05)


def test_a_frame_just_over_the_app_limit_is_still_the_apps_to_ignore(server: LiveServer) -> None:
    """Between the app's limit and ws_max_size, the app's policy applies: ignored, counted."""
    with connect(f"{server.ws_url}?access_token={token_for(server)}") as ws:
        ws.send("x" * (100 * 1024))
        ws.send(say("ping"))
        deadline = time.monotonic() + 10
        while True:
            message = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if message["name"] == "conversationResponse":
                break
    assert message["body"]["output"]["text"] == "You said: ping"


def raw_handshake(server: LiveServer, target: str, headers: str = "") -> tuple[str, bytes]:
    """Send a WebSocket handshake by hand; the status line and body of the answer."""
    request = (
        f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        f"Sec-WebSocket-Version: 13\r\n{headers}\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(request.encode())
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)  # a server that never answers raises TimeoutError
            assert chunk, f"closed without an answer: {answer!r}"
            answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1]) for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )  # fmt: skip
        while len(body) < length:
            body += sock.recv(65536)
    return head.split(b"\r\n")[0].decode(), body


@pytest.mark.parametrize("where", ["query", "bearer"])
def test_a_token_over_8_kib_is_refused_with_403_not_left_hanging(
    server: LiveServer, where: str
) -> None:
    """A 9 KB token reaches the verifier and is refused (403 malformed), like any bad token."""
    token = "a" * 9000
    if where == "query":
        status, body = raw_handshake(server, f"/ws?access_token={token}")
    else:
        status, body = raw_handshake(server, "/ws", f"Authorization: Bearer {token}\r\n")
    assert status.startswith("HTTP/1.1 403")
    assert json.loads(body)["error"] == "malformed"


@pytest.mark.parametrize(
    ("target", "header", "answer", "code"),
    [
        ("/ws?access_token=" + "a" * 40_000, "", "414", "request_line_too_long"),
        ("/ws", "Authorization: Bearer " + "a" * 40_000 + "\r\n", "431", "headers_too_large"),
    ],
    ids=["query", "header"],
)
def test_a_handshake_line_over_the_parser_limit_is_answered_at_once(
    server: LiveServer, target: str, header: str, answer: str, code: str
) -> None:
    """Past 16 KiB the websockets parser refuses the line; the client gets a JSON answer."""
    started = time.monotonic()
    status, body = raw_handshake(server, target, header)
    assert status.startswith(f"HTTP/1.1 {answer}")
    assert json.loads(body)["error"] == code
    assert time.monotonic() - started < 5


def test_a_refused_control_handshake_is_counted_in_metrics(server: LiveServer) -> None:
    """orchestrator_tokens_refused_total{where="control"} counts handshake refusals by code."""
    before = control_refused(server, "malformed")
    status, _ = raw_handshake(server, "/ws?access_token=junk")
    assert status.startswith("HTTP/1.1 403")
    assert control_refused(server, "malformed") == before + 1


@pytest.mark.parametrize(
    ("target", "header", "code"),
    [
        ("/ws?access_token=" + "a" * 40_000, "", "request_line_too_long"),
        ("/ws", "Authorization: Bearer " + "a" * 40_000 + "\r\n", "headers_too_large"),
    ],
    ids=["query", "header"],
)
def test_a_handshake_refused_below_the_app_is_counted_in_metrics(
    server: LiveServer, target: str, header: str, code: str
) -> None:
    """orchestrator_http_requests_refused_total counts what the app never sees (the HTTP
    stack bounds every head's lines, handshakes included, before a WebSocket exists)."""
    before = stack_refused(server, code)
    raw_handshake(server, target, header)
    assert stack_refused(server, code) == before + 1


def test_the_protocol_options_pickle_for_worker_processes() -> None:
    """``--workers`` sends uvicorn's config to spawned processes: the limits go along."""
    settings = make_settings(control_max_frames_per_second=7.0, control_send_timeout_seconds=3.0)
    options = uvicorn_websocket_options(settings)
    factory = pickle.loads(pickle.dumps(options["ws"]))  # noqa: S301 - our own bytes
    assert factory.keywords["limits"] == StackLimits(3.0, 7.0, 28.0)
    assert options["ws_max_size"] == 2 * settings.control_max_frame_bytes


def test_the_stack_tells_the_app_that_blocked_sends_are_bounded() -> None:
    """Each WebSocket scope carries the send timeout after which the stack drops the
    peer, so the control connection arms no timer of its own per send."""
    from starlette.applications import Starlette
    from starlette.routing import WebSocketRoute
    from starlette.websockets import WebSocket

    from orchestrator.control.options import BOUNDED_SENDS_EXTENSION
    from tests.uvicorn_thread import ThreadedServer

    async def report(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_json(websocket.scope["extensions"].get(BOUNDED_SENDS_EXTENSION))
        await websocket.close()

    app = Starlette(routes=[WebSocketRoute("/report", report)])
    with ThreadedServer(app) as server, connect(f"{server.ws_base_url}/report") as client:
        assert json.loads(client.recv(timeout=5)) == {
            "timeout_seconds": StackLimits().send_timeout_seconds
        }


def test_an_accepted_socket_keeps_no_handshake_request_or_response() -> None:
    """Once the 101 is written, the handshake's request and response (headers and all)
    are let go, so thousands of live sockets do not keep them for the collector to walk."""
    from starlette.applications import Starlette
    from starlette.routing import WebSocketRoute
    from starlette.websockets import WebSocket

    from orchestrator.server.websocket import BoundedWebSocketProtocol
    from tests.uvicorn_thread import ThreadedServer

    async def hold(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("accepted")
        await websocket.receive_text()
        await websocket.close()

    app = Starlette(routes=[WebSocketRoute("/hold", hold)])
    with ThreadedServer(app) as server, connect(f"{server.ws_base_url}/hold") as client:
        assert client.recv(timeout=5) == "accepted"
        protocols = [
            connection
            for connection in server.server.server_state.connections
            if isinstance(connection, BoundedWebSocketProtocol)
        ]
        assert len(protocols) == 1
        assert protocols[0].request is None and protocols[0].response is None
        client.send("done")


def test_a_peer_the_stack_drops_is_marked_as_dropped_by_the_server() -> None:
    """When the stack drops a peer that stopped reading, the app learns that the
    disconnect was the server's (the conversation ends as closed_by_server), not
    a close the peer chose."""
    import asyncio

    from starlette.applications import Starlette
    from starlette.routing import WebSocketRoute
    from starlette.websockets import WebSocket, WebSocketDisconnect

    from orchestrator.control.options import BOUNDED_SENDS_EXTENSION
    from tests.uvicorn_thread import ThreadedServer

    marks: list[object] = []

    async def flood(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            while True:
                await websocket.send_text("x" * 60_000)
        except (WebSocketDisconnect, OSError, RuntimeError):
            pass
        await asyncio.sleep(0)
        marks.append(websocket.scope["extensions"][BOUNDED_SENDS_EXTENSION].get("dropped"))

    app = Starlette(routes=[WebSocketRoute("/flood", flood)])
    app.state.settings = make_settings(control_send_timeout_seconds=1.0)
    with ThreadedServer(app) as server:
        _protocol, sock = open_raw_socket(f"{server.ws_base_url}/flood", rcvbuf=4096)
        try:
            deadline = time.monotonic() + 15
            while not marks and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            sock.close()
    assert marks == [True]


def test_a_connection_lost_before_the_accept_is_marked_lost_for_the_app() -> None:
    """A host that sends its upgrade and leaves before the app answers: the app,
    still before its accept, can see that it left (a handshake that waited for
    its pass skips its work for it)."""
    import asyncio

    from starlette.applications import Starlette
    from starlette.routing import WebSocketRoute
    from starlette.websockets import WebSocket

    from orchestrator.control.options import BOUNDED_SENDS_EXTENSION
    from tests.uvicorn_thread import ThreadedServer

    marks: list[object] = []

    async def wait_for_the_host_to_leave(websocket: WebSocket) -> None:
        bounded = websocket.scope["extensions"][BOUNDED_SENDS_EXTENSION]
        for _ in range(500):
            if bounded.get("lost"):
                break
            await asyncio.sleep(0.01)
        marks.append(bounded.get("lost"))

    app = Starlette(routes=[WebSocketRoute("/slow", wait_for_the_host_to_leave)])
    with ThreadedServer(app) as server:
        host, port = server.base_url.removeprefix("http://").rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            sock.sendall(
                f"GET /slow HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n".encode()
            )
            time.sleep(0.2)  # the app is running (waiting) by now
        deadline = time.monotonic() + 10
        while not marks and time.monotonic() < deadline:
            time.sleep(0.05)
    assert marks == [True]

"""Request heads through a real ``orchestrator serve``: an oversize head is answered at
once (414/431, JSON), is not read to its end nor kept in memory, is counted, and does
not hold up other clients; heads within the bounds are served as before."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from orchestrator.server.heads import HEAD_BYTES, HEAD_LINE_BYTES, MAX_HEADERS
from tests.conftest import random_secret
from tests.live_server import LiveServer
from tests.metrics_text import stack_refused

pytestmark = pytest.mark.server

MIB = 1024 * 1024
CHUNK = b"a" * 65536


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    env = {"JWT_PUBLIC_KEY": "heads-key", "JWT_PRIVATE_KEY": random_secret()}
    with LiveServer(env) as live:
        yield live


def rss_bytes(server: LiveServer) -> int:
    assert server.process is not None
    status = Path(f"/proc/{server.process.pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


class Answer:
    """What a raw request got back: status line, JSON body, seconds to the answer,
    and how many bytes of the request the client managed to send."""

    status: str = ""
    body: dict[str, str] | None = None
    seconds: float = 0.0
    sent: int = 0


def send_head(server: LiveServer, start: bytes, filler: int = 0, end: bytes = b"") -> Answer:
    """Send ``start``, ``filler`` bytes of ``a``, then ``end``, from a thread, while
    reading the answer; stops sending when the server stops taking bytes."""
    answer = Answer()
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)

    def push() -> None:
        try:
            sock.sendall(start)
            answer.sent = len(start)
            left = filler
            while left > 0:
                piece = CHUNK[: min(left, len(CHUNK))]
                sock.sendall(piece)
                answer.sent += len(piece)
                left -= len(piece)
            sock.sendall(end)
        except OSError:
            pass  # the server closed the connection (as it should, past the bound)

    sender = threading.Thread(target=push, daemon=True)
    started = time.monotonic()
    sender.start()
    try:
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(65536)
            assert chunk, f"closed without an answer after {answer.sent} bytes: {received!r}"
            received += chunk
        answer.seconds = time.monotonic() - started
        head, _, body = received.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        answer.status = lines[0].decode()
        length = next(
            int(line.split(b":")[1])
            for line in lines
            if line.lower().startswith(b"content-length:")
        )
        while len(body) < length:
            chunk = sock.recv(65536)
            assert chunk, "closed in the middle of the body"
            body += chunk
        answer.body = json.loads(body)
    finally:
        sock.close()
        sender.join(timeout=15)
    return answer


def big_header(server: LiveServer, size: int) -> Answer:
    start = f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nX-Big: ".encode()
    return send_head(server, start, size, b"\r\n\r\n")


def test_an_8_mib_header_gets_431_at_once(server: LiveServer) -> None:
    answer = big_header(server, 8 * MIB)
    assert answer.status.startswith("HTTP/1.1 431")
    assert answer.body == {
        "error": "headers_too_large",
        "detail": f"the request head is over {HEAD_BYTES} bytes",
    }
    assert answer.seconds < 5


def test_an_oversize_head_is_not_read_to_its_end(server: LiveServer) -> None:
    """The server stops reading at the bound: what a client gets in is the bound plus the
    kernel's socket buffers (a few MiB on loopback), not the 64 MiB it tries to send."""
    answer = big_header(server, 64 * MIB)
    assert answer.status.startswith("HTTP/1.1 431")
    assert answer.sent < 16 * MIB, f"{answer.sent / MIB:.1f} MiB sent"


def test_oversize_heads_take_no_memory(server: LiveServer) -> None:
    """20 clients sending 8 MiB headers at once: without a bound the server gathered each
    header (its RSS peaked hundreds of MiB up; the review saw 267 MiB kept after they
    closed). Now neither the peak nor what remains grows by more than a few MiB."""
    assert httpx.get(server.base_url + "/healthz", timeout=10).status_code == 200
    baseline = peak = rss_bytes(server)
    answers: list[Answer] = []
    senders = [
        threading.Thread(target=lambda: answers.append(big_header(server, 8 * MIB)))
        for _ in range(20)
    ]
    for sender in senders:
        sender.start()
    deadline = time.monotonic() + 60
    while any(sender.is_alive() for sender in senders) and time.monotonic() < deadline:
        peak = max(peak, rss_bytes(server))
        time.sleep(0.005)
    for sender in senders:
        sender.join(timeout=60)
    assert httpx.get(server.base_url + "/healthz", timeout=10).status_code == 200
    kept = rss_bytes(server) - baseline
    assert (peak - baseline) < 16 * MIB, f"RSS peaked {(peak - baseline) / MIB:.1f} MiB up"
    assert kept < 8 * MIB, f"RSS kept {kept / MIB:.1f} MiB"
    assert {a.status for a in answers} == {"HTTP/1.1 431 Request Header Fields Too Large"}


def test_a_bystander_is_answered_while_oversize_heads_arrive(server: LiveServer) -> None:
    """Four clients sending 128 MiB headers (which stalled the server for ~9 s) do not
    hold up another client's /healthz."""
    answers: list[Answer] = []
    senders = [
        threading.Thread(target=lambda: answers.append(big_header(server, 128 * MIB)))
        for _ in range(4)
    ]
    for sender in senders:
        sender.start()
    slowest = 0.0
    try:
        time.sleep(0.1)  # they are sending
        deadline = time.monotonic() + 60
        while any(sender.is_alive() for sender in senders) and time.monotonic() < deadline:
            started = time.monotonic()
            assert httpx.get(server.base_url + "/healthz", timeout=60).status_code == 200
            slowest = max(slowest, time.monotonic() - started)
            time.sleep(0.05)
    finally:
        for sender in senders:
            sender.join(timeout=60)
    assert slowest < 2, f"the bystander waited {slowest:.1f} s"
    assert [a.status[:12] for a in answers] == ["HTTP/1.1 431"] * 4


def test_a_url_over_the_line_bound_gets_414_and_is_counted(server: LiveServer) -> None:
    before = stack_refused(server, "request_line_too_long")
    answer = send_head(server, b"GET /healthz?q=", 64 * MIB, b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.status.startswith("HTTP/1.1 414")
    assert answer.body == {
        "error": "request_line_too_long",
        "detail": f"the request line is over {HEAD_LINE_BYTES} bytes",
    }
    assert answer.sent < 16 * MIB
    assert stack_refused(server, "request_line_too_long") == before + 1


@pytest.mark.parametrize(
    "headers",
    [
        "X-Long: " + "a" * HEAD_LINE_BYTES + "\r\n",
        "".join(f"X-{n}: {n}\r\n" for n in range(MAX_HEADERS + 1)),
        "".join(f"X-{n}: {'a' * 8000}\r\n" for n in range(HEAD_BYTES // 8000 + 1)),
    ],
    ids=["one-long-line", "too-many", "too-large-in-all"],
)
def test_a_head_over_a_bound_gets_431_and_is_counted(server: LiveServer, headers: str) -> None:
    before = stack_refused(server, "headers_too_large")
    answer = send_head(server, f"GET /healthz HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode())
    assert answer.status.startswith("HTTP/1.1 431")
    assert answer.body is not None
    assert answer.body["error"] == "headers_too_large"
    assert stack_refused(server, "headers_too_large") == before + 1
    assert "request head refused" in server.log_text


def test_heads_within_the_bounds_are_served_on_one_connection(server: LiveServer) -> None:
    """Each request on a kept-alive connection has its own bound: five heads of ~48 KiB
    (lines just under 16 KiB) are all served, as are 100 headers."""
    near_line = "a" * (HEAD_LINE_BYTES - 100)
    headers = {f"x-{n}": near_line for n in range(3)}
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        for _ in range(5):
            assert client.get("/healthz", headers=headers).status_code == 200
        many = {f"x-{n}": str(n) for n in range(100)}
        assert client.get("/healthz", headers=many).status_code == 200
        url = "/healthz?q=" + "a" * (HEAD_LINE_BYTES - 100)
        assert client.get(url).status_code == 200


# --- a head that never comes, or comes a byte at a time (slowloris) -------------------------


@pytest.fixture(scope="module")
def impatient_server() -> Iterator[LiveServer]:
    env = {
        "JWT_PUBLIC_KEY": "heads-key",
        "JWT_PRIVATE_KEY": random_secret(),
        "HTTP_HEAD_TIMEOUT_SECONDS": "1",
    }
    with LiveServer(env) as live:
        yield live


def read_until_closed(sock: socket.socket, within: float) -> bytes:
    """Everything the server sends until it closes (or ``within`` seconds pass)."""
    sock.settimeout(within)
    received = b""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        except ConnectionResetError:
            break
        if not chunk:
            break
        received += chunk
    return received


def test_a_connection_that_sends_no_head_is_answered_408_and_closed(
    impatient_server: LiveServer,
) -> None:
    """Before, an idle new connection was held for ever: enough of them reach the fd limit."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", impatient_server.port), timeout=10) as sock:
        received = read_until_closed(sock, within=8)
    assert received.startswith(b"HTTP/1.1 408 "), received[:80]
    assert json.loads(received.split(b"\r\n\r\n", 1)[1])["error"] == "head_timeout"
    assert time.monotonic() - started < 6


def test_a_head_trickled_a_byte_at_a_time_is_cut_off_at_the_timeout(
    impatient_server: LiveServer,
) -> None:
    """Each byte used to reset uvicorn's keep-alive timer; the head's own clock does not."""
    stop = threading.Event()
    with socket.create_connection(("127.0.0.1", impatient_server.port), timeout=10) as sock:

        def trickle() -> None:
            for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 400:
                if stop.wait(0.1):
                    return
                try:
                    sock.send(bytes([byte]))
                except OSError:
                    return

        sender = threading.Thread(target=trickle, daemon=True)
        started = time.monotonic()
        sender.start()
        received = read_until_closed(sock, within=10)
        stop.set()
        sender.join(timeout=5)
    assert received.startswith(b"HTTP/1.1 408 "), received[:80]
    assert time.monotonic() - started < 6
    assert stack_refused(impatient_server, "head_timeout") >= 1


def test_a_kept_alive_connection_is_served_after_a_pause_shorter_than_keep_alive(
    impatient_server: LiveServer,
) -> None:
    """The head timeout starts at a head's first byte, not at the previous request."""
    with httpx.Client(base_url=impatient_server.base_url, timeout=10) as client:
        assert client.get("/healthz").status_code == 200
        time.sleep(1.5)  # past the head timeout, within uvicorn's 5 s keep-alive
        assert client.get("/healthz").status_code == 200

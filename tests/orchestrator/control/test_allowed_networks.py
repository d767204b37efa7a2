"""Who may open (and take over) a control socket by address, through a real server:
CONTROL_ALLOWED_NETWORKS checked against the address TRUSTED_PROXY_HOPS resolves, and
a live session's socket replaced only from where it is held (or any allowed network)."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from orchestrator.config import Settings, SettingsError
from tests.conftest import random_secret
from tests.live_server import LiveServer
from tests.metrics_text import control_refused
from tests.orchestrator.control_helpers import say

pytestmark = pytest.mark.server

PROXY = ["--trusted-proxy-hops", "1"]


def serve(extra_args: tuple[str, ...] = (), /, **env: str) -> LiveServer:
    return LiveServer(
        {"JWT_PUBLIC_KEY": "net-key", "JWT_PRIVATE_KEY": random_secret(), **env},
        extra_args=extra_args,
    )


def token(server: LiveServer) -> str:
    jwt: str = httpx.get(server.base_url + "/api/jwt", timeout=10).json()["jwt"]
    return jwt


def open_control(
    server: LiveServer, jwt: str, forwarded_for: str | None = None
) -> ClientConnection:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for is not None else None
    return connect(
        f"{server.ws_url}?access_token={jwt}", additional_headers=headers, open_timeout=10
    )


def refusal(server: LiveServer, jwt: str, forwarded_for: str | None = None) -> tuple[int, str]:
    with pytest.raises(InvalidStatus) as denied:
        open_control(server, jwt, forwarded_for)
    response = denied.value.response
    return response.status_code, json.loads(response.body or b"{}")["error"]


def answers(ws: ClientConnection, text: str) -> str:
    ws.send(say(text))
    deadline = time.monotonic() + 10
    while True:
        message = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
        if message["name"] == "conversationResponse":
            reply: str = message["body"]["output"]["text"]
            return reply


def assert_replaced(old: ClientConnection, new: ClientConnection) -> None:
    """``old`` is closed as replaced (4001) and ``new`` carries the conversation on."""
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            old.recv(timeout=10)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4001
    assert answers(new, "two") == "You said: two"


def test_a_loopback_client_outside_the_allowed_networks_is_refused_with_its_token() -> None:
    with serve(CONTROL_ALLOWED_NETWORKS="10.0.0.0/8") as server:
        assert refusal(server, token(server)) == (403, "network_not_allowed")
        assert control_refused(server, "network_not_allowed") == 1
        server.stop()
    line = next(
        json_line
        for json_line in server.log_text.splitlines()
        if "control handshake refused" in json_line
    )
    assert "network_not_allowed" in line
    assert "127.0.0.1" in line


def test_a_client_inside_the_allowed_networks_converses() -> None:
    with (
        serve(CONTROL_ALLOWED_NETWORKS="192.0.2.0/24,127.0.0.0/8") as server,
        open_control(server, token(server)) as ws,
    ):
        assert answers(ws, "hello") == "You said: hello"


def test_behind_a_proxy_the_resolved_address_is_the_one_checked() -> None:
    """With TRUSTED_PROXY_HOPS=1 the entry the proxy appended decides, not the peer
    (loopback here) nor an entry the client wrote to its left."""
    with serve(tuple(PROXY), CONTROL_ALLOWED_NETWORKS="10.0.0.0/8") as server:
        with open_control(server, token(server), "10.1.2.3") as ws:
            assert answers(ws, "via the proxy") == "You said: via the proxy"
        assert refusal(server, token(server), "192.0.2.7") == (403, "network_not_allowed")
        # The client wrote 10.1.2.3 itself; the proxy appended the peer it saw.
        assert refusal(server, token(server), "10.1.2.3, 192.0.2.7") == (
            403,
            "network_not_allowed",
        )


def test_without_networks_a_live_socket_is_replaced_only_from_its_own_address() -> None:
    """The page's token is the video host's: from another address it cannot close the
    live socket (409); from the holder's address the newest socket still wins."""
    with serve(tuple(PROXY)) as server:
        jwt = token(server)
        with open_control(server, jwt, "198.51.100.10") as host:
            assert answers(host, "one") == "You said: one"
            assert refusal(server, jwt, "203.0.113.66") == (409, "session_in_use")
            assert control_refused(server, "session_in_use") == 1
            assert answers(host, "still here") == "You said: still here"
            with open_control(server, jwt, "198.51.100.10") as again:
                assert_replaced(host, again)
        # Once the session's socket is gone, another address may open it.
        with open_control(server, jwt, "203.0.113.66") as other:
            assert answers(other, "three") == "You said: three"


def test_with_networks_any_allowed_address_may_take_a_session_over() -> None:
    """A video host reconnecting from another egress address is never held back."""
    with serve(tuple(PROXY), CONTROL_ALLOWED_NETWORKS="198.51.100.0/24") as server:
        jwt = token(server)
        with open_control(server, jwt, "198.51.100.10") as host:
            assert answers(host, "one") == "You said: one"
            with open_control(server, jwt, "198.51.100.20") as again:
                assert_replaced(host, again)


def test_production_without_networks_starts_with_a_warning() -> None:
    env = {
        "ORCHESTRATOR_ENV": "production",
        "SESSION_SERVER": "dh.soulmachines.cloud",
        "PUBLIC_URL": "https://orch.example.test",
    }
    with serve(**env) as server:
        server.stop()
    assert "CONTROL_ALLOWED_NETWORKS is not set" in server.log_text
    with serve(**env, CONTROL_ALLOWED_NETWORKS="198.51.100.0/24") as server:
        server.stop()
    assert "CONTROL_ALLOWED_NETWORKS is not set" not in server.log_text


@pytest.mark.parametrize("value", ["10.0.0.1/8", "not-a-network", "10.0.0.0/33"])
def test_a_value_that_is_not_a_network_is_a_configuration_error(value: str) -> None:
    with pytest.raises(SettingsError, match=r"^CONTROL_ALLOWED_NETWORKS: "):
        Settings.from_env({"CONTROL_ALLOWED_NETWORKS": value}, env_file=None)

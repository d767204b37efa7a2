"""A WebSocket client driven frame by frame (websockets' sans-I/O protocol over a
plain socket), for tests that decide when, or whether, the client reads."""

from __future__ import annotations

import socket

from websockets.client import ClientProtocol
from websockets.protocol import State
from websockets.uri import parse_uri


def open_raw_socket(url: str, *, rcvbuf: int | None = None) -> tuple[ClientProtocol, socket.socket]:
    """The handshake done, nothing read after it (``rcvbuf`` shrinks our receive buffer)."""
    uri = parse_uri(url)
    protocol = ClientProtocol(uri)
    sock = socket.create_connection((uri.host, uri.port), timeout=5)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    protocol.send_request(protocol.connect())
    sock.sendall(b"".join(protocol.data_to_send()))
    while protocol.state is not State.OPEN:
        protocol.receive_data(sock.recv(65536))
        assert protocol.handshake_exc is None
    return protocol, sock

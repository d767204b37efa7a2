"""orchestrator.control.endpoint.ControlSocketRoutes: the control socket served
ahead of the HTTP middleware, everything else passed on unchanged."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket, WebSocketDisconnect

from orchestrator.control.endpoint import ControlSocketRoutes, WebSocketHandler, route_path


async def control(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text("control")
    await websocket.close()


async def routed(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text("router")
    await websocket.close()


def app_with(routes: dict[str, WebSocketHandler]) -> Starlette:
    return Starlette(
        routes=[
            Route("/ws", lambda _request: PlainTextResponse("http")),
            WebSocketRoute("/other", routed),
        ],
        middleware=[Middleware(ControlSocketRoutes, routes=routes)],
    )


def test_a_control_path_is_served_ahead_and_other_sockets_reach_the_router() -> None:
    """WebSocket scopes at the control paths go to their handler; any other scope,
    an HTTP request to the same path included, goes on to the app."""
    with TestClient(app_with({"/ws": control})) as client:
        with client.websocket_connect("/ws") as websocket:
            assert websocket.receive_text() == "control"
        with client.websocket_connect("/other") as websocket:
            assert websocket.receive_text() == "router"
        assert client.get("/ws").text == "http"
        with pytest.raises(WebSocketDisconnect), client.websocket_connect("/nowhere"):
            pass


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        ({"path": "/ws"}, "/ws"),
        ({"path": "/prefix/ws", "root_path": "/prefix"}, "/ws"),
        ({"path": "/prefix", "root_path": "/prefix"}, ""),
        ({"path": "/prefixed/ws", "root_path": "/prefix"}, "/prefixed/ws"),
        ({"path": "/ws", "root_path": "/prefix"}, "/ws"),
    ],
)
def test_paths_are_matched_below_the_root_path_as_starlettes_router_does(
    scope: dict[str, Any], expected: str
) -> None:
    """``--root-path`` deployments: the part below it is what the routes name."""
    assert route_path(scope) == expected

"""The WebSocket route that ``sm-control`` names: authenticate, correlate, converse."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from orchestrator.control.admission import HandshakeAdmission
from orchestrator.control.connection import (
    ControlConnection,
    ControlServices,
    bounded_sends,
    logs_enabled_for,
)
from orchestrator.control.conversation import LOGGER_NAME
from orchestrator.control.handshake import (
    ControlAuthenticator,
    ControlIdentity,
    ControlRefused,
    session_from_claims,
)
from orchestrator.handlers import END_SHUTDOWN
from orchestrator.logs import get_logger
from orchestrator.sessions.model import Session
from orchestrator.sessions.store import StoreUnavailable
from tokens.web.http import error_response

log = get_logger(LOGGER_NAME)

ANONYMOUS_ISSUER = "anonymous"
ANONYMOUS_TTL_SECONDS = 3600


class ControlEndpoint:
    """One instance serves every control socket; route it as ``endpoint.handle``."""

    def __init__(
        self,
        authenticator: ControlAuthenticator,
        services: ControlServices,
        admission: HandshakeAdmission | None = None,
    ) -> None:
        self.authenticator = authenticator
        self.services = services
        self.admission = admission or HandshakeAdmission(0)

    async def handle(self, websocket: WebSocket) -> None:
        client = websocket.client.host if websocket.client else None
        await self.admission.enter()  # a connect storm waits its turn, live sockets do not
        if connection_lost(websocket):
            return  # the host left while it waited: no token, no session, no accept
        try:
            identity = await self.authenticator.identify(websocket)
            self._check_replacement(identity, client)
        except ControlRefused as refusal:
            log.warning(
                "control handshake refused",
                reason=refusal.code,
                detail=refusal.detail,
                client=client,
            )
            if self.services.metrics is not None:
                self.services.metrics.tokens_refused.labels("control", refusal.code).inc()
            await self._deny(websocket, refusal)
            return
        session = await self._session_for(identity)
        await websocket.accept()
        connection = ControlConnection(
            websocket, session, self.services, verified=identity.claims is not None
        )
        # Connected before the live registry names it; saved and announced after.
        connected = connection.core.connected(identity.source)
        try:
            await self.services.live.attach(connection)
            if logs_enabled_for(logging.INFO):  # a storm of handshakes skips it cheaply
                connection.log.info(
                    "control socket connected", source=identity.source, client=client
                )
            await connection.perform(connected)
            connection.turns.start()
            await connection.run()
        finally:
            if await self.services.live.detach(connection):
                await connection.perform(connection.core.ended())
                await connection.finish()
                if self.services.archive is not None:  # not replaced: this is its end
                    # uvicorn closes the sockets (1012) before the lifespan's shutdown
                    # tells the archive: the connection knows why it ended.
                    shutdown = connection.end_reason == END_SHUTDOWN
                    self.services.archive.session_ended(
                        connection.session, END_SHUTDOWN if shutdown else None
                    )

    def _check_replacement(self, identity: ControlIdentity, client: str | None) -> None:
        """The newest socket for a session wins, but only from where the session is held.

        With ``CONTROL_ALLOWED_NETWORKS`` set, every allowed address is the video
        host's, so any of them may take over (a host reconnecting from another
        egress address is never held back). Without it, a token is all a client
        needs, and the page's token is the video host's: another address may not
        close the live socket by opening its own (409 ``session_in_use``) until it
        ends. Only this process's sockets are seen (one instance, or affinity).
        """
        if self.authenticator.allowed_networks:
            return
        live = self.services.live.get(identity.session_id)
        if live is None:
            return
        holder = live.websocket.client
        if holder is None or holder.host != client:
            raise ControlRefused(
                "session_in_use",
                "this session's control socket is open from another address",
                status=409,
            )

    async def _session_for(self, identity: ControlIdentity) -> Session:
        """The record the handshake read, or a new one (created in the store)."""
        if identity.stored is not None:
            return identity.stored
        if not identity.store_reachable:
            log.warning("session store unreachable; conversing on local state")
        if identity.claims is not None:
            session = session_from_claims(identity.claims)
        else:
            session = Session(
                id=identity.session_id,
                issuer=ANONYMOUS_ISSUER,
                expires_at=int(time.time()) + ANONYMOUS_TTL_SECONDS,
            )
        try:
            await self.services.store.create(session)
        except StoreUnavailable:
            log.warning("session not recorded: store unreachable", session_id=session.id)
        return session

    @staticmethod
    async def _deny(websocket: WebSocket, refusal: ControlRefused) -> None:
        if "websocket.http.response" in websocket.scope.get("extensions", {}):
            denial = error_response(refusal.status, refusal.code, refusal.detail, refusal.headers)
            await websocket.send_denial_response(denial)
        else:
            await websocket.close(1008)


WebSocketHandler = Callable[[WebSocket], Awaitable[None]]


class ControlSocketRoutes:
    """ASGI middleware serving the control socket's paths ahead of the rest.

    The HTTP middleware after it (CORS, the token routes' limiter) and the
    router's exception wrapper only pass WebSocket scopes along, yet each layer
    stays on every live socket's stack and wraps every frame it sends; a
    connect storm pays for them thousands of times. Put it after the
    forwarded-headers middleware (the client's address must be set first).
    """

    def __init__(self, app: ASGIApp, *, routes: dict[str, WebSocketHandler]) -> None:
        self.app = app
        self.routes = routes  # path (below root_path) -> handler; may grow until served

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            handler = self.routes.get(route_path(scope))
            if handler is not None:
                await handler(WebSocket(scope, receive, send))
                return
        await self.app(scope, receive, send)


def connection_lost(websocket: WebSocket) -> bool:
    """Whether our WebSocket stack saw the connection go (``False`` when unknown)."""
    bounded = bounded_sends(websocket)
    return bounded is not None and bounded.get("lost") is True


def route_path(scope: Scope) -> str:
    """The path below ``root_path``, as Starlette's router matches it."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        return path[len(root) :]
    return path

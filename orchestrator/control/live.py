"""This process's live control sockets by session id, and the registry other instances read."""

from __future__ import annotations

import asyncio
from typing import Any, Generic, Protocol, TypeVar

from orchestrator.control.options import CLOSE_REPLACED
from orchestrator.logs import error_reason
from orchestrator.sessions.model import Session


class Live(Protocol):
    """What this registry needs of a live socket (``ControlConnection``, which
    imports this module: the protocol keeps the imports one way)."""

    @property
    def id(self) -> str: ...

    @property
    def session(self) -> Session: ...

    @property
    def log(self) -> Any: ...

    async def close(self, code: int, reason: str) -> None: ...


C = TypeVar("C", bound=Live)
C_contra = TypeVar("C_contra", bound=Live, contravariant=True)


class LiveRegistry(Protocol[C_contra]):
    """Where other instances learn which one holds a session's socket."""

    async def claim(self, connection: C_contra) -> None: ...

    async def release(self, connection: C_contra) -> None: ...


class LiveConnections(Generic[C]):
    """This process's live control sockets by session id; the newest wins."""

    def __init__(self, registry: LiveRegistry[C] | None = None) -> None:
        self._connections: dict[str, C] = {}
        self.registry = registry

    def __len__(self) -> int:
        return len(self._connections)

    def get(self, session_id: str) -> C | None:
        return self._connections.get(session_id)

    async def attach(self, connection: C) -> None:
        previous = self._connections.get(connection.session.id)
        self._connections[connection.session.id] = connection
        if previous is not None and previous is not connection:
            previous.log.info("replaced by a newer connection", code=CLOSE_REPLACED)
            await previous.close(CLOSE_REPLACED, "replaced by a newer connection")
        if self.registry is not None:
            try:
                await self.registry.claim(connection)
            except Exception as exc:  # the socket works without the registry
                connection.log.warning("live registry not updated", error=error_reason(exc))

    async def evict(self, session_id: str, connection_id: str | None = None) -> bool:
        """Close this process's socket for a session another instance took over
        (only connection ``connection_id`` when given, never a newer one).

        The entry goes first, so the closing endpoint does not record the
        session as ended, and the registry key (now the new holder's) stays.
        """
        connection = self._connections.get(session_id)
        if connection is None or connection_id not in (None, connection.id):
            return False
        del self._connections[session_id]
        connection.log.info("taken over by another instance", code=CLOSE_REPLACED)
        await connection.close(CLOSE_REPLACED, "replaced by a newer connection")
        return True

    async def detach(self, connection: C) -> bool:
        """Forget ``connection``; ``False`` when a newer one already took its place."""
        if self._connections.get(connection.session.id) is not connection:
            return False
        del self._connections[connection.session.id]
        if self.registry is not None:
            try:
                await self.registry.release(connection)
            except Exception as exc:
                connection.log.warning("live registry not updated", error=error_reason(exc))
        return True

    def all(self) -> list[C]:
        return list(self._connections.values())

    async def close_all(self, code: int, reason: str) -> None:
        await asyncio.gather(*(c.close(code, reason) for c in self.all()), return_exceptions=True)

"""Session stores: where session records live.

The memory store is the embedded default (one process, no external service).
Every store keeps a record until its token expires (or, for a conversation that
outlived its token, until it ends) plus a grace period, then forgets it, so the
API answers 404 for expired sessions.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from .sessions import Session

DEFAULT_GRACE_SECONDS = 15 * 60


class SessionStore(Protocol):
    """The interface every backend implements (all methods are async)."""

    async def create(self, session: Session) -> None:
        """Record a new session (when its token is issued)."""

    async def get(self, session_id: str) -> Session | None:
        """The session, or ``None`` if unknown or expired."""

    async def save(self, session: Session) -> None:
        """Persist the session's current state."""

    async def delete(self, session_id: str) -> None:
        """Forget the session."""

    async def list(self) -> list[Session]:
        """Every session that has not expired."""

    async def close(self) -> None:
        """Release connections."""


class MemoryStore:
    """Sessions in a dict of this process; expired ones are swept lazily."""

    def __init__(
        self, *, grace_seconds: int = DEFAULT_GRACE_SECONDS, clock: Callable[[], float] = time.time
    ) -> None:
        self._sessions: dict[str, Session] = {}
        self.grace_seconds = grace_seconds
        self.clock = clock
        self._next_sweep = 0.0

    def _expired(self, session: Session, now: float) -> bool:
        until = session.retained_until(self.grace_seconds)
        return until is not None and now >= until

    def _sweep(self) -> None:
        now = self.clock()
        if now < self._next_sweep:
            return
        self._next_sweep = now + 30
        for session_id in [s.id for s in self._sessions.values() if self._expired(s, now)]:
            del self._sessions[session_id]

    async def create(self, session: Session) -> None:
        self._sweep()
        self._sessions[session.id] = session

    async def get(self, session_id: str) -> Session | None:
        session = self._sessions.get(session_id)
        if session is not None and self._expired(session, self.clock()):
            del self._sessions[session_id]
            return None
        return session

    async def save(self, session: Session) -> None:
        self._sessions[session.id] = session

    async def delete(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)

    async def list(self) -> list[Session]:
        self._sweep()
        now = self.clock()
        return [s for s in self._sessions.values() if not self._expired(s, now)]

    async def close(self) -> None:
        """Nothing to release; the records stay readable until the process ends."""


class StoreUnavailable(Exception):
    """The shared store cannot be reached (the API answers 503)."""

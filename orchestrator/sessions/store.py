"""Session stores: where session records live.

The memory store is the embedded default (one process, no external service).
Every store keeps a record until its token expires (or, for a conversation that
outlived its token, until it ends) plus a grace period, then forgets it, so the
API answers 404 for expired sessions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from orchestrator.sessions.model import Session

DEFAULT_GRACE_SECONDS = 15 * 60


class SessionStore(Protocol):
    """The interface every backend implements (all methods are async)."""

    async def create(self, session: Session) -> None:
        """Record a new session (when its token is issued)."""

    async def create_issued(
        self, session_id: str, *, issuer: str, expires_at: int, claims: Mapping[str, Any]
    ) -> None:
        """Record the session of a token issued just now, as
        ``create(Session(id=session_id, issuer=..., expires_at=..., claims=dict(claims)))``
        (``claims`` is read, not kept).

        Its own method because the token endpoint makes one per request and the
        caller keeps no reference to it, so a store may hold it compactly until
        it is first read (most are never connected).
        """

    async def get(self, session_id: str) -> Session | None:
        """The session, or ``None`` if unknown or expired."""

    async def save(self, session: Session) -> None:
        """Persist the session's current state."""

    async def delete(self, session_id: str) -> None:
        """Forget the session."""

    async def list(self) -> list[Session]:
        """Every session that has not expired, in no promised order. They may be
        copies: change a session through ``get`` and ``save``."""

    async def close(self) -> None:
        """Release connections."""


class StoreUnavailable(Exception):
    """The shared store cannot be reached (the API answers 503)."""

"""The embedded session store: records in this process's memory (no external service)."""

from __future__ import annotations

import heapq
import json
import time
from collections.abc import Callable, Mapping
from typing import Any

from orchestrator.sessions.model import Session
from orchestrator.sessions.store import DEFAULT_GRACE_SECONDS

# A session recorded by ``create_issued`` and not read since: (issuer,
# expires_at, created_at[, claims as compact JSON]). Plain values only: a
# tuple holding a dict stays tracked by the garbage collector whatever the
# dict holds. The claims stay text because parsed they cost up to ~25 times
# their JSON (4 KiB of ``[{},{},...]`` is ~100 KiB of dicts), and anyone may
# have a token issued with them.
_IssuedRecord = tuple[Any, ...]


class MemoryStore:
    """Sessions in dicts of this process; expired ones are swept lazily.

    A session recorded by ``create_issued`` stays a small tuple until it is
    first read (its custom claims as their JSON text). The cyclic garbage
    collector stops tracking such a tuple once it has seen it (its fields are
    plain values), so a token endpoint's thousands of unconnected sessions do
    not lengthen every full collection, a pause each live conversation feels.
    Those records expire off a heap (O(log n) each) instead of the periodic
    walk, which only visits the sessions that have been read.
    """

    def __init__(
        self, *, grace_seconds: int = DEFAULT_GRACE_SECONDS, clock: Callable[[], float] = time.time
    ) -> None:
        self._sessions: dict[str, Session] = {}
        self._issued: dict[str, _IssuedRecord] = {}
        # (when to look at it, session id) for each ``_issued`` record: when it is
        # to be forgotten (if the grace period was shortened since it was made,
        # when it was to be; reads hide it from its real time on).
        self._issued_expiry: list[tuple[float, str]] = []
        self.grace_seconds = grace_seconds
        self.clock = clock
        self._next_sweep = 0.0

    def _expired(self, session: Session, now: float) -> bool:
        until = session.retained_until(self.grace_seconds)
        return until is not None and now >= until

    def _sweep(self) -> float:
        """Forget expired records; returns the time it swept at."""
        now = self.clock()
        expiry = self._issued_expiry
        while expiry and expiry[0][0] <= now:
            _, session_id = heapq.heappop(expiry)
            record = self._issued.get(session_id)
            if record is None:
                continue  # read, saved or deleted since
            forget_at = record[1] + self.grace_seconds
            if forget_at <= now:
                del self._issued[session_id]
            else:
                # A newer record under this id, or a longer grace period: look again then.
                heapq.heappush(expiry, (forget_at, session_id))
        if now >= self._next_sweep:
            self._next_sweep = now + 30
            for session_id in [s.id for s in self._sessions.values() if self._expired(s, now)]:
                del self._sessions[session_id]
        return now

    async def create(self, session: Session) -> None:
        self._sweep()
        self._issued.pop(session.id, None)
        self._sessions[session.id] = session

    async def create_issued(
        self, session_id: str, *, issuer: str, expires_at: int, claims: Mapping[str, Any]
    ) -> None:
        now = self._sweep()
        self._sessions.pop(session_id, None)
        self._issued[session_id] = (
            (issuer, expires_at, now, json.dumps(claims, separators=(",", ":")))
            if claims
            else (issuer, expires_at, now)
        )
        heapq.heappush(self._issued_expiry, (expires_at + self.grace_seconds, session_id))

    def _unpack(self, session_id: str, record: _IssuedRecord) -> Session:
        issuer, expires_at, created_at, *claims = record
        return Session(
            id=session_id,
            issuer=issuer,
            expires_at=expires_at,
            claims=json.loads(claims[0]) if claims else {},
            created_at=created_at,
        )

    async def get(self, session_id: str) -> Session | None:
        session = self._sessions.get(session_id)
        if session is None:
            record = self._issued.pop(session_id, None)
            if record is None:
                return None
            # Read once, a Session for good: whoever reads it may change it in place.
            session = self._sessions[session_id] = self._unpack(session_id, record)
        if self._expired(session, self.clock()):
            del self._sessions[session_id]
            return None
        return session

    async def save(self, session: Session) -> None:
        self._issued.pop(session.id, None)
        self._sessions[session.id] = session

    async def delete(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)
        self._issued.pop(session_id, None)

    async def list(self) -> list[Session]:
        """Every live record; those never read are listed as fresh copies (left packed)."""
        self._sweep()
        now = self.clock()
        sessions = [s for s in self._sessions.values() if not self._expired(s, now)]
        issued = (self._unpack(i, r) for i, r in self._issued.items())
        sessions.extend(s for s in issued if not self._expired(s, now))
        return sessions

    async def close(self) -> None:
        """Nothing to release; the records stay readable until the process ends."""

"""The server's own outstanding requests on one control socket.

Each request gets a transaction id from a per-session counter; a ``response``
frame resolves it; requests unanswered within the timeout are dropped and
reported. Responses to transactions this server never issued (in via-browser
mode the browser forwards responses to its own requests) match nothing and are
ignored.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from orchestrator.control.protocol import Envelope

DEFAULT_MAX_PENDING = 256


class TransactionCounter:
    """Per-session transaction ids for the server's own requests.

    Ids are strings ``"orch-<n>"`` so they cannot collide with the integer or
    ``"<sceneId>_<n>"`` ids of the browser's requests, whose responses the
    browser forwards in via-browser mode.
    """

    PREFIX = "orch-"

    def __init__(self) -> None:
        self._next = 1

    def next(self) -> str:
        value = f"{self.PREFIX}{self._next}"
        self._next += 1
        return value


@dataclass(slots=True)
class PendingRequest:
    transaction: str
    name: str
    deadline: float
    future: asyncio.Future[Envelope] | None = field(default=None)


class PendingRequests:
    """Outstanding requests keyed by transaction id, bounded in number and time."""

    def __init__(
        self,
        *,
        timeout_seconds: float,
        max_pending: int = DEFAULT_MAX_PENDING,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.timeout_seconds = timeout_seconds
        self.max_pending = max_pending
        self.clock = clock
        self._counter = TransactionCounter()
        self._pending: dict[str, PendingRequest] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def issue(self, name: str, *, await_response: bool = False) -> PendingRequest:
        """A new transaction id for request ``name``; with a future to await if asked."""
        if len(self._pending) >= self.max_pending:
            oldest = next(iter(self._pending))
            self._drop(oldest)
        request = PendingRequest(
            transaction=self._counter.next(),
            name=name,
            deadline=self.clock() + self.timeout_seconds,
            future=asyncio.get_running_loop().create_future() if await_response else None,
        )
        self._pending[request.transaction] = request
        return request

    def resolve(self, response: Envelope) -> PendingRequest | None:
        """Match a ``response`` frame; ``None`` when it answers nothing of ours."""
        if not isinstance(response.transaction, str):
            return None
        request = self._pending.pop(response.transaction, None)
        if request is not None and request.future is not None and not request.future.done():
            request.future.set_result(response)
        return request

    def expire(self) -> list[PendingRequest]:
        """Drop and return the requests whose deadline has passed.

        Every request gets the same timeout from a monotonic clock, so deadlines
        follow issue order (the dict's): the scan stops at the first one still
        running, and a turn costs the same however many requests a peer leaves
        unanswered.
        """
        now = self.clock()
        expired: list[PendingRequest] = []
        for request in self._pending.values():
            if request.deadline > now:
                break
            expired.append(request)
        for request in expired:
            self._drop(request.transaction)
        return expired

    def cancel_all(self) -> None:
        for transaction in list(self._pending):
            self._drop(transaction)

    def _drop(self, transaction: str) -> None:
        request = self._pending.pop(transaction, None)
        if request is not None and request.future is not None and not request.future.done():
            request.future.cancel()

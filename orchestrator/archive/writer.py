"""The archive writer: sessions that end go to a bounded queue, a task writes them.

Nothing on the conversation path waits for the database. While it is away,
a batch is retried with backoff and the queue keeps filling (up to its
bound); with Redis, failed batches go to a Redis list instead, which every
instance drains once its database answers, so a record outlives the
instance that queued it. On graceful shutdown the queue is flushed (or
spilled to Redis); only a full queue with no Redis drops records, counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections import deque
from collections.abc import Callable
from typing import Any, cast

from prometheus_client import CollectorRegistry, Counter, Gauge

from orchestrator.archive.record import (
    END_DISCONNECTED,
    END_SHUTDOWN,
    END_TERMINATED,
    ArchivedSession,
    ClaimPolicy,
)
from orchestrator.archive.store import ArchiveRecordRefused, ArchiveStore, ArchiveUnavailable
from orchestrator.backend.redis_client import redis_client
from orchestrator.logs import error_reason, get_logger
from orchestrator.sessions.model import Session

log = get_logger("orchestrator.archive")

SPILL_KEY = "orchestrator:archive:pending"
BATCH = 100
BACKOFF_FIRST_SECONDS = 0.1
BACKOFF_MAX_SECONDS = 5.0
DRAIN_INTERVAL_SECONDS = 1.0
FLUSH_TIMEOUT_SECONDS = 10.0
PURGE_INTERVAL_SECONDS = 3600.0
DAY_SECONDS = 86400


COUNTERS = (
    ("written", "Ended sessions stored in the archive"),
    ("write_failures", "Archive writes that failed (the database was unreachable); retried"),
    ("spilled", "Ended sessions parked in Redis while the database was away"),
    ("dropped", "Ended sessions not archived: queue full and no Redis to park them"),
    ("refused", "Ended sessions not archived: the database refused their data; set aside"),
)


class ArchiveMetrics:
    """``orchestrator_archive_*`` on the app's registry (``/metrics``)."""

    written: Counter
    write_failures: Counter
    spilled: Counter
    dropped: Counter
    refused: Counter

    def __init__(self, registry: CollectorRegistry | None, queued: Callable[[], int]) -> None:
        registry = registry if registry is not None else CollectorRegistry()
        for name, doc in COUNTERS:
            setattr(self, name, Counter(f"orchestrator_archive_{name}", doc, registry=registry))
        self.queue = Gauge(
            "orchestrator_archive_queue", "Ended sessions waiting to be archived", registry=registry
        )
        self.queue.set_function(lambda: float(queued()))


class ArchiveWriter:
    """``session_ended`` from the conversation side; ``start``/``stop`` from the lifespan."""

    def __init__(
        self,
        store: ArchiveStore,
        *,
        policy: ClaimPolicy | None = None,
        queue_size: int = 10_000,
        retention_days: int = 0,
        purge_interval: float = PURGE_INTERVAL_SECONDS,
        redis_url: str | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.store = store
        self.policy = policy or ClaimPolicy()
        self.queue_size = queue_size
        self.retention_days = retention_days
        self.purge_interval = purge_interval
        self.redis = redis_client(redis_url) if redis_url else None
        self.metrics = ArchiveMetrics(registry, self.queued)
        self._queue: deque[ArchivedSession] = deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()  # set while nothing waits to be written
        self._inflight: list[ArchivedSession] = []
        self._draining: list[ArchivedSession] = []  # taken from Redis, being written
        self._overflow_full = False  # logged once until the overflow has room again
        self._tasks: list[asyncio.Task[None]] = []
        self._migrated = False
        self.available = True
        self.shutting_down = False

    def queued(self) -> int:
        return len(self._queue) + len(self._inflight)

    def status(self) -> dict[str, Any]:
        """For ``/readyz``: whether the database answered last time, and the backlog."""
        return {"status": "ok" if self.available else "unavailable", "queued": self.queued()}

    # --- the conversation side -------------------------------------------------------

    def session_ended(self, session: Session, reason: str | None = None) -> None:
        """Queue the session's final record (never blocks, never raises)."""
        if reason is None:
            reason = (
                END_TERMINATED
                if session.terminated
                else END_SHUTDOWN
                if self.shutting_down
                else END_DISCONNECTED
            )
        try:
            record = ArchivedSession.of(session, reason, self.policy)
        except Exception:
            log.exception("session not archived: its record could not be built")
            return
        if len(self._queue) >= self.queue_size:
            if self.redis is None:
                self.metrics.dropped.inc()
                log.error("archive queue full: session not archived", session_id=session.id)
                return
            if len(self._inflight) >= self.queue_size + BATCH:
                # The database and Redis are both away: bounded like the queue.
                self.metrics.dropped.inc()
                if not self._overflow_full:
                    log.error("archive overflow full: sessions not archived")
                self._overflow_full = True
                return
            self._inflight.append(record)  # parked in Redis by the writer task
        else:
            self._queue.append(record)
        self._idle.clear()
        self._wake.set()

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        try:
            await self._migrate()
        except ArchiveUnavailable as exc:
            self.available = False
            log.warning("archive database unreachable at start; will retry", error=str(exc))
        self._tasks = [asyncio.create_task(self._run())]
        if self.retention_days > 0:
            self._tasks.append(asyncio.create_task(self._purge_periodically()))

    async def stop(self) -> None:
        """Flush what is queued (within ``FLUSH_TIMEOUT_SECONDS``); park or count the rest."""
        self.shutting_down = True
        self._wake.set()
        if self._tasks and self.queued():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(FLUSH_TIMEOUT_SECONDS):
                    await self._idle.wait()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception:  # never skip the spill and close below
                log.exception("archive task failed")
        left = [*self._draining, *self._inflight, *self._queue]
        self._draining, self._inflight, self._queue = [], [], deque()
        try:
            if left and not await self._spill(left):
                self.metrics.dropped.inc(len(left))
                log.error("archive not flushed at shutdown: sessions lost", count=len(left))
        finally:
            if self.redis is not None:
                await self.redis.aclose()
            await self.store.close()

    async def _migrate(self) -> None:
        if not self._migrated:
            applied = await self.store.migrate()
            if applied:
                log.info("archive schema migrated", versions=applied)
            self._migrated = True

    # --- the writer task -------------------------------------------------------------

    async def _run(self) -> None:
        attempt = 0
        while True:
            if not self._inflight and not self._queue:
                self._idle.set()
                self._wake.clear()
                # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancel.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(DRAIN_INTERVAL_SECONDS):
                        await self._wake.wait()
            try:
                attempt = await self._step(attempt)
            except Exception:
                # A bug must not end the task: the records stay queued for the next try.
                log.exception("archive writer step failed; retrying")
                attempt += 1
                await asyncio.sleep(_backoff(attempt))

    async def _step(self, attempt: int) -> int:
        """Write (or park) one batch, then drain Redis if idle; the next retry attempt."""
        while self._queue and len(self._inflight) < BATCH:
            self._inflight.append(self._queue.popleft())
        # A copy: ``session_ended`` may append overflow while the batch is written.
        batch = self._inflight[:]
        if batch and await self._write(batch):
            self._done(batch)
            attempt = 0
        elif batch and await self._spill(batch):
            self._done(batch)
        elif batch:
            await asyncio.sleep(_backoff(attempt + 1))
            return attempt + 1
        if self.available and not self._queue:
            await self._drain_spilled()
        return attempt

    def _done(self, batch: list[ArchivedSession]) -> None:
        """Forget ``batch`` (the head of ``_inflight``), keeping what arrived meanwhile."""
        del self._inflight[: len(batch)]
        self._overflow_full = False

    async def _write(self, batch: list[ArchivedSession]) -> bool:
        try:
            await self._migrate()
            await self.store.write(batch)
        except ArchiveRecordRefused as exc:
            return await self._write_around_refused(batch, str(exc))
        except ArchiveUnavailable as exc:
            self.metrics.write_failures.inc()
            if self.available:
                log.warning("archive database unreachable; retrying", error=str(exc))
            self.available = False
            return False
        if not self.available:
            log.info("archive database reachable again")
        self.available = True
        self.metrics.written.inc(len(batch))
        return True

    async def _write_around_refused(self, batch: list[ArchivedSession], error: str) -> bool:
        """Halve the batch until the refused records stand alone; set those aside."""
        if len(batch) == 1:
            self.metrics.refused.inc()
            log.error(
                "archive refused a session's data: set aside", session_id=batch[0].id, error=error
            )
            return True
        half = len(batch) // 2
        return await self._write(batch[:half]) and await self._write(batch[half:])

    async def _spill(self, batch: list[ArchivedSession]) -> bool:
        """Park ``batch`` in Redis for any instance to archive; ``False`` without Redis."""
        if self.redis is None:
            return False
        try:
            await self.redis.rpush(SPILL_KEY, *(json.dumps(r.to_dict()) for r in batch))
        except Exception as exc:
            log.warning("archive backlog not parked in Redis", error=error_reason(exc))
            return False
        self.metrics.spilled.inc(len(batch))
        return True

    async def _drain_spilled(self) -> None:
        """Archive what instances parked in Redis, a batch at a time, while the database answers."""
        if self.redis is None:
            return
        while True:
            try:
                raw = await self.redis.lpop(SPILL_KEY, BATCH)
            except Exception:
                return
            if not raw:
                return
            items = cast("list[bytes]", raw)
            # Held until written, so a stop() mid-write parks them again.
            self._draining = batch = [ArchivedSession.from_dict(json.loads(i)) for i in items]
            written = await self._write(batch)
            if not written:
                await self._spill(batch)  # back for later (or another instance)
            self._draining = []
            if not written:
                return

    async def _purge_periodically(self) -> None:
        while True:
            cutoff = time.time() - self.retention_days * DAY_SECONDS
            try:
                purged = await self.store.purge(cutoff)
            except ArchiveUnavailable as exc:
                log.warning("archive retention purge failed", error=str(exc))
            else:
                if purged:
                    log.info("archive retention purge", sessions=purged)
            await asyncio.sleep(self.purge_interval)


def _backoff(attempt: int) -> float:
    ceiling = min(BACKOFF_MAX_SECONDS, BACKOFF_FIRST_SECONDS * 2 ** min(attempt, 16))
    return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not a secret

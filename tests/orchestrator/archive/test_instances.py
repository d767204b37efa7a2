"""Three instances on one Redis and one PostgreSQL: every ended session archived once."""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

import httpx
from websockets.sync.client import connect

from orchestrator.archive.store import ArchiveQuery, ArchiveStore
from tests.conftest import random_secret
from tests.live_server import LiveServer
from tests.orchestrator.archive.conftest import fresh_database
from tests.orchestrator.backend.cluster_helpers import cluster_env
from tests.orchestrator.control_helpers import initial_state, say
from tests.postgres_server import RestartablePostgres

# The issue asks for 1,000; ARCHIVE_INSTANCE_SESSIONS=1000 runs that (300 fits a
# shared 2-core machine in a few seconds).
SESSIONS = int(os.environ.get("ARCHIVE_INSTANCE_SESSIONS", "300"))


def end_one(server: LiveServer) -> str:
    issued = httpx.get(server.base_url + "/api/jwt").json()
    with connect(f"{server.ws_url}?access_token={issued['jwt']}") as ws:
        ws.send(initial_state(key_name="cluster-key"))
        ws.send(say("hello"))
        ws.recv(timeout=10)
    return str(issued["session_id"])


async def archived_ids(url: str) -> list[str]:
    store = ArchiveStore(url)
    try:
        return [record.id async for record in store.export(ArchiveQuery())]
    finally:
        await store.close()


def test_three_instances_archive_every_ended_session_exactly_once(
    postgres: RestartablePostgres, redis_url: str
) -> None:
    archive_url = fresh_database(postgres)
    env = cluster_env(
        redis_url, random_secret(), ARCHIVE_URL=archive_url, TOKEN_RATE_LIMIT="100000/minute"
    )
    with ExitStack() as stack:
        servers = [stack.enter_context(LiveServer(env)) for _ in range(3)]
        with ThreadPoolExecutor(max_workers=6) as pool:
            ended = list(pool.map(lambda n: end_one(servers[n % 3]), range(SESSIONS)))
    # Leaving the block stopped the servers gracefully: their queues are flushed.
    ids = asyncio.run(archived_ids(archive_url))
    assert len(ids) == len(set(ids)) == SESSIONS
    assert set(ids) == set(ended)

"""The memory store: how long a session record stays readable."""

from __future__ import annotations

import gc
import json
import tracemalloc

import pytest

from orchestrator.backend.memory import MemoryStore
from orchestrator.sessions.model import Session, SessionStatus
from tokens.claims import DEFAULT_MAX_CUSTOM_CLAIMS_BYTES, validate_custom_claims

GRACE = 900


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.mark.anyio
async def test_an_unused_session_is_forgotten_a_grace_period_after_its_token_expires() -> None:
    """An issued session stays until exp + grace, then reads as unknown."""
    clock = Clock(1_000.0)
    store = MemoryStore(grace_seconds=GRACE, clock=clock)
    await store.create(Session(id="s", issuer="k", expires_at=2_000))
    clock.now = 2_000 + GRACE - 1
    assert await store.get("s") is not None
    clock.now = 2_000 + GRACE
    assert await store.get("s") is None


@pytest.mark.anyio
async def test_a_conversation_that_outlived_its_token_stays_readable_after_it_ends() -> None:
    """A session that ends after exp + grace keeps its record for the grace period
    after its end, so the backend can still read the final transcript."""
    clock = Clock(1_000.0)
    store = MemoryStore(grace_seconds=GRACE, clock=clock)
    session = Session(id="s", issuer="k", expires_at=2_000, status=SessionStatus.CONNECTED)
    await store.create(session)
    clock.now = 10_000.0
    assert await store.get("s") is session  # connected: never expires
    session.status = SessionStatus.ENDED
    session.ended_at = clock.now
    await store.save(session)
    assert await store.get("s") is session
    assert [s.id for s in await store.list()] == ["s"]
    clock.now = 10_000 + GRACE
    assert await store.get("s") is None


@pytest.mark.anyio
async def test_an_issued_record_reads_as_the_session_create_would_have_stored() -> None:
    """create_issued is create(Session(...)) made now: the same fields, status issued."""
    clock = Clock(1_000.0)
    store = MemoryStore(grace_seconds=GRACE, clock=clock)
    await store.create_issued("s", issuer="k", expires_at=2_000, claims={"plan": "pro"})
    session = await store.get("s")
    assert session is not None
    expected = Session(
        id="s", issuer="k", expires_at=2_000, claims={"plan": "pro"}, created_at=1_000.0
    )
    assert session.to_dict() == expected.to_dict()


@pytest.mark.anyio
async def test_an_issued_record_once_read_is_one_object_whose_changes_stay() -> None:
    """After the first read every reader shares one Session, as with create()."""
    store = MemoryStore(grace_seconds=GRACE, clock=Clock(1_000.0))
    await store.create_issued("s", issuer="k", expires_at=2_000, claims={})
    first = await store.get("s")
    assert first is not None
    first.variables["name"] = "Kay"
    again = await store.get("s")
    assert again is first
    assert [s.variables for s in await store.list()] == [{"name": "Kay"}]


@pytest.mark.anyio
async def test_an_issued_record_is_forgotten_a_grace_period_after_its_token_expires() -> None:
    """Unread, it stays until exp + grace, then is gone from reads, the list and memory."""
    clock = Clock(1_000.0)
    store = MemoryStore(grace_seconds=GRACE, clock=clock)
    await store.create_issued("old", issuer="k", expires_at=2_000, claims={})
    await store.create_issued("short", issuer="k", expires_at=1_500, claims={})
    clock.now = 1_500 + GRACE
    assert [s.id for s in await store.list()] == ["old"]
    clock.now = 2_000 + GRACE
    await store.create_issued("new", issuer="k", expires_at=9_000, claims={})
    assert await store.get("old") is None
    assert [s.id for s in await store.list()] == ["new"]
    assert set(store._issued) == {"new"}


@pytest.mark.anyio
async def test_listing_leaves_issued_records_unread_and_delete_forgets_them() -> None:
    """list() shows unread issued sessions without unpacking them for good; delete drops them."""
    store = MemoryStore(grace_seconds=GRACE, clock=Clock(1_000.0))
    await store.create_issued("a", issuer="k", expires_at=2_000, claims={})
    await store.create(Session(id="b", issuer="k", expires_at=2_000))
    assert sorted(s.id for s in await store.list()) == ["a", "b"]
    assert set(store._issued) == {"a"}
    await store.delete("a")
    assert await store.get("a") is None
    assert [s.id for s in await store.list()] == ["b"]


@pytest.mark.anyio
async def test_save_and_create_replace_an_unread_issued_record() -> None:
    """A saved or re-created session is what later reads return, not the issued record."""
    store = MemoryStore(grace_seconds=GRACE, clock=Clock(1_000.0))
    await store.create_issued("s", issuer="k", expires_at=2_000, claims={})
    saved = Session(id="s", issuer="k", expires_at=2_000, status=SessionStatus.CONNECTED)
    await store.save(saved)
    assert await store.get("s") is saved
    await store.create_issued("t", issuer="k", expires_at=2_000, claims={})
    created = Session(id="t", issuer="k", expires_at=3_000)
    await store.create(created)
    assert await store.get("t") is created
    assert [s.id for s in await store.list()].count("t") == 1


@pytest.mark.anyio
async def test_unread_issued_records_leave_the_garbage_collectors_walk() -> None:
    """An unread record (nested claims included) is untracked by the cyclic GC after
    one collection, so thousands of issued sessions do not lengthen every full
    collection; reading it gives the claims back."""
    store = MemoryStore(grace_seconds=GRACE, clock=Clock(1_000.0))
    await store.create_issued("plain", issuer="k", expires_at=2_000, claims={"plan": "pro"})
    await store.create_issued("nested", issuer="k", expires_at=2_000, claims={"tags": ["a"]})
    gc.collect()
    assert not gc.is_tracked(store._issued["plain"])
    assert not gc.is_tracked(store._issued["nested"])
    session = await store.get("nested")
    assert session is not None
    assert session.claims == {"tags": ["a"]}


@pytest.mark.anyio
async def test_an_unread_issued_record_costs_about_its_claims_json() -> None:
    """The largest custom claims an anonymous client may have issued (4 KiB of JSON)
    shaped to cost the most once parsed (~100 KiB of empty objects) cost an unread
    record little more than their JSON text."""
    body = '{"a":[' + ",".join(["{}"] * 1360) + "]}"
    claims = validate_custom_claims(json.loads(body), reserved=())
    store = MemoryStore(grace_seconds=GRACE, clock=Clock(1_000.0))
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for index in range(100):
            # Parsed afresh each time, as each token request's body is.
            fresh = validate_custom_claims(json.loads(body), reserved=())
            await store.create_issued(f"s{index}", issuer="k", expires_at=2_000, claims=fresh)
        per_record = (tracemalloc.get_traced_memory()[0] - before) / 100
    finally:
        tracemalloc.stop()
    assert per_record < DEFAULT_MAX_CUSTOM_CLAIMS_BYTES + 2048, per_record
    session = await store.get("s0")
    assert session is not None
    assert session.claims == claims


@pytest.mark.anyio
async def test_an_issued_record_follows_a_grace_period_changed_after_it_was_made() -> None:
    """A grace period changed later decides when an unread record reads as gone; a
    longer one keeps it, and memory is freed by the later of the two times."""
    clock = Clock(1_000.0)
    store = MemoryStore(grace_seconds=10, clock=clock)
    await store.create_issued("longer", issuer="k", expires_at=2_000, claims={})
    await store.create_issued("shorter", issuer="k", expires_at=2_000, claims={})
    store.grace_seconds = 100
    clock.now = 2_050
    await store.create_issued("probe", issuer="k", expires_at=9_000, claims={})
    assert set(store._issued) == {"longer", "shorter", "probe"}
    store.grace_seconds = 0
    assert await store.get("shorter") is None
    clock.now = 2_100
    await store.create_issued("probe2", issuer="k", expires_at=9_000, claims={})
    assert set(store._issued) == {"probe", "probe2"}
    assert sorted(session_id for _, session_id in store._issued_expiry) == ["probe", "probe2"]

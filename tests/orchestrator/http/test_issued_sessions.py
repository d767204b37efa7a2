"""Each token /api/jwt mints leaves a session record and a count behind."""

from __future__ import annotations

from typing import Any, cast

import pytest
from prometheus_client import CollectorRegistry, Counter
from starlette.requests import Request

from orchestrator.backend.memory import MemoryStore
from orchestrator.http.issued_sessions import IssuedSessionRecorder
from orchestrator.sessions.store import SessionStore, StoreUnavailable
from tests import profile_factories as make

pytestmark = pytest.mark.anyio

REQUEST = Request({"type": "http", "method": "GET", "path": "/api/jwt", "headers": []})


def counter() -> Counter:
    return Counter("issued", "Tokens issued", registry=CollectorRegistry())


def count(issued: Counter) -> float:
    return issued.collect()[0].samples[0].value


class UnreachableStore:
    async def create_issued(self, session_id: str, **_fields: Any) -> None:
        raise StoreUnavailable("connection refused")


async def test_the_minted_session_is_recorded_with_its_claims_and_counted() -> None:
    """The store holds the token's session (issuer, expiry, custom claims) and the count is 1."""
    store, issued = MemoryStore(), counter()
    token = make.soul_machines().mint(custom_claims={"persona": "ada"})
    await IssuedSessionRecorder(store, issued)(token, REQUEST)
    session = await store.get(token.claims.session_id)
    assert session is not None
    assert (session.issuer, session.expires_at) == (token.claims.issuer, token.claims.expires_at)
    assert session.claims == {"persona": "ada"}
    assert count(issued) == 1


async def test_an_unreachable_store_still_counts_the_token_and_does_not_raise() -> None:
    """The token is good without its record (made when the host connects): no error reaches
    the token route."""
    issued = counter()
    recorder = IssuedSessionRecorder(cast(SessionStore, UnreachableStore()), issued)
    await recorder(make.soul_machines().mint(), REQUEST)
    assert count(issued) == 1

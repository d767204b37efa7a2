"""The handshake reads the session's record once, and the endpoint uses that read."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.requests import HTTPConnection

from orchestrator.backend.memory import MemoryStore
from orchestrator.control.connection import ControlServices
from orchestrator.control.endpoint import ControlEndpoint
from orchestrator.control.handshake import ControlAuthenticator, ControlRefused
from orchestrator.control.live import LiveConnections
from orchestrator.control.options import ControlOptions
from orchestrator.handlers import Reply
from orchestrator.sessions.events import EventHub
from orchestrator.sessions.model import Session
from orchestrator.sessions.store import StoreUnavailable
from tests.orchestrator.control_helpers import make_settings
from tokens import SoulMachinesProfile, TokenCodec

COOKIE = "sm_session"


class CountingStore(MemoryStore):
    """A memory store that counts reads (and can be made unreachable)."""

    def __init__(self) -> None:
        super().__init__(grace_seconds=60)
        self.reads = 0
        self.down = False

    async def get(self, session_id: str) -> Session | None:
        self.reads += 1
        if self.down:
            raise StoreUnavailable("down")
        return await super().get(session_id)

    async def create(self, session: Session) -> None:
        if self.down:
            raise StoreUnavailable("down")
        await super().create(session)


async def _no_reply(request: Any, conversation: Any) -> Reply | None:
    return None


def handshake(query: str = "", cookie: str | None = None) -> HTTPConnection:
    headers = [(b"cookie", f"{COOKIE}={cookie}".encode())] if cookie else []
    scope = {
        "type": "websocket",
        "path": "/ws",
        "query_string": query.encode(),
        "headers": headers,
        "client": ("203.0.113.9", 5),
    }
    return HTTPConnection(scope)


@pytest.fixture
def store() -> CountingStore:
    return CountingStore()


@pytest.fixture
def profile() -> SoulMachinesProfile:
    settings = make_settings(control_cookie_name=COOKIE)
    return SoulMachinesProfile(TokenCodec(settings.keyring), settings.sm_policy())


def endpoint_for(store: CountingStore, profile: SoulMachinesProfile) -> ControlEndpoint:
    authenticator = ControlAuthenticator(
        profile, store, cookie_name=COOKIE, allow_unauthenticated=False
    )
    services = ControlServices(
        store=store,
        events=EventHub(),
        options=ControlOptions(handler=_no_reply),
        live=LiveConnections(),
    )
    return ControlEndpoint(authenticator, services)


async def admit(endpoint: ControlEndpoint, connection: HTTPConnection) -> Session:
    identity = await endpoint.authenticator.identify(connection)
    return await endpoint._session_for(identity)


@pytest.mark.anyio
async def test_a_token_for_a_stored_session_reads_it_once(
    store: CountingStore, profile: SoulMachinesProfile
) -> None:
    issued = profile.mint(control_url="ws://x/ws")
    stored = Session(id=issued.claims.session_id, issuer="k", expires_at=2**31)
    await store.create(stored)
    session = await admit(endpoint_for(store, profile), handshake(f"access_token={issued.jwt}"))
    assert session is stored
    assert store.reads == 1


@pytest.mark.anyio
async def test_a_token_for_an_unknown_session_reads_once_and_creates_it(
    store: CountingStore, profile: SoulMachinesProfile
) -> None:
    issued = profile.mint(control_url="ws://x/ws")
    session = await admit(endpoint_for(store, profile), handshake(f"access_token={issued.jwt}"))
    assert session.id == issued.claims.session_id
    assert store.reads == 1
    assert await store.get(session.id) is session


@pytest.mark.anyio
async def test_the_cookie_alone_reads_the_session_once(
    store: CountingStore, profile: SoulMachinesProfile
) -> None:
    stored = Session(id="cookie-session", issuer="k", expires_at=2**31)
    await store.create(stored)
    session = await admit(endpoint_for(store, profile), handshake(cookie="cookie-session"))
    assert session is stored
    assert store.reads == 1


@pytest.mark.anyio
async def test_a_terminated_session_is_refused_after_one_read(
    store: CountingStore, profile: SoulMachinesProfile
) -> None:
    issued = profile.mint(control_url="ws://x/ws")
    stored = Session(id=issued.claims.session_id, issuer="k", expires_at=2**31)
    stored.mark_ended(terminated=True)
    await store.create(stored)
    with pytest.raises(ControlRefused) as refused:
        await admit(endpoint_for(store, profile), handshake(f"access_token={issued.jwt}"))
    assert refused.value.code == "session_ended"
    assert store.reads == 1


@pytest.mark.anyio
async def test_a_token_gets_in_on_local_state_while_the_store_is_away(
    store: CountingStore, profile: SoulMachinesProfile
) -> None:
    store.down = True
    issued = profile.mint(control_url="ws://x/ws")
    session = await admit(endpoint_for(store, profile), handshake(f"access_token={issued.jwt}"))
    assert session.id == issued.claims.session_id
    assert store.reads == 1

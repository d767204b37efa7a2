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


async def stored_session(
    store: CountingStore, session_id: str, *, terminated: bool = False
) -> Session:
    session = Session(id=session_id, issuer="k", expires_at=2**31)
    if terminated:
        session.mark_ended(terminated=True)
    await store.create(session)
    return session


def presenting(by: str, jwt: str, session_id: str) -> HTTPConnection:
    return handshake(f"access_token={jwt}") if by == "token" else handshake(cookie=session_id)


@pytest.mark.anyio
@pytest.mark.parametrize("terminated", [False, True])
@pytest.mark.parametrize("by", ["token", "cookie"])
async def test_a_stored_session_is_read_once_whether_admitted_or_refused(
    store: CountingStore, profile: SoulMachinesProfile, by: str, terminated: bool
) -> None:
    issued = profile.mint(control_url="ws://x/ws")
    stored = await stored_session(store, issued.claims.session_id, terminated=terminated)
    admitting = admit(endpoint_for(store, profile), presenting(by, issued.jwt, stored.id))
    if terminated:
        with pytest.raises(ControlRefused) as refused:
            await admitting
        assert refused.value.code == "session_ended"
    else:
        assert await admitting is stored
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
async def test_a_token_gets_in_on_local_state_while_the_store_is_away(
    store: CountingStore, profile: SoulMachinesProfile
) -> None:
    store.down = True
    issued = profile.mint(control_url="ws://x/ws")
    session = await admit(endpoint_for(store, profile), handshake(f"access_token={issued.jwt}"))
    assert session.id == issued.claims.session_id
    assert store.reads == 1

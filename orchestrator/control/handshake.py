"""Who is on the other end of a control socket, decided before the handshake.

The token is looked for in ``?access_token=`` (how the Web SDK and the video
host present it), then ``Authorization: Bearer``. The cookie named by
``SM_CONTROL_COOKIE`` (sent by the video host from ``sm-control-cookie-header``)
carries the session id: with a token it must name the token's own session;
alone it is accepted only for a session this deployment issued and that has
not expired or been terminated. Nobody gets in without one of these, except,
when explicitly allowed in development, a client on the loopback interface.

Network: with ``CONTROL_ALLOWED_NETWORKS`` set, the address the forwarded-headers
middleware resolved (``TRUSTED_PROXY_HOPS``) must lie in one of them, whatever
the handshake carries: a token is also in the browser's hands (the page receives
the one the video host presents), an address is not. Checked first (403
``network_not_allowed``).

Origin: the video host connects server to server and sends no ``Origin``; a
browser (via-browser mode) always sends its page's. So when the handshake
carries an ``Origin``, it must be one of ``CORS_ORIGINS`` (none in production
by default), or the handshake is refused: another site's page cannot open a
control socket with a token it got hold of (cross-site WebSocket hijacking).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import KW_ONLY, InitVar, dataclass, field

from starlette.requests import HTTPConnection

from orchestrator.config.parsing import Network
from orchestrator.sessions.model import Session
from orchestrator.sessions.store import SessionStore, StoreUnavailable
from tokens import InvalidTokenError, SoulMachinesClaims, SoulMachinesProfile
from tokens.profiles.soul_machines import new_session_id
from tokens.web import auth
from tokens.web.http import ApiError


class ControlRefused(ApiError):
    """The handshake is refused (HTTP ``status``, 403 by default) for ``code``: ``detail``."""

    def __init__(self, code: str, detail: str, status: int = 403) -> None:
        super().__init__(status, code, detail)


@dataclass(frozen=True, slots=True)
class ControlIdentity:
    session_id: str
    source: str  # "query" | "bearer" | "cookie" | "anonymous"
    claims: SoulMachinesClaims | None = None
    # The session's record as the handshake read it (the only read): ``None``
    # when there is none yet, or when the store could not be reached.
    stored: Session | None = None
    store_reachable: bool = True


def presented_token(connection: HTTPConnection) -> tuple[str | None, str]:
    """The token and where it came from (``query`` or ``bearer``), if any; a
    refusal here is a handshake's (403), not the HTTP API's 400."""
    try:
        return auth.presented_token(connection, query="access_token")
    except ApiError as exc:
        raise ControlRefused(exc.code, exc.detail) from None


def _is_loopback(connection: HTTPConnection) -> bool:
    client = connection.client
    if client is None:
        return False
    try:
        return ipaddress.ip_address(client.host).is_loopback
    except ValueError:
        return client.host in ("testclient", "localhost")


def client_in(connection: HTTPConnection, networks: Sequence[Network]) -> bool:
    """Whether the client's address (as resolved) lies in one of ``networks``."""
    client = connection.client
    if client is None:
        return False
    try:
        address = ipaddress.ip_address(client.host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:10.1.2.3 on a dual-stack socket
    return any(address in network for network in networks)


@dataclass
class ControlAuthenticator:
    """Turns a handshake into a ``ControlIdentity`` or ``ControlRefused``."""

    profile: SoulMachinesProfile
    store: SessionStore
    _: KW_ONLY
    cookie_name: str | None
    allow_unauthenticated: bool
    # Empty: any address (and see ControlEndpoint for replacing a live socket).
    allowed_networks: tuple[Network, ...] = ()
    origin_regex: InitVar[str | None] = None
    origin_pattern: re.Pattern[str] | None = field(init=False)

    def __post_init__(self, origin_regex: str | None) -> None:
        self.origin_pattern = re.compile(origin_regex) if origin_regex is not None else None

    async def identify(self, connection: HTTPConnection) -> ControlIdentity:
        if self.allowed_networks and not client_in(connection, self.allowed_networks):
            raise ControlRefused(
                "network_not_allowed",
                "this address may not open a control socket (CONTROL_ALLOWED_NETWORKS)",
            )
        origin = connection.headers.get("origin")
        if origin is not None and (
            self.origin_pattern is None or not self.origin_pattern.fullmatch(origin)
        ):
            raise ControlRefused("origin_not_allowed", "this Origin may not open a control socket")
        token, source = presented_token(connection)
        cookie_session = connection.cookies.get(self.cookie_name) if self.cookie_name else None
        if token is not None:
            try:
                claims = self.profile.verify(token)
            except InvalidTokenError as exc:
                raise ControlRefused(exc.code, str(exc)) from None
            if cookie_session is not None and cookie_session != claims.session_id:
                raise ControlRefused("wrong_session", "the token is for another session")
            try:
                stored = await self.store.get(claims.session_id)
            except StoreUnavailable:
                # A valid token still gets in while the shared store is away; the
                # conversation runs on local state until it returns.
                return ControlIdentity(claims.session_id, source, claims, store_reachable=False)
            _refuse_terminated(stored)
            return ControlIdentity(claims.session_id, source, claims, stored)
        if cookie_session:
            try:
                stored = await self.store.get(cookie_session)
            except StoreUnavailable:
                raise ControlRefused(
                    "store_unavailable", "cannot check the session cookie now", status=503
                ) from None
            if stored is None or stored.is_expired():
                raise ControlRefused("unknown_session", "no live session for that cookie")
            _refuse_terminated(stored)
            return ControlIdentity(cookie_session, "cookie", stored=stored)
        if self.allow_unauthenticated and _is_loopback(connection):
            return ControlIdentity(new_session_id(), "anonymous")
        raise ControlRefused("no_token", "no access_token, bearer token or session cookie")


def _refuse_terminated(stored: Session | None) -> None:
    if stored is not None and stored.terminated:
        raise ControlRefused("session_ended", "the session was ended")


def session_from_claims(claims: SoulMachinesClaims) -> Session:
    """The record for a valid token whose session this store does not hold yet
    (minted by another instance or by ``orchestrator token mint``)."""
    return Session(
        id=claims.session_id,
        issuer=claims.issuer,
        expires_at=claims.expires_at,
        claims=dict(claims.custom),
    )

"""The Soul Machines profile: the JWT a Web SDK UI presents to the session
server, whose ``sm-control`` points the video host (or, in development, the
browser) at this server's control socket.

Claims follow the vendor's documentation: ``iss`` = Studio keyName, ``iat``,
``nbf`` (backdated for clock skew), ``exp``, ``sm-session-server``,
``sm-control``, ``sm-control-via-browser``, optional
``sm-control-cookie-header``, plus custom claims — always a fresh
``session_id`` that lets the orchestrator find the session later. Custom
claims a client chose (an anonymous ``POST /auth/authorize``) are named in the
token's ``client_claims`` claim, so every verifier knows them.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from tokens.claims import (
    CLIENT_CLAIMS,
    DEFAULT_MAX_CUSTOM_CLAIMS_BYTES,
    REGISTERED_CLAIMS,
    ClientClaimsRule,
    validate_custom_claims,
)
from tokens.errors import ClaimsTooLargeError, InvalidClaimsError, PolicyError, WrongIssuerError
from tokens.jws import TokenCodec, compact_json

TYP = "sm-control+jwt"
SESSION_CLAIM = "session_id"
SM_PREFIX = "sm-"
NBF_BACKDATE_SECONDS = 5
DEFAULT_TTL_SECONDS = 30 * 60
MIN_TTL_SECONDS = 60
MAX_TTL_SECONDS = 24 * 60 * 60

_SM_CLAIMS = frozenset(
    {"sm-session-server", "sm-control", "sm-control-via-browser", "sm-control-cookie-header"}
)


# Custom claims may not take these names (nor any sm- name).
_RESERVED_CUSTOM = _SM_CLAIMS | {SESSION_CLAIM, CLIENT_CLAIMS}

# Encoded fixed claims kept per (issuer, control URL); see _payload_json.
_FIXED_CLAIMS_CACHE_SIZE = 64

SESSION_ID_BYTES = 16  # 128 bits
_POOL_IDS = 256


class _SessionIdPool:
    """Session ids cut from one ``os.urandom`` read per 256 ids.

    Every id is 16 bytes straight from the OS CSPRNG, used once, in order; a
    forked child drops the inherited bytes (they are its parent's) and reads
    its own.
    """

    __slots__ = ("_ids",)

    def __init__(self) -> None:
        self._ids: list[str] = []

    def take(self) -> str:
        if not self._ids:
            raw = os.urandom(SESSION_ID_BYTES * _POOL_IDS)
            # 16 bytes -> 22 base64 characters (plus "==", dropped as token_urlsafe does).
            self._ids = [
                base64.urlsafe_b64encode(raw[i : i + SESSION_ID_BYTES]).rstrip(b"=").decode()
                for i in range(0, len(raw), SESSION_ID_BYTES)
            ]
        return self._ids.pop()

    def clear(self) -> None:
        self._ids = []


_session_ids = _SessionIdPool()
os.register_at_fork(after_in_child=_session_ids.clear)


def new_session_id() -> str:
    """A fresh, unguessable session id (128 random bits, URL-safe), like
    ``secrets.token_urlsafe(16)``."""
    return _session_ids.take()


def normalise_session_server(value: str) -> str:
    """``wss://dh.soulmachines.cloud/`` and ``dh.soulmachines.cloud`` both give the host
    (the ``sm-session-server`` claim, as the vendor's sample puts it)."""
    value = value.strip()
    if "://" in value:
        value = urlsplit(value).netloc
    value = value.rstrip("/")
    if not value or "/" in value or " " in value:
        raise PolicyError(f"session server {value!r} is not a host name")
    return value


# The scheme of the URL the SDK connects to, by the scheme SESSION_SERVER was given with.
_SESSION_SERVER_SCHEMES = {"wss": "wss", "ws": "ws", "https": "wss", "http": "ws"}


def session_server_scheme(value: str) -> str:
    """``ws`` or ``wss``: an explicit scheme is kept (a local or staging session
    server may be plain ``ws://``); a bare host gets ``wss``, as in the vendor's sample."""
    value = value.strip()
    if "://" not in value:
        return "wss"
    scheme = urlsplit(value).scheme.lower()
    if scheme not in _SESSION_SERVER_SCHEMES:
        raise PolicyError(f"session server {value!r}: use a host name or a ws:// or wss:// URL")
    return _SESSION_SERVER_SCHEMES[scheme]


def check_control_url(url: str, *, production: bool) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.netloc:
        raise PolicyError(f"sm-control must be a ws:// or wss:// URL, not {url!r}")
    if production and parts.scheme != "wss":
        raise PolicyError("sm-control must use wss:// in production")
    if parts.query or parts.fragment:
        raise PolicyError("sm-control must not carry a query or fragment (the token is appended)")
    return url


@dataclass(frozen=True)
class SoulMachinesPolicy:
    """What this deployment puts into every Soul Machines token."""

    session_server: str
    control_url: str | None = None
    control_via_browser: bool = False
    production: bool = False
    ttl_seconds: int = DEFAULT_TTL_SECONDS
    control_cookie_name: str | None = None
    max_custom_claims_bytes: int = DEFAULT_MAX_CUSTOM_CLAIMS_BYTES
    # What a client may choose without the API key (see ``mint``'s ``client_chosen``).
    client_claims: ClientClaimsRule = field(default_factory=ClientClaimsRule)
    # "ws" or "wss", from how session_server was given (see session_server_scheme).
    session_server_scheme: str = field(default="wss", init=False)

    def __post_init__(self) -> None:
        scheme = session_server_scheme(self.session_server)
        object.__setattr__(self, "session_server_scheme", scheme)
        object.__setattr__(self, "session_server", normalise_session_server(self.session_server))
        if self.production and scheme != "wss":
            raise PolicyError(
                "SESSION_SERVER must use wss:// in production (a plain ws:// session server "
                "is for local or staging work)"
            )
        if self.control_via_browser and self.production:
            raise PolicyError(
                "sm-control-via-browser is for development only: refusing it in production "
                "(CONTROL_VIA_BROWSER=true together with PRODUCTION_PERSONA=true)"
            )
        if not MIN_TTL_SECONDS <= self.ttl_seconds <= MAX_TTL_SECONDS:
            raise PolicyError(
                f"token lifetime must be between {MIN_TTL_SECONDS} and {MAX_TTL_SECONDS} "
                f"seconds, not {self.ttl_seconds}"
            )
        if self.control_url is not None:
            check_control_url(self.control_url, production=self.production)
        if self.control_cookie_name is not None and not _is_cookie_name(self.control_cookie_name):
            raise PolicyError(f"{self.control_cookie_name!r} is not a valid cookie name")

    @property
    def session_server_url(self) -> str:
        """Where the SDK connects (the ``url`` of ``/api/jwt``)."""
        return f"{self.session_server_scheme}://{self.session_server}"


def _is_cookie_name(name: str) -> bool:
    return bool(name) and all(c.isalnum() or c in "!#$%&'*+-.^_`|~" for c in name)


def _typed(payload: Mapping[str, Any], name: str, kind: type, *, optional: bool = False) -> Any:
    value = payload.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise InvalidClaimsError(f"claim {name!r} is missing or has the wrong type")
    return value


@dataclass(frozen=True)
class SoulMachinesClaims:
    """A verified Soul Machines token's claims, typed."""

    issuer: str
    issued_at: int
    not_before: int
    expires_at: int
    session_server: str
    control_url: str | None
    control_via_browser: bool
    cookie_header: str | None
    session_id: str
    custom: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def _trusted(cls, **fields: Any) -> SoulMachinesClaims:
        """An instance of already-checked ``fields`` (every one of them), for
        the hot paths (``mint``, ``from_payload``): the frozen ``__init__`` sets
        each field through ``object.__setattr__``; filling ``__dict__`` at once
        gives an equal instance (tests/tokens/profiles pin both against the
        constructor's)."""
        claims = object.__new__(cls)
        claims.__dict__.update(fields)
        return claims

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> SoulMachinesClaims:
        """The typed claims of a verified payload (``verify``'s hot path: every
        control-socket handshake), or ``InvalidClaimsError`` naming the first
        claim missing or of the wrong type."""
        custom = {
            name: value
            for name, value in payload.items()
            if name not in REGISTERED_CLAIMS and name not in _SM_CLAIMS and name != SESSION_CLAIM
        }
        # Each field is checked here, every one is given: _trusted's equal instance.
        return cls._trusted(
            issuer=_typed(payload, "iss", str),
            issued_at=_typed(payload, "iat", int),
            not_before=_typed(payload, "nbf", int),
            expires_at=_typed(payload, "exp", int),
            session_server=_typed(payload, "sm-session-server", str),
            control_url=_typed(payload, "sm-control", str, optional=True),
            control_via_browser=bool(
                _typed(payload, "sm-control-via-browser", bool, optional=True)
            ),
            cookie_header=_typed(payload, "sm-control-cookie-header", str, optional=True),
            session_id=_typed(payload, SESSION_CLAIM, str),
            custom=custom,
        )


@dataclass(frozen=True)
class IssuedToken:
    """A freshly minted token, what it says, and the session server URL to use it at
    (the policy's: the claim holds only the host)."""

    jwt: str
    claims: SoulMachinesClaims
    session_server_url: str


class SoulMachinesProfile:
    """Mint and verify Soul Machines tokens under one policy and keyring."""

    typ = TYP

    def __init__(self, codec: TokenCodec, policy: SoulMachinesPolicy) -> None:
        self.codec = codec
        self.policy = policy
        self._fixed_claims: dict[tuple[str, str], tuple[str, str]] = {}

    def mint(
        self,
        *,
        custom_claims: Mapping[str, Any] | None = None,
        control_url: str | None = None,
        ttl_seconds: int | None = None,
        client_chosen: bool = False,
    ) -> IssuedToken:
        """A token for a new session.

        ``control_url`` is used when the policy has none fixed (development,
        derived from the request); ``ttl_seconds`` may shorten the lifetime,
        never lengthen it past the policy's. ``client_chosen``: the custom
        claims come from a client without the API key: the policy's
        ``client_claims`` rule applies, and the token names them in
        ``client_claims`` (counted in the size bound).
        """
        policy = self.policy
        custom = validate_custom_claims(
            custom_claims,
            reserved=_RESERVED_CUSTOM,
            reserved_prefixes=(SM_PREFIX,),
            max_bytes=policy.max_custom_claims_bytes,
        )
        if client_chosen and custom:
            policy.client_claims.check(custom)
            custom = policy.client_claims.mark(custom)
            if len(compact_json(custom).encode("utf-8")) > policy.max_custom_claims_bytes:
                raise ClaimsTooLargeError(
                    f"custom claims exceed {policy.max_custom_claims_bytes} bytes once encoded "
                    f"(with the {CLIENT_CLAIMS} claim naming them)"
                )
        control = policy.control_url or control_url
        if control is None:
            raise PolicyError("no sm-control URL: set PUBLIC_URL (or ORCHESTRATION_SERVER)")
        issuer = self.codec.keyring.active.kid
        if (issuer, control) not in self._fixed_claims:
            # Checked once per URL: the claims cache only ever holds checked ones.
            check_control_url(control, production=policy.production)
        ttl = policy.ttl_seconds if ttl_seconds is None else ttl_seconds
        if not MIN_TTL_SECONDS <= ttl <= policy.ttl_seconds:
            raise PolicyError(
                f"requested lifetime must be between {MIN_TTL_SECONDS} and "
                f"{policy.ttl_seconds} seconds"
            )
        now = self.codec.now()
        session_id = new_session_id()
        cookie_header = None
        if policy.control_cookie_name:
            cookie_header = f"{policy.control_cookie_name}={session_id}"
        token = self.codec.sign(
            self._payload_json(issuer, now, ttl, control, cookie_header, session_id, custom), TYP
        )
        # Built from the values above, whose types are known: what from_payload()
        # would return for this payload, without re-checking it.
        claims = SoulMachinesClaims._trusted(
            issuer=issuer,
            issued_at=now,
            not_before=now - NBF_BACKDATE_SECONDS,
            expires_at=now + ttl,
            session_server=policy.session_server,
            control_url=control,
            control_via_browser=bool(policy.control_via_browser),
            cookie_header=cookie_header,
            session_id=session_id,
            custom=custom,
        )
        return IssuedToken(jwt=token, claims=claims, session_server_url=policy.session_server_url)

    def _payload_json(
        self,
        issuer: str,
        now: int,
        ttl: int,
        control: str,
        cookie_header: str | None,
        session_id: str,
        custom: Mapping[str, Any],
    ) -> str:
        """``compact_json`` of the claims, in this order: iss, iat, nbf, exp,
        sm-session-server, sm-control, sm-control-via-browser,
        [sm-control-cookie-header], session_id, custom claims.

        Assembled from pieces, the fixed ones encoded once per (issuer, control
        URL): this is the token endpoint's hot path. The times are ints and the
        session id base64url, so they need no escaping; tests pin the bytes
        against ``compact_json`` of the same claims as a dict.
        """
        fixed = self._fixed_claims.get((issuer, control))
        if fixed is None:
            fixed = self._fixed_claims_json(issuer, control)
        head, middle = fixed
        cookie = (
            f'"sm-control-cookie-header":{compact_json(cookie_header)},'
            if cookie_header is not None
            else ""
        )
        rest = "," + compact_json(custom)[1:-1] if custom else ""
        return (
            f'{head}{now},"nbf":{now - NBF_BACKDATE_SECONDS},"exp":{now + ttl},'
            f'{middle}{cookie}"{SESSION_CLAIM}":"{session_id}"{rest}}}'
        )

    def _fixed_claims_json(self, issuer: str, control: str) -> tuple[str, str]:
        policy = self.policy
        head = f'{{"iss":{compact_json(issuer)},"iat":'
        middle = (
            f'"sm-session-server":{compact_json(policy.session_server)},'
            f'"sm-control":{compact_json(control)},'
            f'"sm-control-via-browser":{compact_json(policy.control_via_browser)},'
        )
        # The control URL may come from the request's Host header: bounded.
        if len(self._fixed_claims) >= _FIXED_CLAIMS_CACHE_SIZE:
            self._fixed_claims.clear()
        self._fixed_claims[(issuer, control)] = (head, middle)
        return head, middle

    def verify(self, token: str) -> SoulMachinesClaims:
        """The typed claims of a valid token, or a typed ``InvalidTokenError``."""
        decoded = self.codec.decode(token, TYP, required=("iss", "iat", "nbf", "exp"))
        claims = SoulMachinesClaims.from_payload(decoded.claims)
        if claims.issuer != decoded.key.kid:
            raise WrongIssuerError(f"issuer {claims.issuer!r} does not match the signing key")
        if claims.control_via_browser and self.policy.production:
            raise InvalidClaimsError("sm-control-via-browser tokens are refused in production")
        return claims

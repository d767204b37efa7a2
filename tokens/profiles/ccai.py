"""The Google CCAI Platform profile: the token the CCAI web SDK fetches from
``/auth/token`` and CCAI's servers verify with the company secret.

Claims follow the vendor's documentation: ``iss`` = company name, ``iat``,
``exp`` = ``iat`` + 3600 (configurable), ``identifier`` (always, also for an
anonymous visitor), and ``name``/``email`` when the user is known.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

from tokens.errors import ClaimsError, InvalidClaimsError, PolicyError, WrongIssuerError
from tokens.jws import TokenCodec

TYP = "ccai+jwt"
DEFAULT_TTL_SECONDS = 3600
MIN_TTL_SECONDS = 60
MAX_TTL_SECONDS = 24 * 60 * 60
ANONYMOUS_PREFIX = "anon-"
MAX_FIELD_LENGTH = 256
_ANONYMOUS_LABEL = b"ccai-anonymous-identifier\x00"


def _text(name: str, value: object, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_FIELD_LENGTH:
        raise ClaimsError(f"user {name} must be a non-empty string of at most {MAX_FIELD_LENGTH}")
    return value


@dataclass(frozen=True)
class CcaiUser:
    """Who the token is for; ``name``/``email`` are ``None`` for an anonymous visitor."""

    identifier: str
    name: str | None = None
    email: str | None = None

    def __post_init__(self) -> None:
        _text("identifier", self.identifier)
        _text("name", self.name, optional=True)
        _text("email", self.email, optional=True)


@dataclass(frozen=True)
class CcaiPolicy:
    """The company this deployment issues tokens for."""

    company_name: str
    ttl_seconds: int = DEFAULT_TTL_SECONDS

    def __post_init__(self) -> None:
        if not self.company_name.strip():
            raise PolicyError("the CCAI company name must not be empty")
        if not MIN_TTL_SECONDS <= self.ttl_seconds <= MAX_TTL_SECONDS:
            raise PolicyError(
                f"CCAI token lifetime must be between {MIN_TTL_SECONDS} and "
                f"{MAX_TTL_SECONDS} seconds, not {self.ttl_seconds}"
            )


class CcaiProfile:
    """Mint and verify CCAI Platform tokens with the company secret's keyring."""

    typ = TYP

    def __init__(self, codec: TokenCodec, policy: CcaiPolicy) -> None:
        self.codec = codec
        self.policy = policy

    def anonymous_identifier(self, anonymous_id: str) -> str:
        """A stable identifier for an anonymous visitor's cookie value.

        HMAC-derived (domain-separated from token signing) so the identifier
        sent to CCAI is neither the cookie itself nor chosen by the client: a
        visitor cannot pick a value that collides with a real user's id.
        Rotating the company secret changes these identifiers.
        """
        digest = hmac.new(
            self.codec.keyring.active.secret,
            _ANONYMOUS_LABEL + anonymous_id.encode("utf-8"),
            hashlib.sha256,
        ).digest()
        return ANONYMOUS_PREFIX + base64.urlsafe_b64encode(digest[:18]).decode("ascii")

    def claims_for(self, user: CcaiUser) -> dict[str, Any]:
        now = self.codec.now()
        claims: dict[str, Any] = {
            "iss": self.policy.company_name,
            "iat": now,
            "exp": now + self.policy.ttl_seconds,
            "identifier": user.identifier,
        }
        if user.name is not None:
            claims["name"] = user.name
        if user.email is not None:
            claims["email"] = user.email
        return claims

    def mint(self, user: CcaiUser) -> str:
        """A signed token for ``user``."""
        return self.codec.encode(self.claims_for(user), TYP)

    def verify(self, token: str) -> dict[str, Any]:
        """The claims of a valid CCAI token, or a typed ``InvalidTokenError``."""
        decoded = self.codec.decode(
            token, TYP, required=("iss", "iat", "exp", "identifier"), kid_fallback_claim=None
        )
        claims = decoded.claims
        if claims["iss"] != self.policy.company_name:
            raise WrongIssuerError(f"issuer {claims['iss']!r} is not this company")
        if not isinstance(claims["identifier"], str) or not claims["identifier"]:
            raise InvalidClaimsError("claim 'identifier' must be a non-empty string")
        return claims

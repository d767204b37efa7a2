"""The VideoSDK profile: participant tokens VideoSDK's servers verify with the
account secret.

Claims follow the vendor's documentation: ``apikey`` and ``permissions``
(mandatory; a subset of ``allow_join``, ``ask_join``, ``allow_mod``), optional
``version`` (2), ``roomId``, ``participantId``, ``roles`` (``crawler``,
``rtc``), plus ``iat`` and ``exp`` as their ``jsonwebtoken`` sample sets them.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from tokens.errors import ClaimsError, InvalidClaimsError, InvalidTokenError, PolicyError
from tokens.jws import TokenCodec

TYP = "videosdk+jwt"
PERMISSIONS = ("allow_join", "ask_join", "allow_mod")
ROLES = ("crawler", "rtc")
SUPPORTED_VERSION = 2
DEFAULT_TTL_SECONDS = 120 * 60
MAX_TTL_SECONDS = 24 * 60 * 60
MIN_TTL_SECONDS = 60
GENERIC_FAILURE = "Token is invalid or expired"
_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


def _subset(name: str, values: Collection[str], allowed: Sequence[str]) -> tuple[str, ...]:
    if isinstance(values, str) or not all(isinstance(v, str) for v in values):
        raise ClaimsError(f"{name} must be a list of strings")
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise ClaimsError(f"{name} {unknown} not allowed: use any of {', '.join(allowed)}")
    return tuple(dict.fromkeys(values))


@dataclass(frozen=True)
class VideoSdkPolicy:
    """This deployment's VideoSDK account and what its clients may ask for."""

    api_key: str
    ttl_seconds: int = DEFAULT_TTL_SECONDS
    allowed_permissions: tuple[str, ...] = ("allow_join", "ask_join")
    default_permissions: tuple[str, ...] = ("allow_join",)

    def __post_init__(self) -> None:
        if not self.api_key.strip():
            raise PolicyError("the VideoSDK API key must not be empty")
        if not MIN_TTL_SECONDS <= self.ttl_seconds <= MAX_TTL_SECONDS:
            raise PolicyError(
                f"VideoSDK token lifetime must be between {MIN_TTL_SECONDS} and "
                f"{MAX_TTL_SECONDS} seconds, not {self.ttl_seconds}"
            )
        try:
            _subset("allowed permissions", self.allowed_permissions, PERMISSIONS)
            _subset("default permissions", self.default_permissions, self.allowed_permissions)
        except ClaimsError as exc:
            raise PolicyError(str(exc)) from None
        if not self.default_permissions:
            raise PolicyError("default permissions must not be empty")


@dataclass(frozen=True)
class VideoSdkGrant:
    """What one participant token grants; ``None``/empty fields are left out."""

    permissions: tuple[str, ...] | None = None
    room_id: str | None = None
    participant_id: str | None = None
    roles: tuple[str, ...] = field(default_factory=tuple)
    version: int | None = None
    ttl_seconds: int | None = None


class VideoSdkProfile:
    """Mint and verify VideoSDK tokens with the account secret's keyring."""

    typ = TYP

    def __init__(self, codec: TokenCodec, policy: VideoSdkPolicy) -> None:
        self.codec = codec
        self.policy = policy

    def claims_for(self, grant: VideoSdkGrant) -> dict[str, Any]:
        """The claims for ``grant``; ``ClaimsError`` for bad values, ``PolicyError``
        for permissions this deployment does not hand out."""
        policy = self.policy
        permissions = _subset(
            "permissions",
            policy.default_permissions if grant.permissions is None else grant.permissions,
            PERMISSIONS,
        )
        if not permissions:
            raise ClaimsError("permissions must not be empty")
        refused = sorted(set(permissions) - set(policy.allowed_permissions))
        if refused:
            raise PolicyError(f"permissions {refused} are not granted by this server")
        roles = _subset("roles", grant.roles, ROLES)
        ttl = policy.ttl_seconds if grant.ttl_seconds is None else grant.ttl_seconds
        if not MIN_TTL_SECONDS <= ttl <= policy.ttl_seconds:
            raise PolicyError(
                f"requested lifetime must be between {MIN_TTL_SECONDS} and "
                f"{policy.ttl_seconds} seconds"
            )
        now = self.codec.now()
        claims: dict[str, Any] = {
            "apikey": policy.api_key,
            "permissions": list(permissions),
            "iat": now,
            "exp": now + ttl,
        }
        if grant.version is not None:
            if isinstance(grant.version, bool) or grant.version != SUPPORTED_VERSION:
                raise ClaimsError(f"version must be {SUPPORTED_VERSION}")
            claims["version"] = SUPPORTED_VERSION
        for claim, value in (("roomId", grant.room_id), ("participantId", grant.participant_id)):
            if value is not None:
                if not isinstance(value, str) or not _ID.match(value):
                    raise ClaimsError(f"{claim} must be 1-128 letters, digits, '_' or '-'")
                claims[claim] = value
        if roles:
            claims["roles"] = list(roles)
        return claims

    def mint(self, grant: VideoSdkGrant) -> str:
        """A signed participant token for ``grant``."""
        return self.codec.encode(self.claims_for(grant), TYP)

    def verify(self, token: str) -> dict[str, Any]:
        """The claims of a valid VideoSDK token, or a typed ``InvalidTokenError``."""
        decoded = self.codec.decode(
            token, TYP, required=("apikey", "permissions", "iat", "exp"), kid_fallback_claim=None
        )
        claims = decoded.claims
        if claims["apikey"] != self.policy.api_key:
            raise InvalidClaimsError("apikey is not this deployment's API key")
        permissions = claims["permissions"]
        if (
            not isinstance(permissions, list)
            or not permissions
            or not all(isinstance(p, str) for p in permissions)
            or not set(permissions) <= set(PERMISSIONS)
        ):
            raise InvalidClaimsError(f"permissions must be a non-empty subset of {PERMISSIONS}")
        roles = claims.get("roles", [])
        if (
            not isinstance(roles, list)
            or not all(isinstance(r, str) for r in roles)
            or not set(roles) <= set(ROLES)
        ):
            raise InvalidClaimsError(f"roles must be a subset of {ROLES}")
        return claims


def failure_body(error: InvalidTokenError) -> dict[str, str]:
    """VideoSDK's wording for a refused token, with the specific reason alongside."""
    return {"error": error.code, "detail": GENERIC_FAILURE, "reason": str(error)}

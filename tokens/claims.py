"""Rules for caller-supplied (custom) claims, shared by the profiles, and for the
ones a client chooses without the API key (``ClientClaimsRule``)."""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from tokens.errors import ClaimsError, ClaimsTooLargeError, ClientClaimError, ReservedClaimError
from tokens.jsonsafe import check_plain

REGISTERED_CLAIMS = frozenset({"iss", "sub", "aud", "exp", "nbf", "iat", "jti"})
MAX_CLAIM_NAME_LENGTH = 64
DEFAULT_MAX_CUSTOM_CLAIMS_BYTES = 4096


def validate_custom_claims(
    claims: Mapping[str, Any] | None,
    *,
    reserved: Collection[str],
    reserved_prefixes: tuple[str, ...] = (),
    max_bytes: int = DEFAULT_MAX_CUSTOM_CLAIMS_BYTES,
) -> dict[str, Any]:
    """Return a copy of ``claims`` if every name and value may go into a token.

    Names must be non-empty strings of at most 64 characters, not registered
    JWT claims, not ``reserved`` and not starting with a reserved prefix
    (compared case-insensitively). Values must be plain JSON (no NaN or
    infinities, no lone surrogates, at most 64 deep: ``jsonsafe.check_plain``)
    and the whole must serialise to at most ``max_bytes``.
    """
    if claims is None:
        return {}
    if not isinstance(claims, Mapping):
        raise ClaimsError("custom claims must be a JSON object")
    for name in claims:
        if not isinstance(name, str) or not name:
            raise ClaimsError("claim names must be non-empty strings")
        if len(name) > MAX_CLAIM_NAME_LENGTH:
            raise ClaimsError(f"claim name {name[:20]!r}... is longer than {MAX_CLAIM_NAME_LENGTH}")
        lowered = name.lower()
        if any(lowered.startswith(prefix) for prefix in reserved_prefixes):
            raise ReservedClaimError(
                f"custom claim {name!r} is refused: names starting with "
                f"{' or '.join(repr(p) for p in reserved_prefixes)} are reserved by the platform"
            )
        if name in REGISTERED_CLAIMS or name in reserved:
            raise ReservedClaimError(f"custom claim {name!r} is refused: the server sets it")
    try:
        check_plain(claims)
        encoded = json.dumps(claims, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:  # ValueError includes NotPlainJsonError
        raise ClaimsError(f"custom claims must be plain JSON values: {exc}") from None
    if len(encoded.encode("utf-8")) > max_bytes:
        raise ClaimsTooLargeError(f"custom claims exceed {max_bytes} bytes once encoded")
    return dict(claims)


# The claim listing which custom claims the client chose (reserved: no caller sets it).
CLIENT_CLAIMS = "client_claims"


@dataclass(frozen=True)
class ClientClaimsRule:
    """Which custom claims a client may choose without the API key.

    ``allowed`` maps each allowed name to the most bytes of JSON its value may
    take; ``None`` allows any name (within the token's own bounds). An empty
    mapping allows none: custom claims then need the API key.
    """

    allowed: Mapping[str, int] | None = None

    @classmethod
    def parse(cls, entries: Collection[str], *, max_bytes: int) -> ClientClaimsRule:
        """``("any",)``, ``("none",)`` or names, each optionally ``name:BYTES``
        (else ``max_bytes``); ``ValueError`` naming the bad entry."""
        names = [entry.strip() for entry in entries if entry.strip()]
        if names == ["any"]:
            return cls(None)
        if names == ["none"]:
            return cls({})
        allowed: dict[str, int] = {}
        for entry in names:
            name, _, size = entry.partition(":")
            if not name or len(name) > MAX_CLAIM_NAME_LENGTH or name in ("any", "none"):
                raise ValueError(f"{entry!r} is not a claim name (or name:bytes)")
            if size and (not size.isdigit() or not 1 <= int(size) <= max_bytes):
                raise ValueError(f"{entry!r}: bytes must be 1 to {max_bytes}")
            allowed[name] = int(size) if size else max_bytes
        return cls(allowed)

    def check(self, claims: Mapping[str, Any]) -> None:
        """``ClientClaimError`` for the first claim this rule does not allow, or
        whose value is larger than its bound."""
        allowed = self.allowed
        if allowed is None or not claims:
            return
        if not allowed:
            raise ClientClaimError(
                "custom claims need the API key (Authorization: Bearer); "
                "this server allows clients none (CLIENT_CLAIMS)"
            )
        for name, value in claims.items():
            bound = allowed.get(name)
            if bound is None:
                raise ClientClaimError(
                    f"custom claim {name[:64]!r} is not one a client may set "
                    "(CLIENT_CLAIMS); with the API key any is"
                )
            size = len(json.dumps(value, separators=(",", ":")).encode("utf-8"))
            if size > bound:
                raise ClientClaimError(f"custom claim {name!r} exceeds {bound} bytes once encoded")

    def mark(self, claims: Mapping[str, Any]) -> dict[str, Any]:
        """``claims`` with ``CLIENT_CLAIMS`` naming them all (none: unchanged)."""
        if not claims:
            return dict(claims)
        return {**claims, CLIENT_CLAIMS: sorted(claims)}


def custom_claims(claims: Mapping[str, Any]) -> dict[str, Any]:
    """A token's (or a session's) custom claims without the ``CLIENT_CLAIMS`` mark."""
    return {name: value for name, value in claims.items() if name != CLIENT_CLAIMS}


def client_chosen(claims: Mapping[str, Any]) -> frozenset[str]:
    """The names of the custom claims a client chose, from a token's (or a session's)
    claims. A malformed mark counts every claim as the client's."""
    mark = claims.get(CLIENT_CLAIMS)
    if mark is None:
        return frozenset()
    if isinstance(mark, list) and all(isinstance(name, str) for name in mark):
        return frozenset(mark)
    return frozenset(name for name in claims if name != CLIENT_CLAIMS)

"""Rules for caller-supplied (custom) claims, shared by the profiles."""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from typing import Any

from tokens.errors import ClaimsError, ClaimsTooLargeError, ReservedClaimError
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

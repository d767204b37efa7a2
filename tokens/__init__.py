"""Token issuing and verification: HS256 JWTs, one profile per platform.

The core (this package and ``tokens.profiles``) is pure logic that imports
neither a web framework nor Redis; ``tokens.web`` holds the Starlette routes.
Never imports ``orchestrator``.
"""

from tokens.errors import (
    BadSignatureError,
    ClaimsError,
    ClaimsTooLargeError,
    DisallowedAlgorithmError,
    ExpiredTokenError,
    InvalidClaimsError,
    InvalidTokenError,
    KeyringError,
    MalformedTokenError,
    NotYetValidTokenError,
    PolicyError,
    ReservedClaimError,
    RevokedTokenError,
    TokenPackageError,
    UnknownKeyError,
    UnknownProfileError,
    WrongAudienceError,
    WrongIssuerError,
    WrongTypeError,
)
from tokens.jws import TokenCodec
from tokens.keyring import MIN_KEY_BYTES, Keyring, SigningKey, generate_secret
from tokens.profiles.soul_machines import (
    IssuedToken,
    SoulMachinesClaims,
    SoulMachinesPolicy,
    SoulMachinesProfile,
)

__all__ = [
    "MIN_KEY_BYTES",
    "BadSignatureError",
    "ClaimsError",
    "ClaimsTooLargeError",
    "DisallowedAlgorithmError",
    "ExpiredTokenError",
    "InvalidClaimsError",
    "InvalidTokenError",
    "IssuedToken",
    "Keyring",
    "KeyringError",
    "MalformedTokenError",
    "NotYetValidTokenError",
    "PolicyError",
    "ReservedClaimError",
    "RevokedTokenError",
    "SigningKey",
    "SoulMachinesClaims",
    "SoulMachinesPolicy",
    "SoulMachinesProfile",
    "TokenCodec",
    "TokenPackageError",
    "UnknownKeyError",
    "UnknownProfileError",
    "WrongAudienceError",
    "WrongIssuerError",
    "WrongTypeError",
    "generate_secret",
]

"""The token package's exception tree, drawn in one place.

Every error carries a stable machine-readable ``code`` (used in JSON bodies,
close reasons and metrics labels) and a human sentence (``str(error)``).
"""

from __future__ import annotations


class TokenPackageError(Exception):
    """Base of everything this package raises."""

    code = "token_error"


# --- configuration -----------------------------------------------------------


class KeyringError(TokenPackageError, ValueError):
    """The keyring configuration is unusable (refused at start-up)."""

    code = "bad_keyring"


# --- minting -----------------------------------------------------------------


class ClaimsError(TokenPackageError, ValueError):
    """Caller-supplied claims cannot go into a token."""

    code = "invalid_claims"


class ReservedClaimError(ClaimsError):
    """A custom claim uses a reserved name or the vendor's ``sm-`` prefix."""

    code = "reserved_claim"


class ClaimsTooLargeError(ClaimsError):
    """The custom claims are larger than the configured limit."""

    code = "claims_too_large"


class ClientClaimError(ClaimsError):
    """A custom claim a client may not set without the API key (``ClientClaimsRule``)."""

    code = "claim_not_allowed"


class UnknownProfileError(TokenPackageError, ValueError):
    """A token profile name that is not known, or not enabled here."""

    code = "unknown_profile"


class PolicyError(TokenPackageError):
    """The request asks for something this deployment's policy forbids."""

    code = "forbidden_by_policy"


# --- verification ------------------------------------------------------------


class InvalidTokenError(TokenPackageError):
    """A presented token was refused; subclasses say why."""

    code = "invalid_token"


class MalformedTokenError(InvalidTokenError):
    """The token is not a well-formed compact JWS with JSON header and claims."""

    code = "malformed"


class DisallowedAlgorithmError(InvalidTokenError):
    """The header names an algorithm other than HS256 (``none`` included)."""

    code = "bad_algorithm"


class WrongTypeError(InvalidTokenError):
    """The header ``typ`` belongs to another profile (or to none of ours)."""

    code = "wrong_type"


class UnknownKeyError(InvalidTokenError):
    """No key in the keyring matches the token's ``kid``/``iss``."""

    code = "unknown_key"


class BadSignatureError(InvalidTokenError):
    """The signature does not match the claims under the named key."""

    code = "bad_signature"


class WrongIssuerError(InvalidTokenError):
    """``iss`` is not the issuer this profile expects."""

    code = "wrong_issuer"


class ExpiredTokenError(InvalidTokenError):
    """``exp`` is in the past (beyond the leeway)."""

    code = "expired"


class NotYetValidTokenError(InvalidTokenError):
    """``nbf`` or ``iat`` is in the future (beyond the leeway)."""

    code = "not_yet_valid"


class InvalidClaimsError(InvalidTokenError):
    """A required claim is missing or has the wrong type."""

    code = "invalid_claims"


class RevokedTokenError(InvalidTokenError):
    """A newer token replaced this one (regenerating revokes the old)."""

    code = "revoked"


class WrongAudienceError(InvalidTokenError):
    """The request's ``Origin`` is not allowed by the token's ``aud``."""

    code = "wrong_audience"

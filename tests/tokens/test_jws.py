"""HS256 codec: the allow-list, ``typ``, key lookup, signature and time checks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any, TypeVar

import jwt
import pytest

from tests.conftest import random_secret
from tokens import (
    BadSignatureError,
    DisallowedAlgorithmError,
    ExpiredTokenError,
    InvalidClaimsError,
    InvalidTokenError,
    Keyring,
    MalformedTokenError,
    NotYetValidTokenError,
    SigningKey,
    TokenCodec,
    UnknownKeyError,
    WrongTypeError,
)
from tokens.jws import (
    MAX_TOKEN_BYTES,
    humanize_seconds,
    read_unverified_claims,
    read_unverified_header,
)

TYP = "test+jwt"
NOW = 1_800_000_000

E = TypeVar("E", bound=InvalidTokenError)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def compact(header: dict[str, Any], claims: dict[str, Any], secret: bytes, digest: Any) -> str:
    """A compact JWS with any header, HMAC-signed with ``digest`` (bypasses PyJWT's checks)."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = hmac.new(secret, signing_input.encode(), digest).digest()
    return f"{signing_input}.{b64(signature)}"


def claims_at(now: int, **extra: Any) -> dict[str, Any]:
    return {"iss": "test-key", "iat": now, "nbf": now - 5, "exp": now + 600, **extra}


def codec_at(keyring: Keyring, now: float) -> TokenCodec:
    return TokenCodec(keyring, clock=lambda: now)


def refusal(keyring: Keyring, token: str, error: type[E], *, now: float = NOW) -> E:
    """What decoding ``token`` at ``now`` raises, which must be an ``error``."""
    with pytest.raises(error) as caught:
        codec_at(keyring, now).decode(token, TYP)
    return caught.value


def test_round_trip_returns_header_claims_and_key(keyring: Keyring) -> None:
    """A token encoded by the codec decodes to the same claims, header and signing key."""
    codec = codec_at(keyring, NOW)
    token = codec.encode(claims_at(NOW, extra="value"), TYP)
    decoded = codec.decode(token, TYP)
    assert decoded.claims == claims_at(NOW, extra="value")
    assert decoded.header == {"alg": "HS256", "typ": TYP, "kid": "test-key"}
    assert decoded.key is keyring.active


@pytest.mark.parametrize(
    ("alg", "digest"),
    [("none", None), ("HS384", hashlib.sha384), ("HS512", hashlib.sha512), ("RS256", None)],
)
def test_algorithms_other_than_hs256_are_refused(
    signing_key: SigningKey, keyring: Keyring, alg: str, digest: Any
) -> None:
    """``none``, other HMAC sizes and asymmetric names are refused before any key is used."""
    header = {"alg": alg, "typ": TYP, "kid": signing_key.kid}
    if digest is None:
        # alg none: empty signature; RS256: the classic confusion, HMAC-SHA256 over the secret.
        token = compact(header, claims_at(NOW), signing_key.secret, hashlib.sha256)
        if alg == "none":
            token = token.rsplit(".", 1)[0] + "."
    else:
        token = compact(header, claims_at(NOW), signing_key.secret, digest)
    assert refusal(keyring, token, DisallowedAlgorithmError).code == "bad_algorithm"


def test_token_signed_by_pyjwt_with_hs384_and_the_same_key_is_refused(
    signing_key: SigningKey, keyring: Keyring
) -> None:
    """A genuine HS384 signature with our own key still fails the HS256-only allow-list."""
    token = jwt.encode(
        claims_at(NOW), signing_key.secret, "HS384", headers={"typ": TYP, "kid": signing_key.kid}
    )
    with pytest.raises(DisallowedAlgorithmError):
        codec_at(keyring, NOW).decode(token, TYP)


def test_hs256_header_over_another_digest_is_a_bad_signature(
    signing_key: SigningKey, keyring: Keyring
) -> None:
    """Claiming HS256 while signing with SHA-512 fails the signature check."""
    header = {"alg": "HS256", "typ": TYP, "kid": signing_key.kid}
    token = compact(header, claims_at(NOW), signing_key.secret, hashlib.sha512)
    assert refusal(keyring, token, BadSignatureError).code == "bad_signature"


def test_tampered_payload_is_a_bad_signature(keyring: Keyring) -> None:
    """Changing one claim after signing makes the token fail with ``bad_signature``."""
    codec = codec_at(keyring, NOW)
    header, _payload, signature = codec.encode(claims_at(NOW, role="user"), TYP).split(".")
    forged = b64(json.dumps(claims_at(NOW, role="admin")).encode())
    with pytest.raises(BadSignatureError) as caught:
        codec.decode(f"{header}.{forged}.{signature}", TYP)
    assert caught.value.code == "bad_signature"


def test_token_signed_with_another_secret_under_our_key_id_is_refused(keyring: Keyring) -> None:
    """Knowing the key id is not enough: a different secret gives ``bad_signature``."""
    impostor = TokenCodec(Keyring(SigningKey.from_text("test-key", random_secret())))
    token = impostor.encode(claims_at(NOW), TYP)
    with pytest.raises(BadSignatureError):
        codec_at(keyring, NOW).decode(token, TYP)


@pytest.mark.parametrize("typ", ["JWT", "other+jwt", None])
def test_wrong_or_missing_typ_is_refused(
    signing_key: SigningKey, keyring: Keyring, typ: Any
) -> None:
    """A correctly signed token of another type (or untyped) is refused with ``wrong_type``."""
    headers = {"kid": signing_key.kid} if typ is None else {"kid": signing_key.kid, "typ": typ}
    token = jwt.encode(claims_at(NOW), signing_key.secret, "HS256", headers=headers)
    if typ is None:
        # PyJWT adds typ=JWT by default; remove it to get an untyped header.
        token = compact(
            {"alg": "HS256", "kid": signing_key.kid},
            claims_at(NOW),
            signing_key.secret,
            hashlib.sha256,
        )
    assert refusal(keyring, token, WrongTypeError).code == "wrong_type"


def test_unknown_key_id_is_refused(keyring: Keyring) -> None:
    """A token naming a key the keyring does not hold fails with ``unknown_key``."""
    other = TokenCodec(Keyring(SigningKey.from_text("elsewhere", random_secret())))
    token = other.encode(claims_at(NOW), TYP)
    assert refusal(keyring, token, UnknownKeyError).code == "unknown_key"


def test_key_is_found_by_iss_when_the_header_has_no_kid(
    signing_key: SigningKey, keyring: Keyring
) -> None:
    """Tokens from signers that omit ``kid`` are verified with the key named by ``iss``."""
    token = compact(
        {"alg": "HS256", "typ": TYP}, claims_at(NOW), signing_key.secret, hashlib.sha256
    )
    assert codec_at(keyring, NOW).decode(token, TYP).key is signing_key


def test_rotation_previous_key_verifies_while_listed_and_not_after(signing_key: SigningKey) -> None:
    """After rotation old tokens verify while the old key is listed, then fail ``unknown_key``."""
    old_token = codec_at(Keyring(signing_key), NOW).encode(claims_at(NOW), TYP)
    new_key = SigningKey.from_text("next-key", random_secret())

    rotating = codec_at(Keyring(new_key, [signing_key]), NOW)
    assert rotating.decode(old_token, TYP).key is signing_key
    assert read_unverified_header(rotating.encode(claims_at(NOW), TYP))["kid"] == "next-key"

    rotated = codec_at(Keyring(new_key), NOW)
    with pytest.raises(UnknownKeyError):
        rotated.decode(old_token, TYP)


def test_expired_token_is_refused_after_the_leeway(keyring: Keyring) -> None:
    """``exp`` more than the leeway in the past gives ``expired``, and the message says how long."""
    token = codec_at(keyring, NOW).encode(claims_at(NOW), TYP)
    later = NOW + 600 + 11
    error = refusal(keyring, token, ExpiredTokenError, now=later)
    assert error.code == "expired"
    assert "expired 11 s ago" in str(error)


def test_expiry_within_the_leeway_is_tolerated(keyring: Keyring) -> None:
    """A token a few seconds past ``exp`` (clock skew) still verifies."""
    token = codec_at(keyring, NOW).encode(claims_at(NOW), TYP)
    assert codec_at(keyring, NOW + 600 + 5).decode(token, TYP).claims["exp"] == NOW + 600


@pytest.mark.parametrize("claim", ["nbf", "iat"])
def test_not_yet_valid_token_is_refused(keyring: Keyring, claim: str) -> None:
    """A token whose ``nbf`` or ``iat`` is beyond the leeway in the future is ``not_yet_valid``."""
    future = NOW + 3600
    claims = claims_at(NOW)
    claims[claim] = future
    token = codec_at(keyring, NOW).encode(claims, TYP)
    error = refusal(keyring, token, NotYetValidTokenError)
    assert error.code == "not_yet_valid"
    assert claim in str(error)


def test_missing_required_claim_is_refused(keyring: Keyring) -> None:
    """A signed token without a required claim fails with ``invalid_claims``."""
    claims = claims_at(NOW)
    del claims["exp"]
    token = codec_at(keyring, NOW).encode(claims, TYP)
    with pytest.raises(InvalidClaimsError) as caught:
        codec_at(keyring, NOW).decode(token, TYP, required=("exp", "iat"))
    assert caught.value.code == "invalid_claims"


@pytest.mark.parametrize("value", ["soon", True, None])
def test_non_numeric_time_claim_is_refused(keyring: Keyring, value: Any) -> None:
    """``exp`` must be a number; strings, booleans and null are ``invalid_claims``."""
    token = codec_at(keyring, NOW).encode(claims_at(NOW, exp=value), TYP)
    assert refusal(keyring, token, InvalidClaimsError).code == "invalid_claims"


@pytest.mark.parametrize(
    "token",
    ["", "abc", "a.b", "a.b.c.d", "!!!.???.***", "e30.e30", "x" * (MAX_TOKEN_BYTES + 1)],
)
def test_malformed_tokens_are_refused(keyring: Keyring, token: str) -> None:
    """Anything that is not a compact JWS of sane size is ``malformed``."""
    assert refusal(keyring, token, MalformedTokenError).code == "malformed"


def test_duplicate_json_members_are_refused(signing_key: SigningKey, keyring: Keyring) -> None:
    """A header or payload with a repeated member (parsers disagree on it) is ``malformed``."""
    header = b64(b'{"alg":"HS256","typ":"test+jwt","kid":"test-key","kid":"test-key"}')
    payload = b64(json.dumps(claims_at(NOW)).encode())
    signature = hmac.new(signing_key.secret, f"{header}.{payload}".encode(), hashlib.sha256)
    with pytest.raises(MalformedTokenError):
        codec_at(keyring, NOW).decode(f"{header}.{payload}.{b64(signature.digest())}", TYP)

    good_header = b64(json.dumps({"alg": "HS256", "typ": TYP, "kid": "test-key"}).encode())
    duplicated = b64(b'{"iss":"test-key","iat":1,"iss":"test-key"}')
    signature = hmac.new(signing_key.secret, f"{good_header}.{duplicated}".encode(), hashlib.sha256)
    with pytest.raises(MalformedTokenError):
        codec_at(keyring, NOW).decode(f"{good_header}.{duplicated}.{b64(signature.digest())}", TYP)


@pytest.mark.parametrize(
    "extra",
    ['"note":"\\ud800"', '"n":1e999', '"deep":' + "[" * 70 + "]" * 70],
    ids=["lone-surrogate", "float-overflow", "nested-70-deep"],
)
def test_claims_that_are_not_plain_json_are_refused(
    signing_key: SigningKey, keyring: Keyring, extra: str
) -> None:
    """Correctly signed claims holding a lone surrogate, ``1e999`` or deep nesting are
    ``malformed``: as session records they would make every read of it fail."""
    header = b64(json.dumps({"alg": "HS256", "typ": TYP, "kid": "test-key"}).encode())
    payload = b64(json.dumps(claims_at(NOW)).encode()[:-1] + b"," + extra.encode() + b"}")
    signature = hmac.new(signing_key.secret, f"{header}.{payload}".encode(), hashlib.sha256)
    with pytest.raises(MalformedTokenError):
        codec_at(keyring, NOW).decode(f"{header}.{payload}.{b64(signature.digest())}", TYP)


def test_unverified_readers_show_what_a_token_says(keyring: Keyring) -> None:
    """The inspection helpers decode header and claims without checking the signature."""
    token = codec_at(keyring, NOW).encode(claims_at(NOW), TYP)
    assert read_unverified_header(token)["typ"] == TYP
    assert read_unverified_claims(token) == claims_at(NOW)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0 s"),
        (59, "59 s"),
        (60, "1 min"),
        (95, "1 min 35 s"),
        (-95, "1 min 35 s"),
        (3600, "1 h"),
        (3660, "1 h 1 min"),
        (3 * 86400, "3 days"),
    ],
)
def test_humanize_seconds(seconds: int, text: str) -> None:
    """Durations read as people say them, sign dropped."""
    assert humanize_seconds(seconds) == text

"""TokenCodec.encode's fast path yields PyJWT's exact bytes and PyJWT verifies them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import jwt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import random_secret
from tokens import Keyring, SigningKey, TokenCodec
from tokens.claims import REGISTERED_CLAIMS
from tokens.profiles.soul_machines import TYP

SM_CLAIMS: dict[str, Any] = {
    "iss": "test-key",
    "iat": 1_700_000_000,
    "nbf": 1_699_999_995,
    "exp": 1_700_001_800,
    "sm-session-server": "dh.soulmachines.cloud",
    "sm-control": "wss://example.invalid/ws",
    "sm-control-via-browser": False,
    "session_id": "abc",
}

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=12,
)


def pyjwt_encode(claims: dict[str, Any], key: SigningKey, typ: str) -> str:
    return jwt.encode(claims, key.secret, algorithm="HS256", headers={"typ": typ, "kid": key.kid})


def test_soul_machines_claims_are_byte_identical_to_pyjwt(
    signing_key: SigningKey, keyring: Keyring
) -> None:
    """A Soul Machines payload encodes to the very string jwt.encode produces."""
    codec = TokenCodec(keyring)
    assert codec.encode(SM_CLAIMS, TYP) == pyjwt_encode(SM_CLAIMS, signing_key, TYP)


# Registered names are left out: jwt.encode and jwt.decode check their types
# (a non-string iss raising TypeError is pinned below), so arbitrary values
# there test PyJWT's validation, not byte identity.
custom_names = st.text().filter(lambda name: name not in REGISTERED_CLAIMS)


@settings(max_examples=60, deadline=None)
@given(custom=st.dictionaries(custom_names, json_values, max_size=6), typ=st.text(min_size=1))
def test_any_json_claims_and_typ_are_byte_identical_and_verify(
    custom: dict[str, Any], typ: str
) -> None:
    """Arbitrary JSON claims and any typ give jwt.encode's bytes, and jwt.decode accepts them."""
    key = SigningKey.from_text("k1", random_secret())
    claims = {**SM_CLAIMS, **custom}
    token = TokenCodec(Keyring(key)).encode(claims, typ)
    assert token == pyjwt_encode(claims, key, typ)
    assert jwt.decode(token, key.secret, algorithms=["HS256"], options={"verify_exp": False}) == (
        claims
    )
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "kid": "k1", "typ": typ}


def test_cached_header_follows_typ_and_key(signing_key: SigningKey) -> None:
    """The per-(key, typ) header cache never leaks one typ's or key's header into another."""
    other = SigningKey.from_text("other-key", random_secret())
    codec = TokenCodec(Keyring(signing_key))
    for typ in (TYP, "other+jwt", TYP):
        assert codec.encode(SM_CLAIMS, typ) == pyjwt_encode(SM_CLAIMS, signing_key, typ)
    codec.keyring = Keyring(other, [signing_key])
    assert codec.encode(SM_CLAIMS, TYP) == pyjwt_encode(SM_CLAIMS, other, TYP)


@pytest.mark.parametrize("length", [32, 63, 64, 65, 200])
def test_keys_either_side_of_the_hash_block_sign_like_pyjwt(length: int) -> None:
    """Secrets shorter than, equal to and longer than SHA-256's 64-byte block (hashed
    first, RFC 2104) sign to jwt.encode's bytes."""
    key = SigningKey("block-key", bytes(range(length)))
    codec = TokenCodec(Keyring(key))
    assert codec.encode(SM_CLAIMS, TYP) == pyjwt_encode(SM_CLAIMS, key, TYP)


def test_codec_decodes_what_it_encodes(keyring: Keyring) -> None:
    """A fast-encoded token passes the codec's own (PyJWT-backed) verification."""
    codec = TokenCodec(keyring, clock=lambda: 1_700_000_100)
    decoded = codec.decode(codec.encode(SM_CLAIMS, TYP), TYP)
    assert decoded.claims == SM_CLAIMS
    assert decoded.header == {"alg": "HS256", "kid": "test-key", "typ": TYP}


def test_datetime_time_claims_convert_like_pyjwt(signing_key: SigningKey, keyring: Keyring) -> None:
    """datetime values of exp/iat/nbf become Unix seconds exactly as jwt.encode makes them."""
    moment = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    claims = {"iss": "test-key", "exp": moment, "iat": moment, "nbf": moment, "other": 1}
    assert TokenCodec(keyring).encode(claims, TYP) == pyjwt_encode(claims, signing_key, TYP)


def test_non_string_issuer_is_refused_like_pyjwt(keyring: Keyring) -> None:
    """A non-string iss raises TypeError, as jwt.encode does."""
    with pytest.raises(TypeError, match="Issuer"):
        TokenCodec(keyring).encode({"iss": 5}, TYP)


def test_asymmetric_looking_secret_is_refused_like_pyjwt() -> None:
    """A PEM public key used as the HMAC secret is refused with PyJWT's InvalidKeyError."""
    pem = "-----BEGIN PUBLIC KEY-----\n" + "A" * 64 + "\n-----END PUBLIC KEY-----\n"
    key = SigningKey.from_text("pem-key", pem)
    with pytest.raises(jwt.InvalidKeyError):
        pyjwt_encode(SM_CLAIMS, key, TYP)
    with pytest.raises(jwt.InvalidKeyError):
        TokenCodec(Keyring(key)).encode(SM_CLAIMS, TYP)

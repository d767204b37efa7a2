"""The Google CCAI Platform profile: claims, anonymous identifiers, verification."""

from __future__ import annotations

import pytest

from tests.profile_factories import COMPANY, ccai, codec, secret
from tokens.errors import (
    BadSignatureError,
    ClaimsError,
    ExpiredTokenError,
    PolicyError,
    WrongIssuerError,
)
from tokens.jws import read_unverified_claims, read_unverified_header
from tokens.profiles.ccai import CcaiPolicy, CcaiProfile, CcaiUser


def test_authenticated_user_token_has_exactly_the_vendor_claims() -> None:
    """A known user's token carries iss, iat, exp = iat + 3600, identifier, name and email."""
    token = ccai().mint(CcaiUser("u-42", "Ada Lovelace", "ada@example.com"))
    claims = read_unverified_claims(token)
    assert set(claims) == {"iss", "iat", "exp", "identifier", "name", "email"}
    assert claims["iss"] == COMPANY
    assert claims["exp"] == claims["iat"] + 3600
    assert (claims["identifier"], claims["name"], claims["email"]) == (
        "u-42",
        "Ada Lovelace",
        "ada@example.com",
    )


def test_anonymous_token_still_has_an_identifier() -> None:
    """An anonymous visitor's token has an identifier and no name or email."""
    profile = ccai()
    token = profile.mint(CcaiUser(profile.anonymous_identifier("cookie-value")))
    assert set(read_unverified_claims(token)) == {"iss", "iat", "exp", "identifier"}


def test_anonymous_identifier_is_stable_and_distinct() -> None:
    """The same cookie gives the same identifier; another cookie or secret gives another."""
    key = secret()
    first, again, other_secret = ccai(key), ccai(key), ccai()
    assert first.anonymous_identifier("c1") == again.anonymous_identifier("c1")
    assert first.anonymous_identifier("c1") != first.anonymous_identifier("c2")
    assert first.anonymous_identifier("c1") != other_secret.anonymous_identifier("c1")
    assert first.anonymous_identifier("c1").startswith("anon-")


def test_token_is_signed_with_the_company_secret_under_its_own_typ() -> None:
    """A holder of the company secret verifies the token; another secret does not."""
    key = secret()
    token = ccai(key).mint(CcaiUser("u-1"))
    assert read_unverified_header(token)["typ"] == "ccai+jwt"
    assert ccai(key).verify(token)["identifier"] == "u-1"
    with pytest.raises(BadSignatureError):
        ccai().verify(token)


def test_token_for_another_company_is_refused() -> None:
    """A token whose iss names another company is refused as wrong_issuer."""
    key = secret()
    other = CcaiProfile(codec("ccai", key), CcaiPolicy("Other Co"))
    with pytest.raises(WrongIssuerError):
        ccai(key).verify(other.mint(CcaiUser("u-1")))


def test_expired_token_is_refused() -> None:
    """A token past its exp (beyond the leeway) is refused as expired."""
    key = secret()
    token = ccai(key, clock=lambda: 1_000_000.0).mint(CcaiUser("u-1"))
    with pytest.raises(ExpiredTokenError):
        ccai(key, clock=lambda: 1_000_000.0 + 3600 + 60).verify(token)


@pytest.mark.parametrize("ttl", [0, 59, 86401])
def test_lifetime_outside_bounds_is_refused(ttl: int) -> None:
    """The configurable lifetime stays between one minute and one day."""
    with pytest.raises(PolicyError):
        CcaiPolicy(COMPANY, ttl_seconds=ttl)


@pytest.mark.parametrize(("name", "email"), [("", None), (None, " "), (None, "x" * 300)])
def test_empty_or_oversized_user_fields_are_refused(name: str | None, email: str | None) -> None:
    """A user with a blank or oversized name or email cannot go into a token."""
    with pytest.raises(ClaimsError):
        CcaiUser("u-1", name, email)

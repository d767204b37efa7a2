"""Custom-claim rules shared by the profiles."""

from __future__ import annotations

from typing import Any

import pytest

from tokens import ClaimsError, ClaimsTooLargeError, ReservedClaimError
from tokens.claims import MAX_CLAIM_NAME_LENGTH, validate_custom_claims


def validate(claims: Any, **kwargs: Any) -> dict[str, Any]:
    return validate_custom_claims(
        claims,
        reserved=kwargs.pop("reserved", {"session_id"}),
        reserved_prefixes=("sm-",),
        **kwargs,
    )


def test_none_means_no_custom_claims() -> None:
    """Absent custom claims are an empty dict, not an error."""
    assert validate(None) == {}


def test_plain_json_claims_are_returned_as_a_copy() -> None:
    """Valid claims come back equal but not the caller's object."""
    claims = {"user": "ada", "level": 3, "tags": ["a", "b"], "meta": {"ok": True, "n": None}}
    result = validate(claims)
    assert result == claims
    assert result is not claims


@pytest.mark.parametrize("name", ["sm-control", "sm-anything", "SM-Upper", "Sm-mixed"])
def test_names_with_the_vendor_prefix_are_refused(name: str) -> None:
    """Any ``sm-`` name, in any case, is reserved by the platform and refused with a clear error."""
    with pytest.raises(ReservedClaimError) as caught:
        validate({name: "x"})
    assert caught.value.code == "reserved_claim"
    assert "'sm-'" in str(caught.value)
    assert name in str(caught.value)


@pytest.mark.parametrize("name", ["iss", "sub", "aud", "exp", "nbf", "iat", "jti", "session_id"])
def test_registered_and_server_set_names_are_refused(name: str) -> None:
    """Registered JWT claims and names the server sets itself cannot be overridden."""
    with pytest.raises(ReservedClaimError, match="the server sets it"):
        validate({name: "x"})


def test_not_an_object_is_refused() -> None:
    """Custom claims must be a mapping."""
    with pytest.raises(ClaimsError) as caught:
        validate(["a", "b"])
    assert caught.value.code == "invalid_claims"


@pytest.mark.parametrize("name", ["", 7])
def test_empty_or_non_string_names_are_refused(name: Any) -> None:
    """Claim names are non-empty strings."""
    with pytest.raises(ClaimsError, match="non-empty strings"):
        validate({name: "x"})


def test_overlong_names_are_refused() -> None:
    """Claim names longer than the limit are refused; the limit itself is fine."""
    assert validate({"n" * MAX_CLAIM_NAME_LENGTH: 1})
    with pytest.raises(ClaimsError, match="longer than"):
        validate({"n" * (MAX_CLAIM_NAME_LENGTH + 1): 1})


@pytest.mark.parametrize("value", [float("nan"), float("inf"), {1, 2}, b"bytes", object()])
def test_values_that_are_not_plain_json_are_refused(value: Any) -> None:
    """NaN, infinities, sets, bytes and objects cannot go into a token."""
    with pytest.raises(ClaimsError, match="plain JSON"):
        validate({"value": value})


def test_claims_larger_than_the_limit_are_refused() -> None:
    """The encoded size is capped; one byte over gives ``claims_too_large``."""
    fits = {"v": "x" * (100 - len('{"v":""}'))}
    assert validate(fits, max_bytes=100) == fits
    with pytest.raises(ClaimsTooLargeError) as caught:
        validate({"v": "x" * 100}, max_bytes=100)
    assert caught.value.code == "claims_too_large"

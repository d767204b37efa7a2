"""The ``aud`` origin patterns: parsing and anchored, case-insensitive matching."""

from __future__ import annotations

import pytest

from tokens.errors import ClaimsError
from tokens.origins import AudiencePattern, origin_host


@pytest.mark.parametrize(
    ("aud", "origin", "allowed"),
    [
        ("example.com", "https://example.com", True),
        ("example.com", "https://EXAMPLE.com:8443", True),
        ("Example.COM", "http://example.com", True),
        ("example.com", "https://evil-example.com", False),
        ("example.com", "https://evilexample.com", False),
        ("example.com", "https://example.com.evil.tld", False),
        ("example.com", "https://app.example.com", False),
        ("example.com", "null", False),
        ("example.com", "https://user@example.com", False),
        ("*.example.com", "https://app.example.com", True),
        ("*.example.com", "https://a.b.EXAMPLE.com", True),
        ("*.example.com", "https://example.com", False),
        ("*.example.com", "https://example.com.evil.tld", False),
        ("*.example.com", "https://evilexample.com", False),
        ("*.example.com", "https://evil-example.com", False),
        ("*.example.com", "https://app.example.com.evil.tld", False),
        ("*", "https://anything.example.org", True),
    ],
)
def test_origin_matching_table(aud: str, origin: str, allowed: bool) -> None:
    """Each aud pattern allows exactly the origins whose host it names, nothing around them."""
    assert AudiencePattern.parse(aud).allows(origin) is allowed


@pytest.mark.parametrize(
    "aud",
    [
        "",
        "https://example.com",
        "example.com/path",
        "example.com:443",
        "*example.com",
        "a.*.com",
        "*.com",
        "exa mple.com",
        "-bad.example.com",
        "**",
    ],
)
def test_unusable_aud_is_refused(aud: str) -> None:
    """An aud that is not a bare domain, a *.domain wildcard or * is refused at minting."""
    with pytest.raises(ClaimsError):
        AudiencePattern.parse(aud)


def test_pattern_round_trips_normalised() -> None:
    """A parsed pattern prints in lower case, ready to be the aud claim."""
    assert str(AudiencePattern.parse("*.Example.COM")) == "*.example.com"


@pytest.mark.parametrize(
    ("origin", "host"),
    [
        ("https://Example.com:8443", "example.com"),
        ("http://example.com.", "example.com"),
        ("null", None),
        ("ftp://example.com", None),
        ("https://example.com/path", None),
        ("https://example.com:99999", None),
    ],
)
def test_origin_host(origin: str, host: str | None) -> None:
    """Only a well-formed http(s) origin yields a host; anything else yields none."""
    assert origin_host(origin) == host

"""Allowed-origin patterns for a token's ``aud``: exact host, ``*.domain``, or ``*``.

Matching compares the *host* of the request's ``Origin`` (scheme and port are
ignored, as Voicegain's ``aud`` names a domain), case-insensitively and
anchored at both ends, so ``evil-example.com`` and ``example.com.evil.tld`` never
pass for ``example.com``, and ``*.example.com`` needs at least one whole label
before ``.example.com``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from tokens.errors import ClaimsError

ANY = "*"
_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
MAX_HOST_LENGTH = 253


def _normalise_host(host: str) -> str | None:
    """Lower-case ``host`` without one trailing dot, or ``None`` if it is not a DNS name."""
    host = host.lower()
    if host.endswith("."):
        host = host[:-1]
    if not host or len(host) > MAX_HOST_LENGTH:
        return None
    if not all(_LABEL.match(label) for label in host.split(".")):
        return None
    return host


def origin_host(origin: str) -> str | None:
    """The host of an ``Origin`` header value, or ``None`` if it has none (``null``, junk)."""
    try:
        parts = urlsplit(origin.strip())
        hostname = parts.hostname
        _ = parts.port  # raises ValueError for a malformed port
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or hostname is None:
        return None
    if parts.username is not None or parts.path not in ("", "/"):
        return None
    return _normalise_host(hostname)


@dataclass(frozen=True)
class AudiencePattern:
    """A parsed ``aud``: ``any`` (``*``), a wildcard over subdomains, or one host."""

    domain: str
    wildcard: bool = False
    any: bool = False

    @classmethod
    def parse(cls, aud: str) -> AudiencePattern:
        """Parse ``example.com``, ``*.example.com`` or ``*``; raise ``ClaimsError`` otherwise."""
        if not isinstance(aud, str):
            raise ClaimsError("aud must be a string")
        text = aud.strip()
        if text == ANY:
            return cls(domain=ANY, any=True)
        wildcard = text.startswith("*.")
        host = _normalise_host(text[2:] if wildcard else text)
        if host is None:
            raise ClaimsError(
                f"aud {aud!r} is not a domain: use example.com, *.example.com or *"
                " (no scheme, port or path)"
            )
        if wildcard and "." not in host:
            raise ClaimsError(f"aud {aud!r}: a wildcard needs a domain of two labels or more")
        return cls(domain=host, wildcard=wildcard)

    def __str__(self) -> str:
        if self.any:
            return ANY
        return f"*.{self.domain}" if self.wildcard else self.domain

    def allows(self, origin: str) -> bool:
        """Whether a request from ``origin`` (an ``Origin`` header value) is allowed."""
        if self.any:
            return True
        host = origin_host(origin)
        if host is None:
            return False
        if self.wildcard:
            return host.endswith("." + self.domain)
        return host == self.domain

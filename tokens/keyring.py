"""HS256 signing keys with key ids, and rotation without downtime.

The active key signs; every listed key verifies. To rotate, add the new key as
active and keep the old one listed (verify-only) until the tokens it signed
have expired, then remove it.
"""

from __future__ import annotations

import hmac
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from tokens.errors import KeyringError

MIN_KEY_BYTES = 32
_KID_PATTERN = re.compile(r"^[A-Za-z0-9._:@-]{1,128}$")


@dataclass(frozen=True)
class SigningKey:
    """One HMAC secret and the id (``kid``) it is known by.

    For Soul Machines the id is the Studio *keyName*, which is also the
    token's ``iss``.
    """

    kid: str
    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not _KID_PATTERN.match(self.kid):
            raise KeyringError(
                f"key id {self.kid!r} is not usable: 1-128 characters of "
                "letters, digits and . _ : @ -"
            )
        if len(self.secret) < MIN_KEY_BYTES:
            raise KeyringError(
                f"key {self.kid!r} is {len(self.secret)} bytes long; HS256 keys must be "
                f"at least {MIN_KEY_BYTES} bytes (generate one with `orchestrator keygen`)"
            )

    @classmethod
    def from_text(cls, kid: str, secret: str) -> SigningKey:
        """A key whose secret is the UTF-8 bytes of ``secret``, as the vendor's samples use it."""
        return cls(kid, secret.encode("utf-8"))

    def same_secret(self, other: SigningKey) -> bool:
        return hmac.compare_digest(self.secret, other.secret)


def generate_secret(nbytes: int = 48) -> str:
    """A strong random secret, URL-safe text of ``nbytes`` random bytes."""
    if nbytes < MIN_KEY_BYTES:
        raise KeyringError(f"refusing to generate a key shorter than {MIN_KEY_BYTES} bytes")
    return secrets.token_urlsafe(nbytes)


class Keyring:
    """The active signing key plus verify-only keys, looked up by ``kid``."""

    def __init__(self, active: SigningKey, verify_only: Iterable[SigningKey] = ()) -> None:
        keys: dict[str, SigningKey] = {active.kid: active}
        for key in verify_only:
            if key.kid in keys:
                raise KeyringError(f"key id {key.kid!r} is listed twice")
            keys[key.kid] = key
        self._active = active
        self._keys: Mapping[str, SigningKey] = keys

    @property
    def active(self) -> SigningKey:
        return self._active

    @property
    def kids(self) -> tuple[str, ...]:
        return tuple(self._keys)

    def get(self, kid: str) -> SigningKey | None:
        # A dict lookup by exact string: a hostile ``kid`` (paths, SQL, URLs)
        # can only miss.
        return self._keys.get(kid)

    def __repr__(self) -> str:
        return f"Keyring(active={self._active.kid!r}, kids={list(self._keys)!r})"

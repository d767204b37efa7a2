"""Shared fixtures: fresh random keys per test, settings, and a real server."""

from __future__ import annotations

import secrets

import pytest

from tokens import Keyring, SigningKey


def random_secret() -> str:
    """A fresh 48-byte key; tests never use a key from the repository."""
    return secrets.token_urlsafe(48)


@pytest.fixture
def signing_key() -> SigningKey:
    return SigningKey.from_text("test-key", random_secret())


@pytest.fixture
def keyring(signing_key: SigningKey) -> Keyring:
    return Keyring(signing_key)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"

"""Keyring: minimum key length, key ids, active key vs verify-only keys."""

from __future__ import annotations

import pytest

from tests.conftest import random_secret
from tokens import MIN_KEY_BYTES, Keyring, KeyringError, SigningKey, generate_secret


def test_key_shorter_than_32_bytes_is_refused_with_a_clear_message() -> None:
    """A 31-byte HS256 key is refused, and the message names the minimum and the fix."""
    with pytest.raises(KeyringError) as caught:
        SigningKey.from_text("short", "x" * (MIN_KEY_BYTES - 1))
    assert caught.value.code == "bad_keyring"
    message = str(caught.value)
    assert "31 bytes" in message
    assert "at least 32 bytes" in message
    assert "orchestrator keygen" in message


def test_key_of_exactly_32_bytes_is_accepted() -> None:
    """The minimum is inclusive: a 32-byte key is usable."""
    key = SigningKey.from_text("edge", random_secret()[:MIN_KEY_BYTES])
    assert len(key.secret) == MIN_KEY_BYTES


def test_key_length_counts_utf8_bytes_not_characters() -> None:
    """Sixteen two-byte characters make a 32-byte key, which is accepted."""
    key = SigningKey.from_text("utf8", "é" * 16)
    assert len(key.secret) == 32


@pytest.mark.parametrize("kid", ["", "has space", "slash/../etc", "x" * 129, "semi;colon"])
def test_unusable_key_ids_are_refused(kid: str) -> None:
    """Key ids outside the safe character set or length are refused at construction."""
    with pytest.raises(KeyringError):
        SigningKey.from_text(kid, random_secret())


def test_secret_never_appears_in_repr() -> None:
    """Printing a key or a keyring shows key ids but never the secret."""
    secret = random_secret()
    key = SigningKey.from_text("named", secret)
    assert secret not in repr(key)
    assert secret not in repr(Keyring(key))
    assert "named" in repr(Keyring(key))


def test_active_key_signs_and_every_listed_key_is_found() -> None:
    """The active key is the first argument; ``get`` finds active and verify-only keys alike."""
    new = SigningKey.from_text("new", random_secret())
    old = SigningKey.from_text("old", random_secret())
    keyring = Keyring(new, [old])
    assert keyring.active is new
    assert keyring.kids == ("new", "old")
    assert keyring.get("old") is old
    assert keyring.get("new") is new
    assert keyring.get("missing") is None


def test_same_key_id_listed_twice_is_refused() -> None:
    """Two keys with one id would make verification ambiguous, so the keyring refuses them."""
    first = SigningKey.from_text("dup", random_secret())
    second = SigningKey.from_text("dup", random_secret())
    with pytest.raises(KeyringError, match="listed twice"):
        Keyring(first, [second])


def test_same_secret_compares_secrets() -> None:
    """``same_secret`` is true only for equal secrets, whatever the key ids."""
    secret = random_secret()
    a = SigningKey.from_text("a", secret)
    assert a.same_secret(SigningKey.from_text("b", secret))
    assert not a.same_secret(SigningKey.from_text("a", random_secret()))


def test_generated_secrets_are_long_enough_and_distinct() -> None:
    """``generate_secret`` gives usable, different keys each call."""
    first, second = generate_secret(), generate_secret()
    assert first != second
    assert len(first.encode()) >= MIN_KEY_BYTES
    SigningKey.from_text("generated", first)


def test_generating_a_short_secret_is_refused() -> None:
    """Asking for fewer than 32 random bytes is an error, not a weak key."""
    with pytest.raises(KeyringError):
        generate_secret(16)

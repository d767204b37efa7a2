"""The webhook signature: what a backend verifies, and every way it refuses."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from orchestrator.handlers.signing import (
    ReplayGuard,
    SignatureError,
    sign,
    signature_for,
    verify_signature,
)
from tests.conftest import random_secret

BODY = b'{"type":"turn","text":"hello"}'
NOW = 1_718_000_000


def refusal(secret: str, header: str | None, body: bytes = BODY, **kwargs: object) -> str:
    with pytest.raises(SignatureError) as caught:
        verify_signature(secret, header, body, now=NOW, **kwargs)  # type: ignore[arg-type]
    return caught.value.reason


def test_the_signature_is_the_hmac_of_timestamp_dot_body_in_hex() -> None:
    """The scheme in one line, as any language computes it."""
    secret = random_secret()
    expected = hmac.new(secret.encode(), b"1718000000." + BODY, hashlib.sha256).hexdigest()
    assert sign(secret, BODY, timestamp=NOW) == f"t={NOW},v1={expected}"
    assert signature_for(secret.encode(), NOW, BODY) == expected


def test_a_fresh_signature_verifies_and_gives_its_timestamp() -> None:
    secret = random_secret()
    assert verify_signature(secret, sign(secret, BODY, timestamp=NOW), BODY, now=NOW + 10) == NOW
    assert verify_signature(secret, sign(secret, BODY), BODY) > 0  # the real clock


def test_a_missing_or_malformed_header_is_refused() -> None:
    secret = random_secret()
    assert refusal(secret, None) == "missing"
    assert refusal(secret, "") == "missing"
    assert refusal(secret, "v1=abc") == "malformed"
    assert refusal(secret, f"t={NOW}") == "malformed"
    assert refusal(secret, f"t=-{NOW},v1=ab") == "malformed"
    assert refusal(secret, "t=１２,v1=ab") == "malformed"  # noqa: RUF001 (non-ASCII digits)
    assert refusal(secret, "t=1," + "v1=a," * 400) == "malformed"  # too long
    assert refusal(secret, f"t={'9' * 400},v1=ab") == "malformed"
    with pytest.raises(SignatureError, match="needs t="):  # the real clock: OverflowError
        verify_signature(secret, f"t={'9' * 400},v1=ab", BODY)
    assert refusal(secret, f"t={'1' * 13},v1=ab") == "malformed"  # not Unix seconds


def test_another_secret_or_another_body_does_not_verify() -> None:
    secret = random_secret()
    header = sign(secret, BODY, timestamp=NOW)
    assert refusal(random_secret(), header) == "mismatch"
    assert refusal(secret, header, BODY + b" ") == "mismatch"
    assert refusal(secret, header.replace(f"t={NOW}", f"t={NOW + 1}")) == "mismatch"
    assert refusal(secret, f"t={NOW},v1=é") == "mismatch"  # not hex, no crash


def test_a_stale_or_future_timestamp_is_refused() -> None:
    secret = random_secret()
    old = sign(secret, BODY, timestamp=NOW - 301)
    future = sign(secret, BODY, timestamp=NOW + 301)
    assert refusal(secret, old) == "stale"
    assert refusal(secret, future) == "stale"
    assert verify_signature(secret, old, BODY, now=NOW, tolerance_seconds=600) == NOW - 301


def test_any_of_several_v1_values_may_match_while_a_secret_rotates() -> None:
    old, new = random_secret(), random_secret()
    header = f"{sign(new, BODY, timestamp=NOW)},v1={signature_for(old, NOW, BODY)}"
    assert verify_signature(old, header, BODY, now=NOW) == NOW
    assert verify_signature(new, header, BODY, now=NOW) == NOW


def test_a_replayed_signature_is_refused_by_a_replay_guard() -> None:
    secret = random_secret()
    guard = ReplayGuard()
    header = sign(secret, BODY, timestamp=NOW)
    assert verify_signature(secret, header, BODY, now=NOW, replay_guard=guard) == NOW
    assert refusal(secret, header, replay_guard=guard) == "replayed"
    other = sign(secret, b"{}", timestamp=NOW)
    assert verify_signature(secret, other, b"{}", now=NOW, replay_guard=guard) == NOW


def test_the_replay_guard_forgets_pairs_once_their_timestamps_are_stale() -> None:
    """Memory stays bounded by the traffic of one tolerance window."""
    secret = random_secret()
    guard = ReplayGuard()
    for offset in range(5):
        header = sign(secret, BODY, timestamp=NOW + offset)
        verify_signature(secret, header, BODY, now=NOW + offset, replay_guard=guard)
    assert len(guard) == 5
    later = NOW + 1000
    verify_signature(
        secret, sign(secret, BODY, timestamp=later), BODY, now=later, replay_guard=guard
    )
    assert len(guard) == 1

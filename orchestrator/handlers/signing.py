"""The webhook signature: a timestamped HMAC-SHA256 over the timestamp and the body.

Every request the webhook handler sends carries::

    Orchestrator-Signature: t=1718000000,v1=<64 hex digits>

``v1`` is the hex HMAC-SHA256, keyed with ``WEBHOOK_SECRET`` (its UTF-8 bytes),
of ``"<t>.<body>"``: the decimal timestamp, a dot, and the body's exact bytes
(the scheme Stripe uses). Signing the timestamp with the body lets a receiver
refuse an old request replayed by whoever recorded it: ``verify_signature``
refuses a timestamp further than ``tolerance_seconds`` from now, and, given a
``ReplayGuard``, a signature it has already accepted within that window.

Standard library only, so a Python backend can use it (or copy it) as is.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "Orchestrator-Signature"
DEFAULT_TOLERANCE_SECONDS = 300
SCHEME = "v1"
_MAX_HEADER_CHARS = 1024  # a few v1 values while the secret rotates; more is not ours
# Unix seconds have 10 digits until the year 2286; a longer ``t`` is not ours, and one
# beyond a float's range made the staleness check raise ``OverflowError``.
MAX_TIMESTAMP_DIGITS = 12


class SignatureError(ValueError):
    """The signature does not prove the request is ours and fresh; ``reason`` says why."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason  # missing | malformed | stale | mismatch | replayed


def _key(secret: str | bytes) -> bytes:
    return secret.encode("utf-8") if isinstance(secret, str) else secret


def signature_for(secret: str | bytes, timestamp: int, body: bytes) -> str:
    """The hex ``v1`` value: HMAC-SHA256 of ``b"<timestamp>." + body``."""
    message = str(timestamp).encode("ascii") + b"." + body
    return hmac.new(_key(secret), message, hashlib.sha256).hexdigest()


def sign(secret: str | bytes, body: bytes, *, timestamp: int | None = None) -> str:
    """The ``Orchestrator-Signature`` header value for ``body`` sent now (or at ``timestamp``)."""
    at = int(time.time()) if timestamp is None else timestamp
    return f"t={at},{SCHEME}={signature_for(secret, at, body)}"


class ReplayGuard:
    """The (timestamp, signature) pairs accepted within the tolerance window.

    A pair seen again is a replay; pairs older than the window are forgotten,
    since ``verify_signature`` refuses their timestamps as stale anyway. One
    process's memory: several instances of a receiver share the pairs in their
    own store instead (e.g. Redis ``SET key NX EX <tolerance>``).
    """

    def __init__(self) -> None:
        self._seen: set[tuple[int, str]] = set()
        self._oldest = 0  # no pair's timestamp is older than this

    def first_time(self, timestamp: int, signature: str, *, horizon: float) -> bool:
        """Record the pair; ``False`` when it was recorded before (a replay).

        ``horizon``: timestamps before it are refused as stale, so pairs
        older than it need not be remembered.
        """
        if self._oldest < horizon:  # forget the pairs a replay of would be stale anyway
            self._seen = {pair for pair in self._seen if pair[0] >= horizon}
            self._oldest = min((pair[0] for pair in self._seen), default=timestamp)
        key = (timestamp, signature)
        if key in self._seen:
            return False
        self._seen.add(key)
        self._oldest = min(self._oldest, timestamp)
        return True

    def __len__(self) -> int:
        return len(self._seen)


def parse_header(header: str | None) -> tuple[int, list[str]]:
    """``(t, [v1 values])`` of a header value; ``SignatureError`` when absent or malformed."""
    if not header:
        raise SignatureError("missing", f"no {SIGNATURE_HEADER} header")
    if len(header) > _MAX_HEADER_CHARS:
        raise SignatureError("malformed", f"{SIGNATURE_HEADER} is too long")
    timestamp: int | None = None
    signatures: list[str] = []
    for item in header.split(","):
        name, _, value = item.strip().partition("=")
        if (
            name == "t"
            and value.isascii()
            and value.isdigit()
            and len(value) <= MAX_TIMESTAMP_DIGITS
        ):
            timestamp = int(value)
        elif name == SCHEME and value:
            signatures.append(value)
    if timestamp is None or not signatures:
        raise SignatureError("malformed", f"{SIGNATURE_HEADER} needs t=<unix time>,v1=<hex>")
    return timestamp, signatures


def verify_signature(
    secret: str | bytes,
    header: str | None,
    body: bytes,
    *,
    tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
    replay_guard: ReplayGuard | None = None,
) -> int:
    """Check ``header`` against ``body`` (the raw bytes received); return its timestamp.

    Raises ``SignatureError`` (``reason``: missing, malformed, stale, mismatch,
    replayed). Any of several ``v1`` values may match (a sender rotating its
    secret); the comparison takes constant time.
    """
    timestamp, signatures = parse_header(header)
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_seconds:
        raise SignatureError(
            "stale", f"timestamp is more than {tolerance_seconds:g} seconds from now"
        )
    expected = signature_for(secret, timestamp, body)
    wanted = expected.encode("ascii")
    matched = next(
        (s for s in signatures if hmac.compare_digest(s.encode("utf-8", "replace"), wanted)),
        None,
    )
    if matched is None:
        raise SignatureError("mismatch", "no v1 signature matches the body and the secret")
    if replay_guard is not None and not replay_guard.first_time(
        timestamp, matched, horizon=current - tolerance_seconds
    ):
        raise SignatureError("replayed", "this signature was already accepted")
    return timestamp

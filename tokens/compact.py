"""A compact JWS (RFC 7515 §7.1) read once, as strictly as PyJWT 2.15 reads it.

PyJWT reads a token once for its header and again to verify it, checking each
base64url segment's alphabet with a per-character generator: most of a
verification's cost. ``parse`` reads it once with the standard library and
keeps every refusal PyJWT makes, in PyJWT's words (the codec's messages wrap
them: "unreadable header: Invalid payload padding"). On top, JSON is read by
the project's strict rules: no duplicate members (parsers resolve them
differently), no ``NaN``/``Infinity`` and no number past float's range (both
would slip past the time checks), and claims must be plain JSON (see jsonsafe).
tests/tokens/test_compact.py pins each refusal against PyJWT itself.
"""

from __future__ import annotations

import binascii
import json
from typing import Any, NamedTuple

import jwt

from tokens.errors import MalformedTokenError
from tokens.jsonsafe import check_parsed, decode, finite_float

MAX_TOKEN_BYTES = 8192

_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_URLSAFE = bytes.maketrans(b"+/", b"-_")
_STANDARD = bytes.maketrans(b"-_", b"+/")
# PyJWT's header checks (a string kid, only the crit extensions it supports):
# called, not copied, so the two cannot drift apart.
_validate_headers = jwt.PyJWS()._validate_headers

# Headers read before, by their segment: every token one key signs for one
# profile has the same. Only small flat ones (values shared by the copies
# handed out cannot be mutated), a bounded number (the segment is the sender's).
_HEADERS: dict[bytes, dict[str, Any]] = {}
_HEADERS_CACHED = 64
_HEADER_CACHED_BYTES = 512
_SCALARS = (str, int, float, bool, type(None))


def b64url(data: bytes) -> bytes:
    """Unpadded base64url (RFC 7515 §2): ``urlsafe_b64encode(data).rstrip(b"=")``."""
    return binascii.b2a_base64(data, newline=False).translate(_URLSAFE).rstrip(b"=")


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, value in pairs:
        if name in result:
            raise MalformedTokenError(f"duplicate JSON member {name!r}")
        result[name] = value
    return result


def _reject_constant(name: str) -> Any:
    raise MalformedTokenError(f"{name} is not a JSON number (RFC 8259)")


class _StrictJSONDecoder(json.JSONDecoder):
    """Refuses duplicate members, ``NaN``/``Infinity`` and numbers past float's range."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs["object_pairs_hook"] = _reject_duplicate_keys
        kwargs["parse_constant"] = _reject_constant
        kwargs["parse_float"] = finite_float
        super().__init__(**kwargs)


_STRICT = _StrictJSONDecoder()


def strict_loads(text: str) -> Any:
    """``json.loads(text, cls=_StrictJSONDecoder)`` without building a decoder per call."""
    return decode(_STRICT, text)


class CompactJws(NamedTuple):
    """A token's parts: checked header, raw payload bytes, signing input, signature."""

    header: dict[str, Any]
    payload: bytes  # empty when the header says b64: false (RFC 7797, refused later)
    signing_input: bytes
    signature: bytes

    @property
    def detached(self) -> bool:
        return self.header.get("b64", True) is False

    def detached_refusal(self) -> str:
        """PyJWT's reason for refusing a b64: false token (which needs a detached payload)."""
        crit = self.header.get("crit") or []
        if not isinstance(crit, list) or "b64" not in crit:
            return "The 'b64' header parameter requires 'b64' to be listed in 'crit'."
        return (
            'It is required that you pass in a value for the "detached_payload" argument '
            "to decode a message having the b64 header set to false."
        )


def parse(token: str) -> CompactJws:
    """The token's parts, or ``MalformedTokenError``: its size and shape, each
    segment's base64url, the header's JSON (PyJWT's reading, then the strict
    one), ``kid`` and ``crit`` checked, in PyJWT's order."""
    check_shape(token)
    try:
        data = token.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate
        raise MalformedTokenError(f"unreadable header: {exc}") from None
    signing_input, crypto_segment = data.rsplit(b".", 1)
    header_segment, payload_segment = signing_input.split(b".", 1)
    cached = _HEADERS.get(header_segment)
    if cached is not None:  # read, checked and found valid before
        header, strict_error = dict(cached), None
    else:
        header, strict_error = _read_header(_segment(header_segment, "header"))
    if header.get("b64", True) is False:
        # PyJWT leaves the payload unread then, so it cannot cost anything.
        if payload_segment:
            raise _unreadable("Payload segment must be empty when 'b64' is false.")
        payload = b""
    else:
        payload = _segment(payload_segment, "payload")
    signature = _segment(crypto_segment, "crypto")
    if cached is None:
        try:
            _validate_headers(header)
        except jwt.InvalidTokenError as exc:
            raise _unreadable(str(exc)) from None
        if strict_error is not None:
            raise strict_error
        _remember(header_segment, header)
    return CompactJws(header, payload, signing_input, signature)


def _remember(segment: bytes, header: dict[str, Any]) -> None:
    if len(segment) <= _HEADER_CACHED_BYTES and all(
        isinstance(value, _SCALARS) for value in header.values()
    ):
        if len(_HEADERS) >= _HEADERS_CACHED:
            _HEADERS.clear()
        _HEADERS[segment] = dict(header)


def check_shape(token: str) -> None:
    """A non-empty string, within the size limit, of three dot-separated parts."""
    if not isinstance(token, str) or not token:
        raise MalformedTokenError("no token")
    if len(token) > MAX_TOKEN_BYTES:
        raise MalformedTokenError(f"token is longer than {MAX_TOKEN_BYTES} bytes")
    if token.count(".") != 2:
        raise MalformedTokenError("not a compact JWS (three dot-separated parts)")


def _unreadable(reason: str) -> MalformedTokenError:
    return MalformedTokenError(f"unreadable header: {reason}")


def _segment(segment: bytes, name: str) -> bytes:
    """PyJWT's ``_decode_base64url_segment``: base64url with at most two ``=``
    (some issuers pad), only alphabet characters, and canonical (no stray bits)."""
    stripped = segment.rstrip(b"=")
    padding = len(segment) - len(stripped)
    partial = len(stripped) % 4  # characters in the last, partial group
    if (
        padding > 2
        or (padding and len(segment) % 4)
        or partial == 1
        or stripped.translate(None, _ALPHABET)
    ):
        raise _unreadable(f"Invalid {name} padding")
    # urlsafe_b64decode's own steps, minus its argument checks: the alphabet is checked.
    decoded = binascii.a2b_base64(stripped.translate(_STANDARD) + b"=" * (-partial % 4))
    # PyJWT re-encodes the whole segment to compare; only a partial last group
    # can differ (spare bits set), so re-encoding its 1-2 bytes says the same.
    if partial and b64url(decoded[1 - partial :]) != stripped[-partial:]:
        raise _unreadable(f"Invalid {name} padding")
    return decoded


def _read_header(data: bytes) -> tuple[dict[str, Any], BaseException | None]:
    """The header, and the strict reading's refusal if only that one refuses it
    (raised after PyJWT's own checks, which report first)."""
    strict_error: BaseException
    try:
        header = strict_loads(data.decode("utf-8"))
    except MalformedTokenError as exc:
        strict_error = exc
    except ValueError as exc:  # bad UTF-8 or JSON, a number out of range
        strict_error = _unreadable(str(exc))
    except RecursionError as exc:
        strict_error = exc
    else:
        # What reads strictly reads the same PyJWT's way (json.loads of the bytes).
        if not isinstance(header, dict):
            raise _unreadable("Invalid header string: must be a json object")
        return header, None
    try:
        header = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise _unreadable(f"Invalid header string: {exc}") from None
    if not isinstance(header, dict):
        raise _unreadable("Invalid header string: must be a json object")
    return header, strict_error


def verified_claims(payload: bytes) -> dict[str, Any]:
    """The claims of a signature-checked payload: strict UTF-8 (RFC 7519) and
    JSON, plain (they become session records), an object, and PyJWT's default
    ``sub``/``jti`` checks."""
    try:
        # json.loads(bytes) would let encoded surrogates pass.
        text = payload.decode("utf-8")
        claims = strict_loads(text)
        check_parsed(text, claims)
    except MalformedTokenError:
        raise
    except RecursionError:
        raise MalformedTokenError(
            "unreadable token: claims are not JSON: nested too deep"
        ) from None
    except ValueError as exc:  # bad JSON or UTF-8, an integer past Python's digit limit
        raise MalformedTokenError(f"unreadable token: claims are not JSON: {exc}") from None
    if not isinstance(claims, dict):
        raise MalformedTokenError("unreadable token: claims are not a JSON object")
    if "sub" in claims and not isinstance(claims["sub"], str):
        raise MalformedTokenError("unreadable token: Subject must be a string")
    if "jti" in claims and not isinstance(claims["jti"], str):
        raise MalformedTokenError("unreadable token: JWT ID must be a string")
    return claims


def unverified_claims(jws: CompactJws) -> dict[str, Any]:
    """The claims as ``jwt.decode`` without verification reads them (PyJWT's
    lenient JSON): for routing and showing, never for trust."""
    if jws.detached:
        raise MalformedTokenError(f"unreadable claims: {jws.detached_refusal()}")
    try:
        claims = json.loads(jws.payload)
    except (ValueError, RecursionError) as exc:
        raise MalformedTokenError(f"unreadable claims: Invalid payload string: {exc}") from None
    if not isinstance(claims, dict):
        raise MalformedTokenError(
            "unreadable claims: Invalid payload string: must be a json object"
        )
    return claims

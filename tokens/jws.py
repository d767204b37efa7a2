"""HS256 compact JWS for every profile: one signer, a distinct ``typ`` each.

Signature checking is PyJWT's, and signing yields PyJWT's exact bytes with
the standard library's ``hmac`` (a hot path: see ``TokenCodec.encode``); this module
adds what the profiles share: ``kid`` lookup in the keyring, the HS256-only
allow-list, the ``typ`` check (RFC 8725 §3.11) that keeps one profile's
tokens out of another, and time checks against an injectable clock so the
error says exactly what is wrong.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import json
import math
import time
from calendar import timegm
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jwt
from jwt.algorithms import HMACAlgorithm

from tokens.errors import (
    BadSignatureError,
    DisallowedAlgorithmError,
    ExpiredTokenError,
    InvalidClaimsError,
    MalformedTokenError,
    NotYetValidTokenError,
    UnknownKeyError,
    WrongTypeError,
)
from tokens.jsonsafe import check_parsed, finite_float
from tokens.keyring import Keyring, SigningKey

ALGORITHM = "HS256"
DEFAULT_LEEWAY_SECONDS = 10
MAX_TOKEN_BYTES = 8192

Clock = Callable[[], float]


@dataclass(frozen=True)
class Decoded:
    """A verified token: its header, its claims, and the key that verified it."""

    header: Mapping[str, Any]
    claims: dict[str, Any]
    key: SigningKey


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
    """Refuses duplicate members, which parsers resolve differently, the
    non-standard ``NaN``/``Infinity`` that would slip past time checks, and
    numbers past float's range (``1e999`` would be ``inf``)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs["object_pairs_hook"] = _reject_duplicate_keys
        kwargs["parse_constant"] = _reject_constant
        kwargs["parse_float"] = finite_float
        super().__init__(**kwargs)


class _StrictPyJWT(jwt.PyJWT):
    def _decode_payload(self, decoded: dict[str, Any]) -> Any:
        try:
            # Strict UTF-8 (RFC 7519): json.loads(bytes) would let encoded surrogates pass.
            text = decoded["payload"].decode("utf-8")
            payload = json.loads(text, cls=_StrictJSONDecoder)
            # Claims become session records: a lone surrogate or deep nesting
            # in them would make those unreadable (see jsonsafe).
            check_parsed(text, payload)
        except MalformedTokenError:
            raise
        except RecursionError:
            raise jwt.DecodeError("claims are not JSON: nested too deep") from None
        except ValueError as exc:  # bad JSON or UTF-8, an integer past Python's digit limit
            raise jwt.DecodeError(f"claims are not JSON: {exc}") from None
        if not isinstance(payload, dict):
            raise jwt.DecodeError("claims are not a JSON object")
        return payload


_pyjwt = _StrictPyJWT()
_HS256 = HMACAlgorithm(HMACAlgorithm.SHA256)
# PyJWT's claims serialisation (json.dumps with these separators), in one encoder
# built once: json.dumps with non-default options builds a new one per call.
_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"))


def compact_json(value: Any) -> str:
    """``value`` as PyJWT serialises claims: compact, ASCII-only JSON."""
    return _COMPACT_JSON.encode(value)


_URLSAFE = bytes.maketrans(b"+/", b"-_")


def _b64url(data: bytes) -> bytes:
    """Unpadded base64url (RFC 7515 §2): ``urlsafe_b64encode(data).rstrip(b"=")``."""
    return binascii.b2a_base64(data, newline=False).translate(_URLSAFE).rstrip(b"=")


def read_unverified_header(token: str) -> dict[str, Any]:
    """The token's header without any verification (for routing and inspection)."""
    if not isinstance(token, str) or not token:
        raise MalformedTokenError("no token")
    if len(token) > MAX_TOKEN_BYTES:
        raise MalformedTokenError(f"token is longer than {MAX_TOKEN_BYTES} bytes")
    if token.count(".") != 2:
        raise MalformedTokenError("not a compact JWS (three dot-separated parts)")
    try:
        header = jwt.get_unverified_header(token)
        segment = token.split(".", 1)[0]
        json.loads(jwt.utils.base64url_decode(segment).decode("utf-8"), cls=_StrictJSONDecoder)
    except MalformedTokenError:
        raise
    except (jwt.InvalidTokenError, ValueError) as exc:
        # PyJWT's base error too: it refuses a non-string kid or an unknown crit
        # with InvalidTokenError, which is not one of ours.
        raise MalformedTokenError(f"unreadable header: {exc}") from None
    return header


def read_unverified_claims(token: str) -> dict[str, Any]:
    """The claims without verification: for showing what a bad token says, never for trust."""
    read_unverified_header(token)
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except (jwt.InvalidTokenError, ValueError) as exc:
        raise MalformedTokenError(f"unreadable claims: {exc}") from None
    return claims


class TokenCodec:
    """Mints and verifies HS256 tokens with one keyring."""

    def __init__(
        self,
        keyring: Keyring,
        *,
        leeway_seconds: int = DEFAULT_LEEWAY_SECONDS,
        clock: Clock = time.time,
    ) -> None:
        self.keyring = keyring
        self.leeway_seconds = leeway_seconds
        self.clock = clock
        # Per (key, typ): the header segment and the key's prepared HMAC state,
        # which each signature copies (the key pads are hashed once per key).
        self._signing: dict[tuple[SigningKey, str], tuple[bytes, hmac.HMAC]] = {}

    def now(self) -> int:
        return int(self.clock())

    def encode(self, claims: Mapping[str, Any], typ: str) -> str:
        """Sign ``claims`` with the active key, header ``{alg, kid, typ}``.

        The bytes are exactly those of PyJWT's ``jwt.encode(dict(claims), secret,
        algorithm="HS256", headers={"typ": typ, "kid": kid})`` (pinned by
        tests/tokens/test_jws_encode.py), without its per-call overhead: the
        header segment is built and the secret put through PyJWT's own HMAC key
        checks once per key and ``typ``; then it is one JSON encoding, base64url
        and a copy of the key's prepared ``hmac.HMAC`` (standard library).
        """
        payload = dict(claims)
        # What jwt.encode does to claims before serialising them:
        for name in ("exp", "iat", "nbf"):
            value = payload.get(name)
            if isinstance(value, datetime):
                payload[name] = timegm(value.utctimetuple())
        if "iss" in payload and not isinstance(payload["iss"], str):
            raise TypeError("Issuer (iss) must be a string.")
        return self.sign(compact_json(payload), typ)

    def sign(self, payload_json: str, typ: str) -> str:
        """Sign claims already serialised as ``compact_json`` would (for a
        profile that assembles its fixed claims faster than a dict encodes)."""
        key = self.keyring.active
        prepared = self._signing.get((key, typ))
        if prepared is None:
            prepared = self._prepare(key, typ)
        header, keyed = prepared
        signing_input = header + b"." + _b64url(payload_json.encode())
        mac = keyed.copy()
        mac.update(signing_input)
        return (signing_input + b"." + _b64url(mac.digest())).decode("ascii")

    def _prepare(self, key: SigningKey, typ: str) -> tuple[bytes, hmac.HMAC]:
        # Refuses PEM/SSH/DER/JWK-looking secrets exactly as jwt.encode would.
        _HS256.prepare_key(key.secret)
        header = {"typ": typ, "alg": ALGORITHM, "kid": key.kid}
        segment = _b64url(json.dumps(header, separators=(",", ":"), sort_keys=True).encode())
        prepared = (segment, hmac.new(key.secret, digestmod=hashlib.sha256))
        self._signing[(key, typ)] = prepared
        return prepared

    def decode(
        self,
        token: str,
        typ: str,
        *,
        required: Iterable[str] = ("exp", "iat"),
        kid_fallback_claim: str | None = "iss",
    ) -> Decoded:
        """Verify a token of profile ``typ`` and return it, or raise why not.

        Checks, in order: shape and size, ``alg`` (HS256 only), ``typ``, the
        key (by ``kid``, else by ``kid_fallback_claim``), the signature,
        required claims and their types, then ``nbf``/``iat``/``exp`` with
        leeway.
        """
        header = read_unverified_header(token)
        alg = header.get("alg")
        if alg != ALGORITHM:
            raise DisallowedAlgorithmError(f"algorithm {alg!r} is not allowed; only HS256 is")
        if header.get("typ") != typ:
            raise WrongTypeError(
                f"token type {header.get('typ')!r} is not {typ!r} (a token for another use)"
            )
        key = self._key_for(token, header, kid_fallback_claim)
        try:
            claims: dict[str, Any] = _pyjwt.decode(
                token,
                key.secret,
                algorithms=[ALGORITHM],
                options={
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_aud": False,
                    "verify_iss": False,
                },
            )
        except jwt.InvalidSignatureError:
            raise BadSignatureError("signature does not match") from None
        except MalformedTokenError:
            raise
        except jwt.InvalidTokenError as exc:
            raise MalformedTokenError(f"unreadable token: {exc}") from None
        self._check_times(claims, required)
        return Decoded(header=header, claims=claims, key=key)

    def _key_for(
        self, token: str, header: Mapping[str, Any], fallback_claim: str | None
    ) -> SigningKey:
        kid = header.get("kid")
        if kid is None and fallback_claim is not None:
            kid = read_unverified_claims(token).get(fallback_claim)
        if kid is None and fallback_claim is None:
            return self.keyring.active
        if not isinstance(kid, str):
            raise UnknownKeyError("token names no signing key")
        key = self.keyring.get(kid)
        if key is None:
            raise UnknownKeyError("token was signed with a key this server does not hold")
        return key

    def _check_times(self, claims: Mapping[str, Any], required: Iterable[str]) -> None:
        for name in required:
            if name not in claims:
                raise InvalidClaimsError(f"claim {name!r} is missing")
        for name in ("exp", "nbf", "iat"):
            if name in claims and (
                isinstance(claims[name], bool)
                or not isinstance(claims[name], int | float)
                or not math.isfinite(claims[name])  # 1e999 parses as inf: never expires
            ):
                raise InvalidClaimsError(f"claim {name!r} must be a finite number")
        now = self.clock()
        leeway = self.leeway_seconds
        if "exp" in claims and now - leeway >= claims["exp"]:
            raise ExpiredTokenError(f"token expired {humanize_seconds(now - claims['exp'])} ago")
        for name in ("nbf", "iat"):
            if name in claims and claims[name] > now + leeway:
                wait = humanize_seconds(claims[name] - now)
                raise NotYetValidTokenError(f"token is not valid for another {wait} ({name})")


def humanize_seconds(seconds: float) -> str:
    """``95`` -> ``"1 min 35 s"``; for messages and the CLI."""
    seconds = abs(int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, sec = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {sec} s" if sec else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{hours // 24} days"

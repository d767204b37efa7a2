"""HS256 compact JWS for every profile: one signer, a distinct ``typ`` each.

Signing yields PyJWT's exact bytes and verification refuses exactly what
PyJWT (with strict JSON) refuses, both with the standard library's ``hmac``
and a key state prepared once per key (hot paths: a token per page load, a
verification per control-socket handshake); ``tokens.compact`` reads the
token. This module adds what the profiles share: ``kid`` lookup in the
keyring, the HS256-only allow-list, the ``typ`` check (RFC 8725 §3.11) that
keeps one profile's tokens out of another, and time checks against an
injectable clock so the error says exactly what is wrong.
"""

from __future__ import annotations

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

from jwt.algorithms import HMACAlgorithm

from tokens.compact import MAX_TOKEN_BYTES as MAX_TOKEN_BYTES
from tokens.compact import CompactJws, b64url, parse, unverified_claims, verified_claims
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
from tokens.keyring import Keyring, SigningKey

ALGORITHM = "HS256"
DEFAULT_LEEWAY_SECONDS = 10

Clock = Callable[[], float]


@dataclass(frozen=True)
class Decoded:
    """A verified token: its header, its claims, and the key that verified it."""

    header: Mapping[str, Any]
    claims: dict[str, Any]
    key: SigningKey


_HS256 = HMACAlgorithm(HMACAlgorithm.SHA256)
# PyJWT's claims serialisation (json.dumps with these separators), in one encoder
# built once: json.dumps with non-default options builds a new one per call.
_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"))


def compact_json(value: Any) -> str:
    """``value`` as PyJWT serialises claims: compact, ASCII-only JSON."""
    return _COMPACT_JSON.encode(value)


def read_unverified_header(token: str) -> dict[str, Any]:
    """The token's header without any verification (for routing and inspection)."""
    return parse(token).header


def read_unverified_claims(token: str) -> dict[str, Any]:
    """The claims without verification: for showing what a bad token says, never for trust."""
    return unverified_claims(parse(token))


def check_alg_and_typ(header: Mapping[str, Any], typ: str) -> None:
    """HS256 only, and a token of profile ``typ``, not another's."""
    alg = header.get("alg")
    if alg != ALGORITHM:
        raise DisallowedAlgorithmError(f"algorithm {alg!r} is not allowed; only HS256 is")
    if header.get("typ") != typ:
        raise WrongTypeError(
            f"token type {header.get('typ')!r} is not {typ!r} (a token for another use)"
        )


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
        # Per key, its prepared HMAC state, which each signature and each
        # verification copies (the key pads are hashed once per key); per
        # (key, typ), the header segment and that state.
        self._macs: dict[SigningKey, hmac.HMAC] = {}
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
        signing_input = header + b"." + b64url(payload_json.encode())
        mac = keyed.copy()
        mac.update(signing_input)
        return (signing_input + b"." + b64url(mac.digest())).decode("ascii")

    def _prepare(self, key: SigningKey, typ: str) -> tuple[bytes, hmac.HMAC]:
        header = {"typ": typ, "alg": ALGORITHM, "kid": key.kid}
        segment = b64url(json.dumps(header, separators=(",", ":"), sort_keys=True).encode())
        prepared = (segment, self._mac(key))
        self._signing[(key, typ)] = prepared
        return prepared

    def _mac(self, key: SigningKey) -> hmac.HMAC:
        """``key``'s prepared HMAC state, to copy. Its secret goes through PyJWT's
        own key checks first, which refuse PEM/SSH/DER/JWK-looking secrets with
        ``jwt.InvalidKeyError`` exactly as ``jwt.encode`` and ``jwt.decode``
        would (a refused key is checked again next time, never cached). PyJWT's
        short-key warning cannot apply: a ``SigningKey`` has at least 32 bytes."""
        mac = self._macs.get(key)
        if mac is None:
            _HS256.prepare_key(key.secret)
            mac = self._macs[key] = hmac.new(key.secret, digestmod=hashlib.sha256)
        return mac

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
        jws = parse(token)
        header = jws.header
        check_alg_and_typ(header, typ)
        key = self._key_for(jws, kid_fallback_claim)
        if jws.detached:
            raise MalformedTokenError(f"unreadable token: {jws.detached_refusal()}")
        mac = self._mac(key).copy()
        mac.update(jws.signing_input)
        if not hmac.compare_digest(jws.signature, mac.digest()):
            raise BadSignatureError("signature does not match")
        claims = verified_claims(jws.payload)
        self._check_times(claims, required)
        return Decoded(header=header, claims=claims, key=key)

    def _key_for(self, jws: CompactJws, fallback_claim: str | None) -> SigningKey:
        kid = jws.header.get("kid")
        if kid is None and fallback_claim is not None:
            kid = unverified_claims(jws).get(fallback_claim)
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

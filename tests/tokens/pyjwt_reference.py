"""The oracle for tokens.compact: the codec's reading and verification done by
PyJWT itself, as tokens/jws.py did before it parsed tokens on its own (PyJWT's
parsing and checks, the project's strict JSON on top). Parity tests compare
every outcome, refusal messages included, with this."""

from __future__ import annotations

import json
from typing import Any

import jwt

from tokens import TokenCodec
from tokens.compact import _StrictJSONDecoder, check_shape
from tokens.errors import BadSignatureError, MalformedTokenError, UnknownKeyError
from tokens.jsonsafe import check_parsed
from tokens.jws import ALGORITHM, Decoded, check_alg_and_typ


class _StrictPyJWT(jwt.PyJWT):
    def _decode_payload(self, decoded: dict[str, Any]) -> Any:
        try:
            text = decoded["payload"].decode("utf-8")
            payload = json.loads(text, cls=_StrictJSONDecoder)
            check_parsed(text, payload)
        except MalformedTokenError:
            raise
        except RecursionError:
            raise jwt.DecodeError("claims are not JSON: nested too deep") from None
        except ValueError as exc:
            raise jwt.DecodeError(f"claims are not JSON: {exc}") from None
        if not isinstance(payload, dict):
            raise jwt.DecodeError("claims are not a JSON object")
        return payload


_pyjwt = _StrictPyJWT()


def read_header(token: str) -> dict[str, Any]:
    check_shape(token)  # the project's own, before PyJWT reads anything
    try:
        header = jwt.get_unverified_header(token)
        segment = token.split(".", 1)[0]
        json.loads(jwt.utils.base64url_decode(segment).decode("utf-8"), cls=_StrictJSONDecoder)
    except MalformedTokenError:
        raise
    except (jwt.InvalidTokenError, ValueError) as exc:
        raise MalformedTokenError(f"unreadable header: {exc}") from None
    return header


def read_claims(token: str) -> dict[str, Any]:
    read_header(token)
    try:
        claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    except (jwt.InvalidTokenError, ValueError) as exc:
        raise MalformedTokenError(f"unreadable claims: {exc}") from None
    return claims


def decode(
    codec: TokenCodec,
    token: str,
    typ: str,
    *,
    required: tuple[str, ...] = ("exp", "iat"),
    kid_fallback_claim: str | None = "iss",
) -> Decoded:
    header = read_header(token)
    check_alg_and_typ(header, typ)
    kid = header.get("kid")
    if kid is None and kid_fallback_claim is not None:
        kid = read_claims(token).get(kid_fallback_claim)
    if kid is None and kid_fallback_claim is None:
        key = codec.keyring.active
    elif not isinstance(kid, str):
        raise UnknownKeyError("token names no signing key")
    elif (found := codec.keyring.get(kid)) is None:
        raise UnknownKeyError("token was signed with a key this server does not hold")
    else:
        key = found
    no_time_checks = ("verify_exp", "verify_nbf", "verify_iat", "verify_aud", "verify_iss")
    try:
        claims: dict[str, Any] = _pyjwt.decode(
            token,
            key.secret,
            algorithms=[ALGORITHM],
            options=dict.fromkeys(no_time_checks, False),  # type: ignore[arg-type]
        )
    except jwt.InvalidSignatureError:
        raise BadSignatureError("signature does not match") from None
    except MalformedTokenError:
        raise
    except jwt.InvalidTokenError as exc:
        raise MalformedTokenError(f"unreadable token: {exc}") from None
    codec._check_times(claims, required)
    return Decoded(header=header, claims=claims, key=key)

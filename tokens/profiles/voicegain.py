"""Voicegain-style API tokens: long-lived, one accepted per (account, context),
and short-lived browser tokens bound to an allowed ``Origin``.

- Long-lived (``typ`` ``vg-api+jwt``): ``accountId``, ``contextId``, ``jti``,
  ``iat``; no expiry. Generating a new one makes the store point at its
  ``jti``, so the previous one is refused as ``revoked``.
- Short-lived (``typ`` ``vg-short+jwt``): minted from a valid long-lived token
  with ``aud`` (allowed origin domain) and ``expInSec``; carries the parent's
  ``jti`` as ``gen``, so regenerating the API token revokes them too.

Both are presented as ``Authorization: Bearer``; ``aud`` is checked only when
the request has an ``Origin`` header. A long-lived token is refused whenever
an ``Origin`` is present: it belongs on servers, browsers get short-lived ones.
"""

from __future__ import annotations

import hmac
import logging
import re
import secrets
from dataclasses import dataclass
from typing import Any, Literal

from tokens.errors import (
    ClaimsError,
    InvalidClaimsError,
    PolicyError,
    RevokedTokenError,
    WrongAudienceError,
    WrongTypeError,
)
from tokens.generation_store import TokenGenerationStore
from tokens.jws import TokenCodec, read_unverified_header
from tokens.origins import AudiencePattern

API_TYP = "vg-api+jwt"
SHORT_TYP = "vg-short+jwt"
MIN_EXP_IN_SEC = 1
MAX_EXP_IN_SEC = 24 * 60 * 60
_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")

log = logging.getLogger("tokens.voicegain")


def check_id(name: str, value: object) -> str:
    """An account or context id: 1-128 letters, digits, ``.``, ``_`` or ``-``."""
    if not isinstance(value, str) or not _ID.match(value):
        raise ClaimsError(f"{name} must be 1-128 letters, digits, '.', '_' or '-'")
    return value


def _utf8(text: str) -> bytes:
    # compare_digest refuses non-ASCII str; a JSON \ud800 escape gives a lone surrogate.
    return text.encode("utf-8", "surrogatepass")


@dataclass(frozen=True)
class VoicegainIdentity:
    """Who a verified token speaks for, and which kind of token it was."""

    account_id: str
    context_id: str
    token_id: str
    kind: Literal["api", "short"]
    audience: str | None = None
    expires_at: int | None = None


@dataclass(frozen=True)
class IssuedShortToken:
    token: str
    expires_at: int


class VoicegainProfile:
    """Generate, mint and verify Voicegain-style tokens with one keyring and store."""

    typs = frozenset({API_TYP, SHORT_TYP})

    def __init__(
        self,
        codec: TokenCodec,
        store: TokenGenerationStore,
        *,
        max_exp_in_sec: int = MAX_EXP_IN_SEC,
    ) -> None:
        if not MIN_EXP_IN_SEC <= max_exp_in_sec <= MAX_EXP_IN_SEC:
            raise PolicyError(
                f"maximum expInSec must be between {MIN_EXP_IN_SEC} and {MAX_EXP_IN_SEC}"
            )
        self.codec = codec
        self.store = store
        self.max_exp_in_sec = max_exp_in_sec

    async def regenerate(self, account_id: str, context_id: str) -> str:
        """A new long-lived API token; the previous one for this pair stops working."""
        check_id("accountId", account_id)
        check_id("contextId", context_id)
        token_id = secrets.token_urlsafe(16)
        claims = {
            "accountId": account_id,
            "contextId": context_id,
            "jti": token_id,
            "iat": self.codec.now(),
        }
        token = self.codec.encode(claims, API_TYP)
        await self.store.set_current(account_id, context_id, token_id)
        return token

    async def mint_short(
        self, api_token: VoicegainIdentity, *, aud: str, exp_in_sec: int
    ) -> IssuedShortToken:
        """A short-lived token for browsers at ``aud``, derived from a verified API token."""
        if api_token.kind != "api":
            raise PolicyError("short-lived tokens are minted with a long-lived API token only")
        if isinstance(exp_in_sec, bool) or not isinstance(exp_in_sec, int):
            raise ClaimsError("expInSec must be an integer")
        if not MIN_EXP_IN_SEC <= exp_in_sec <= self.max_exp_in_sec:
            raise PolicyError(
                f"expInSec must be between {MIN_EXP_IN_SEC} and {self.max_exp_in_sec}"
            )
        pattern = AudiencePattern.parse(aud)
        if pattern.any:
            log.warning(
                "short-lived token minted for aud='*': any web origin may use it "
                "(allowed, but name the domain instead)"
            )
        now = self.codec.now()
        claims = {
            "accountId": api_token.account_id,
            "contextId": api_token.context_id,
            "jti": secrets.token_urlsafe(16),
            "gen": api_token.token_id,
            "aud": str(pattern),
            "iat": now,
            "exp": now + exp_in_sec,
        }
        return IssuedShortToken(self.codec.encode(claims, SHORT_TYP), now + exp_in_sec)

    async def verify(self, token: str, *, origin: str | None = None) -> VoicegainIdentity:
        """The identity behind a bearer token, or a typed ``InvalidTokenError``.

        ``origin`` is the request's ``Origin`` header, ``None`` when absent.
        """
        typ = read_unverified_header(token).get("typ")
        if typ == API_TYP:
            identity = await self._verify_api(token)
            if origin is not None:
                raise WrongAudienceError(
                    "long-lived API tokens are for server-side use; browsers must use "
                    "a short-lived token"
                )
            return identity
        if typ == SHORT_TYP:
            return await self._verify_short(token, origin)
        raise WrongTypeError(f"token type {typ!r} is not a Voicegain API token")

    async def verify_api_token(self, token: str) -> VoicegainIdentity:
        """A valid, current long-lived token (what may mint short-lived ones)."""
        return await self._verify_api(token)

    async def _verify_api(self, token: str) -> VoicegainIdentity:
        claims = self.codec.decode(
            token,
            API_TYP,
            required=("accountId", "contextId", "jti", "iat"),
            kid_fallback_claim=None,
        ).claims
        identity = self._identity(claims, "api", token_id=claims["jti"])
        await self._check_current(identity.account_id, identity.context_id, identity.token_id)
        return identity

    async def _verify_short(self, token: str, origin: str | None) -> VoicegainIdentity:
        claims = self.codec.decode(
            token,
            SHORT_TYP,
            required=("accountId", "contextId", "jti", "gen", "aud", "iat", "exp"),
            kid_fallback_claim=None,
        ).claims
        identity = self._identity(claims, "short", token_id=claims["jti"])
        generation = claims["gen"]
        if not isinstance(generation, str):
            raise InvalidClaimsError("claim 'gen' must be a string")
        await self._check_current(identity.account_id, identity.context_id, generation)
        try:
            pattern = AudiencePattern.parse(claims["aud"])
        except ClaimsError:
            raise InvalidClaimsError("claim 'aud' is not an origin pattern") from None
        if origin is not None and not pattern.allows(origin):
            raise WrongAudienceError(f"origin {origin[:100]!r} is not allowed by aud {pattern}")
        return VoicegainIdentity(
            identity.account_id,
            identity.context_id,
            identity.token_id,
            "short",
            audience=str(pattern),
            expires_at=claims["exp"],
        )

    @staticmethod
    def _identity(
        claims: dict[str, Any], kind: Literal["api", "short"], *, token_id: object
    ) -> VoicegainIdentity:
        try:
            account_id = check_id("accountId", claims["accountId"])
            context_id = check_id("contextId", claims["contextId"])
        except ClaimsError as exc:
            raise InvalidClaimsError(str(exc)) from None
        if not isinstance(token_id, str) or not token_id:
            raise InvalidClaimsError("claim 'jti' must be a non-empty string")
        return VoicegainIdentity(account_id, context_id, token_id, kind)

    async def _check_current(self, account_id: str, context_id: str, token_id: str) -> None:
        current = await self.store.current(account_id, context_id)
        if current is None or not hmac.compare_digest(_utf8(current), _utf8(token_id)):
            raise RevokedTokenError(
                "this API token was replaced by a newer one (only the most recent is accepted)"
            )

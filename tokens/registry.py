"""The token profiles by name, and verification of any enabled profile's tokens.

A deployment enables the profiles it needs (``soul-machines`` by default);
the registry finds the right verifier by name or by the token's header
``typ`` and reports why a token is refused in the profile's own words.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tokens.errors import InvalidTokenError, UnknownProfileError, WrongTypeError
from tokens.jws import read_unverified_claims, read_unverified_header
from tokens.profiles.ccai import CcaiProfile
from tokens.profiles.soul_machines import SoulMachinesProfile
from tokens.profiles.videosdk import VideoSdkProfile, failure_body
from tokens.profiles.voicegain import VoicegainProfile

SOUL_MACHINES = "soul-machines"
CCAI = "ccai"
VIDEOSDK = "videosdk"
VOICEGAIN = "voicegain"
PROFILE_NAMES = (SOUL_MACHINES, CCAI, VIDEOSDK, VOICEGAIN)
DEFAULT_PROFILES = (SOUL_MACHINES,)


def parse_profile_names(text: str) -> tuple[str, ...]:
    """``"soul-machines, ccai"`` -> the names, in order, without duplicates."""
    names = tuple(dict.fromkeys(n.strip().lower() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in PROFILE_NAMES]
    if unknown:
        raise UnknownProfileError(
            f"unknown token profile(s) {unknown}: choose from {', '.join(PROFILE_NAMES)}"
        )
    return names or DEFAULT_PROFILES


Profile = SoulMachinesProfile | CcaiProfile | VideoSdkProfile | VoicegainProfile


def default_failure(error: InvalidTokenError) -> dict[str, str]:
    return {"error": error.code, "detail": str(error)}


class ProfileVerifier:
    """One profile's verification as the registry uses it: its name, the header
    ``typ`` values it owns, the claims of a valid token, and the JSON fields that
    say why a token was refused (VideoSDK words them its own way)."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.failure = default_failure
        if isinstance(profile, VoicegainProfile):
            self.name, self.typs = VOICEGAIN, profile.typs
            return
        self.typs = frozenset({profile.typ})
        if isinstance(profile, SoulMachinesProfile):
            self.name = SOUL_MACHINES
        elif isinstance(profile, CcaiProfile):
            self.name = CCAI
        else:
            self.name, self.failure = VIDEOSDK, failure_body

    async def verify(self, token: str, *, origin: str | None) -> dict[str, Any]:
        """The claims of a valid token, or a typed ``InvalidTokenError``."""
        profile = self.profile
        if isinstance(profile, CcaiProfile | VideoSdkProfile):
            return profile.verify(token)
        if isinstance(profile, VoicegainProfile):
            await profile.verify(token, origin=origin)  # the one profile that checks Origin
        else:
            profile.verify(token)
        return read_unverified_claims(token)  # verified just above


@dataclass(frozen=True)
class Verification:
    """The outcome for one token: its profile and claims, or why it was refused."""

    profile: str | None
    claims: dict[str, Any] | None = None
    error: InvalidTokenError | None = None

    @property
    def valid(self) -> bool:
        return self.error is None


class ProfileRegistry:
    """The enabled profiles' verifiers."""

    def __init__(self, verifiers: Iterable[ProfileVerifier]) -> None:
        self._by_name: dict[str, ProfileVerifier] = {}
        self._by_typ: dict[str, ProfileVerifier] = {}
        for verifier in verifiers:
            if verifier.name in self._by_name:
                raise ValueError(f"profile {verifier.name!r} is registered twice")
            self._by_name[verifier.name] = verifier
            for typ in verifier.typs:
                if typ in self._by_typ:
                    raise ValueError(f"header typ {typ!r} is claimed by two profiles")
                self._by_typ[typ] = verifier

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._by_name)

    def get(self, name: str) -> ProfileVerifier:
        try:
            return self._by_name[name]
        except KeyError:
            raise UnknownProfileError(
                f"profile {name!r} is not enabled here (enabled: {', '.join(self._by_name)})"
            ) from None

    async def verify(
        self, token: str, *, profile: str | None = None, origin: str | None = None
    ) -> Verification:
        """Verify ``token`` as ``profile`` (default: the profile its ``typ`` names)."""
        verifier = None if profile is None else self.get(profile)
        try:
            if verifier is None:
                typ = read_unverified_header(token).get("typ")
                verifier = self._by_typ.get(typ) if isinstance(typ, str) else None
                if verifier is None:
                    raise WrongTypeError(f"token type {typ!r} is not one of the enabled profiles'")
            claims = await verifier.verify(token, origin=origin)
        except InvalidTokenError as exc:
            return Verification(verifier.name if verifier else None, error=exc)
        return Verification(verifier.name, claims=claims)

    def failure(self, verification: Verification) -> dict[str, str]:
        """The JSON fields saying why ``verification`` failed, in its profile's words."""
        assert verification.error is not None
        if verification.profile is None:
            return default_failure(verification.error)
        return self._by_name[verification.profile].failure(verification.error)

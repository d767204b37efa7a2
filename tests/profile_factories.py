"""Builders for every token profile with fresh random keys (never a repository key)."""

from __future__ import annotations

import secrets

from tokens import Keyring, SigningKey, SoulMachinesPolicy, SoulMachinesProfile, TokenCodec
from tokens.generation_store import MemoryGenerationStore, TokenGenerationStore
from tokens.jws import Clock
from tokens.profiles.ccai import CcaiPolicy, CcaiProfile
from tokens.profiles.videosdk import VideoSdkPolicy, VideoSdkProfile
from tokens.profiles.voicegain import VoicegainProfile

COMPANY = "ACME"
VIDEOSDK_API_KEY = "videosdk-api-key"


def secret() -> str:
    return secrets.token_urlsafe(48)


def codec(kid: str, key: str | None = None, clock: Clock | None = None) -> TokenCodec:
    keyring = Keyring(SigningKey.from_text(kid, key or secret()))
    return TokenCodec(keyring) if clock is None else TokenCodec(keyring, clock=clock)


def soul_machines() -> SoulMachinesProfile:
    return SoulMachinesProfile(
        codec("sm-key"),
        SoulMachinesPolicy(session_server="dh.soulmachines.cloud", control_url="wss://x/ws"),
    )


def ccai(key: str | None = None, clock: Clock | None = None) -> CcaiProfile:
    return CcaiProfile(codec("ccai", key, clock), CcaiPolicy(COMPANY))


def videosdk(
    key: str | None = None, clock: Clock | None = None, policy: VideoSdkPolicy | None = None
) -> VideoSdkProfile:
    return VideoSdkProfile(
        codec("videosdk", key, clock), policy or VideoSdkPolicy(VIDEOSDK_API_KEY)
    )


def voicegain(
    key: str | None = None, store: TokenGenerationStore | None = None, clock: Clock | None = None
) -> VoicegainProfile:
    return VoicegainProfile(codec("voicegain", key, clock), store or MemoryGenerationStore())

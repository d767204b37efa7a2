"""Wiring of the enabled token profiles: their routes, the verify route, rate
limiting, and the Redis connection they share when ``REDIS_URL`` is set."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import limits
import redis.asyncio as aioredis
from limits.aio.storage import Storage
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Route

from orchestrator.backend.redis_client import redis_client
from orchestrator.backend.token_generations import RedisGenerationStore
from orchestrator.http.rate_limit import (
    RateLimitMiddleware,
    close_storage,
    memory_storage,
    redis_storage,
)
from orchestrator.profile_settings import ProfileSettings, load_resolver
from tokens import SoulMachinesProfile, TokenCodec
from tokens.generation_store import MemoryGenerationStore, TokenGenerationStore
from tokens.profiles.ccai import CcaiProfile
from tokens.profiles.videosdk import VideoSdkProfile
from tokens.profiles.voicegain import VoicegainProfile
from tokens.registry import (
    CCAI,
    SOUL_MACHINES,
    VIDEOSDK,
    VOICEGAIN,
    ProfileRegistry,
    ProfileVerifier,
)
from tokens.web.ccai import CcaiTokenEndpoint, UserResolver, trusted_header_resolver
from tokens.web.verify import VerifyEndpoint
from tokens.web.videosdk import VideoSdkTokenEndpoint
from tokens.web.voicegain import VoicegainEndpoints


@dataclass
class TokenProfiles:
    """What the app mounts for the token profiles; ``aclose()`` on shutdown."""

    routes: list[BaseRoute]
    middleware: list[Middleware]
    registry: ProfileRegistry
    rate_limit_storage: Storage
    redis: aioredis.Redis | None = None
    rate_limit_fallback: Storage | None = None
    stores: list[TokenGenerationStore] = field(default_factory=list)

    async def aclose(self) -> None:
        for store in self.stores:
            await store.aclose()
        await close_storage(self.rate_limit_storage)
        if self.rate_limit_fallback is not None:
            await close_storage(self.rate_limit_fallback)
        if self.redis is not None:
            await self.redis.aclose()


def _ccai_resolver(settings: ProfileSettings) -> UserResolver | None:
    if settings.ccai_user_resolver:
        return load_resolver(settings.ccai_user_resolver)
    if settings.ccai_user_id_header:
        return trusted_header_resolver(
            settings.ccai_user_id_header,
            name_header=settings.ccai_user_name_header,
            email_header=settings.ccai_user_email_header,
        )
    return None


def build_token_profiles(
    settings: ProfileSettings,
    sm_profile: SoulMachinesProfile,
    sm_routes: Sequence[Route],
) -> TokenProfiles:
    """Routes and middleware for ``settings.profiles`` (Soul Machines' routes are
    built by the app and passed in, mounted only when that profile is enabled)."""
    redis = redis_client(settings.redis_url) if settings.redis_url else None
    routes: list[Route] = []
    verifiers: list[ProfileVerifier] = []
    stores: list[TokenGenerationStore] = []
    if SOUL_MACHINES in settings.profiles:
        routes.extend(sm_routes)
        verifiers.append(ProfileVerifier(sm_profile))
    if CCAI in settings.profiles:
        keyring = settings.keyring_for("CCAI_COMPANY_SECRET", "ccai", settings.ccai_secret)
        ccai = CcaiProfile(TokenCodec(keyring), settings.ccai_policy())
        endpoint = CcaiTokenEndpoint(
            ccai,
            resolver=_ccai_resolver(settings),
            anonymous_cookie=settings.ccai_anonymous_cookie,
            secure_cookie=settings.production,
        )
        routes.extend(endpoint.routes())
        verifiers.append(ProfileVerifier(ccai))
    if VIDEOSDK in settings.profiles:
        keyring = settings.keyring_for("VIDEOSDK_SECRET", "videosdk", settings.videosdk_secret)
        videosdk = VideoSdkProfile(TokenCodec(keyring), settings.videosdk_policy())
        routes.extend(VideoSdkTokenEndpoint(videosdk).routes())
        verifiers.append(ProfileVerifier(videosdk))
    if VOICEGAIN in settings.profiles:
        keyring = settings.keyring_for("VOICEGAIN_SECRET", "voicegain", settings.voicegain_secret)
        store: TokenGenerationStore = (
            RedisGenerationStore(redis) if redis is not None else MemoryGenerationStore()
        )
        stores.append(store)
        voicegain = VoicegainProfile(
            TokenCodec(keyring), store, max_exp_in_sec=settings.voicegain_max_exp_in_sec
        )
        routes.extend(
            VoicegainEndpoints(voicegain, admin_key=settings.voicegain_admin_key or "").routes()
        )
        verifiers.append(ProfileVerifier(voicegain))
    registry = ProfileRegistry(verifiers)
    if settings.verify_api_key:
        routes.extend(VerifyEndpoint(registry, api_key=settings.verify_api_key).routes())
    storage: Storage = (
        redis_storage(settings.redis_url, redis.connection_pool)
        if settings.redis_url and redis is not None
        else memory_storage()
    )
    # While Redis is unreachable, each process limits on its own (see rate_limit.py).
    fallback = memory_storage() if redis is not None else None
    limiter = Middleware(
        RateLimitMiddleware,
        storage=storage,
        limit=limits.parse(settings.rate_limit),
        paths=[route.path for route in routes],
        fallback=fallback,
    )
    return TokenProfiles(
        routes=list(routes),
        middleware=[limiter],
        registry=registry,
        rate_limit_storage=storage,
        redis=redis,
        rate_limit_fallback=fallback,
        stores=stores,
    )

"""Configuration of the token profiles beyond Soul Machines, from the environment.

Each platform verifies its tokens with its own secret, so each enabled
profile has its own: ``CCAI_COMPANY_SECRET``, ``VIDEOSDK_SECRET``,
``VOICEGAIN_SECRET`` (at least 32 bytes each). Everything is validated at
start-up; messages name the variable.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import limits
import redis.asyncio as aioredis
from dotenv import dotenv_values

from orchestrator.settings import SettingsError
from tokens import MIN_KEY_BYTES, Keyring, KeyringError, SigningKey, TokenPackageError
from tokens.durations import parse_duration
from tokens.profiles.ccai import DEFAULT_TTL_SECONDS as CCAI_DEFAULT_TTL
from tokens.profiles.ccai import CcaiPolicy
from tokens.profiles.videosdk import DEFAULT_TTL_SECONDS as VIDEOSDK_DEFAULT_TTL
from tokens.profiles.videosdk import VideoSdkPolicy
from tokens.profiles.voicegain import MAX_EXP_IN_SEC, MIN_EXP_IN_SEC
from tokens.registry import CCAI, VIDEOSDK, VOICEGAIN, parse_profile_names
from tokens.web.ccai import DEFAULT_ANONYMOUS_COOKIE, UserResolver

DEFAULT_RATE_LIMIT = "60/minute"


def _text(env: Mapping[str, str], name: str) -> str | None:
    return env.get(name, "").strip() or None


def _secret(name: str, value: str | None) -> str | None:
    if value is not None and len(value.encode("utf-8")) < MIN_KEY_BYTES:
        raise SettingsError(
            f"{name} must be at least {MIN_KEY_BYTES} bytes "
            "(generate one with `orchestrator keygen`)"
        )
    return value


def _csv(value: str | None, default: tuple[str, ...]) -> tuple[str, ...]:
    if value is None:
        return default
    return tuple(v.strip() for v in value.split(",") if v.strip())


def check_redis_url(url: str) -> None:
    """Parse ``REDIS_URL`` as the clients will, so a typo stops start-up as a
    configuration error rather than as a traceback from the first client.

    The message never repeats the URL: it may hold a password.
    """
    scheme = url.partition("://")[0].lower()
    if scheme not in ("redis", "rediss"):
        # unix:// too: the rate limiter's storage takes redis:// and rediss:// only.
        raise SettingsError("REDIS_URL must look like redis://host:6379/0 (or rediss://)")
    try:
        # No I/O: builds the pool and one unconnected connection from the URL.
        pool = aioredis.ConnectionPool.from_url(url)
        pool.connection_class(**pool.connection_kwargs)
    except (ValueError, TypeError) as exc:
        raise SettingsError(f"REDIS_URL is not usable: {exc}") from None


def load_resolver(spec: str) -> UserResolver:
    """The callable named by ``module:attribute`` (``CCAI_USER_RESOLVER``)."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise SettingsError(f"CCAI_USER_RESOLVER={spec!r}: use module:callable")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise SettingsError(f"CCAI_USER_RESOLVER={spec!r} cannot be loaded: {exc}") from None
    if not callable(target):
        raise SettingsError(f"CCAI_USER_RESOLVER={spec!r} is not callable")
    resolver: UserResolver = target
    return resolver


@dataclass(frozen=True)
class ProfileSettings:
    """Which token profiles are enabled and what each needs."""

    profiles: tuple[str, ...] = ("soul-machines",)
    production: bool = False
    redis_url: str | None = None
    rate_limit: str = DEFAULT_RATE_LIMIT
    verify_api_key: str | None = None
    ccai_company_name: str | None = None
    ccai_secret: str | None = None
    ccai_ttl_seconds: int = CCAI_DEFAULT_TTL
    ccai_user_resolver: str | None = None
    ccai_user_id_header: str | None = None
    ccai_user_name_header: str | None = None
    ccai_user_email_header: str | None = None
    ccai_anonymous_cookie: str = DEFAULT_ANONYMOUS_COOKIE
    videosdk_api_key: str | None = None
    videosdk_secret: str | None = None
    videosdk_ttl: str = f"{VIDEOSDK_DEFAULT_TTL}"
    videosdk_allowed_permissions: tuple[str, ...] = ("allow_join", "ask_join")
    voicegain_secret: str | None = None
    voicegain_admin_key: str | None = None
    voicegain_max_exp_in_sec: int = MAX_EXP_IN_SEC

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "profiles", parse_profile_names(",".join(self.profiles)))
        except TokenPackageError as exc:
            raise SettingsError(f"TOKEN_PROFILES: {exc}") from None
        try:
            limits.parse(self.rate_limit)
        except ValueError:
            raise SettingsError(
                f"TOKEN_RATE_LIMIT={self.rate_limit!r}: use e.g. 60/minute or 10/second"
            ) from None
        _secret("TOKEN_VERIFY_API_KEY", self.verify_api_key)
        if self.redis_url is not None:
            check_redis_url(self.redis_url)
        if CCAI in self.profiles:
            self._check_ccai()
        if VIDEOSDK in self.profiles:
            self._require("videosdk", VIDEOSDK_API_KEY=self.videosdk_api_key)
            self._require("videosdk", VIDEOSDK_SECRET=self.videosdk_secret)
            self.videosdk_policy()
            self.keyring_for("VIDEOSDK_SECRET", "videosdk", self.videosdk_secret)
        if VOICEGAIN in self.profiles:
            self._require("voicegain", VOICEGAIN_SECRET=self.voicegain_secret)
            self._require("voicegain", VOICEGAIN_ADMIN_KEY=self.voicegain_admin_key)
            _secret("VOICEGAIN_ADMIN_KEY", self.voicegain_admin_key)
            self.keyring_for("VOICEGAIN_SECRET", "voicegain", self.voicegain_secret)
            if not MIN_EXP_IN_SEC <= self.voicegain_max_exp_in_sec <= MAX_EXP_IN_SEC:
                raise SettingsError(
                    f"VOICEGAIN_MAX_EXP_IN_SEC must be between {MIN_EXP_IN_SEC} and "
                    f"{MAX_EXP_IN_SEC}"
                )
            if self.production and self.redis_url is None:
                raise SettingsError(
                    "the voicegain profile needs REDIS_URL in production: without it a "
                    "restart revokes every API token"
                )

    @staticmethod
    def _require(profile: str, **values: str | None) -> None:
        for name, value in values.items():
            if value is None:
                raise SettingsError(f"TOKEN_PROFILES includes {profile}: set {name}")

    def _check_ccai(self) -> None:
        self._require("ccai", CCAI_COMPANY_NAME=self.ccai_company_name)
        self._require("ccai", CCAI_COMPANY_SECRET=self.ccai_secret)
        self.ccai_policy()
        self.keyring_for("CCAI_COMPANY_SECRET", "ccai", self.ccai_secret)
        if self.ccai_user_resolver and self.ccai_user_id_header:
            raise SettingsError("set CCAI_USER_RESOLVER or CCAI_USER_ID_HEADER, not both")
        if (self.ccai_user_name_header or self.ccai_user_email_header) and (
            not self.ccai_user_id_header
        ):
            raise SettingsError(
                "CCAI_USER_NAME_HEADER/CCAI_USER_EMAIL_HEADER need CCAI_USER_ID_HEADER"
            )
        if self.ccai_user_resolver:
            load_resolver(self.ccai_user_resolver)

    def ccai_policy(self) -> CcaiPolicy:
        try:
            return CcaiPolicy(self.ccai_company_name or "", ttl_seconds=self.ccai_ttl_seconds)
        except TokenPackageError as exc:
            raise SettingsError(f"CCAI_COMPANY_NAME/CCAI_TOKEN_TTL_SECONDS: {exc}") from None

    def videosdk_policy(self) -> VideoSdkPolicy:
        try:
            return VideoSdkPolicy(
                self.videosdk_api_key or "",
                ttl_seconds=parse_duration(self.videosdk_ttl),
                allowed_permissions=self.videosdk_allowed_permissions,
            )
        except TokenPackageError as exc:
            raise SettingsError(f"VIDEOSDK_TOKEN_TTL/VIDEOSDK_ALLOWED_PERMISSIONS: {exc}") from None

    @staticmethod
    def keyring_for(variable: str, kid: str, secret: str | None) -> Keyring:
        """A keyring of its own for one platform's secret (``kid`` names the platform)."""
        try:
            return Keyring(SigningKey.from_text(kid, secret or ""))
        except KeyringError as exc:
            raise SettingsError(f"{variable}: {exc}") from None

    @property
    def secrets(self) -> tuple[str, ...]:
        """Secret values, for the log redactor; never log these."""
        values = (
            self.verify_api_key,
            self.ccai_secret,
            self.videosdk_secret,
            self.voicegain_secret,
            self.voicegain_admin_key,
        )
        return tuple(v for v in values if v)

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        production: bool = False,
        env_file: str | Path | None = ".env",
    ) -> ProfileSettings:
        """Read the process environment over an optional ``.env`` file."""
        env: dict[str, str] = {}
        if env_file is not None and Path(env_file).is_file():
            env.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
        env.update(os.environ if environ is None else environ)
        return cls._from_mapping(env, production=production)

    @classmethod
    def _from_mapping(cls, env: Mapping[str, str], *, production: bool) -> ProfileSettings:
        def integer(name: str, default: int) -> int:
            raw = _text(env, name)
            if raw is None:
                return default
            try:
                return int(raw)
            except ValueError:
                raise SettingsError(f"{name}={raw!r} is not an integer") from None

        return cls(
            profiles=_csv(_text(env, "TOKEN_PROFILES"), ("soul-machines",)),
            production=production,
            redis_url=_text(env, "REDIS_URL"),
            rate_limit=_text(env, "TOKEN_RATE_LIMIT") or DEFAULT_RATE_LIMIT,
            verify_api_key=_text(env, "TOKEN_VERIFY_API_KEY"),
            ccai_company_name=_text(env, "CCAI_COMPANY_NAME"),
            ccai_secret=_text(env, "CCAI_COMPANY_SECRET"),
            ccai_ttl_seconds=integer("CCAI_TOKEN_TTL_SECONDS", CCAI_DEFAULT_TTL),
            ccai_user_resolver=_text(env, "CCAI_USER_RESOLVER"),
            ccai_user_id_header=_text(env, "CCAI_USER_ID_HEADER"),
            ccai_user_name_header=_text(env, "CCAI_USER_NAME_HEADER"),
            ccai_user_email_header=_text(env, "CCAI_USER_EMAIL_HEADER"),
            ccai_anonymous_cookie=_text(env, "CCAI_ANONYMOUS_COOKIE") or DEFAULT_ANONYMOUS_COOKIE,
            videosdk_api_key=_text(env, "VIDEOSDK_API_KEY"),
            videosdk_secret=_text(env, "VIDEOSDK_SECRET"),
            videosdk_ttl=_text(env, "VIDEOSDK_TOKEN_TTL") or str(VIDEOSDK_DEFAULT_TTL),
            videosdk_allowed_permissions=_csv(
                _text(env, "VIDEOSDK_ALLOWED_PERMISSIONS"), ("allow_join", "ask_join")
            ),
            voicegain_secret=_text(env, "VOICEGAIN_SECRET"),
            voicegain_admin_key=_text(env, "VOICEGAIN_ADMIN_KEY"),
            voicegain_max_exp_in_sec=integer("VOICEGAIN_MAX_EXP_IN_SEC", MAX_EXP_IN_SEC),
        )

"""The rules a settings object must meet, checked once at start-up: production
refusals, secret lengths, the table's limits, and what each enabled token
profile needs. Every message names the variable and the fix."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import fields
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import limits
import redis.asyncio as aioredis

from orchestrator.config.parsing import SettingsError, import_object, split_spec
from orchestrator.config.table import MIN_API_KEY_BYTES, VARIABLE
from tokens import MIN_KEY_BYTES, PolicyError
from tokens.profiles.voicegain import MAX_EXP_IN_SEC, MIN_EXP_IN_SEC
from tokens.registry import CCAI, VIDEOSDK, VOICEGAIN
from tokens.web.ccai import UserResolver

if TYPE_CHECKING:
    from orchestrator.config.settings import Settings

ENV = "env"  # the field metadata key naming a field's variable


def check_settings(settings: Settings) -> None:
    """Raise ``SettingsError`` for the first rule ``settings`` breaks."""
    if settings.production:
        _check_production(settings)
    for key in settings.api_keys:
        if len(key.encode()) < MIN_API_KEY_BYTES:
            raise SettingsError(
                f"ORCHESTRATOR_API_KEY entries must be at least {MIN_API_KEY_BYTES} bytes "
                "(generate one with `orchestrator keygen`)"
            )
    for field in fields(settings):
        variable = VARIABLE.get(field.metadata.get(ENV, ""))
        value = getattr(settings, field.name)
        if variable is not None and variable.limits is not None and value is not None:
            variable.limits.check(variable.name, value)
    try:
        settings.sm_policy()
    except PolicyError as exc:
        raise SettingsError(str(exc)) from None
    settings.cors_origin_regex()
    check_llm_base_url(settings.llm_base_url, production=settings.production)
    _check_token_profiles(settings)
    _check_webhook(settings)


def _check_production(settings: Settings) -> None:
    if settings.ephemeral_key:
        raise SettingsError(
            "production needs a real signing key: set JWT_PUBLIC_KEY and JWT_PRIVATE_KEY"
        )
    if not settings.session_server:
        raise SettingsError(
            "production needs SESSION_SERVER (the Soul Machines server named in "
            "Studio, e.g. dh.soulmachines.cloud)"
        )
    if settings.control_url is None:
        raise SettingsError(
            "production needs this server's public address: set PUBLIC_URL "
            "(or the vendor's ORCHESTRATION_SERVER)"
        )
    if settings.allow_unauthenticated_control:
        raise SettingsError(
            "ALLOW_UNAUTHENTICATED_CONTROL is for local development only: refusing it in production"
        )
    if "*" in settings.cors_origins:
        raise SettingsError("CORS_ORIGINS='*' is refused in production: list the UI origins")


def _check_token_profiles(settings: Settings) -> None:
    try:
        limits.parse(settings.rate_limit)
    except ValueError:
        raise SettingsError(
            f"TOKEN_RATE_LIMIT={settings.rate_limit!r}: use e.g. 60/minute or 10/second"
        ) from None
    check_secret("TOKEN_VERIFY_API_KEY", settings.verify_api_key)
    if settings.redis_url is not None:
        check_redis_url(settings.redis_url)
    if CCAI in settings.profiles:
        _check_ccai(settings)
    if VIDEOSDK in settings.profiles:
        _require("videosdk", VIDEOSDK_API_KEY=settings.videosdk_api_key)
        _require("videosdk", VIDEOSDK_SECRET=settings.videosdk_secret)
        settings.videosdk_policy()
        settings.keyring_for("VIDEOSDK_SECRET", "videosdk", settings.videosdk_secret)
    if VOICEGAIN in settings.profiles:
        _require("voicegain", VOICEGAIN_SECRET=settings.voicegain_secret)
        _require("voicegain", VOICEGAIN_ADMIN_KEY=settings.voicegain_admin_key)
        check_secret("VOICEGAIN_ADMIN_KEY", settings.voicegain_admin_key)
        settings.keyring_for("VOICEGAIN_SECRET", "voicegain", settings.voicegain_secret)
        if not MIN_EXP_IN_SEC <= settings.voicegain_max_exp_in_sec <= MAX_EXP_IN_SEC:
            raise SettingsError(
                f"VOICEGAIN_MAX_EXP_IN_SEC must be between {MIN_EXP_IN_SEC} and {MAX_EXP_IN_SEC}"
            )
        if settings.production and settings.redis_url is None:
            raise SettingsError(
                "the voicegain profile needs REDIS_URL in production: without it a "
                "restart revokes every API token"
            )


def _check_ccai(settings: Settings) -> None:
    _require("ccai", CCAI_COMPANY_NAME=settings.ccai_company_name)
    _require("ccai", CCAI_COMPANY_SECRET=settings.ccai_secret)
    settings.ccai_policy()
    settings.keyring_for("CCAI_COMPANY_SECRET", "ccai", settings.ccai_secret)
    if settings.ccai_user_resolver and settings.ccai_user_id_header:
        raise SettingsError("set CCAI_USER_RESOLVER or CCAI_USER_ID_HEADER, not both")
    if (settings.ccai_user_name_header or settings.ccai_user_email_header) and (
        not settings.ccai_user_id_header
    ):
        raise SettingsError("CCAI_USER_NAME_HEADER/CCAI_USER_EMAIL_HEADER need CCAI_USER_ID_HEADER")
    if settings.ccai_user_resolver:
        load_resolver(settings.ccai_user_resolver)


def _check_webhook(settings: Settings) -> None:
    check_secret("WEBHOOK_SECRET", settings.webhook_secret)
    for name, url in (
        ("WEBHOOK_URL", settings.webhook_url),
        ("WEBHOOK_EVENTS_URL", settings.webhook_events_url),
    ):
        if url is not None:
            check_webhook_url(name, url, production=settings.production)


LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def check_webhook_url(name: str, url: str, *, production: bool) -> None:
    """An ``http(s)://host/...`` URL; production wants ``https://``, except to a
    loopback address (a sidecar on the same host: the body never leaves it).

    The message never repeats the URL: its query may hold a credential.
    """
    parts = urlsplit(url)
    try:
        host = parts.hostname
        parts.port  # noqa: B018 (raises ValueError for a bad port)
    except ValueError:
        host = None
    if parts.scheme not in ("http", "https") or not host:
        raise SettingsError(f"{name} must look like https://host/path")
    if production and parts.scheme != "https" and host not in LOOPBACK_HOSTS:
        raise SettingsError(
            f"{name} must be https:// in production (http:// only to a loopback address): "
            "turns carry what the user says and the token's claims"
        )


def _require(profile: str, **values: str | None) -> None:
    for name, value in values.items():
        if value is None:
            raise SettingsError(f"TOKEN_PROFILES includes {profile}: set {name}")


def check_secret(name: str, value: str | None) -> None:
    """A platform secret or key is at least ``MIN_KEY_BYTES`` long."""
    if value is not None and len(value.encode("utf-8")) < MIN_KEY_BYTES:
        raise SettingsError(
            f"{name} must be at least {MIN_KEY_BYTES} bytes "
            "(generate one with `orchestrator keygen`)"
        )


def check_llm_base_url(url: str, *, production: bool) -> None:
    """``LLM_BASE_URL`` is an http(s) URL; production wants TLS unless the
    server is on this host (a local Ollama or vLLM)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError("LLM_BASE_URL must look like https://host/v1")
    if production and parts.scheme == "http" and not _loopback(parts.hostname):
        raise SettingsError(
            "LLM_BASE_URL: http:// is refused in production unless the host is loopback "
            "(the key and the conversation would travel in clear); use https://"
        )


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
    try:
        target: Any = import_object(*split_spec(spec))
    except ValueError:
        raise SettingsError(f"CCAI_USER_RESOLVER={spec!r}: use module:callable") from None
    except (ImportError, AttributeError) as exc:
        raise SettingsError(f"CCAI_USER_RESOLVER={spec!r} cannot be loaded: {exc}") from None
    if not callable(target):
        raise SettingsError(f"CCAI_USER_RESOLVER={spec!r} is not callable")
    resolver: UserResolver = target
    return resolver


def origin_pattern(origin: str) -> str:
    """An anchored regex for one allowed origin; ``*`` may stand for the
    subdomains (``https://*.example.com``) or the port (``http://localhost:*``)."""
    parts = urlsplit(origin.strip().lower().rstrip("/"))
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path:
        raise SettingsError(f"CORS origin {origin!r} must look like https://host[:port]")
    host, _, port = parts.netloc.partition(":")
    if host.startswith("*."):
        host_re = r"(?:[a-z0-9-]+\.)+" + re.escape(host[2:])
    elif "*" in host:
        raise SettingsError(f"CORS origin {origin!r}: '*' may only open a subdomain ('*.host')")
    else:
        host_re = re.escape(host)
    if port == "*":
        port_re = r"(?::[0-9]{1,5})?"
    elif port:
        if not port.isdigit():
            raise SettingsError(f"CORS origin {origin!r} has a bad port")
        port_re = ":" + port
    else:
        port_re = ""
    return re.escape(parts.scheme) + "://" + host_re + port_re

"""The checks of single values the settings rules use (secrets, URLs, the CCAI
resolver, CORS origins). Each message names the variable and the fix; the rules
on the whole object (``check_settings``) live with ``Settings``, which calls
these: this module knows nothing of ``Settings``."""

from __future__ import annotations

import ipaddress
import re
from typing import Any
from urllib.parse import urlsplit

import redis.asyncio as aioredis

from orchestrator.config.parsing import SettingsError, import_object, split_spec
from tokens import MIN_KEY_BYTES
from tokens.web.ccai import UserResolver

ENV = "env"  # the field metadata key naming a field's variable


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


def require(profile: str, **values: str | None) -> None:
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

"""One configuration object, built from the environment and an optional ``.env``.

The vendor sample's variables keep their meanings (``SESSION_SERVER``,
``JWT_PUBLIC_KEY``, ``JWT_PRIVATE_KEY``, ``ORCHESTRATION_SERVER``,
``CONTROL_VIA_BROWSER``, ``PRODUCTION_PERSONA``, ``PORT``), so an existing
``.env`` works unchanged. Everything has a development default; production
refuses to start without the values that make it safe.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from dotenv import dotenv_values

from tokens import Keyring, KeyringError, PolicyError, SigningKey, SoulMachinesPolicy
from tokens.profiles.soul_machines import DEFAULT_TTL_SECONDS

DEFAULT_SESSION_SERVER = "dh.soulmachines.cloud"
DEFAULT_PORT = 8080
CONTROL_PATH = "/ws"
EPHEMERAL_KEY_NAME = "dev-ephemeral"
# Set by `orchestrator serve` when it generated the development key, so every
# worker process shares it and says so in its log.
EPHEMERAL_FLAG = "ORCHESTRATOR_EPHEMERAL_KEY"
MIN_API_KEY_BYTES = 32
DEFAULT_HANDLER = "orchestrator.handlers.default:handle"
DEFAULT_APOLOGY = "Sorry, something went wrong on my side. Could you say that again?"
DEV_CORS_ORIGINS = ("http://localhost:*", "http://127.0.0.1:*", "https://localhost:*")


class SettingsError(ValueError):
    """The configuration cannot be used; the message names the variable."""


def _bool(env: Mapping[str, str], name: str, default: bool = False) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name}={raw!r} is not a boolean (use true or false)")


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not an integer") from None


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None


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


@dataclass(frozen=True)
class Settings:
    """Everything the app needs, validated once at start-up."""

    production: bool = False
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    keyring: Keyring = field(default_factory=lambda: _ephemeral_keyring())
    ephemeral_key: bool = True
    session_server: str = DEFAULT_SESSION_SERVER
    control_url: str | None = None
    control_via_browser: bool = False
    control_cookie_name: str | None = None
    token_ttl_seconds: int = DEFAULT_TTL_SECONDS
    cors_origins: tuple[str, ...] = DEV_CORS_ORIGINS
    log_level: str = "info"
    log_json: bool = False
    conversation_handler: str = DEFAULT_HANDLER
    handler_timeout_seconds: float = 10.0
    handler_apology: str = DEFAULT_APOLOGY
    allow_unauthenticated_control: bool = False
    control_max_frame_bytes: int = 64 * 1024
    control_max_frames_per_second: float = 50.0
    control_send_timeout_seconds: float = 10.0
    transaction_timeout_seconds: float = 10.0
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    session_grace_seconds: int = 15 * 60
    transcript_turns: int = 200
    transcript_max_bytes: int = 128 * 1024
    # The developer console at /console; None: on in development, off in production.
    console_enabled: bool | None = None
    # Reverse proxies in front that append to X-Forwarded-For (0: the TCP peer is the client).
    trusted_proxy_hops: int = 0

    def __post_init__(self) -> None:
        if self.production:
            if self.ephemeral_key:
                raise SettingsError(
                    "production needs a real signing key: set JWT_PUBLIC_KEY and JWT_PRIVATE_KEY"
                )
            if not self.session_server:
                raise SettingsError(
                    "production needs SESSION_SERVER (the Soul Machines server named in "
                    "Studio, e.g. dh.soulmachines.cloud)"
                )
            if self.control_url is None:
                raise SettingsError(
                    "production needs this server's public address: set PUBLIC_URL "
                    "(or the vendor's ORCHESTRATION_SERVER)"
                )
            if self.allow_unauthenticated_control:
                raise SettingsError(
                    "ALLOW_UNAUTHENTICATED_CONTROL is for local development only: "
                    "refusing it in production"
                )
            if "*" in self.cors_origins:
                raise SettingsError(
                    "CORS_ORIGINS='*' is refused in production: list the UI origins"
                )
        for key in self.api_keys:
            if len(key.encode()) < MIN_API_KEY_BYTES:
                raise SettingsError(
                    f"ORCHESTRATOR_API_KEY entries must be at least {MIN_API_KEY_BYTES} bytes "
                    "(generate one with `orchestrator keygen`)"
                )
        for name, value in (
            ("HANDLER_TIMEOUT_SECONDS", self.handler_timeout_seconds),
            ("CONTROL_MAX_FRAMES_PER_SECOND", self.control_max_frames_per_second),
            ("CONTROL_SEND_TIMEOUT_SECONDS", self.control_send_timeout_seconds),
            ("TRANSACTION_TIMEOUT_SECONDS", self.transaction_timeout_seconds),
        ):
            if value <= 0:
                raise SettingsError(f"{name} must be greater than 0")
        if not 1 <= self.transcript_turns <= 10_000:
            raise SettingsError("TRANSCRIPT_TURNS must be between 1 and 10000")
        if not 16 * 1024 <= self.transcript_max_bytes <= 64 * 1024 * 1024:
            # 16 KiB holds the longest entry (4000 characters, 4 bytes each at worst).
            raise SettingsError("TRANSCRIPT_MAX_BYTES must be between 16384 and 67108864")
        if self.control_max_frame_bytes < 1024:
            raise SettingsError("CONTROL_MAX_FRAME_BYTES must be at least 1024")
        if not 0 <= self.trusted_proxy_hops <= 10:
            raise SettingsError("TRUSTED_PROXY_HOPS must be between 0 and 10")
        try:
            self.sm_policy()
        except PolicyError as exc:
            raise SettingsError(str(exc)) from None
        self.cors_origin_regex()

    def sm_policy(self) -> SoulMachinesPolicy:
        return SoulMachinesPolicy(
            session_server=self.session_server,
            control_url=self.control_url,
            control_via_browser=self.control_via_browser,
            production=self.production,
            ttl_seconds=self.token_ttl_seconds,
            control_cookie_name=self.control_cookie_name,
        )

    def cors_origin_regex(self) -> str | None:
        """One anchored alternation of the allowed origins (``None``: no CORS)."""
        if not self.cors_origins:
            return None
        if "*" in self.cors_origins:
            return r"https?://.+"
        return "|".join(f"(?:{origin_pattern(origin)})" for origin in self.cors_origins)

    @property
    def secrets(self) -> tuple[str, ...]:
        """Secret values, for the log redactor; never log these."""
        keys = tuple(
            key.secret.decode("utf-8", "replace")
            for kid in self.keyring.kids
            if (key := self.keyring.get(kid)) is not None
        )
        return keys + self.api_keys

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, env_file: str | Path | None = ".env"
    ) -> Settings:
        """Read the process environment over an optional ``.env`` file."""
        env: dict[str, str] = {}
        if env_file is not None and Path(env_file).is_file():
            env.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
        env.update(os.environ if environ is None else environ)
        return cls._from_mapping(env)

    @classmethod
    def _from_mapping(cls, env: Mapping[str, str]) -> Settings:
        mode = env.get("ORCHESTRATOR_ENV", "development").strip().lower() or "development"
        if mode not in ("development", "production"):
            raise SettingsError(f"ORCHESTRATOR_ENV={mode!r}: use development or production")
        production = mode == "production" or _bool(env, "PRODUCTION_PERSONA")
        keyring, ephemeral = _keyring_from(env, production)
        cors = tuple(o.strip() for o in env.get("CORS_ORIGINS", "").split(",") if o.strip())
        log_format = env.get("LOG_FORMAT", "").strip().lower() or (
            "json" if production else "console"
        )
        if log_format not in ("json", "console"):
            raise SettingsError(f"LOG_FORMAT={log_format!r}: use json or console")
        cookie = env.get("SM_CONTROL_COOKIE", "").strip() or None
        return cls(
            production=production,
            host=env.get("HOST", "").strip() or ("0.0.0.0" if production else "127.0.0.1"),  # noqa: S104
            port=_int(env, "PORT", DEFAULT_PORT),
            keyring=keyring,
            ephemeral_key=ephemeral,
            session_server=env.get("SESSION_SERVER", "").strip()
            or ("" if production else DEFAULT_SESSION_SERVER),
            control_url=_control_url_from(env),
            control_via_browser=_bool(env, "CONTROL_VIA_BROWSER"),
            control_cookie_name=cookie,
            token_ttl_seconds=_int(env, "TOKEN_TTL_SECONDS", DEFAULT_TTL_SECONDS),
            cors_origins=cors or (() if production else DEV_CORS_ORIGINS),
            log_level=env.get("LOG_LEVEL", "info").strip().lower() or "info",
            log_json=log_format == "json",
            conversation_handler=env.get("CONVERSATION_HANDLER", "").strip() or DEFAULT_HANDLER,
            handler_timeout_seconds=_float(env, "HANDLER_TIMEOUT_SECONDS", 10.0),
            handler_apology=env.get("HANDLER_APOLOGY", "").strip() or DEFAULT_APOLOGY,
            allow_unauthenticated_control=_bool(env, "ALLOW_UNAUTHENTICATED_CONTROL"),
            control_max_frame_bytes=_int(env, "CONTROL_MAX_FRAME_BYTES", 64 * 1024),
            control_max_frames_per_second=_float(env, "CONTROL_MAX_FRAMES_PER_SECOND", 50.0),
            control_send_timeout_seconds=_float(env, "CONTROL_SEND_TIMEOUT_SECONDS", 10.0),
            transaction_timeout_seconds=_float(env, "TRANSACTION_TIMEOUT_SECONDS", 10.0),
            session_grace_seconds=_int(env, "SESSION_TTL_SECONDS", 15 * 60),
            transcript_turns=_int(env, "TRANSCRIPT_TURNS", 200),
            transcript_max_bytes=_int(env, "TRANSCRIPT_MAX_BYTES", 128 * 1024),
            console_enabled=_bool(env, "CONSOLE_ENABLED", not production),
            trusted_proxy_hops=_int(env, "TRUSTED_PROXY_HOPS", 0),
            api_keys=tuple(
                k.strip() for k in env.get("ORCHESTRATOR_API_KEY", "").split(",") if k.strip()
            ),
        )


def _control_url_from(env: Mapping[str, str]) -> str | None:
    public_url = env.get("PUBLIC_URL", "").strip().rstrip("/")
    vendor = env.get("ORCHESTRATION_SERVER", "").strip().rstrip("/")
    if public_url and vendor:
        raise SettingsError("set PUBLIC_URL or ORCHESTRATION_SERVER, not both")
    if public_url:
        parts = urlsplit(public_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise SettingsError(f"PUBLIC_URL={public_url!r} must be an http(s):// URL")
        scheme = "wss" if parts.scheme == "https" else "ws"
        return f"{scheme}://{parts.netloc}{parts.path}{CONTROL_PATH}"
    if vendor:
        # The vendor's sample turns a bare host into wss://HOST; keep that.
        return vendor if "://" in vendor else f"wss://{vendor}"
    return None


def _keyring_from(env: Mapping[str, str], production: bool) -> tuple[Keyring, bool]:
    name = env.get("JWT_PUBLIC_KEY", "").strip()
    secret = env.get("JWT_PRIVATE_KEY", "")
    ephemeral = _bool(env, EPHEMERAL_FLAG)
    try:
        if not secret:
            if production:
                raise SettingsError("JWT_PRIVATE_KEY is required in production")
            return _ephemeral_keyring(), True
        if not name:
            raise SettingsError("JWT_PUBLIC_KEY (the key name, used as iss) is required")
        previous = _previous_keys(env.get("JWT_PREVIOUS_KEYS", ""))
        return Keyring(SigningKey.from_text(name, secret), previous), ephemeral
    except KeyringError as exc:
        raise SettingsError(f"signing keys: {exc}") from None


def _previous_keys(raw: str) -> list[SigningKey]:
    if not raw.strip():
        return []
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError:
        raise SettingsError(
            'JWT_PREVIOUS_KEYS must be a JSON object {"keyName": "privateKey", ...}'
        ) from None
    if not isinstance(parsed, dict) or not all(isinstance(v, str) for v in parsed.values()):
        raise SettingsError('JWT_PREVIOUS_KEYS must be a JSON object {"keyName": "privateKey"}')
    return [SigningKey.from_text(kid, secret) for kid, secret in parsed.items()]


def _ephemeral_keyring() -> Keyring:
    from tokens import generate_secret

    return Keyring(SigningKey.from_text(EPHEMERAL_KEY_NAME, generate_secret()))

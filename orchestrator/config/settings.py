"""``Settings``: the one configuration object, validated once at start-up
(``check_settings``, at the end: the rules on the whole object; the checks of
single values are in ``validation``).

Each field names its variable in the table (``setting("PORT")``), which gives
its development default; ``from_env`` reads every such field the same way.
The few values several variables make together (mode, keyring, control URL,
log format) are read in ``environment``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import limits

from orchestrator.config.environment import (
    control_url_from,
    ephemeral_keyring,
    keyring_from,
    production_mode,
    read_environment,
)
from orchestrator.config.parsing import Network, SettingsError
from orchestrator.config.table import MIN_API_KEY_BYTES, VARIABLE
from orchestrator.config.validation import (
    ENV,
    check_llm_base_url,
    check_redis_url,
    check_secret,
    check_webhook_url,
    load_resolver,
    origin_pattern,
    require,
)
from orchestrator.logs import url_secrets
from tokens import (
    Keyring,
    KeyringError,
    PolicyError,
    SigningKey,
    SoulMachinesPolicy,
    TokenPackageError,
)
from tokens.claims import ClientClaimsRule
from tokens.durations import parse_duration
from tokens.profiles.ccai import CcaiPolicy
from tokens.profiles.videosdk import VideoSdkPolicy
from tokens.profiles.voicegain import MAX_EXP_IN_SEC, MIN_EXP_IN_SEC
from tokens.registry import CCAI, VIDEOSDK, VOICEGAIN, parse_profile_names


def setting(name: str, **default: Any) -> Any:
    """A field read from variable ``name``, defaulting to its development default
    (or to ``default=``); a secret stays out of the repr."""
    variable = VARIABLE[name]
    value = default.get("default", variable.default)
    return field(default=value, repr=not variable.kind.secret, metadata={ENV: name})


@dataclass(frozen=True)
class Settings:
    """Everything the app needs; ``Settings()`` is a development setup with an ephemeral key."""

    production: bool = False  # ORCHESTRATOR_ENV, PRODUCTION_PERSONA
    host: str = setting("HOST")
    port: int = setting("PORT")
    trusted_proxy_hops: int = setting("TRUSTED_PROXY_HOPS")
    http_head_timeout_seconds: float = setting("HTTP_HEAD_TIMEOUT_SECONDS")
    # JWT_PUBLIC_KEY, JWT_PRIVATE_KEY, JWT_PREVIOUS_KEYS, ORCHESTRATOR_EPHEMERAL_KEY
    keyring: Keyring = field(default_factory=ephemeral_keyring)
    ephemeral_key: bool = True
    session_server: str = setting("SESSION_SERVER")
    token_ttl_seconds: int = setting("TOKEN_TTL_SECONDS")
    control_url: str | None = None  # PUBLIC_URL, ORCHESTRATION_SERVER
    control_via_browser: bool = setting("CONTROL_VIA_BROWSER")
    control_cookie_name: str | None = setting("SM_CONTROL_COOKIE")
    control_allowed_networks: tuple[Network, ...] = setting("CONTROL_ALLOWED_NETWORKS")
    cors_origins: tuple[str, ...] = setting("CORS_ORIGINS")
    # None: on in development, off in production.
    console_enabled: bool | None = setting("CONSOLE_ENABLED", default=None)
    log_level: str = setting("LOG_LEVEL")
    log_json: bool = False  # LOG_FORMAT
    conversation_handler: str = setting("CONVERSATION_HANDLER")
    handler_timeout_seconds: float = setting("HANDLER_TIMEOUT_SECONDS")
    handler_apology: str = setting("HANDLER_APOLOGY")
    handler_requests_per_minute: int = setting("HANDLER_REQUESTS_PER_MINUTE")
    handler_input_chars_per_minute: int = setting("HANDLER_INPUT_CHARS_PER_MINUTE")
    handler_budget_reply: str = setting("HANDLER_BUDGET_REPLY")
    idle_prompt_seconds: float = setting("IDLE_PROMPT_SECONDS")
    allow_unauthenticated_control: bool = setting("ALLOW_UNAUTHENTICATED_CONTROL")
    control_max_frame_bytes: int = setting("CONTROL_MAX_FRAME_BYTES")
    control_max_frames_per_second: float = setting("CONTROL_MAX_FRAMES_PER_SECOND")
    control_send_timeout_seconds: float = setting("CONTROL_SEND_TIMEOUT_SECONDS")
    control_handshakes_per_pass: int = setting("CONTROL_HANDSHAKES_PER_PASS")
    transaction_timeout_seconds: float = setting("TRANSACTION_TIMEOUT_SECONDS")
    api_keys: tuple[str, ...] = setting("ORCHESTRATOR_API_KEY")
    client_claims: ClientClaimsRule = setting("CLIENT_CLAIMS")  # noqa: RUF009 (frozen)
    session_grace_seconds: int = setting("SESSION_TTL_SECONDS")
    transcript_turns: int = setting("TRANSCRIPT_TURNS")
    transcript_max_bytes: int = setting("TRANSCRIPT_MAX_BYTES")
    webhook_url: str | None = setting("WEBHOOK_URL")
    webhook_secret: str | None = setting("WEBHOOK_SECRET")
    webhook_events_url: str | None = setting("WEBHOOK_EVENTS_URL")
    webhook_history_lines: int = setting("WEBHOOK_HISTORY_LINES")
    webhook_max_reply_bytes: int = setting("WEBHOOK_MAX_REPLY_BYTES")
    webhook_max_concurrent: int = setting("WEBHOOK_MAX_CONCURRENT")
    webhook_max_waiting: int = setting("WEBHOOK_MAX_WAITING")
    sse_max_streams_per_session: int = setting("SSE_MAX_STREAMS_PER_SESSION")
    sse_max_backend_streams_per_session: int = setting("SSE_MAX_BACKEND_STREAMS_PER_SESSION")
    sse_max_streams_per_address: int = setting("SSE_MAX_STREAMS_PER_ADDRESS")
    # None: derived from the open-file limit (orchestrator.http.event_streams).
    sse_max_streams: int | None = setting("SSE_MAX_STREAMS")
    redis_url: str | None = setting("REDIS_URL")
    llm_base_url: str = setting("LLM_BASE_URL")
    llm_api_key: str | None = setting("LLM_API_KEY")
    llm_model: str | None = setting("LLM_MODEL")
    llm_system_prompt: str = setting("LLM_SYSTEM_PROMPT")
    llm_welcome: str = setting("LLM_WELCOME")
    llm_speech: str = setting("LLM_SPEECH")
    llm_continuation: str = setting("LLM_CONTINUATION")
    llm_history_turns: int = setting("LLM_HISTORY_TURNS")
    llm_history_max_chars: int = setting("LLM_HISTORY_MAX_CHARS")
    llm_max_input_chars: int = setting("LLM_MAX_INPUT_CHARS")
    llm_max_tokens: int = setting("LLM_MAX_TOKENS")
    llm_max_answer_chars: int = setting("LLM_MAX_ANSWER_CHARS")
    llm_temperature: float | None = setting("LLM_TEMPERATURE")
    llm_tools: bool = setting("LLM_TOOLS")
    judge_base_url: str = setting("JUDGE_BASE_URL")
    judge_api_key: str | None = setting("JUDGE_API_KEY")
    judge_model: str | None = setting("JUDGE_MODEL")
    profiles: tuple[str, ...] = setting("TOKEN_PROFILES")
    rate_limit: str = setting("TOKEN_RATE_LIMIT")
    verify_api_key: str | None = setting("TOKEN_VERIFY_API_KEY")
    ccai_company_name: str | None = setting("CCAI_COMPANY_NAME")
    ccai_secret: str | None = setting("CCAI_COMPANY_SECRET")
    ccai_ttl_seconds: int = setting("CCAI_TOKEN_TTL_SECONDS")
    ccai_user_resolver: str | None = setting("CCAI_USER_RESOLVER")
    ccai_user_id_header: str | None = setting("CCAI_USER_ID_HEADER")
    ccai_user_name_header: str | None = setting("CCAI_USER_NAME_HEADER")
    ccai_user_email_header: str | None = setting("CCAI_USER_EMAIL_HEADER")
    ccai_anonymous_cookie: str = setting("CCAI_ANONYMOUS_COOKIE")
    videosdk_api_key: str | None = setting("VIDEOSDK_API_KEY")
    videosdk_secret: str | None = setting("VIDEOSDK_SECRET")
    videosdk_ttl: str = setting("VIDEOSDK_TOKEN_TTL")
    videosdk_allowed_permissions: tuple[str, ...] = setting("VIDEOSDK_ALLOWED_PERMISSIONS")
    voicegain_secret: str | None = setting("VOICEGAIN_SECRET")
    voicegain_admin_key: str | None = setting("VOICEGAIN_ADMIN_KEY")
    voicegain_max_exp_in_sec: int = setting("VOICEGAIN_MAX_EXP_IN_SEC")
    # None (off) when built in code: only the environment's default writes a file.
    archive_url: str | None = setting("ARCHIVE_URL", default=None)
    archive_claims: tuple[str, ...] = setting("ARCHIVE_CLAIMS")
    archive_retention_days: int = setting("ARCHIVE_RETENTION_DAYS")
    archive_queue_size: int = setting("ARCHIVE_QUEUE_SIZE")

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "profiles", parse_profile_names(",".join(self.profiles)))
        except TokenPackageError as exc:
            raise SettingsError(f"TOKEN_PROFILES: {exc}") from None
        check_settings(self)

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, env_file: str | Path | None = ".env"
    ) -> Settings:
        """Read the process environment (or ``environ``) over an optional ``.env`` file."""
        return cls.from_mapping(read_environment(environ, env_file))

    @classmethod
    def from_mapping(cls, env: Mapping[str, str]) -> Settings:
        """Read every variable from ``env`` (already merged with ``.env``)."""
        production = production_mode(env)
        keyring, ephemeral = keyring_from(env, production)
        log_format = VARIABLE["LOG_FORMAT"].read(env, production)
        values = {
            item.name: VARIABLE[item.metadata[ENV]].read(env, production)
            for item in fields(cls)
            if ENV in item.metadata
        }
        return cls(
            production=production,
            keyring=keyring,
            ephemeral_key=ephemeral,
            control_url=control_url_from(env),
            log_json=log_format == "json",
            **values,
        )

    def sm_policy(self) -> SoulMachinesPolicy:
        return SoulMachinesPolicy(
            session_server=self.session_server,
            control_url=self.control_url,
            control_via_browser=self.control_via_browser,
            production=self.production,
            ttl_seconds=self.token_ttl_seconds,
            control_cookie_name=self.control_cookie_name,
            client_claims=self.client_claims,
        )

    def cors_origin_regex(self) -> str | None:
        """One anchored alternation of the allowed origins (``None``: no CORS)."""
        if not self.cors_origins:
            return None
        if "*" in self.cors_origins:
            return r"https?://.+"
        return "|".join(f"(?:{origin_pattern(origin)})" for origin in self.cors_origins)

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
        keys = tuple(
            key.secret.decode("utf-8", "replace")
            for kid in self.keyring.kids
            if (key := self.keyring.get(kid)) is not None
        )
        platform = (
            self.verify_api_key,
            self.ccai_secret,
            self.videosdk_secret,
            self.voicegain_secret,
            self.voicegain_admin_key,
            self.webhook_secret,
            self.llm_api_key,
            self.judge_api_key,
        )
        # A URL's secret parts: userinfo and query values; an HTTP endpoint's path too
        # (a webhook URL may carry a secret segment). A database URL's path names
        # the database or file, which error lines need.
        urls = (
            *url_secrets(self.webhook_url, path=True),
            *url_secrets(self.webhook_events_url, path=True),
            *url_secrets(self.llm_base_url, path=True),
            *url_secrets(self.redis_url),
            *url_secrets(self.archive_url),
        )
        return keys + self.api_keys + tuple(value for value in platform if value) + urls


# --- the rules on the whole object, checked once at start-up --------------------------


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
    for item in fields(settings):
        variable = VARIABLE.get(item.metadata.get(ENV, ""))
        value = getattr(settings, item.name)
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
        require("videosdk", VIDEOSDK_API_KEY=settings.videosdk_api_key)
        require("videosdk", VIDEOSDK_SECRET=settings.videosdk_secret)
        settings.videosdk_policy()
        settings.keyring_for("VIDEOSDK_SECRET", "videosdk", settings.videosdk_secret)
    if VOICEGAIN in settings.profiles:
        require("voicegain", VOICEGAIN_SECRET=settings.voicegain_secret)
        require("voicegain", VOICEGAIN_ADMIN_KEY=settings.voicegain_admin_key)
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
    require("ccai", CCAI_COMPANY_NAME=settings.ccai_company_name)
    require("ccai", CCAI_COMPANY_SECRET=settings.ccai_secret)
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

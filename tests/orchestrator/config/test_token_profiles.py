"""Start-up validation of the token profile settings: messages name the variable."""

from __future__ import annotations

import secrets

import pytest

from orchestrator.config import Settings, SettingsError
from tests.conftest import random_secret


def _env(**extra: str) -> dict[str, str]:
    return {
        "TOKEN_PROFILES": "soul-machines,ccai,videosdk,voicegain",
        "CCAI_COMPANY_NAME": "ACME",
        "CCAI_COMPANY_SECRET": secrets.token_urlsafe(48),
        "VIDEOSDK_API_KEY": "api-key",
        "VIDEOSDK_SECRET": secrets.token_urlsafe(48),
        "VOICEGAIN_SECRET": secrets.token_urlsafe(48),
        "VOICEGAIN_ADMIN_KEY": secrets.token_urlsafe(48),
        **extra,
    }


def _production(**extra: str) -> dict[str, str]:
    """Every profile configured, in a production setup that is otherwise complete."""
    return _env(
        ORCHESTRATOR_ENV="production",
        JWT_PUBLIC_KEY="prod-key",
        JWT_PRIVATE_KEY=random_secret(),
        SESSION_SERVER="dh.soulmachines.cloud",
        PUBLIC_URL="https://orch.example.com",
        **extra,
    )


def test_default_is_soul_machines_only() -> None:
    """With nothing set, only the Soul Machines profile is enabled."""
    settings = Settings.from_env({}, env_file=None)
    assert settings.profiles == ("soul-machines",)
    assert settings.rate_limit == "60/minute"


def test_every_profile_configured_is_accepted() -> None:
    """A complete configuration enables all four profiles and reads each setting."""
    settings = Settings.from_env(
        _env(VIDEOSDK_TOKEN_TTL="30m", TOKEN_RATE_LIMIT="10/second"), env_file=None
    )
    assert settings.profiles == ("soul-machines", "ccai", "videosdk", "voicegain")
    assert settings.videosdk_policy().ttl_seconds == 1800
    assert settings.rate_limit == "10/second"


@pytest.mark.parametrize(
    "variable",
    [
        "CCAI_COMPANY_SECRET",
        "VIDEOSDK_SECRET",
        "VOICEGAIN_SECRET",
        "VOICEGAIN_ADMIN_KEY",
        "TOKEN_VERIFY_API_KEY",
    ],
)
def test_short_secret_is_refused_naming_the_variable(variable: str) -> None:
    """A secret under 32 bytes stops start-up with a message naming its variable."""
    with pytest.raises(SettingsError, match=variable):
        Settings.from_env(_env(**{variable: secrets.token_urlsafe(16)}), env_file=None)


@pytest.mark.parametrize(
    "variable", ["CCAI_COMPANY_NAME", "CCAI_COMPANY_SECRET", "VIDEOSDK_API_KEY", "VOICEGAIN_SECRET"]
)
def test_enabled_profile_without_its_settings_is_refused(variable: str) -> None:
    """An enabled profile missing one of its settings stops start-up naming it."""
    env = _env()
    del env[variable]
    with pytest.raises(SettingsError, match=variable):
        Settings.from_env(env, env_file=None)


@pytest.mark.parametrize(
    ("extra", "variable"),
    [
        ({"TOKEN_PROFILES": "soul-machines,zoom"}, "TOKEN_PROFILES"),
        ({"TOKEN_RATE_LIMIT": "lots"}, "TOKEN_RATE_LIMIT"),
        ({"VIDEOSDK_TOKEN_TTL": "2 weeks"}, "VIDEOSDK_TOKEN_TTL"),
        ({"VIDEOSDK_ALLOWED_PERMISSIONS": "allow_all"}, "VIDEOSDK_ALLOWED_PERMISSIONS"),
        ({"CCAI_TOKEN_TTL_SECONDS": "10"}, "CCAI_TOKEN_TTL_SECONDS"),
        ({"VOICEGAIN_MAX_EXP_IN_SEC": "999999"}, "VOICEGAIN_MAX_EXP_IN_SEC"),
        ({"CCAI_USER_RESOLVER": "no_such_module:resolve"}, "CCAI_USER_RESOLVER"),
        ({"CCAI_USER_EMAIL_HEADER": "X-Email"}, "CCAI_USER_ID_HEADER"),
    ],
)
def test_unusable_values_are_refused(extra: dict[str, str], variable: str) -> None:
    """Each unusable value stops start-up with a message naming the variable."""
    with pytest.raises(SettingsError, match=variable):
        Settings.from_env(_env(**extra), env_file=None)


def test_voicegain_in_production_needs_redis() -> None:
    """In production the voicegain profile needs REDIS_URL, or a restart would revoke all."""
    with pytest.raises(SettingsError, match="REDIS_URL"):
        Settings.from_env(_production(), env_file=None)
    settings = Settings.from_env(_production(REDIS_URL="redis://127.0.0.1:6379/0"), env_file=None)
    assert settings.redis_url is not None


def test_secrets_are_listed_for_the_log_redactor() -> None:
    """Every configured secret is handed to the log redactor (with the signing key)."""
    env = _env(
        TOKEN_VERIFY_API_KEY=secrets.token_urlsafe(48),
        JWT_PUBLIC_KEY="key",
        JWT_PRIVATE_KEY=random_secret(),
    )
    settings = Settings.from_env(env, env_file=None)
    names = (
        "CCAI_COMPANY_SECRET",
        "VIDEOSDK_SECRET",
        "VOICEGAIN_SECRET",
        "VOICEGAIN_ADMIN_KEY",
        "TOKEN_VERIFY_API_KEY",
        "JWT_PRIVATE_KEY",
    )
    assert set(settings.secrets) == {env[name] for name in names}

"""Settings from the environment and ``.env``: vendor names, defaults, production refusals, CORS."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from orchestrator.config import (
    CONTROL_PATH,
    DEFAULT_PORT,
    DEFAULT_SESSION_SERVER,
    EPHEMERAL_KEY_NAME,
    Settings,
    SettingsError,
    origin_pattern,
)
from tests.conftest import random_secret
from tokens.claims import ClientClaimsRule


def from_env(env: dict[str, str], env_file: Path | None = None) -> Settings:
    return Settings.from_env(environ=env, env_file=env_file)


def production_env(**overrides: str) -> dict[str, str]:
    env = {
        "ORCHESTRATOR_ENV": "production",
        "JWT_PUBLIC_KEY": "prod-key",
        "JWT_PRIVATE_KEY": random_secret(),
        "SESSION_SERVER": "dh.soulmachines.cloud",
        "PUBLIC_URL": "https://orch.example.com",
    }
    env.update(overrides)
    return env


def test_no_configuration_gives_a_working_development_setup() -> None:
    """With nothing set: development, loopback, port 8080, ephemeral key, local CORS."""
    settings = from_env({})
    assert settings.production is False
    assert settings.host == "127.0.0.1"
    assert settings.port == DEFAULT_PORT
    assert settings.ephemeral_key is True
    assert settings.keyring.active.kid == EPHEMERAL_KEY_NAME
    assert settings.session_server == DEFAULT_SESSION_SERVER
    assert settings.control_url is None
    assert settings.control_via_browser is False
    assert settings.log_json is False
    assert settings.cors_origin_regex() is not None


def test_ephemeral_keys_differ_between_starts() -> None:
    """Each unconfigured start generates its own key (never a key from the repository)."""
    first = from_env({}).keyring.active
    second = from_env({}).keyring.active
    assert not first.same_secret(second)


def test_vendor_env_file_is_read_unchanged(tmp_path: Path) -> None:
    """The vendor sample's .env variables keep their names and meanings."""
    secret = random_secret()
    env_file = tmp_path / ".env"
    env_file.write_text(
        "SESSION_SERVER=dh.soulmachines.cloud\n"
        "JWT_PUBLIC_KEY=my-studio-key\n"
        f"JWT_PRIVATE_KEY={secret}\n"
        "ORCHESTRATION_SERVER=orch.example.com\n"
        "CONTROL_VIA_BROWSER=true\n"
        "PRODUCTION_PERSONA=false\n"
        "PORT=5000\n"
    )
    settings = from_env({}, env_file)
    assert settings.session_server == "dh.soulmachines.cloud"
    assert settings.keyring.active.kid == "my-studio-key"
    assert settings.keyring.active.secret == secret.encode()
    assert settings.ephemeral_key is False
    assert settings.control_url == "wss://orch.example.com"
    assert settings.control_via_browser is True
    assert settings.production is False
    assert settings.port == 5000


def test_environment_overrides_the_env_file(tmp_path: Path) -> None:
    """A variable in the process environment wins over the same one in .env."""
    env_file = tmp_path / ".env"
    env_file.write_text("PORT=5000\nSESSION_SERVER=from-file.example\n")
    settings = from_env({"PORT": "6000"}, env_file)
    assert settings.port == 6000
    assert settings.session_server == "from-file.example"


def test_missing_env_file_is_fine(tmp_path: Path) -> None:
    """A named .env that does not exist is skipped, not an error."""
    assert from_env({}, tmp_path / "absent.env").port == DEFAULT_PORT


def test_public_url_gives_this_servers_control_socket() -> None:
    """PUBLIC_URL=https://host/base becomes sm-control wss://host/base/ws."""
    assert from_env({"PUBLIC_URL": "https://orch.example.com/"}).control_url == (
        f"wss://orch.example.com{CONTROL_PATH}"
    )
    assert from_env({"PUBLIC_URL": "http://localhost:8080/base"}).control_url == (
        f"ws://localhost:8080/base{CONTROL_PATH}"
    )


@pytest.mark.parametrize(
    ("value", "control"),
    [("orch.example.com", "wss://orch.example.com"), ("wss://o.example/ws", "wss://o.example/ws")],
)
def test_orchestration_server_keeps_the_vendor_meaning(value: str, control: str) -> None:
    """The vendor's ORCHESTRATION_SERVER host becomes wss://HOST; a full URL is kept."""
    assert from_env({"ORCHESTRATION_SERVER": value}).control_url == control


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"PUBLIC_URL": "https://a.example", "ORCHESTRATION_SERVER": "b.example"}, "PUBLIC_URL"),
        ({"PUBLIC_URL": "ftp://a.example"}, "PUBLIC_URL"),
        ({"PORT": "eighty"}, "PORT"),
        ({"CONTROL_VIA_BROWSER": "maybe"}, "CONTROL_VIA_BROWSER"),
        ({"ORCHESTRATOR_ENV": "staging"}, "ORCHESTRATOR_ENV"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT"),
        ({"JWT_PRIVATE_KEY": "k" * 40}, "JWT_PUBLIC_KEY"),
        ({"JWT_PUBLIC_KEY": "k", "JWT_PRIVATE_KEY": "too-short"}, "at least 32 bytes"),
        ({"TOKEN_TTL_SECONDS": "999999"}, "lifetime"),
        ({"CORS_ORIGINS": "app.example.com"}, "CORS origin"),
    ],
)
def test_bad_values_are_refused_with_a_message_naming_the_problem(
    env: dict[str, str], variable: str
) -> None:
    """Unusable configuration fails at start-up and says what to fix."""
    with pytest.raises(SettingsError) as caught:
        from_env(env)
    assert variable in str(caught.value)


def test_production_with_everything_set_starts() -> None:
    """A complete production configuration is accepted with safe defaults."""
    settings = from_env(production_env())
    assert settings.production is True
    assert settings.host == "0.0.0.0"  # noqa: S104
    assert settings.log_json is True
    assert settings.control_url == "wss://orch.example.com/ws"
    assert settings.cors_origin_regex() is None


def test_production_persona_means_production() -> None:
    """The vendor's PRODUCTION_PERSONA=true switches production mode on, with its refusals."""
    env = production_env(PRODUCTION_PERSONA="true")
    del env["ORCHESTRATOR_ENV"]
    assert from_env(env).production is True
    del env["JWT_PRIVATE_KEY"]
    with pytest.raises(SettingsError, match="JWT_PRIVATE_KEY"):
        from_env(env)


def test_production_refuses_to_run_without_a_key() -> None:
    """Production never falls back to an ephemeral key."""
    env = production_env()
    del env["JWT_PRIVATE_KEY"]
    with pytest.raises(SettingsError, match="JWT_PRIVATE_KEY is required in production"):
        from_env(env)


def test_production_refuses_via_browser_control() -> None:
    """CONTROL_VIA_BROWSER=true with PRODUCTION_PERSONA=true is refused at start-up."""
    env = production_env(PRODUCTION_PERSONA="true", CONTROL_VIA_BROWSER="true")
    with pytest.raises(SettingsError, match="CONTROL_VIA_BROWSER=true together with"):
        from_env(env)


def test_production_refuses_wildcard_cors() -> None:
    """CORS_ORIGINS='*' is refused in production (it is allowed in development)."""
    with pytest.raises(SettingsError, match="CORS_ORIGINS"):
        from_env(production_env(CORS_ORIGINS="https://app.example.com,*"))
    assert from_env({"CORS_ORIGINS": "*"}).cors_origin_regex() is not None


def test_production_refuses_to_run_without_a_public_url() -> None:
    """Production needs PUBLIC_URL: deriving sm-control from request headers is not trusted."""
    env = production_env()
    del env["PUBLIC_URL"]
    with pytest.raises(SettingsError, match="PUBLIC_URL"):
        from_env(env)


def test_production_refuses_a_plain_http_public_url() -> None:
    """A production control socket must be wss://."""
    with pytest.raises(SettingsError, match="wss"):
        from_env(production_env(PUBLIC_URL="http://orch.example.com"))


def test_production_refuses_a_missing_session_server() -> None:
    """Production does not guess the Soul Machines session server."""
    env = production_env()
    del env["SESSION_SERVER"]
    with pytest.raises(SettingsError, match="SESSION_SERVER"):
        from_env(env)


def test_previous_keys_verify_and_are_secrets() -> None:
    """JWT_PREVIOUS_KEYS adds verify-only keys; all secrets reach the log redactor."""
    current, previous = random_secret(), random_secret()
    settings = from_env(
        {
            "JWT_PUBLIC_KEY": "key-2",
            "JWT_PRIVATE_KEY": current,
            "JWT_PREVIOUS_KEYS": json.dumps({"key-1": previous}),
        }
    )
    assert settings.keyring.active.kid == "key-2"
    assert settings.keyring.kids == ("key-2", "key-1")
    assert set(settings.secrets) == {current, previous}


@pytest.mark.parametrize(
    "raw", ["not json", '["key-1"]', '{"key-1": 7}', '{"key-1": "short"}', '{"bad kid": "%s"}']
)
def test_bad_previous_keys_are_refused(raw: str) -> None:
    """Malformed JWT_PREVIOUS_KEYS, non-string or short secrets and bad ids are refused."""
    env = {"JWT_PUBLIC_KEY": "key-2", "JWT_PRIVATE_KEY": random_secret()}
    env["JWT_PREVIOUS_KEYS"] = raw.replace("%s", random_secret())
    with pytest.raises(SettingsError):
        from_env(env)


def test_other_variables_are_read() -> None:
    """HOST, SM_CONTROL_COOKIE, TOKEN_TTL_SECONDS, LOG_LEVEL and LOG_FORMAT reach the settings."""
    settings = from_env(
        {
            "HOST": "0.0.0.0",  # noqa: S104
            "SM_CONTROL_COOKIE": "sm_affinity",
            "TOKEN_TTL_SECONDS": "350",
            "LOG_LEVEL": "WARNING",
            "LOG_FORMAT": "json",
        }
    )
    assert settings.host == "0.0.0.0"  # noqa: S104
    assert settings.control_cookie_name == "sm_affinity"
    assert settings.token_ttl_seconds == 350
    assert settings.sm_policy().ttl_seconds == 350
    assert settings.log_level == "warning"
    assert settings.log_json is True


def allowed(configured: str, origin: str) -> bool:
    """Whether Starlette's CORS middleware (which uses fullmatch) would allow ``origin``."""
    regex = from_env({"CORS_ORIGINS": configured}).cors_origin_regex()
    assert regex is not None
    return re.fullmatch(regex, origin) is not None


@pytest.mark.parametrize(
    ("origin", "ok"),
    [
        ("https://app.example.com", True),
        ("https://app.example.com.evil.tld", False),
        ("https://evilapp.example.com", False),
        ("https://x.app.example.com", False),
        ("http://app.example.com", False),
        ("https://app.example.com:8443", False),
        ("https://appXexample.com", False),
    ],
)
def test_exact_origins_match_anchored(origin: str, ok: bool) -> None:
    """An exact origin matches itself only: no suffix, prefix, scheme or port games."""
    assert allowed("https://app.example.com", origin) is ok


@pytest.mark.parametrize(
    ("origin", "ok"),
    [
        ("https://a.example.com", True),
        ("https://a.b.example.com", True),
        ("https://example.com", False),
        ("https://example.com.evil.tld", False),
        ("https://a.example.com.evil.tld", False),
        ("https://evilexample.com", False),
        ("http://a.example.com", False),
    ],
)
def test_subdomain_wildcards_match_subdomains_only(origin: str, ok: bool) -> None:
    """``https://*.example.com`` opens subdomains, not the apex nor look-alike hosts."""
    assert allowed("https://*.example.com", origin) is ok


@pytest.mark.parametrize(
    ("origin", "ok"),
    [
        ("http://localhost:3000", True),
        ("http://localhost", True),
        ("http://localhost.evil.tld:3000", False),
        ("http://localhost:3000.evil.tld", False),
    ],
)
def test_port_wildcards_match_any_port(origin: str, ok: bool) -> None:
    """``http://localhost:*`` allows every port on that host and nothing else."""
    assert allowed("http://localhost:*", origin) is ok


def test_several_origins_are_alternatives() -> None:
    """A comma-separated list allows each entry, still anchored."""
    configured = "https://a.example.com, https://b.example.com"
    assert allowed(configured, "https://a.example.com")
    assert allowed(configured, "https://b.example.com")
    assert not allowed(configured, "https://a.example.comhttps://b.example.com")


@pytest.mark.parametrize(
    "origin", ["app.example.com", "https://app.example.com/path", "https://a*.example.com"]
)
def test_malformed_origins_are_refused(origin: str) -> None:
    """Origins without a scheme, with a path, or with a mid-host ``*`` are configuration errors."""
    with pytest.raises(SettingsError):
        origin_pattern(origin)


def test_client_claims_default_to_any_in_development_and_none_in_production() -> None:
    """Issue 23: in production an anonymous client chooses no custom claim unless
    CLIENT_CLAIMS names it; names take an optional byte bound; bad entries stop start-up."""
    assert from_env({}).sm_policy().client_claims == ClientClaimsRule(None)
    assert from_env(production_env()).sm_policy().client_claims == ClientClaimsRule({})
    named = from_env(production_env(CLIENT_CLAIMS="name:64, plan"))
    assert named.client_claims == ClientClaimsRule({"name": 64, "plan": 4096})
    for bad in ("name:0", "name:x", "name:99999", "any,name"):
        with pytest.raises(SettingsError, match="CLIENT_CLAIMS"):
            from_env({"CLIENT_CLAIMS": bad})

"""Reading the environment: ``.env`` once, then the values that several
variables make together (the mode, the signing keys, the control URL)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from dotenv import dotenv_values

from orchestrator.config.parsing import SettingsError
from orchestrator.config.table import CONTROL_PATH, EPHEMERAL_KEY_NAME, VARIABLE
from tokens import Keyring, KeyringError, SigningKey, generate_secret


def read_environment(
    environ: Mapping[str, str] | None = None, env_file: str | Path | None = ".env"
) -> dict[str, str]:
    """The process environment (or ``environ``) over an optional ``.env`` file."""
    env: dict[str, str] = {}
    if env_file is not None and Path(env_file).is_file():
        env.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    env.update(os.environ if environ is None else environ)
    return env


def production_mode(env: Mapping[str, str]) -> bool:
    """``ORCHESTRATOR_ENV=production`` or the vendor's ``PRODUCTION_PERSONA=true``."""
    mode = VARIABLE["ORCHESTRATOR_ENV"].read(env, production=False)
    persona: bool = VARIABLE["PRODUCTION_PERSONA"].read(env, production=False)
    return mode == "production" or persona


def control_url_from(env: Mapping[str, str]) -> str | None:
    """``sm-control`` from ``PUBLIC_URL`` or the vendor's ``ORCHESTRATION_SERVER``."""
    public_url = (VARIABLE["PUBLIC_URL"].read(env, False) or "").rstrip("/")
    vendor = (VARIABLE["ORCHESTRATION_SERVER"].read(env, False) or "").rstrip("/")
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


def keyring_from(env: Mapping[str, str], production: bool) -> tuple[Keyring, bool]:
    """The signing keyring and whether its key is the generated development one."""
    name = VARIABLE["JWT_PUBLIC_KEY"].read(env, production)
    secret = VARIABLE["JWT_PRIVATE_KEY"].read(env, production)
    ephemeral: bool = VARIABLE["ORCHESTRATOR_EPHEMERAL_KEY"].read(env, production)
    try:
        if not secret:
            if production:
                raise SettingsError("JWT_PRIVATE_KEY is required in production")
            return ephemeral_keyring(), True
        if not name:
            raise SettingsError("JWT_PUBLIC_KEY (the key name, used as iss) is required")
        previous = _previous_keys(VARIABLE["JWT_PREVIOUS_KEYS"].read(env, production))
        return Keyring(SigningKey.from_text(name, secret), previous), ephemeral
    except KeyringError as exc:
        raise SettingsError(f"signing keys: {exc}") from None


def _previous_keys(raw: str | None) -> list[SigningKey]:
    if not raw:
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


def ephemeral_keyring() -> Keyring:
    """A development keyring with a key generated now (never one from the repository)."""
    return Keyring(SigningKey.from_text(EPHEMERAL_KEY_NAME, generate_secret()))

"""The settings table is the one source: the settings read exactly its variables, the
generated docs and .env.example match it, and its production rules are enforced."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from orchestrator.config import VARIABLES, Settings, SettingsError
from orchestrator.config.parsing import between, greater_than
from orchestrator.config.reference import render_env_example, render_markdown
from orchestrator.config.validation import ENV
from tests.conftest import random_secret
from tests.orchestrator.config.test_settings import production_env as settings_production_env

ROOT = Path(__file__).resolve().parents[3]
VENDOR_NAMES = {
    "SESSION_SERVER",
    "JWT_PUBLIC_KEY",
    "JWT_PRIVATE_KEY",
    "ORCHESTRATION_SERVER",
    "CONTROL_VIA_BROWSER",
    "PRODUCTION_PERSONA",
    "PORT",
}


class RecordingEnvironment(dict[str, str]):
    """An environment that remembers which names were looked up."""

    def __init__(self, values: dict[str, str]) -> None:
        super().__init__(values)
        self.read: set[str] = set()

    def get(self, key: str, default: str | None = None) -> str | None:  # type: ignore[override]
        self.read.add(key)
        return super().get(key, default)


def production_env(**overrides: str) -> dict[str, str]:
    """A complete production configuration with every token profile enabled."""
    return settings_production_env(
        REDIS_URL="redis://127.0.0.1:6379/0",
        TOKEN_PROFILES="soul-machines,ccai,videosdk,voicegain",
        CCAI_COMPANY_NAME="ACME",
        CCAI_COMPANY_SECRET=random_secret(),
        VIDEOSDK_API_KEY="api-key",
        VIDEOSDK_SECRET=random_secret(),
        VOICEGAIN_SECRET=random_secret(),
        VOICEGAIN_ADMIN_KEY=random_secret(),
        **overrides,
    )


def test_the_table_declares_the_vendor_variables_once() -> None:
    """The vendor sample's names are in the table, and no name is declared twice."""
    names = [variable.name for variable in VARIABLES]
    assert set(names) >= VENDOR_NAMES
    assert len(names) == len(set(names))


@pytest.mark.parametrize("production", [False, True])
def test_the_settings_read_every_declared_variable_and_nothing_else(production: bool) -> None:
    """Reading the environment looks up exactly the table's names."""
    env = RecordingEnvironment(production_env() if production else {"JWT_PUBLIC_KEY": "k",
                               "JWT_PRIVATE_KEY": random_secret()})  # fmt: skip
    Settings.from_mapping(env)
    assert env.read == {variable.name for variable in VARIABLES}


def test_every_settings_field_read_from_the_table_names_a_declared_variable() -> None:
    """Each ``setting("NAME")`` field names a variable of the table."""
    declared = {variable.name for variable in VARIABLES}
    bound = [item.metadata[ENV] for item in fields(Settings) if ENV in item.metadata]
    assert set(bound) <= declared
    assert len(bound) == len(set(bound))


def test_docs_configuration_is_generated_from_the_table() -> None:
    """docs/configuration.md is exactly what the table generates (regenerate it with
    ``python -m orchestrator.config --markdown > docs/configuration.md``)."""
    assert (ROOT / "docs" / "configuration.md").read_text() == render_markdown()


def test_env_example_is_generated_from_the_table() -> None:
    """.env.example is exactly what the table generates (regenerate it with
    ``python -m orchestrator.config --env-example > .env.example``)."""
    assert (ROOT / ".env.example").read_text() == render_env_example()


def test_the_docs_list_every_variable_with_its_production_refusals() -> None:
    """Every variable has a row; every variable with a production rule is in the refusals."""
    page = render_markdown()
    refusals = page.split("## Production refusals", 1)[1]
    for variable in VARIABLES:
        assert f"| `{variable.name}` |" in page
        if variable.production is not None and variable.production.refusal:
            assert variable.production.refused, f"{variable.name}: no refused value to test"
            assert f"- `{variable.name}`: {variable.production.text}" in refusals


def test_a_complete_production_configuration_starts() -> None:
    """The base of the refusal cases below is itself accepted."""
    assert Settings.from_env(production_env(), env_file=None).production is True


@pytest.mark.parametrize(
    ("name", "value"),
    [
        (variable.name, value)
        for variable in VARIABLES
        if variable.production is not None
        for value in variable.production.refused
    ],
)
def test_each_documented_production_refusal_is_enforced(name: str, value: str) -> None:
    """A value the table says production refuses does stop start-up."""
    env = production_env()
    if name == "ORCHESTRATION_SERVER":
        del env["PUBLIC_URL"]  # the two are alternatives: set both is refused anyway
    if value:
        env[name] = value
    else:
        del env[name]
    with pytest.raises(SettingsError):
        Settings.from_env(env, env_file=None)


def test_limits_say_what_they_allow() -> None:
    """The limits' messages name the variable and the range; the docs say the same range."""
    with pytest.raises(SettingsError, match=r"^X must be between 1 and 5$"):
        between(1, 5).check("X", 6)
    with pytest.raises(SettingsError, match=r"^X must be greater than 0$"):
        greater_than(0).check("X", 0)
    assert (between(1, 5).describe(), greater_than(0).describe()) == ("1 to 5", "> 0")


def test_a_settings_object_hides_its_secrets_from_repr() -> None:
    """A secret variable's field stays out of the repr (it may end up in a log or a report)."""
    secret = random_secret()
    assert secret not in repr(Settings(ccai_secret=secret, api_keys=(random_secret(),)))

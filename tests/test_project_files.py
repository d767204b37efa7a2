"""The project files agree with the code: documented variables, .env.example, Procfile, README."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from orchestrator.settings import EPHEMERAL_FLAG, Settings
from tests.live_server import CONFIG_VARIABLES

ROOT = Path(__file__).resolve().parent.parent
INTERNAL = {EPHEMERAL_FLAG}


def variables_read_by_settings() -> set[str]:
    """Every NAME in ``env.get("NAME"``, ``_bool(env, "NAME"`` or ``_int(env, "NAME"``."""
    source = (ROOT / "orchestrator" / "settings.py").read_text()
    found = set(re.findall(r'(?:env\.get\(|_bool\(env, |_int\(env, )"([A-Z_]+)"', source))
    return found - INTERNAL


def test_the_variable_scan_finds_the_known_variables() -> None:
    """The scan sees the vendor's variables, so the checks below are not vacuous."""
    assert {"SESSION_SERVER", "JWT_PRIVATE_KEY", "CONTROL_VIA_BROWSER", "PORT"} <= (
        variables_read_by_settings()
    )


def test_every_variable_is_in_the_readme_table() -> None:
    """The README's configuration table has a row for each variable the settings read."""
    readme = (ROOT / "README.md").read_text()
    rows = set(re.findall(r"^\| `([A-Z_]+)` \|", readme, flags=re.MULTILINE))
    assert variables_read_by_settings() <= rows


def test_env_example_lists_every_variable_and_loads_as_is() -> None:
    """.env.example names every variable and, copied to .env unchanged, starts development."""
    path = ROOT / ".env.example"
    names = set(re.findall(r"^([A-Z_]+)=", path.read_text(), flags=re.MULTILINE))
    assert variables_read_by_settings() <= names
    settings = Settings.from_env(environ={}, env_file=path)
    assert settings.production is False
    assert settings.ephemeral_key is True


def test_live_server_blanks_every_variable() -> None:
    """The live-server helper blanks every variable, so tests stay hermetic."""
    assert variables_read_by_settings() <= set(CONFIG_VARIABLES)


def test_procfile_serves_on_port_behind_a_proxy() -> None:
    """The Procfile's web process binds all interfaces on $PORT behind one router hop
    (tests/orchestrator/server/test_forwarded.py runs its flags against forged headers)."""
    lines = (ROOT / "Procfile").read_text().splitlines()
    web = [line for line in lines if line.startswith("web:")]
    assert len(web) == 1
    for part in ("orchestrator serve", "--host 0.0.0.0", "--port $PORT", "--trusted-proxy-hops 1"):
        assert part in web[0]


def test_pyproject_declares_the_packages_and_the_console_script() -> None:
    """The distribution ships both packages, needs Python 3.11, and installs ``orchestrator``."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["build-system"]["build-backend"] == "hatchling.build"
    assert project["project"]["requires-python"] == ">=3.11"
    assert project["project"]["scripts"] == {"orchestrator": "orchestrator.cli:main"}
    packages = project["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    assert set(packages) == {"tokens", "orchestrator"}


@pytest.mark.parametrize(
    "command",
    [
        "python3 -m venv .venv && .venv/bin/pip install -q -e . && .venv/bin/orchestrator serve",
        "python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]' && "
        ".venv/bin/python -m pytest",
    ],
)
def test_readme_gives_the_two_setup_commands(command: str) -> None:
    """The README's start and test commands are the agreed ones (CI runs the second)."""
    assert command in (ROOT / "README.md").read_text()
    if "pytest" in command:
        assert command in (ROOT / ".ci" / "run").read_text()


def test_tokens_never_imports_orchestrator() -> None:
    """The dependency runs one way: no module in ``tokens`` imports ``orchestrator``."""
    for path in (ROOT / "tokens").glob("*.py"):
        assert not re.search(r"^\s*(from|import)\s+orchestrator", path.read_text(), re.MULTILINE)


def test_readme_shows_the_web_sdk_connect_calls_current_sdks_accept() -> None:
    """SDK 14.2+ refuse a bare ``scene.connect()``: the README shows both ``tokenServer``
    forms, and a bare one in the README or docs/ is in a paragraph that says it is 14.1 only."""
    readme = (ROOT / "README.md").read_text()
    calls = re.findall(r"scene\.connect\(([^)]*)\)", readme)
    assert any("tokenServer: { uri: '/api/jwt'" in args for args in calls)
    assert any("tokenServer: { uri: url, token: jwt }" in args for args in calls)
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for paragraph in page.read_text().split("\n\n"):
            if "connect()`" in paragraph:
                assert "14.1 and older" in paragraph and "refuse" in paragraph, paragraph

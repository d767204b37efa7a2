"""The project files agree with the code: .env.example, Procfile, pyproject, README."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from orchestrator.config import VARIABLES, Settings
from tests.live_server import CONFIG_VARIABLES

ROOT = Path(__file__).resolve().parent.parent


def test_env_example_loads_as_is() -> None:
    """.env.example (generated from the table, see tests/orchestrator/config), copied to
    .env unchanged, starts development."""
    settings = Settings.from_env(environ={}, env_file=ROOT / ".env.example")
    assert settings.production is False
    assert settings.ephemeral_key is True


def test_live_server_blanks_every_variable() -> None:
    """The live-server helper blanks every variable, so tests stay hermetic."""
    assert {variable.name for variable in VARIABLES} <= set(CONFIG_VARIABLES)


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
        "python3 -m venv .venv && .venv/bin/pip install -q -c constraints.txt -e . && "
        ".venv/bin/orchestrator serve",
        "python3 -m venv .venv && .venv/bin/pip install -q -c constraints.txt -e '.[test]' && "
        ".venv/bin/python -m pytest",
    ],
)
def test_readme_gives_the_two_setup_commands(command: str) -> None:
    """The README's start and test commands are the agreed ones (CI runs the second)."""
    assert command in (ROOT / "README.md").read_text()
    if "pytest" in command:
        assert command in (ROOT / ".ci" / "run").read_text()


def locked_releases() -> dict[str, Version]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = Version(version)
    return pins


def declared_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    return [Requirement(text) for text in [*project["dependencies"], *extras["test"]]]


def test_the_lock_pins_every_declared_dependency_inside_its_range() -> None:
    """constraints.txt holds an exact release of each requirement, one pyproject allows."""
    pins = locked_releases()
    for requirement in declared_requirements():
        pinned = pins.get(canonicalize_name(requirement.name))
        assert pinned is not None, f"{requirement.name} is not in constraints.txt"
        assert requirement.specifier.contains(pinned, prereleases=True), (requirement, pinned)


@pytest.mark.parametrize("name", ["uvicorn", "websockets", "starlette", "pyjwt"])
def test_a_library_whose_internals_we_touch_has_an_upper_bound(name: str) -> None:
    """The first use of an untested release of these is a decision (docs/dependencies.md)."""
    (requirement,) = [r for r in declared_requirements() if canonicalize_name(r.name) == name]
    assert any(spec.operator in {"<", "<=", "=="} for spec in requirement.specifier)


def test_the_installed_releases_are_the_locked_ones() -> None:
    """The suite runs on what the lock says (the README's command installs with -c)."""
    for name, pinned in locked_releases().items():
        try:
            installed = Version(metadata.version(name))
        except metadata.PackageNotFoundError:
            continue  # a platform-only dependency (uvloop, say) absent here
        assert installed == pinned, f"{name} {installed} installed, {pinned} locked"


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
